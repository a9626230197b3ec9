//! KernelRoutes against a real kernel: every test builds its own namespace with a dummy `eth0`
//! (172.18.0.5/16) and reads the result back with `ip -n <ns> -j route show`.

use std::process::Command;

use agent::kernel::{DesiredRoute, KernelError, KernelRoutes, RouteOp};
use agent::netns::Netns;
use serde_json::Value;

const CALI: &str = "cali2c3211ffbd5";
const CALI2: &str = "cali0000000000a";

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn ip(ns: &Netns, args: &[&str]) -> String {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns.name())
        .args(args)
        .output()
        .expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A namespace with `eth0` 172.18.0.5/16 up and two cali veths.
fn node() -> Option<Netns> {
    // Fail, never skip: a skipped kernel test would read as a pass.
    assert!(
        is_root(),
        "kernel tests need root (CAP_NET_ADMIN) for network namespaces"
    );
    let ns = Netns::create("gk").expect("create netns");
    // veth pairs, both ends up (this kernel has no dummy module).
    for (i, dev) in ["eth0", CALI, CALI2].into_iter().enumerate() {
        let peer = format!("p{i}");
        ip(
            &ns,
            &["link", "add", dev, "type", "veth", "peer", "name", &peer],
        );
        ip(&ns, &["link", "set", dev, "up"]);
        ip(&ns, &["link", "set", &peer, "up"]);
    }
    ip(&ns, &["addr", "add", "172.18.0.5/16", "dev", "eth0"]);
    Some(ns)
}

fn routes(ns: &Netns) -> Vec<Value> {
    serde_json::from_str(&ip(ns, &["-j", "route", "show"])).unwrap()
}

fn route<'a>(all: &'a [Value], dst: &str) -> Option<&'a Value> {
    all.iter().find(|r| r["dst"] == dst)
}

fn text(ns: &Netns) -> Vec<String> {
    ip(ns, &["route", "show"])
        .lines()
        .map(|l| l.trim().to_string())
        .collect()
}

fn net(s: &str) -> ipnet::Ipv4Net {
    s.parse().unwrap()
}

#[test]
fn replace_via_installs_proto_bird_on_eth0_and_replaces_in_place() {
    let Some(ns) = node() else { return };
    ns.run(|| async {
        let mut k = KernelRoutes::new().unwrap();
        k.replace_via(net("192.168.114.64/26"), "172.18.0.8".parse().unwrap())
            .await
            .unwrap();
    })
    .unwrap();
    let all = routes(&ns);
    let r = route(&all, "192.168.114.64/26").expect("route installed");
    assert_eq!(r["gateway"], "172.18.0.8");
    assert_eq!(r["dev"], "eth0");
    assert_eq!(r["protocol"], "bird");
    assert!(text(&ns).contains(&"192.168.114.64/26 via 172.18.0.8 dev eth0 proto bird".to_string()));

    ns.run(|| async {
        let mut k = KernelRoutes::new().unwrap();
        k.replace_via(net("192.168.114.64/26"), "172.18.0.9".parse().unwrap())
            .await
            .unwrap();
    })
    .unwrap();
    let all = routes(&ns);
    let matching: Vec<_> = all
        .iter()
        .filter(|r| r["dst"] == "192.168.114.64/26")
        .collect();
    assert_eq!(
        matching.len(),
        1,
        "replaced in place, not appended: {all:?}"
    );
    assert_eq!(matching[0]["gateway"], "172.18.0.9");
}

#[test]
fn blackhole_host_route_and_delete() {
    let Some(ns) = node() else { return };
    ns.run(|| async {
        let mut k = KernelRoutes::new().unwrap();
        k.add_blackhole(net("192.168.252.0/26")).await.unwrap();
        k.add_host_route("192.168.252.7".parse().unwrap(), CALI)
            .await
            .unwrap();
        // Same route again on the same device: idempotent.
        k.add_host_route("192.168.252.7".parse().unwrap(), CALI)
            .await
            .unwrap();
    })
    .unwrap();
    let lines = text(&ns);
    assert!(
        lines.contains(&"blackhole 192.168.252.0/26 proto bird".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&format!("192.168.252.7 dev {CALI} scope link")),
        "{lines:?}"
    );

    let err = ns
        .run(|| async {
            let mut k = KernelRoutes::new().unwrap();
            k.add_host_route("192.168.252.7".parse().unwrap(), CALI2)
                .await
                .unwrap_err()
        })
        .unwrap();
    assert!(matches!(err, KernelError::RouteExists { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "already exists for an interface other than '{CALI2}'"
        )),
        "{msg}"
    );
    assert!(msg.contains(CALI), "{msg}");

    let listed = ns
        .run(|| async {
            let mut k = KernelRoutes::new().unwrap();
            let owned = k.list_owned().await.unwrap();
            k.delete(net("192.168.252.0/26")).await.unwrap();
            k.delete_host_route("192.168.252.7".parse().unwrap(), CALI)
                .await
                .unwrap();
            // Already gone, twice over: still success.
            k.delete(net("192.168.252.0/26")).await.unwrap();
            k.delete_host_route("192.168.252.7".parse().unwrap(), CALI)
                .await
                .unwrap();
            k.delete_host_route("192.168.252.8".parse().unwrap(), "cali-gone")
                .await
                .unwrap();
            owned
        })
        .unwrap();
    let mut listed: Vec<String> = listed.iter().map(|r| r.desired().to_string()).collect();
    listed.sort();
    assert_eq!(
        listed,
        vec![
            format!("192.168.252.7/32 dev {CALI} scope link"),
            "blackhole 192.168.252.0/26 proto bird".to_string(),
        ]
    );
    let all = routes(&ns);
    assert!(route(&all, "192.168.252.0/26").is_none(), "{all:?}");
    assert!(route(&all, "192.168.252.7").is_none(), "{all:?}");
}

#[test]
fn a_replace_never_takes_a_route_the_agent_did_not_make() {
    let Some(ns) = node() else { return };
    // Same prefix, same metric (0) as ours would have: a static via, a boot blackhole, and a
    // route on a device that is not a pod's.
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.9.0.0/24",
            "via",
            "172.18.0.1",
            "proto",
            "static",
        ],
    );
    ip(&ns, &["route", "add", "blackhole", "10.9.1.0/24"]);
    ip(
        &ns,
        &["route", "add", "10.9.2.7", "dev", "eth0", "scope", "link"],
    );
    // And one of ours, which a replace does move.
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.9.3.0/24",
            "via",
            "172.18.0.7",
            "proto",
            "bird",
        ],
    );
    let gw: std::net::Ipv4Addr = "172.18.0.9".parse().unwrap();
    let results = ns
        .run(move || async move {
            let mut k = KernelRoutes::new().unwrap();
            let ops = vec![
                RouteOp::Replace(DesiredRoute::via(net("10.9.0.0/24"), gw)),
                RouteOp::Replace(DesiredRoute::blackhole(net("10.9.1.0/24"))),
                RouteOp::Replace(DesiredRoute::host("10.9.2.7".parse().unwrap(), CALI)),
                RouteOp::Replace(DesiredRoute::via(net("10.9.3.0/24"), gw)),
                RouteOp::Replace(DesiredRoute::via(net("10.9.4.0/24"), gw)),
            ];
            let single = k.replace_via(net("10.9.0.0/24"), gw).await;
            (k.apply(&ops).await.unwrap(), single)
        })
        .unwrap();
    let (results, single) = results;
    let shown: Vec<String> = results
        .iter()
        .map(|r| r.as_ref().map_or("ok".into(), |e| e.to_string()))
        .collect();
    for (i, holder) in [
        "via 172.18.0.1 dev eth0 proto static",
        "proto boot",
        "dev eth0",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            matches!(&results[i], Some(KernelError::NotOurs { holder: h, .. }) if h.contains(holder)),
            "{shown:#?}"
        );
    }
    assert!(results[3].is_none() && results[4].is_none(), "{shown:#?}");
    let e = single.unwrap_err().to_string();
    assert!(
        e.contains("10.9.0.0/24 is held by a route the agent did not make"),
        "{e}"
    );
    let all = routes(&ns);
    let at = |dst: &str| -> Vec<&Value> { all.iter().filter(|r| r["dst"] == dst).collect() };
    assert_eq!(at("10.9.0.0/24").len(), 1, "{all:?}");
    assert_eq!(at("10.9.0.0/24")[0]["protocol"], "static");
    assert_eq!(at("10.9.0.0/24")[0]["gateway"], "172.18.0.1");
    // `ip -j` leaves out proto boot, the default.
    assert!(at("10.9.1.0/24")[0]["protocol"].is_null(), "{all:?}");
    assert_eq!(at("10.9.2.7")[0]["dev"], "eth0");
    assert_eq!(at("10.9.3.0/24").len(), 1, "replaced in place: {all:?}");
    assert_eq!(at("10.9.3.0/24")[0]["gateway"], "172.18.0.9");
    assert_eq!(at("10.9.4.0/24")[0]["protocol"], "bird");
}

#[test]
fn delete_leaves_same_prefix_of_another_protocol() {
    let Some(ns) = node() else { return };
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.9.0.0/24",
            "via",
            "172.18.0.1",
            "proto",
            "static",
        ],
    );
    ns.run(|| async {
        let mut k = KernelRoutes::new().unwrap();
        k.delete(net("10.9.0.0/24")).await.unwrap();
    })
    .unwrap();
    let all = routes(&ns);
    assert_eq!(route(&all, "10.9.0.0/24").unwrap()["protocol"], "static");
}

#[test]
fn reconcile_adds_replaces_removes_and_spares_foreign_routes() {
    let Some(ns) = node() else { return };
    // Foreign: a static route and the connected (proto kernel) subnet of eth0.
    ip(
        &ns,
        &[
            "route",
            "add",
            "10.9.0.0/24",
            "via",
            "172.18.0.1",
            "proto",
            "static",
        ],
    );
    // Ours from a previous run: one stale, one with an outdated gateway, one right.
    ip(
        &ns,
        &[
            "route",
            "add",
            "192.168.1.0/26",
            "via",
            "172.18.0.7",
            "proto",
            "bird",
        ],
    );
    ip(
        &ns,
        &[
            "route",
            "add",
            "192.168.2.0/26",
            "via",
            "172.18.0.7",
            "proto",
            "bird",
        ],
    );
    ip(
        &ns,
        &[
            "route",
            "add",
            "blackhole",
            "192.168.3.0/26",
            "proto",
            "bird",
        ],
    );
    ip(
        &ns,
        &["route", "add", "192.168.3.9", "dev", CALI2, "scope", "link"],
    );

    let desired = vec![
        DesiredRoute::via(net("192.168.2.0/26"), "172.18.0.8".parse().unwrap()),
        DesiredRoute::blackhole(net("192.168.3.0/26")),
        DesiredRoute::via(net("192.168.4.0/26"), "172.18.0.9".parse().unwrap()),
        DesiredRoute::host("192.168.3.7".parse().unwrap(), CALI),
        // Held by the static route: must not be overwritten.
        DesiredRoute::via(net("10.9.0.0/24"), "172.18.0.9".parse().unwrap()),
    ];
    let (first, second) = ns
        .run(move || async move {
            let mut k = KernelRoutes::new().unwrap();
            let first = k.reconcile(&desired).await.unwrap();
            let second = k.reconcile(&desired).await.unwrap();
            (first, second)
        })
        .unwrap();
    assert_eq!(
        (first.added, first.replaced, first.removed, first.unchanged),
        (2, 1, 2, 1),
        "{first:?}"
    );
    assert_eq!(first.failed.len(), 1, "{first:?}");
    assert!(matches!(&first.failed[0].0, RouteOp::Add(r) if r.prefix == net("10.9.0.0/24")));
    assert_eq!(first.failed[0].1.errno(), Some(libc::EEXIST));
    assert_eq!(
        (
            second.added,
            second.replaced,
            second.removed,
            second.unchanged
        ),
        (0, 0, 0, 4),
        "{second:?}"
    );

    let all = routes(&ns);
    assert!(
        route(&all, "192.168.1.0/26").is_none(),
        "stale removed: {all:?}"
    );
    assert!(
        route(&all, "192.168.3.9").is_none(),
        "stale host route removed: {all:?}"
    );
    assert_eq!(
        route(&all, "192.168.2.0/26").unwrap()["gateway"],
        "172.18.0.8"
    );
    assert_eq!(route(&all, "192.168.4.0/26").unwrap()["dev"], "eth0");
    assert_eq!(route(&all, "192.168.3.0/26").unwrap()["type"], "blackhole");
    assert_eq!(route(&all, "192.168.3.7").unwrap()["dev"], CALI);
    let foreign = route(&all, "10.9.0.0/24").unwrap();
    assert_eq!(
        (foreign["protocol"].as_str(), foreign["gateway"].as_str()),
        (Some("static"), Some("172.18.0.1"))
    );
    let connected = route(&all, "172.18.0.0/16").unwrap();
    assert_eq!(connected["protocol"], "kernel");
}

#[test]
fn batches_of_many_routes_reach_the_kernel() {
    let Some(ns) = node() else { return };
    // More than two batches, so the sequence-number matching across batches is exercised.
    let desired: Vec<DesiredRoute> = (0..1300u32)
        .map(|i| {
            let a = std::net::Ipv4Addr::from(0x0a00_0000 + (i << 8));
            DesiredRoute::via(
                ipnet::Ipv4Net::new(a, 24).unwrap(),
                "172.18.0.8".parse().unwrap(),
            )
        })
        .collect();
    let report = ns
        .run(move || async move {
            let mut k = KernelRoutes::new().unwrap();
            // A bad op in the middle fails alone.
            let mut ops: Vec<RouteOp> = desired.iter().cloned().map(RouteOp::Add).collect();
            ops.insert(
                700,
                RouteOp::Add(DesiredRoute::via(
                    net("10.255.255.0/24"),
                    "10.1.1.1".parse().unwrap(),
                )),
            );
            let started = std::time::Instant::now();
            let results = k.apply(&ops).await.unwrap();
            let took = started.elapsed();
            let removal = k.reconcile(&[]).await.unwrap();
            (results, took, removal)
        })
        .unwrap();
    let (results, took, removal) = report;
    eprintln!("1301 route adds in {took:?}");
    let failed: Vec<usize> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| r.is_some())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(failed, vec![700], "only the unreachable gateway fails");
    assert_eq!(
        results[700].as_ref().unwrap().errno(),
        Some(libc::ENETUNREACH)
    );
    assert_eq!(removal.removed, 1300);
    assert!(removal.failed.is_empty());
    assert_eq!(routes(&ns).len(), 1, "only the connected route is left");
}

#[test]
fn sysctls_are_set_inside_the_namespace_only() {
    let Some(ns) = node() else { return };
    let host_forward = agent::sysctl::read("net/ipv4/ip_forward").unwrap();
    let values = ns
        .run(|| async {
            agent::sysctl::enable_ip_forward().unwrap();
            agent::sysctl::configure_cali_interface(CALI).unwrap();
            let missing = agent::sysctl::configure_cali_interface("cali-missing").unwrap_err();
            (
                [
                    "net/ipv4/ip_forward".to_string(),
                    format!("net/ipv4/conf/{CALI}/proxy_arp"),
                    format!("net/ipv4/conf/{CALI}/forwarding"),
                    format!("net/ipv4/neigh/{CALI}/proxy_delay"),
                ]
                .map(|k| agent::sysctl::read(&k).unwrap()),
                missing,
            )
        })
        .unwrap();
    assert_eq!(values.0, ["1", "1", "1", "0"].map(String::from));
    assert!(
        values.1.to_string().contains("cali-missing"),
        "{}",
        values.1
    );
    assert_eq!(
        agent::sysctl::read("net/ipv4/ip_forward").unwrap(),
        host_forward,
        "host untouched"
    );
}
