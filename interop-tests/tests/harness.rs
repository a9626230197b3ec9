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
