//! Our `bgp` crate's speaker (no agent, no kernel) against the real daemons: the speaker runs
//! on a tokio runtime whose threads live in node 0's namespace, the peer in node 1's.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use bgp::fsm::State;
use bgp::{Speaker, SpeakerConfig, SpeakerHandle};
use interop_tests::peers::{
    has_prefix, BgpPeer, Bird, ExaBgp, Frr, GoBgp, Neighbor, PeerConfig, ReceivedRoute,
};
use interop_tests::{wait_for, wait_until, Netns, TestDir, Underlay};
use ipnet::Ipv4Net;
use tokio::runtime::Runtime;

const T: Duration = Duration::from_secs(20);

type Start = fn(&Netns, &Path, PeerConfig) -> Result<Box<dyn BgpPeer>>;

fn bird(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(Bird::start(ns, dir, cfg)?))
}

fn gobgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(GoBgp::start(ns, dir, cfg)?))
}

fn frr(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(Frr::start(ns, dir, cfg)?))
}

fn exabgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(ExaBgp::start(ns, dir, cfg)?))
}

/// A tokio runtime whose worker threads were created inside `ns`, so every socket the speaker
/// opens lives there.
fn runtime_in(ns: &Netns) -> Runtime {
    ns.spawn_thread(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    })
    .unwrap()
    .join()
    .unwrap()
}

/// Runs `fut` on the runtime's workers, never on the calling (host-namespace) thread: a
/// socket opened while polling it, like the speaker's listener, must live in the namespace.
fn on<T: Send + 'static>(
    rt: &Runtime,
    fut: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    rt.block_on(rt.spawn(fut)).expect("speaker task panicked")
}

fn speaker_state(rt: &Runtime, h: &SpeakerHandle, peer: Ipv4Addr) -> Result<Option<State>> {
    let h = h.clone();
    let st = on(rt, async move { h.status().await })?;
    Ok(st
        .peers
        .iter()
        .find(|p| p.address == IpAddr::V4(peer))
        .map(|p| p.state))
}

fn speaker_has(rt: &Runtime, h: &SpeakerHandle, p: Ipv4Net, hop: Ipv4Addr) -> Result<bool> {
    let h = h.clone();
    let routes = on(rt, async move { h.routes().await })?;
    Ok(routes
        .iter()
        .any(|r| r.prefix == p && r.next_hop == hop && r.best))
}

fn speaker_lacks(rt: &Runtime, h: &SpeakerHandle, p: Ipv4Net) -> Result<bool> {
    let h = h.clone();
    let routes = on(rt, async move { h.routes().await })?;
    Ok(!routes.iter().any(|r| r.prefix == p))
}

fn speaker_against(name: &str, start: Start, our_as: u32, peer_as: u32, peer_passive: bool) {
    let dir = TestDir::new(name).unwrap();
    let u = Underlay::new("ghp", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));

    let mut to_us = Neighbor::new(n0.ip, our_as);
    to_us.passive = peer_passive;
    let mut peer = start(
        &n1.ns,
        &dir.sub(name).unwrap(),
        PeerConfig::new(peer_as, n1.ip).neighbor(to_us),
    )
    .unwrap();

    let rt = runtime_in(&n0.ns);
    let mut cfg = SpeakerConfig::new(our_as, n0.ip);
    cfg.listen = Some(SocketAddr::new(n0.ip.into(), 179));
    cfg.hold_time = 9;
    cfg.connect_retry = Duration::from_secs(1);
    let h = on(&rt, Speaker::start(cfg)).unwrap();
    let mut pc = bgp::PeerConfig::new(n1.ip.into(), peer_as);
    pc.local_address = Some(n0.ip.into());
    let h2 = h.clone();
    on(&rt, async move { h2.add_peer(pc).await }).unwrap();

    wait_until(T, "speaker session Established", || {
        Ok(speaker_state(&rt, &h, n1.ip)? == Some(State::Established))
    })
    .unwrap();
    wait_until(T, &format!("{} session Established", peer.kind()), || {
        peer.established(n0.ip)
    })
    .unwrap();

    let from_peer: Ipv4Net = "10.100.0.0/24".parse().unwrap();
    let from_us: Ipv4Net = "192.168.64.0/26".parse().unwrap();
    peer.announce(from_peer).unwrap();
    let h2 = h.clone();
    on(&rt, async move { h2.announce(from_us, None).await }).unwrap();
    wait_until(
        T,
        &format!("speaker to learn {from_peer} via {}", n1.ip),
        || speaker_has(&rt, &h, from_peer, n1.ip),
    )
    .unwrap();
    let want = ReceivedRoute {
        prefix: from_us,
        next_hop: n0.ip,
    };
    wait_for(
        T,
        &format!("{} to receive {from_us} via {}", peer.kind(), n0.ip),
        || peer.received_routes(),
        |r| r.contains(&want),
    )
    .unwrap();

    peer.withdraw(from_peer).unwrap();
    wait_until(T, &format!("speaker to drop {from_peer}"), || {
        speaker_lacks(&rt, &h, from_peer)
    })
    .unwrap();
    let h2 = h.clone();
    on(&rt, async move { h2.withdraw(from_us).await }).unwrap();
    wait_for(
        T,
        &format!("{} to drop {from_us}", peer.kind()),
        || peer.received_routes(),
        |r| !has_prefix(r, from_us),
    )
    .unwrap();

    // The peer dies: how long until the speaker's RIB forgets its route?
    peer.announce(from_peer).unwrap();
    wait_until(T, &format!("speaker to relearn {from_peer}"), || {
        speaker_has(&rt, &h, from_peer, n1.ip)
    })
    .unwrap();
    let killed = Instant::now();
    peer.stop().unwrap();
    let gone = loop {
        if speaker_lacks(&rt, &h, from_peer).unwrap() {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(12),
            "{from_peer} still in the speaker's RIB 12 s after {} died",
            peer.kind()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    eprintln!("{name}: {from_peer} left the speaker's RIB {gone:?} after the peer was killed");
    assert!(
        gone < Duration::from_secs(1),
        "{from_peer} took {gone:?} to leave the RIB after the peer was killed"
    );
    let _ = on(&rt, async move { h.shutdown().await });
}

#[test]
fn speaker_bird_ibgp() {
    speaker_against("sp-bird-ibgp", bird, 64512, 64512, true);
}

#[test]
fn speaker_bird_ebgp_4octet() {
    speaker_against("sp-bird-ebgp", bird, 64512, 4200000001, false);
}

#[test]
fn speaker_gobgp_ibgp() {
    speaker_against("sp-gobgp-ibgp", gobgp, 64512, 64512, true);
}

#[test]
fn speaker_gobgp_ebgp_4octet() {
    speaker_against("sp-gobgp-ebgp", gobgp, 4200000001, 65001, false);
}

#[test]
fn speaker_frr_ibgp() {
    speaker_against("sp-frr-ibgp", frr, 64512, 64512, true);
}

#[test]
fn speaker_frr_ebgp_4octet() {
    speaker_against("sp-frr-ebgp", frr, 64512, 4200000001, false);
}

#[test]
fn speaker_exabgp_ibgp() {
    speaker_against("sp-exabgp-ibgp", exabgp, 64512, 64512, true);
}

#[test]
fn speaker_exabgp_ebgp_4octet() {
    speaker_against("sp-exabgp-ebgp", exabgp, 4200000002, 64512, false);
}
