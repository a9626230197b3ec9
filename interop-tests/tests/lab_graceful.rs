//! Graceful restart in the lab, as a DaemonSet rollout does it: a pod on one node pings a pod on
//! another at 100 packets a second while the first node's agent is restarted three times.
//! With graceful restart (the default) not one packet is lost; with it off the same restarts
//! show the outage, so the test can tell the difference.

mod labkit;

use labkit::Lab;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Lost and sent packets of a 100-per-second ping from node 0's pod to node 1's pod across
/// three agent restarts of node 0.
fn ping_across_restarts(lab: &Lab) -> (u64, u64) {
    let st = lab.status();
    let pods = st["pods"].as_array().unwrap();
    let node0 = st["nodes"][0]["name"].as_str().unwrap().to_string();
    let on = |n: usize| -> &Value {
        pods.iter()
            .find(|p| p["node"] == st["nodes"][n]["name"])
            .unwrap()
    };
    let (a, b) = (on(0), on(1));
    let count = 1500; // 15 s at 100 per second
    let ping = Command::new("ip")
        .args(["netns", "exec", a["netns"].as_str().unwrap()])
        .args([
            "ping",
            "-q",
            "-i",
            "0.01",
            "-W",
            "1",
            "-c",
            &count.to_string(),
        ])
        .arg(b["ip"].as_str().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    for _ in 0..3 {
        let out = lab.ok(&["restart-agent", &node0]);
        assert!(out.contains("Restarted"), "{out}");
        // The session is back before the next restart.
        let sock = st["nodes"][0]["control_socket"]
            .as_str()
            .unwrap()
            .to_string();
        let start = Instant::now();
        loop {
            let peers = labkit::routectl(&sock, &["show", "peers"]);
            if peers
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["state"] == "Established")
            {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "session not back: {peers}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    // "1500 packets transmitted, 1500 received, 0% packet loss, time 15033ms"
    let line = text
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or_else(|| panic!("no ping summary: {text}"));
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect();
    let (sent, received) = (nums[0], nums[1]);
    eprintln!("{}: {line}", lab.prefix);
    (sent - received, sent)
}

#[test]
fn a_rolling_restart_loses_no_packet_with_graceful_restart_and_does_without() {
    let lab = Lab::new("glg");
    lab.ok(&["up", "--nodes", "2", "--pods-per-node", "1"]);
    let (lost, sent) = ping_across_restarts(&lab);
    assert_eq!(sent, 1500);
    assert_eq!(
        lost,
        0,
        "packets lost across three graceful restarts:\n{}",
        lab.logs()
    );
    lab.ok(&["down"]);
    drop(lab);

    let lab = Lab::new("glr");
    lab.ok(&[
        "up",
        "--nodes",
        "2",
        "--pods-per-node",
        "1",
        "--agent-env",
        "GRACEFUL_RESTART_TIME=0",
    ]);
    let (lost, _) = ping_across_restarts(&lab);
    assert!(
        lost > 0,
        "without graceful restart the restarts must show (the peer drops our routes)"
    );
}
