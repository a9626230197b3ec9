//! Peer failures as the kernel sees them, against BIRD 2 (no graceful restart, hold time 9 s):
//! a peer killed with SIGKILL loses its routes from our kernel at once (its TCP connection
//! closes); a peer that goes silent (SIGSTOP) or whose link is cut loses them within one
//! hold time, not before; each time the session and the route come back by themselves.
//! Needs the agent binaries: `cargo build -p agent --bins` first.

use std::time::{Duration, Instant};

use interop_tests::agent::{Agent, AgentConfig, AgentPeer};
use interop_tests::peers::{BgpPeer, Bird, Neighbor, PeerConfig};
use interop_tests::routes::find;
use interop_tests::{wait_until, Netns, TestDir, Underlay};
use nix::sys::signal::Signal;

const T: Duration = Duration::from_secs(30);
const HOLD: Duration = Duration::from_secs(9);

/// How long until `prefix` leaves `ns`'s kernel, polled every 10 ms (up to `limit`).
fn time_until_gone(ns: &Netns, prefix: ipnet::Ipv4Net, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let present = ns
            .routes_proto("bird")
            .map(|r| find(&r, prefix).is_some())
            .unwrap_or(true);
        if !present {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_killed_silent_or_cut_off_peer_loses_its_routes_in_time_and_comes_back() {
    let dir = TestDir::new("faults").unwrap();
    let u = Underlay::new("gflt", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    let cfg = PeerConfig::new(65001, n1.ip).neighbor(Neighbor::new(n0.ip, 64512));
    let mut bird = Bird::start(&n1.ns, &dir.sub("bird").unwrap(), cfg).unwrap();
    let agent = Agent::start(
        &n0.ns,
        &dir.sub("agent").unwrap(),
        AgentConfig::new("node-0", n0.ip, 64512).peer(AgentPeer::new(n1.ip, 65001)),
    )
    .unwrap();
    let p = "10.100.0.0/24".parse().unwrap();
    bird.announce(p).unwrap();
    let back = |what: &str| {
        wait_until(T, &format!("the session after {what}"), || {
            agent.established(n1.ip)
        })
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log_tail(30)));
        wait_until(T, &format!("the route after {what}"), || {
            Ok(find(&n0.ns.routes_proto("bird")?, p).is_some())
        })
        .unwrap();
    };
    back("start");
    let peers = agent.peers().unwrap();
    assert_eq!(peers[0].hold_time, Some(9), "{peers:?}");

    // SIGKILL: the kernel closes BIRD's socket, the agent reads the end of the stream.
    bird.stop().unwrap();
    let gone = time_until_gone(&n0.ns, p, Duration::from_secs(1));
    eprintln!("SIGKILL: route gone after {gone:?}");
    assert!(
        gone.is_some(),
        "a killed peer's route must leave within a second"
    );
    bird.restart(false).unwrap();
    back("SIGKILL");

    // SIGSTOP: nothing closes, nothing arrives; the hold timer ends it.
    bird.signal(Signal::SIGSTOP);
    let gone = time_until_gone(&n0.ns, p, HOLD + Duration::from_secs(3));
    bird.signal(Signal::SIGCONT);
    eprintln!("SIGSTOP: route gone after {gone:?}");
    let gone = gone.expect("a silent peer's route must leave within one hold time");
    assert!(
        gone >= HOLD - Duration::from_secs(4),
        "kept until the hold timer, not dropped at the first missed keepalive ({gone:?})"
    );
    back("SIGCONT");

    // The peer's link cut: the same, seen from our side.
    n1.ns.run(&["ip", "link", "set", "eth0", "down"]).unwrap();
    let gone = time_until_gone(&n0.ns, p, HOLD + Duration::from_secs(3));
    n1.ns.run(&["ip", "link", "set", "eth0", "up"]).unwrap();
    eprintln!("link cut: route gone after {gone:?}");
    assert!(
        gone.is_some(),
        "a cut-off peer's route must leave within one hold time"
    );
    back("the link came back");
}

/// A mesh node's own underlay link goes down and up: the kernel drops its routes via that
/// link at once, the sessions end, and when the link is back everything converges again
/// without a restart (both kernels route both blocks). Then the same with a flap shorter
/// than the hold time, which the sessions survive but the kernel's routes do not.
#[test]
fn an_underlay_link_down_and_up_converges_again() {
    let dir = TestDir::new("linkflap").unwrap();
    let u = Underlay::new("gflp", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let agents = interop_tests::agent::start_mesh(&u, &dir, &["--hold-time", "9"]).unwrap();
    let ips = [u.node(0).ip, u.node(1).ip];
    let blocks: Vec<std::net::Ipv4Addr> = agents
        .iter()
        .enumerate()
        .map(|(i, a)| a.assign(&format!("x{i}")).unwrap())
        .collect();
    let converged = |what: &str| {
        for (i, a) in agents.iter().enumerate() {
            let other = 1 - i;
            wait_until(
                T,
                &format!("node{i}'s route to node{other} after {what}"),
                || {
                    Ok(u.node(i).ns.routes_proto("bird")?.iter().any(|r| {
                        r.gateway == Some(ips[other])
                            && r.dst
                                .parse::<ipnet::Ipv4Net>()
                                .is_ok_and(|n| n.contains(&blocks[other]))
                    }))
                },
            )
            .unwrap_or_else(|e| {
                panic!(
                    "{e}\nblocks {blocks:?}, routes {:?}\n{}",
                    u.node(i).ns.routes_proto("bird"),
                    a.log_tail(30)
                )
            });
            wait_until(T, &format!("node{i}'s session after {what}"), || {
                a.established(ips[other])
            })
            .unwrap();
        }
    };
    converged("start");
    let link = |state: &str| {
        u.node(0)
            .ns
            .run(&["ip", "link", "set", "eth0", state])
            .unwrap()
    };

    // Down for longer than the hold time: the sessions end on both sides.
    link("down");
    wait_until(T, "node1 to drop node0's session", || {
        Ok(!agents[1].established(ips[0])?)
    })
    .unwrap();
    link("up");
    converged("a long outage");

    // Down for two seconds: the sessions live on, but the kernel dropped node0's route via
    // eth0 with the link; the agent must put it back.
    link("down");
    std::thread::sleep(Duration::from_secs(2));
    link("up");
    let start = Instant::now();
    converged("a short flap");
    eprintln!(
        "short flap: converged {:?} after the link came up",
        start.elapsed()
    );
}
