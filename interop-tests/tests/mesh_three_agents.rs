//! Three agents in three namespaces on a bridge (172.18.0.0/16) with a shared `file` store: a
//! full iBGP mesh forms by itself; after each claims a block, each kernel routes the other two
//! blocks `via <their IP> proto bird` and blackholes its own; stopping one agent for good and
//! removing its node removes its routes everywhere and frees its block.

use anyhow::{Context, Result};
use interop_tests::agent::{start_mesh, Agent};
use interop_tests::{wait_until, TestDir, Underlay};
use serde_json::Value;
use std::net::Ipv4Addr;
use std::time::Duration;

fn blocks(agent: &Agent) -> Result<Vec<(String, Option<String>)>> {
    let v = agent.routectl(&["show", "blocks"])?;
    Ok(v["blocks"]
        .as_array()
        .context("blocks")?
        .iter()
        .map(|b| {
            (
                b["block"].as_str().unwrap_or_default().to_string(),
                b["node"].as_str().map(str::to_string),
            )
        })
        .collect())
}

#[test]
fn three_agents_mesh_routes_blackholes_and_node_removal() -> Result<()> {
    let dir = TestDir::new("mesh3")?;
    let underlay = Underlay::new("gm3", "172.18.0.0/16".parse()?, 3)?;
    // The mesh forms from the registry alone: each agent has the two others as Established peers.
    let mut agents = start_mesh(&underlay, &dir, &[])?;
    let ips: Vec<Ipv4Addr> = (0..3).map(|i| underlay.node(i).ip).collect();

    // Metrics and health over real HTTP, inside node 0's namespace (the agent binds its loopback).
    let http = |path: &str| -> Result<String> {
        underlay.node(0).ns.run(&[
            "curl",
            "-s",
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:9099{path}"),
        ])
    };
    let metrics = http("/metrics")?;
    for peer in &ips[1..] {
        assert!(
            metrics.contains(&format!(
                "gingham_bgp_session_up{{peer=\"{peer}\",type=\"mesh\"}} 1"
            )),
            "{metrics}"
        );
        assert!(
            metrics.contains(&format!(
                "gingham_bgp_peer_state{{peer=\"{peer}\",session_state=\"Established\"}} 5"
            )),
            "{metrics}"
        );
    }
    assert!(metrics.ends_with("200"), "{metrics}");
    assert!(http("/liveness")?.ends_with("200"));
    let ready = http("/readiness")?;
    assert!(
        ready.starts_with("ready") && ready.ends_with("200"),
        "{ready}"
    );

    // Each claims a block (an address outside pods is enough to claim one).
    for (i, a) in agents.iter().enumerate() {
        a.assign(&format!("test-{i}"))?;
    }
    let owned: Vec<(String, String)> = blocks(&agents[0])?
        .into_iter()
        .filter_map(|(b, n)| Some((b, n?)))
        .collect();
    assert_eq!(owned.len(), 3, "one block per node: {owned:?}");
    let block_of = |i: usize| {
        owned
            .iter()
            .find(|(_, n)| *n == format!("node{i}"))
            .map(|(b, _)| b.clone())
            .unwrap()
    };

    for (i, agent) in agents.iter().enumerate() {
        let ns = &underlay.node(i).ns;
        wait_until(
            Duration::from_secs(20),
            &format!("node{i}'s kernel routes"),
            || {
                let routes = ns.routes_proto("bird")?;
                let mut ok = routes
                    .iter()
                    .any(|r| r.dst == block_of(i) && r.is_blackhole());
                for j in (0..3).filter(|j| *j != i) {
                    ok &= routes.iter().any(|r| {
                        r.dst == block_of(j)
                            && r.gateway == Some(ips[j])
                            && r.dev.as_deref() == Some("eth0")
                    });
                }
                Ok(ok)
            },
        )
        .with_context(|| agent.log_tail(30))?;
    }

    // routectl node list: every node, its address and its block.
    let nodes: Value = agents[0].routectl(&["node", "list"])?;
    let listed: Vec<&str> = nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["node0", "node1", "node2"], "{nodes}");
    assert_eq!(nodes[2]["blocks"][0], block_of(2).as_str(), "{nodes}");
    assert_eq!(nodes[0]["this_node"], true);
    // Removing a node whose agent runs would cut it off: refused, saying why; a node that
    // does not exist is an error, not a success.
    let live = agents[0]
        .routectl(&["node", "remove", "node2"])
        .unwrap_err()
        .to_string();
    assert!(
        live.contains("still runs") && live.contains("--force"),
        "{live}"
    );
    let nosuch = agents[0]
        .routectl(&["node", "remove", "node9"])
        .unwrap_err()
        .to_string();
    assert!(nosuch.contains("no node named node9"), "{nosuch}");
    // trace answers for any address: outside the pool, with the kernel's route.
    let t: Value = agents[0].routectl(&["trace", &ips[1].to_string()])?;
    assert_eq!(t["in_pool"], false);
    assert!(
        t["kernel_route"].as_str().unwrap().contains("dev eth0"),
        "{t}"
    );
    // ipam show without --ip: the pool and each node's share.
    let summary = agents[0].routectl_text(&["ipam", "show"])?;
    assert!(
        summary.contains("IP Pool") && summary.contains("node1"),
        "{summary}"
    );

    // show peers: each state change as an absolute UTC time and as an age.
    let peers = agents[0].routectl_text(&["show", "peers"])?;
    let state_line = peers
        .lines()
        .find(|l| l.trim_start().starts_with("State:"))
        .unwrap_or_default();
    assert!(
        state_line.contains("Established since 20")
            && state_line.contains(" UTC (")
            && state_line.contains(" ago)"),
        "{peers}"
    );

    // Node 2 goes for good: its agent stops, and an operator removes the node.
    agents[2].stop();
    let removed: Value = agents[0].routectl(&["node", "remove", "node2"])?;
    assert_eq!(removed["registered"], true, "{removed}");
    assert!(
        removed["blocks"]
            .as_array()
            .is_some_and(|b| b.iter().any(|b| b == block_of(2).as_str())),
        "{removed}"
    );
    for (i, agent) in agents.iter().enumerate().take(2) {
        let ns = &underlay.node(i).ns;
        wait_until(
            Duration::from_secs(20),
            &format!("node{i} to forget node2"),
            || {
                let gone = !ns
                    .routes_proto("bird")?
                    .iter()
                    .any(|r| r.dst == block_of(2));
                let peers = agent.peers()?;
                Ok(gone
                    && peers.len() == 1
                    && !peers
                        .iter()
                        .any(|p| p.address == std::net::IpAddr::V4(ips[2])))
            },
        )
        .with_context(|| agent.log_tail(30))?;
    }
    // Its block is free again; the survivors still route each other.
    assert!(!blocks(&agents[0])?.iter().any(|(b, _)| *b == block_of(2)));
    let r0 = underlay.node(0).ns.routes_proto("bird")?;
    assert!(r0
        .iter()
        .any(|r| r.dst == block_of(1) && r.gateway == Some(ips[1])));
    // Removing this node itself is refused: it must be done from another node.
    assert!(agents[0].routectl(&["node", "remove", "node0"]).is_err());
    Ok(())
}
