//! An agent restart keeps forwarding: on SIGTERM the agent leaves its routes in the kernel (like
//! BIRD's `persist`); started again on the same datastore it rebuilds a pod's host route from its
//! endpoint record, sweeps a stale `proto bird` route left from before, and never removes the
//! routes that are still right.

use agent::control::api::{Assignment, Command, EndpointRecord};
use anyhow::{Context, Result};
use interop_tests::agent::{mesh_member, Agent};
use interop_tests::{wait_until, TestDir, Underlay};
use std::net::Ipv4Addr;
use std::time::Duration;

#[test]
fn restart_persists_routes_rebuilds_host_routes_and_sweeps_stale_ones() -> Result<()> {
    let dir = TestDir::new("restart")?;
    let underlay = Underlay::new("grs", "172.18.0.0/16".parse()?, 2)?;
    let datastore = dir.sub("datastore")?;
    let config = |i: usize| mesh_member(&underlay, i, &datastore);
    let n0 = &underlay.node(0).ns;
    let dir0 = dir.sub("node0")?;
    let mut a0 = Agent::start(n0, &dir0, config(0))?;
    let a1 = Agent::start(&underlay.node(1).ns, &dir.sub("node1")?, config(1))?;
    let ip1 = underlay.node(1).ip;

    // Node 1 owns a block; node 0 routes it.
    let addr1 = a1.assign("remote")?;
    let block1 = ipnet::Ipv4Net::new(addr1, 26)?.trunc().to_string();
    let routed = || -> Result<bool> {
        Ok(n0
            .routes_proto("bird")?
            .iter()
            .any(|r| r.dst == block1 && r.gateway == Some(ip1)))
    };
    wait_until(
        Duration::from_secs(30),
        "node0 to route node1's block",
        routed,
    )
    .with_context(|| a0.log_tail(30))?;

    // A pod endpoint on node 0, attached through the control API as the CNI plugin does.
    n0.ip(&[
        "link",
        "add",
        "cali0restart1",
        "type",
        "veth",
        "peer",
        "name",
        "podside1",
    ])?;
    n0.ip(&["link", "set", "cali0restart1", "up"])?;
    let sock = a0.socket().to_path_buf();
    let t = Duration::from_secs(10);
    let assigned: Assignment = agent::control::call(
        &sock,
        Command::EndpointAssign {
            container_id: "c0ffee".into(),
            pod: Some("web".into()),
            namespace: Some("default".into()),
        },
        t,
    )?;
    let pod_ip: Ipv4Addr = assigned.ip.context("an address")?;
    let record = EndpointRecord {
        container_id: "c0ffee".into(),
        pod: Some("web".into()),
        namespace: Some("default".into()),
        interface: "cali0restart1".into(),
        ip: pod_ip,
        netns: "/var/run/netns/none".into(),
        pod_interface: "eth0".into(),
    };
    let _: EndpointRecord = agent::control::call(&sock, Command::EndpointAttach(record), t)?;
    let host_route = || -> Result<bool> {
        Ok(n0
            .routes()?
            .iter()
            .any(|r| r.dst == pod_ip.to_string() && r.dev.as_deref() == Some("cali0restart1")))
    };
    assert!(host_route()?, "the attach installed the host route");

    // Stop: the routes stay.
    a0.stop();
    drop(a0);
    assert!(routed()?, "node1's block is still routed after SIGTERM");
    assert!(
        host_route()?,
        "the pod's host route is still there after SIGTERM"
    );

    // While it is down: the host route is lost, and a stale route of ours is left behind.
    n0.ip(&["route", "del", &pod_ip.to_string(), "dev", "cali0restart1"])?;
    n0.ip(&[
        "route",
        "add",
        "10.99.0.0/24",
        "via",
        &ip1.to_string(),
        "proto",
        "bird",
    ])?;

    let a0 = Agent::start(n0, &dir0, config(0))?;
    wait_until(
        Duration::from_secs(40),
        "the restarted agent to rebuild the host route and sweep the stale route",
        || {
            let stale = n0
                .routes_proto("bird")?
                .iter()
                .any(|r| r.dst == "10.99.0.0/24");
            Ok(host_route()? && !stale)
        },
    )
    .with_context(|| a0.log_tail(40))?;
    assert!(routed()?, "node1's block stayed routed through the restart");
    let endpoints = a0.routectl(&["show", "endpoints"])?;
    assert_eq!(endpoints[0]["ip"], pod_ip.to_string(), "{endpoints}");
    Ok(())
}
