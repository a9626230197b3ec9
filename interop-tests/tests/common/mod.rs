//! The agent-against-a-real-peer scenario shared by `agent_<peer>.rs`.

#![allow(dead_code)] // each test file uses a different subset

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use interop_tests::agent::{Agent, AgentConfig, AgentPeer};
use interop_tests::peers::{
    has_prefix, BgpPeer, Bird, ExaBgp, Frr, GoBgp, Neighbor, PeerConfig, ReceivedRoute,
};
use interop_tests::routes::{find, Route};
use interop_tests::{wait_for, wait_until, Netns, TestDir, Underlay};
use ipnet::Ipv4Net;

pub const T: Duration = Duration::from_secs(20);

pub type Start = fn(&Netns, &Path, PeerConfig) -> Result<Box<dyn BgpPeer>>;

pub fn bird(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(Bird::start(ns, dir, cfg)?))
}

pub fn gobgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(GoBgp::start(ns, dir, cfg)?))
}

pub fn frr(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(Frr::start(ns, dir, cfg)?))
}

pub fn exabgp(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Box<dyn BgpPeer>> {
    Ok(Box::new(ExaBgp::start(ns, dir, cfg)?))
}

/// Outside the IPAM pool: what a ToR or route server would send.
const FROM_PEER: &str = "10.100.0.0/24";
/// The agent's `--advertise` prefix.
const ADVERTISED: &str = "10.200.0.0/24";

fn kernel_route(ns: &Netns, prefix: Ipv4Net) -> Result<Option<Route>> {
    Ok(find(&ns.routes_proto("bird")?, prefix).cloned())
}

/// The agent on node 0 (AS `agent_as`), the peer on node 1 (AS `peer_as`):
/// 1. both report Established;
/// 2. a peer route reaches `routectl show routes` and the kernel (`proto bird`, via the peer);
/// 3. the agent's block (claimed by `routectl ipam assign`) and its `--advertise` prefix reach
///    the peer's CLI with the agent as next hop;
/// 4. the peer's withdrawal removes its route from the RIB and the kernel;
/// 5. killing the peer removes its route from the agent's kernel within a second;
/// 6. a restarted peer gets the agent's routes again, and stopping the agent (the agent-side
///    withdrawal: the last block of a node is kept, as in Calico, so releasing its address
///    withdraws nothing) removes them from the peer while the agent's kernel keeps its routes.
pub fn agent_against(name: &str, start: Start, agent_as: u32, peer_as: u32, peer_passive: bool) {
    let dir = TestDir::new(name).unwrap();
    let u = Underlay::new("gha", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    let advertised: Ipv4Net = ADVERTISED.parse().unwrap();

    let mut to_agent = Neighbor::new(n0.ip, agent_as);
    to_agent.passive = peer_passive;
    let peer_cfg = PeerConfig::new(peer_as, n1.ip).neighbor(to_agent);
    let mut peer = start(&n1.ns, &dir.sub(name).unwrap(), peer_cfg.clone()).unwrap();
    let mut agent_cfg =
        AgentConfig::new("node-0", n0.ip, agent_as).peer(AgentPeer::new(n1.ip, peer_as));
    agent_cfg.advertise.push(advertised);
    let mut agent = Agent::start(&n0.ns, &dir.sub("agent").unwrap(), agent_cfg).unwrap();

    await_sessions(&agent, peer.as_ref(), n0.ip, n1.ip);

    // Peer -> agent: RIB and kernel.
    let p: Ipv4Net = FROM_PEER.parse().unwrap();
    peer.announce(p).unwrap();
    await_in_agent(&agent, p, n1.ip);
    await_in_kernel(&n0.ns, p, n1.ip);

    // Agent -> peer: claiming an address claims (and announces) its block.
    let ip = agent.assign("interop-1").unwrap();
    let block = Ipv4Net::new(ip, 26).unwrap().trunc();
    await_at_peer(peer.as_ref(), block, n0.ip);
    await_at_peer(peer.as_ref(), advertised, n0.ip);
    let bh = kernel_route(&n0.ns, block).unwrap();
    assert!(
        bh.as_ref().is_some_and(Route::is_blackhole),
        "agent's kernel lacks blackhole {block} proto bird: {bh:?}"
    );

    // Peer-side withdrawal.
    peer.withdraw(p).unwrap();
    wait_for(
        T,
        &format!("agent RIB to drop {p}"),
        || agent.routes(),
        |r| !r.iter().any(|r| r.prefix == p),
    )
    .unwrap();
    wait_for(
        T,
        &format!("kernel to drop {p}"),
        || kernel_route(&n0.ns, p),
        Option::is_none,
    )
    .unwrap();

    // The peer dies: its route must leave the kernel within a second of the TCP close.
    peer.announce(p).unwrap();
    await_in_kernel(&n0.ns, p, n1.ip);
    let killed = Instant::now();
    peer.stop().unwrap();
    let gone = loop {
        if kernel_route(&n0.ns, p).unwrap().is_none() {
            break killed.elapsed();
        }
        if killed.elapsed() > Duration::from_secs(10) {
            panic!(
                "{p} still in the agent's kernel 10 s after {} died",
                peer.kind()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    eprintln!("{name}: {p} left the kernel {gone:?} after the peer was killed");
    assert!(
        gone < Duration::from_secs(1),
        "{p} took {gone:?} to leave the kernel after the peer was killed"
    );
    wait_until(T, "agent to see the session down", || {
        Ok(!agent.established(n1.ip)?)
    })
    .unwrap();

    // The peer comes back and relearns the agent's routes; then the agent stops.
    drop(peer);
    let peer = start(&n1.ns, &dir.sub(&format!("{name}-2")).unwrap(), peer_cfg).unwrap();
    await_sessions(&agent, peer.as_ref(), n0.ip, n1.ip);
    await_at_peer(peer.as_ref(), block, n0.ip);
    await_at_peer(peer.as_ref(), advertised, n0.ip);
    agent.stop();
    for gone in [block, advertised] {
        wait_for(
            T,
            &format!("{} to drop {gone} after the agent stopped", peer.kind()),
            || peer.received_routes(),
            |r| !has_prefix(r, gone),
        )
        .unwrap();
    }
    // Graceful restart on the forwarding side: a stopped agent leaves its routes in place.
    let bh = kernel_route(&n0.ns, block).unwrap();
    assert!(
        bh.as_ref().is_some_and(Route::is_blackhole),
        "blackhole {block} vanished when the agent stopped: {bh:?}"
    );
}

fn await_sessions(agent: &Agent, peer: &dyn BgpPeer, agent_ip: Ipv4Addr, peer_ip: Ipv4Addr) {
    wait_until(T, "agent session Established", || {
        agent.established(peer_ip)
    })
    .unwrap();
    wait_until(T, &format!("{} session Established", peer.kind()), || {
        peer.established(agent_ip)
    })
    .unwrap();
}

fn await_at_peer(peer: &dyn BgpPeer, prefix: Ipv4Net, hop: Ipv4Addr) {
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

fn await_in_agent(agent: &Agent, p: Ipv4Net, hop: Ipv4Addr) {
    wait_for(
        T,
        &format!("routectl show routes to list {p} via {hop} as best, in kernel"),
        || agent.routes(),
        |r| {
            r.iter()
                .any(|r| r.prefix == p && r.next_hop == hop && r.best && r.in_kernel)
        },
    )
    .unwrap();
}

fn await_in_kernel(ns: &Netns, p: Ipv4Net, hop: Ipv4Addr) {
    wait_for(
        T,
        &format!("kernel route {p} via {hop} dev eth0 proto bird"),
        || kernel_route(ns, p),
        |r| {
            r.as_ref()
                .is_some_and(|r| r.gateway == Some(hop) && r.dev.as_deref() == Some("eth0"))
        },
    )
    .unwrap();
}
