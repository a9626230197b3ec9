//! The agent as the helper of a restarting BIRD (RFC 4724): BIRD, with `graceful restart on`,
//! is killed and started again in recovery mode (`bird -R`); the agent keeps BIRD's route in
//! its kernel the whole time (stale meanwhile), and clears the stale mark when BIRD's
//! End-of-RIB comes. A BIRD that does not come back loses its route after its restart time.
//! Needs the agent binaries: `cargo build -p agent --bins` first.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use interop_tests::agent::{Agent, AgentConfig, AgentPeer};
use interop_tests::peers::{BgpPeer, Bird, Neighbor, PeerConfig};
use interop_tests::routes::find;
use interop_tests::{wait_until, TestDir, Underlay};

const T: Duration = Duration::from_secs(20);

#[test]
fn bird_restarting_gracefully_keeps_its_route_in_our_kernel() {
    let dir = TestDir::new("gr-bird").unwrap();
    let u = Underlay::new("ggrb", "172.18.0.0/16".parse().unwrap(), 2).unwrap();
    let (n0, n1) = (u.node(0), u.node(1));
    let mut cfg = PeerConfig::new(65001, n1.ip).neighbor(Neighbor::new(n0.ip, 64512));
    cfg.graceful_restart = true;
    cfg.graceful_restart_time = 6;
    let mut bird = Bird::start(&n1.ns, &dir.sub("bird").unwrap(), cfg).unwrap();
    let agent = Agent::start(
        &n0.ns,
        &dir.sub("agent").unwrap(),
        AgentConfig::new("node-0", n0.ip, 64512).peer(AgentPeer::new(n1.ip, 65001)),
    )
    .unwrap();
    wait_until(T, "the session", || agent.established(n1.ip)).unwrap();
    let p = "10.100.0.0/24".parse().unwrap();
    bird.announce(p).unwrap();
    let in_kernel = |ns: &interop_tests::Netns| -> bool {
        ns.routes_proto("bird")
            .map(|r| find(&r, p).is_some())
            .unwrap_or(false)
    };
    wait_until(T, "BIRD's route in the agent's kernel", || {
        Ok(in_kernel(&n0.ns))
    })
    .unwrap();
    let peers = agent.peers().unwrap();
    assert_eq!(peers[0].graceful_restart, Some(6), "negotiated: {peers:?}");

    // Watch the agent's kernel every 10 ms from here on.
    let gone = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (gone, stop, ns) = (gone.clone(), stop.clone(), n0.ns.name().to_string());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["-n", &ns, "route", "show", "10.100.0.0/24", "proto", "bird"])
                    .output()
                    .unwrap();
                if out.stdout.is_empty() {
                    gone.store(true, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    // BIRD dies (SIGKILL: no NOTIFICATION): its route stays, stale.
    bird.stop().unwrap();
    wait_until(T, "the agent to see BIRD gone", || {
        Ok(!agent.established(n1.ip)?)
    })
    .unwrap();
    let routes = agent.routes().unwrap();
    let r = routes.iter().find(|r| r.prefix == p).unwrap();
    assert!(r.stale && r.best && r.in_kernel, "{r:?}");
    // BIRD comes back as a restarting speaker and re-announces; its End-of-RIB clears the mark.
    bird.restart(true).unwrap();
    wait_until(T, "the session again", || agent.established(n1.ip)).unwrap();
    wait_until(T, "the stale mark to go", || {
        Ok(agent
            .routes()?
            .iter()
            .any(|r| r.prefix == p && !r.stale && r.best))
    })
    .unwrap();
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();
    assert!(
        !gone.load(Ordering::Relaxed),
        "BIRD's route left the agent's kernel during its graceful restart"
    );

    // Killed again and not coming back: after its restart time (6 s) the route goes.
    bird.stop().unwrap();
    let killed = Instant::now();
    wait_until(
        Duration::from_secs(30),
        "the route to go after the restart time",
        || Ok(!in_kernel(&n0.ns)),
    )
    .unwrap();
    let after = killed.elapsed();
    assert!(
        after >= Duration::from_secs(5),
        "kept for BIRD's restart time, not dropped at once ({after:?})"
    );
}
