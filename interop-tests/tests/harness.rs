//! The namespace harness on its own: a bridge underlay, ping, capture, cleanup.

use std::time::Duration;

use interop_tests::netns::list_all;
use interop_tests::{ping, Capture, TestDir, Underlay};

#[test]
fn bridge_underlay_connects_three_nodes_and_cleans_up() {
    let dir = TestDir::new("underlay").unwrap();
    let u = Underlay::new("ghu", "172.18.0.0/16".parse().unwrap(), 3).unwrap();
    let names: Vec<String> = u
        .nodes
        .iter()
        .map(|n| n.ns.name().to_string())
        .chain([u.bridge.netns().name().to_string()])
        .collect();
    assert_eq!(u.node(0).ip.to_string(), "172.18.0.2");
    assert_eq!(u.node(2).ip.to_string(), "172.18.0.4");

    let cap = Capture::start(&u.node(1).ns, dir.path(), "n1", "eth0", "icmp").unwrap();
    for a in &u.nodes {
        for b in &u.nodes {
            if a.ip != b.ip {
                assert!(
                    ping(&a.ns, b.ip, Duration::from_secs(2)).unwrap(),
                    "{} cannot ping {}",
                    a.ns.name(),
                    b.ip
                );
            }
        }
    }
    let packets = cap.stop().unwrap();
    assert!(
        packets.contains("172.18.0.2 > 172.18.0.3: ICMP echo request"),
        "capture on node 1 misses node 0's echo request:\n{packets}"
    );

    // Nothing leaks into the host namespace's view of the underlay.
    let before = list_all().unwrap();
    for n in &names {
        assert!(before.contains(n), "{n} missing from ip netns list");
    }
    drop(u);
    let after = list_all().unwrap();
    for n in &names {
        assert!(!after.contains(n), "{n} still exists after drop");
    }
}

#[test]
fn ip_forward_is_per_namespace() {
    let u = Underlay::new("ghf", "10.77.0.0/24".parse().unwrap(), 2).unwrap();
    u.node(0).ns.set_ip_forward(true).unwrap();
    let read = |i: usize| {
        u.node(i)
            .ns
            .run(&["cat", "/proc/sys/net/ipv4/ip_forward"])
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(read(0), "1");
    assert_eq!(read(1), "0");
}

#[test]
fn veth_pair_and_kernel_routes_by_protocol() {
    use interop_tests::{veth_pair, Netns};
    let a = Netns::new("ghv").unwrap();
    let b = Netns::new("ghv").unwrap();
    veth_pair(
        &a,
        "eth0",
        Some("10.66.0.1/24".parse().unwrap()),
        &b,
        "eth0",
        Some("10.66.0.2/24".parse().unwrap()),
    )
    .unwrap();
    assert!(ping(&a, "10.66.0.2".parse().unwrap(), Duration::from_secs(2)).unwrap());
    a.ip(&[
        "route",
        "add",
        "blackhole",
        "192.168.1.0/26",
        "proto",
        "bird",
    ])
    .unwrap();
    a.ip(&[
        "route",
        "add",
        "192.168.2.0/26",
        "via",
        "10.66.0.2",
        "dev",
        "eth0",
        "proto",
        "bird",
    ])
    .unwrap();
    let bird = a.routes_proto("bird").unwrap();
    assert_eq!(bird.len(), 2, "{bird:?}");
    assert!(bird[0].is_blackhole());
    assert_eq!(bird[1].gateway, Some("10.66.0.2".parse().unwrap()));
    let all = a.routes().unwrap();
    assert!(all
        .iter()
        .any(|r| r.protocol.as_deref() == Some("kernel") && r.scope == "link"));
    // Nothing of this is visible in b.
    assert!(b.routes_proto("bird").unwrap().is_empty());
}

#[test]
fn dropping_a_namespace_kills_what_runs_inside() {
    use interop_tests::Netns;
    let ns = Netns::new("ghk").unwrap();
    let name = ns.name().to_string();
    ns.run(&["sh", "-c", "sleep 600 >/dev/null 2>&1 &"])
        .unwrap();
    let pids = ns.pids().unwrap();
    assert_eq!(pids.len(), 1, "{pids:?}");
    drop(ns);
    assert!(!list_all().unwrap().contains(&name));
    // Killed (possibly a zombie until init reaps it): not sleeping any more.
    let state = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "process still alive: {state}"
    );
}

#[test]
fn missing_program_fails_fast_with_its_name() {
    use interop_tests::Netns;
    let dir = TestDir::new("missing").unwrap();
    let ns = Netns::new("ghm").unwrap();
    let err = ns
        .spawn(dir.path(), "x", &["gingham-no-such-daemon"])
        .err()
        .expect("spawning a missing program must fail")
        .to_string();
    assert!(err.contains("gingham-no-such-daemon"), "{err}");
}

#[test]
fn wait_ready_fails_at_once_when_the_daemon_dies() {
    use interop_tests::Netns;
    use std::time::Instant;
    let dir = TestDir::new("dies").unwrap();
    let ns = Netns::new("ghd").unwrap();
    let d = ns
        .spawn(
            dir.path(),
            "dies",
            &["sh", "-c", "echo bad config line 3; exit 3"],
        )
        .unwrap();
    let start = Instant::now();
    let err = d
        .wait_ready(Duration::from_secs(10), "a socket that never comes", || {
            Ok(false)
        })
        .unwrap_err()
        .to_string();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    assert!(err.contains("bad config line 3"), "{err}");
    assert!(err.contains("a socket that never comes"), "{err}");
}

#[test]
fn a_thread_can_enter_a_namespace() {
    let u = Underlay::new("ght", "10.78.0.0/24".parse().unwrap(), 2).unwrap();
    // Binding the namespace's own address only works from inside it.
    let h = u
        .node(0)
        .ns
        .spawn_thread(|| std::net::TcpListener::bind("10.78.0.2:7777").map(|_| ()))
        .unwrap();
    h.join()
        .unwrap()
        .expect("bind to the namespace's own address");
    // The test thread itself is still in the host namespace: that address is not ours here.
    assert!(std::net::TcpListener::bind("10.78.0.2:7777").is_err());
}
