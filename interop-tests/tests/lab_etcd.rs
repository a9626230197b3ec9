//! The lab on etcd (`gingham-lab up --datastore etcd`): three agents on a three-member etcd
//! cluster in namespaces of their own. The mesh routes every node's blocks; with one member
//! stopped pods are still added; with two (no quorum) the pods ping as before and a new pod gets
//! CNI code 11, "try again later", until the members are back; an agent killed with SIGKILL
//! leaves every other node's mesh within its lease's TTL and its addresses are released after
//! the grace, by the holder of the collector's lease, once; `down` removes the etcd members too.

mod labkit;

use labkit::{in_ns, routectl, routes, wait_until, Lab};
use serde_json::Value;
use std::time::{Duration, Instant};

const TTL: u64 = 15;

fn node<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {status}"))
}

fn bird_routes_via(netns: &str) -> usize {
    routes(netns)
        .iter()
        .filter(|r| r["protocol"] == "bird" && r["gateway"].is_string())
        .count()
}

fn peers(socket: &str) -> Vec<String> {
    routectl(socket, &["show", "peers"])
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["address"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn the_etcd_lab_survives_a_member_and_quorum_loss_and_drops_a_killed_node() {
    let lab = Lab::new("ge");
    let ttl = format!("NODE_LEASE_TTL={TTL}");
    lab.ok(&[
        "up",
        "--datastore",
        "etcd",
        "--nodes",
        "3",
        "--pods-per-node",
        "1",
        "--agent-env",
        &ttl,
        "--agent-env",
        "NODE_RELEASE_GRACE=5",
    ]);
    let st = lab.status();
    assert!(
        st["datastore"]
            .as_str()
            .unwrap()
            .starts_with("etcd http://172.18.255.201:2379,"),
        "{st}"
    );
    let members = st["etcd"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert_eq!(
        members.iter().filter(|m| m["state"] == "leader").count(),
        1,
        "{members:?}"
    );
    let names: Vec<String> = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect();
    // Every node routes the two other nodes' blocks, learned over the mesh.
    for n in &names {
        let netns = node(&st, n)["netns"].as_str().unwrap().to_string();
        wait_until(
            "routes to the other nodes' blocks",
            Duration::from_secs(30),
            || bird_routes_via(&netns) >= 2,
        );
    }
    let worker = &names[1];
    let pods = st["pods"].as_array().unwrap().clone();
    let (from, to) = (&pods[0], &pods[1]);
    let ping = || {
        in_ns(
            from["netns"].as_str().unwrap(),
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                to["ip"].as_str().unwrap(),
            ],
        )
        .status
        .success()
    };
    assert!(ping(), "cross-node ping");

    // One member down: a majority is left, pods are added as before.
    lab.ok(&["etcd", "stop", "etcd0"]);
    lab.ok(&["pod", "add", worker, "one-down"]);

    // Two down: no quorum. Forwarding goes on; a new pod is told to try again later.
    lab.ok(&["etcd", "stop", "etcd1"]);
    assert!(ping(), "ping without quorum");
    let socket0 = node(&st, &names[0])["control_socket"]
        .as_str()
        .unwrap()
        .to_string();
    let sessions = routectl(&socket0, &["show", "peers"]);
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["state"] == "Established"),
        "sessions stay up without quorum: {sessions}"
    );
    let out = lab.cmd(&["pod", "add", worker, "no-quorum"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("\"code\":11"), "{text}");
    assert!(text.contains("try again later"), "{text}");
    assert!(text.contains("no quorum"), "{text}");
    let st = lab.status();
    assert!(
        !st["pods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "no-quorum"),
        "a pod that got no address is not left behind"
    );

    // The members come back: everything recovers.
    lab.ok(&["etcd", "start", "etcd1"]);
    lab.ok(&["etcd", "start", "etcd0"]);
    let t = Instant::now();
    loop {
        let out = lab.cmd(&["pod", "add", worker, "back"]);
        if out.status.success() {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no pod after the members came back: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    assert!(ping(), "ping after recovery");

    // SIGKILL one agent: no Cease, no deregistration; its lease runs out instead.
    let st = lab.status();
    let victim = node(&st, &names[2]);
    let victim_ip = victim["ip"].as_str().unwrap().to_string();
    let pid = victim["agent_pid"].as_i64().unwrap() as i32;
    let observers: Vec<String> = names[..2]
        .iter()
        .map(|n| node(&st, n)["control_socket"].as_str().unwrap().to_string())
        .collect();
    assert!(observers.iter().all(|o| peers(o).contains(&victim_ip)));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let killed = Instant::now();
    wait_until(
        "the killed node to leave every other node's mesh",
        Duration::from_secs(TTL + 2),
        || observers.iter().all(|o| !peers(o).contains(&victim_ip)),
    );
    eprintln!(
        "the killed node left the mesh {:.1} s after SIGKILL (TTL {TTL} s)",
        killed.elapsed().as_secs_f64()
    );
    // After the grace, one live agent releases its blocks: the first by name, and only it.
    wait_until(
        "the killed node's blocks to be released",
        Duration::from_secs(30),
        || {
            let blocks = routectl(&observers[0], &["show", "blocks"]);
            !blocks["blocks"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["node"] == names[2].as_str())
        },
    );
    // Another look or two of the collectors: nobody releases it again. The one that did holds
    // the node-collector lease.
    std::thread::sleep(Duration::from_secs(3));
    let released = format!("node collector: node {} left the mesh", names[2]);
    let logs: Vec<String> = names[..2]
        .iter()
        .map(|n| std::fs::read_to_string(node(&st, n)["log"].as_str().unwrap()).unwrap())
        .collect();
    let counts: Vec<usize> = logs.iter().map(|l| l.matches(&released).count()).collect();
    assert_eq!(
        counts.iter().sum::<usize>(),
        1,
        "released exactly once: {counts:?}"
    );
    let by = counts.iter().position(|c| *c == 1).unwrap();
    assert!(
        logs[by].contains("this node holds the node-collector lease"),
        "released by the lease holder"
    );

    // down removes the etcd members with everything else.
    let prefix = lab.prefix.clone();
    lab.ok(&["down"]);
    let left = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let left = String::from_utf8_lossy(&left.stdout);
    assert!(
        !left.lines().any(|l| l.starts_with(&prefix)),
        "namespaces left behind: {left}"
    );
}
