//! The peer launchers against each other, no Gingham involved: BIRD on one node and GoBGP, FRR
//! or ExaBGP on the other, over the bridge underlay. Each test proves a session comes up, routes
//! flow both ways (as each daemon's own CLI reports), withdrawals remove them, and killing the
//! peer removes its routes from BIRD.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use interop_tests::peers::{
    has_prefix, BgpPeer, Bird, ExaBgp, Frr, GoBgp, Neighbor, PeerConfig, ReceivedRoute,
};
use interop_tests::{wait_for, wait_until, Netns, TestDir, Underlay};
use ipnet::Ipv4Net;

const T: Duration = Duration::from_secs(20);

type Start = fn(&Netns, &Path, PeerConfig) -> Result<Box<dyn BgpPeer>>;

fn gobgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(GoBgp::start(ns, dir, cfg)?))
}

fn frr(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(Frr::start(ns, dir, cfg)?))
}

fn exabgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(ExaBgp::start(ns, dir, cfg)?))
}

/// Waits until `peer` holds `prefix` via `hop`.
fn await_route(peer: &dyn BgpPeer, prefix: Ipv4Net, hop: std::net::Ipv4Addr) {
    let want = ReceivedRoute {
        prefix,
        next_hop: hop,
    };
    wait_for(
        T,
        &format!("{} to receive {prefix} via {hop}", peer.kind()),
        || peer.received_routes(),
        |r| r.contains(&want),
    )
    .unwrap();
}

fn await_gone(peer: &dyn BgpPeer, prefix: Ipv4Net) {
    wait_for(
        T,
        &format!("{} to drop {prefix}", peer.kind()),
        || peer.received_routes(),
        |r| !has_prefix(r, prefix),
    )
    .unwrap();
}

/// BIRD (AS `bird_as`) on node 0, the other daemon (AS `other_as`) on node 1. In iBGP runs BIRD
/// connects and the other side is passive; in eBGP runs the roles swap, so both modes of every
/// launcher are exercised.
fn bird_against(name: &str, start: Start, bird_as: u32, other_as: u32) {
    let dir = TestDir::new(name).unwrap();
    let u = Underlay::new("ghs", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    let ibgp = bird_as == other_as;

    let mut to_other = Neighbor::new(n1.ip, other_as);
    let mut to_bird = Neighbor::new(n0.ip, bird_as);
    if ibgp {
        to_bird = to_bird.passive();
    } else {
        to_other = to_other.passive();
    }
    let mut bird = Bird::start(
        &n0.ns,
        &dir.sub("bird").unwrap(),
        PeerConfig::new(bird_as, n0.ip).neighbor(to_other),
    )
    .unwrap();
    let mut other = start(
        &n1.ns,
        &dir.sub(name).unwrap(),
        PeerConfig::new(other_as, n1.ip).neighbor(to_bird),
    )
    .unwrap();

    wait_until(T, "BIRD session Established", || bird.established(n1.ip)).unwrap();
    wait_until(T, &format!("{} session Established", other.kind()), || {
        other.established(n0.ip)
    })
    .unwrap();

    let from_other: Ipv4Net = "192.168.10.0/26".parse().unwrap();
    let from_bird: Ipv4Net = "192.168.20.0/26".parse().unwrap();
    other.announce(from_other).unwrap();
    bird.announce(from_bird).unwrap();
    await_route(&bird, from_other, n1.ip);
    await_route(other.as_ref(), from_bird, n0.ip);

    other.withdraw(from_other).unwrap();
    await_gone(&bird, from_other);
    bird.withdraw(from_bird).unwrap();
    await_gone(other.as_ref(), from_bird);

    // A peer that dies takes its routes with it.
    other.announce(from_other).unwrap();
    await_route(&bird, from_other, n1.ip);
    let killed = std::time::Instant::now();
    other.stop().unwrap();
    await_gone(&bird, from_other);
    // A reference figure for our own agent's "within a second" (polling adds up to 100 ms).
    eprintln!(
        "{name}: BIRD dropped {from_other} {:?} after {} was killed",
        killed.elapsed(),
        other.kind()
    );
    wait_until(T, "BIRD session down", || Ok(!bird.established(n1.ip)?)).unwrap();
}

#[test]
fn bird_gobgp_ibgp() {
    bird_against("gobgp-ibgp", gobgp, 64512, 64512);
}

#[test]
fn bird_gobgp_ebgp_4octet() {
    bird_against("gobgp-ebgp", gobgp, 64512, 4200000001);
}

#[test]
fn bird_frr_ibgp() {
    bird_against("frr-ibgp", frr, 64512, 64512);
}

#[test]
fn bird_frr_ebgp_4octet() {
    bird_against("frr-ebgp", frr, 4200000001, 65001);
}

#[test]
fn bird_exabgp_ibgp() {
    bird_against("exabgp-ibgp", exabgp, 64512, 64512);
}

#[test]
fn bird_exabgp_ebgp_4octet() {
    bird_against("exabgp-ebgp", exabgp, 65001, 4200000002);
}
