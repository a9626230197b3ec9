//! IP autodetection in a namespace of its own: `lo`, `eth0` 172.18.0.5/16, a cali device with a
//! /32, a docker0-like bridge that comes first, and a second uplink `ens5` 10.7.0.2/24.

use std::net::Ipv4Addr;
use std::process::Command;

use agent::autodetect::{autodetect, AutodetectMethod, SKIPPED_PREFIXES};
use agent::netns::Netns;

fn ip(ns: &Netns, args: &[&str]) {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns.name())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node() -> Netns {
    // Fail, never skip: a skipped namespace test would read as a pass.
    assert!(
        nix::unistd::geteuid().is_root(),
        "autodetection tests need root (CAP_NET_ADMIN) for network namespaces"
    );
    let ns = Netns::create("gk").unwrap();
    // Created before eth0, so it has the lower ifindex: first-found must skip it by name.
    ip(&ns, &["link", "add", "docker0", "type", "bridge"]);
    ip(&ns, &["addr", "add", "172.17.0.1/16", "dev", "docker0"]);
    ip(&ns, &["link", "set", "docker0", "up"]);
    for (dev, peer, addr) in [
        ("cali2c3211ffbd5", "p0", "192.168.0.1/32"),
        ("eth0", "p1", "172.18.0.5/16"),
        ("ens5", "p2", "10.7.0.2/24"),
    ] {
        ip(
            &ns,
            &["link", "add", dev, "type", "veth", "peer", "name", peer],
        );
        ip(&ns, &["addr", "add", addr, "dev", dev]);
        ip(&ns, &["link", "set", dev, "up"]);
        ip(&ns, &["link", "set", peer, "up"]);
    }
    ns
}

fn detect(ns: &Netns, method: &str) -> Result<(Ipv4Addr, u8, String), String> {
    let method: AutodetectMethod = method.parse().unwrap();
    ns.run(move || async move {
        autodetect(&method)
            .map(|d| (d.address, d.prefix_len, d.ifname))
            .map_err(|e| e.to_string())
    })
    .unwrap()
}

#[test]
fn first_found_interface_and_can_reach() {
    let ns = node();
    assert!(SKIPPED_PREFIXES.contains(&"docker"));
    assert_eq!(
        detect(&ns, "first-found").unwrap(),
        ("172.18.0.5".parse().unwrap(), 16, "eth0".into())
    );
    assert_eq!(detect(&ns, "interface=eth.*").unwrap().2, "eth0");
    assert_eq!(
        detect(&ns, "interface=ens.*,eth.*").unwrap().2,
        "eth0",
        "first in ifindex order"
    );
    assert_eq!(
        detect(&ns, "interface=ens5").unwrap().0,
        "10.7.0.2".parse::<Ipv4Addr>().unwrap()
    );
    // The kernel's source towards each subnet; no packet leaves (UDP connect only).
    assert_eq!(
        detect(&ns, "can-reach=10.7.0.9").unwrap(),
        ("10.7.0.2".parse().unwrap(), 24, "ens5".into())
    );
    assert_eq!(detect(&ns, "can-reach=172.18.0.8").unwrap().2, "eth0");

    let err = detect(&ns, "interface=wlan.*").unwrap_err();
    assert!(
        err.contains("IP_AUTODETECTION_METHOD=interface=wlan.*"),
        "{err}"
    );
    // No default route in the namespace: unreachable, and said so.
    let err = detect(&ns, "can-reach=8.8.8.8").unwrap_err();
    assert!(err.contains("can-reach=8.8.8.8"), "{err}");
}

#[test]
fn first_found_with_only_virtual_interfaces_fails_cleanly() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "autodetection tests need root (CAP_NET_ADMIN) for network namespaces"
    );
    let ns = Netns::create("gk").expect("create netns");
    ip(
        &ns,
        &[
            "link", "add", "cali0", "type", "veth", "peer", "name", "veth0",
        ],
    );
    ip(&ns, &["addr", "add", "192.168.0.1/32", "dev", "cali0"]);
    ip(&ns, &["link", "set", "cali0", "up"]);
    let err = detect(&ns, "first-found").unwrap_err();
    assert!(err.contains("no usable IPv4 address"), "{err}");
}
