//! A Node record that cannot be read is an error about that record, never a deletion: two
//! agents on a shared `file` store, one node's record spoilt on disk. The other agent keeps
//! the session and the route to that node's block, says so once in its log, counts it in a
//! metric, and `routectl ipam check` names that one record (not its addresses as leaked) and
//! exits non-zero; `repair` frees nothing. Putting the record back clears all of it.

use anyhow::{Context, Result};
use interop_tests::agent::{binary, start_mesh, Agent};
use interop_tests::{wait_until, TestDir, Underlay};
use std::process::Command;
use std::time::Duration;

/// `routectl ipam <what>` as a person runs it: (exit status success, stdout, stderr).
fn ipam(agent: &Agent, what: &str) -> Result<(bool, String, String)> {
    let out = Command::new(binary("ROUTECTL_BIN", "routectl")?)
        .arg("--socket")
        .arg(agent.socket())
        .args(["ipam", what])
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// Replaces a file the way a careless writer would (a rename), so watches see it.
fn put(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-test");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[test]
fn an_unreadable_node_record_keeps_its_peer_and_routes_and_is_reported_once() -> Result<()> {
    let dir = TestDir::new("dsfault")?;
    let underlay = Underlay::new("gdf", "172.18.0.0/16".parse()?, 2)?;
    let agents = start_mesh(&underlay, &dir, &[])?;
    let ip1 = underlay.node(1).ip;
    let pod_ip = agents[1].assign("held-by-node1")?;
    let ns0 = &underlay.node(0).ns;
    let route_to_node1 = || -> Result<bool> {
        Ok(ns0.routes_proto("bird")?.iter().any(|r| {
            r.gateway == Some(ip1)
                && r.dst
                    .parse::<ipnet::Ipv4Net>()
                    .is_ok_and(|n| n.contains(&pod_ip))
        }))
    };
    wait_until(
        Duration::from_secs(20),
        "node0's route to node1's block",
        route_to_node1,
    )
    .with_context(|| agents[0].log_tail(30))?;
    let (ok, out, _) = ipam(&agents[0], "check")?;
    assert!(ok, "a clean store checks clean: {out}");

    let record = dir.path().join("datastore/Node/node1.json");
    let good = std::fs::read(&record).context("node1's record")?;
    put(&record, b"{\"kind\": \"Node\", \"name\": ")?;
    wait_until(
        Duration::from_secs(10),
        "the metric of unreadable records",
        || {
            Ok(agents[0]
                .metrics()?
                .contains("gingham_datastore_unreadable_records{kind=\"Node\"} 1"))
        },
    )?;
    // Several polls later: still peered, route still there, and one log line about it.
    std::thread::sleep(Duration::from_secs(4));
    assert!(agents[0].established(ip1)?, "{}", agents[0].log_tail(30));
    assert!(route_to_node1()?, "the route to node1's block went");
    let log = agents[0].log_tail(2000);
    let said = log.matches("Node/node1.json is unreadable").count();
    assert_eq!(said, 1, "said once, not every poll:\n{log}");
    assert!(!log.contains("removing peer"), "{log}");

    let (ok, out, err) = ipam(&agents[0], "check")?;
    assert!(!ok, "check exits non-zero when it finds a problem: {out}");
    assert!(
        out.contains("Node node1") && out.contains("unreadable"),
        "{out}"
    );
    assert!(
        out.contains("found 1 problems"),
        "one problem, no follow-ons: {out}"
    );
    assert!(!out.contains("leaked"), "{out}");
    assert!(err.contains("found 1 IPAM problems"), "{err}");
    let (ok, out, _) = ipam(&agents[0], "repair")?;
    assert!(!ok, "repair says it left something: {out}");
    assert!(out.contains("fixed 0 problems"), "{out}");
    assert!(
        out.contains("not fixed") && out.contains("by hand"),
        "{out}"
    );
    let held = agents[0].routectl(&["ipam", "show", "--ip", &pod_ip.to_string()])?;
    assert_eq!(held["handle"], "held-by-node1", "{held}");

    // Put back as it was: the metric clears, check is clean, the log says it reads again.
    put(&record, &good)?;
    wait_until(Duration::from_secs(10), "the metric to clear", || {
        Ok(agents[0]
            .metrics()?
            .contains("gingham_datastore_unreadable_records{kind=\"Node\"} 0"))
    })?;
    let (ok, out, _) = ipam(&agents[0], "check")?;
    assert!(ok, "{out}");
    assert!(agents[0].established(ip1)?);
    assert!(agents[0]
        .log_tail(2000)
        .contains("the record of node1 reads again"));
    Ok(())
}
