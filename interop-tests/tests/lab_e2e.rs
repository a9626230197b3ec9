//! End to end in the lab: three nodes with pods; every pod pings every other pod; the underlay
//! carries pod addresses with no encapsulation (84-byte IP packets for a default ping, as the seed
//! measured on Calico); deleting a pod removes its host route and frees its address; a fourth
//! node joining gets routes to everyone and everyone to it; `down` leaves nothing behind.

mod labkit;

use labkit::{in_ns, routectl, routes, wait_until, Lab};
use serde_json::Value;
use std::process::Command;
use std::time::{Duration, Instant};

fn pods(status: &Value) -> Vec<(String, String, String, String)> {
    status["pods"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_string(),
                p["node"].as_str().unwrap().to_string(),
                p["netns"].as_str().unwrap().to_string(),
                p["ip"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn lab_three_nodes_pods_ping_no_encapsulation_and_a_fourth_node_joins() {
    let lab = Lab::new("glt");
    let up = lab.ok(&["up", "--nodes", "3", "--pods-per-node", "2"]);
    assert!(up.contains("proto bird"), "up shows the routes:\n{up}");
    assert!(
        up.contains("3 packets transmitted, 3 received"),
        "up shows a cross-node ping:\n{up}"
    );

    // A second `up` is safe and says what it found.
    let again = lab.ok(&["up"]);
    assert!(again.contains("already up"), "{again}");

    let st = lab.status();
    let nodes = st["nodes"].as_array().unwrap().clone();
    assert_eq!(nodes.len(), 3);
    let pods = pods(&st);
    assert_eq!(pods.len(), 6);

    // Every pod pings every other pod.
    for (a, _, a_ns, _) in &pods {
        for (b, _, _, b_ip) in &pods {
            if a == b {
                continue;
            }
            let out = in_ns(a_ns, &["ping", "-c", "1", "-W", "3", b_ip]);
            assert!(
                out.status.success(),
                "{a} cannot ping {b} ({b_ip}):\n{}",
                lab.logs()
            );
        }
    }

    // On the underlay the packet is the pod's own 84-byte IP packet: no VXLAN/IPIP header.
    let (_, a_node, a_ns, a_ip) = pods
        .iter()
        .find(|p| p.1 == nodes[0]["name"])
        .unwrap()
        .clone();
    let (_, _, _, b_ip) = pods
        .iter()
        .find(|p| p.1 == nodes[1]["name"])
        .unwrap()
        .clone();
    let pcap = lab.dir.join("underlay.pcap");
    let mut dump = Command::new("ip")
        .args([
            "netns", "exec", &a_node, "tcpdump", "-i", "eth0", "-nn", "-U", "-c", "2", "-w",
        ])
        .arg(&pcap)
        .arg(format!("icmp and host {b_ip}"))
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(Duration::from_millis(1500));
    assert!(in_ns(&a_ns, &["ping", "-c", "2", "-W", "2", &b_ip])
        .status
        .success());
    let started = Instant::now();
    while dump.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = dump.kill();
    let read = Command::new("tcpdump")
        .args(["-nn", "-v", "-r"])
        .arg(&pcap)
        .output()
        .expect("tcpdump -r");
    let text = String::from_utf8_lossy(&read.stdout);
    assert!(
        text.contains(&format!("{a_ip} > {b_ip}: ICMP echo request")),
        "capture:\n{text}"
    );
    assert!(
        text.contains("proto ICMP (1), length 84"),
        "84-byte packets on the underlay:\n{text}"
    );
    assert!(
        !text.contains("UDP") && !text.contains("proto IPIP"),
        "no encapsulation:\n{text}"
    );

    // Deleting a pod removes its host route and frees its address.
    let (victim, v_node, _, v_ip) = pods[1].clone();
    let v_sock = nodes.iter().find(|n| n["name"] == v_node.as_str()).unwrap()["control_socket"]
        .as_str()
        .unwrap()
        .to_string();
    lab.ok(&["pod", "del", &victim]);
    assert!(
        !routes(&v_node).iter().any(|r| r["dst"] == v_ip.as_str()),
        "host route of {victim} is gone"
    );
    let info = routectl(&v_sock, &["ipam", "show", "--ip", &v_ip]);
    assert_eq!(info["assigned"], false, "{v_ip} is free again: {info}");

    // A fourth node joins: it gets routes to everyone, and everyone gets a route to it.
    lab.ok(&["node", "add"]);
    let st = lab.status();
    let nodes = st["nodes"].as_array().unwrap().clone();
    let fourth = nodes[3]["name"].as_str().unwrap().to_string();
    let fourth_ip = nodes[3]["ip"].as_str().unwrap().to_string();
    lab.ok(&["pod", "add", &fourth]);
    let st = lab.status();
    let new_pod = pods_of(&st, &fourth);
    let blocks = routectl(
        nodes[0]["control_socket"].as_str().unwrap(),
        &["show", "blocks"],
    );
    let fourth_block = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["node"] == fourth.as_str())
        .map(|b| b["block"].as_str().unwrap().to_string())
        .expect("the fourth node claimed a block");
    for n in &nodes[..3] {
        let name = n["name"].as_str().unwrap().to_string();
        wait_until(
            &format!("{name} to route {fourth_block} via {fourth_ip}"),
            Duration::from_secs(30),
            || {
                routes(&name).iter().any(|r| {
                    r["dst"] == fourth_block.as_str()
                        && r["gateway"] == fourth_ip.as_str()
                        && r["protocol"] == "bird"
                })
            },
        );
    }
    let others: Vec<String> = blocks["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["node"] != fourth.as_str())
        .map(|b| b["block"].as_str().unwrap().to_string())
        .collect();
    wait_until(
        "the fourth node to route every other block",
        Duration::from_secs(30),
        || {
            let r = routes(&fourth);
            others.iter().all(|b| {
                r.iter()
                    .any(|x| x["dst"] == b.as_str() && x["protocol"] == "bird")
            })
        },
    );
    let (_, _, new_ns, _) = new_pod;
    assert!(
        in_ns(&new_ns, &["ping", "-c", "1", "-W", "3", &pods[0].3])
            .status
            .success(),
        "new node's pod reaches an old pod"
    );

    // down removes everything.
    let prefix = lab.prefix.clone();
    lab.ok(&["down"]);
    let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
    assert!(
        !String::from_utf8_lossy(&left.stdout).contains(&prefix),
        "namespaces left behind"
    );
    assert!(!lab.dir.exists(), "state dir removed");
    // Running down again is safe and says so.
    assert!(lab.ok(&["down"]).contains("nothing to do"));
}

fn pods_of(status: &Value, node: &str) -> (String, String, String, String) {
    pods(status)
        .into_iter()
        .find(|p| p.1 == node)
        .expect("a pod on the node")
}
