//! An agent killed with SIGKILL in the middle of 200 pod creations, twice. The pods whose ADD
//! failed are added again once the agent is back (kubelet retries the same sandbox), and then
//! the datastore and the kernels must agree: `routectl ipam check` finds nothing (or `repair`
//! fixes all of it), every pod holds its own address and no address is held twice, node0's
//! kernel has a host route for exactly its pods and a blackhole for exactly its blocks, node1
//! routes every one of them, and a pod added after the crashes reaches node1's pod.

mod labkit;

use labkit::{routectl, routes, Lab};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const PODS: usize = 200;

fn agent_pid(lab: &Lab, node: &str) -> i32 {
    let st = lab.status();
    let n = st["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == node)
        .unwrap()
        .clone();
    n["agent_pid"].as_i64().unwrap() as i32
}

/// When the killer strikes: a kill at a fixed delay lands after a fast ADD has finished, so it
/// waits for a sign that the ADD is under way (polled every 100 µs; 10 s at most).
enum Trigger {
    /// This path exists.
    Appears(PathBuf),
    /// This directory holds more entries than it did.
    Grows(PathBuf, usize),
}

impl Trigger {
    fn wait(&self) {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            let fired = match self {
                Trigger::Appears(p) => p.exists(),
                Trigger::Grows(dir, n) => entries(dir) > *n,
            };
            if fired {
                return;
            }
            std::thread::sleep(Duration::from_micros(100));
        }
    }
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// `routectl ipam <what>` as text: (success, output).
fn ipam(socket: &str, what: &str) -> (bool, String) {
    let bin = Path::new(labkit::LAB).with_file_name("routectl");
    let out = Command::new(bin)
        .args(["--socket", socket, "ipam", what])
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn an_agent_killed_during_200_pod_creations_leaves_nothing_inconsistent() {
    let lab = Lab::new("gkc");
    lab.ok(&["up", "--nodes", "2", "--pods-per-node", "0"]);
    let st = lab.status();
    let node0 = st["nodes"][0]["name"].as_str().unwrap().to_string();
    let node1 = st["nodes"][1]["name"].as_str().unwrap().to_string();
    let sock0 = st["nodes"][0]["control_socket"]
        .as_str()
        .unwrap()
        .to_string();
    let ns0 = st["nodes"][0]["netns"].as_str().unwrap().to_string();
    let ns1 = st["nodes"][1]["netns"].as_str().unwrap().to_string();
    let datastore = PathBuf::from(st["datastore_dir"].as_str().unwrap());
    lab.ok(&["pod", "add", &node1, "far"]);

    let mut failed = Vec::new();
    let mut kills = 0;
    for i in 0..PODS {
        let name = format!("p{i}");
        let killer = (i == 60 || i == 140).then(|| {
            let pid = agent_pid(&lab, &node0);
            let trigger = if i == 60 {
                // As the ADD begins: the lab has made the pod's namespace and is about to
                // call the plugin.
                Trigger::Appears(PathBuf::from(format!(
                    "/var/run/netns/{}-{name}",
                    lab.prefix
                )))
            } else {
                // In the middle of the IPAM writes: the block is written, its handle appears.
                let dir = datastore.join("IPAMHandle");
                Trigger::Grows(dir.clone(), entries(&dir))
            };
            std::thread::spawn(move || {
                trigger.wait();
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
            })
        });
        let out = lab.cmd(&["pod", "add", &node0, &name]);
        if let Some(k) = killer {
            k.join().unwrap();
            kills += 1;
        }
        if !out.status.success() {
            failed.push(name);
        }
        // A dead agent is started again the way the DaemonSet would.
        let status = lab.status();
        if status["nodes"][0]["agent_running"] == false {
            lab.ok(&["restart-agent", &node0]);
        }
    }
    assert_eq!(kills, 2);
    assert!(!failed.is_empty(), "the kills should have failed some ADDs");
    eprintln!("ADDs that failed around the kills: {failed:?}");
    // kubelet retries: the same pod (same container ID) again.
    labkit::wait_until("node0's agent to answer", Duration::from_secs(30), || {
        Command::new(Path::new(labkit::LAB).with_file_name("routectl"))
            .args(["--socket", &sock0, "show"])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    for name in &failed {
        lab.ok(&["pod", "add", &node0, name]);
    }

    // The datastore: clean, or repaired to clean.
    let (ok, report) = ipam(&sock0, "check");
    if !ok {
        eprintln!("check after the crashes:\n{report}");
        let (ok, report) = ipam(&sock0, "repair");
        assert!(ok, "repair left problems:\n{report}");
        let (ok, report) = ipam(&sock0, "check");
        assert!(ok, "{report}");
    }

    // Every pod its own address, held by its own container.
    let st = lab.status();
    let pods: Vec<&Value> = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["node"] == node0.as_str())
        .collect();
    assert_eq!(pods.len(), PODS);
    let mut by_ip: BTreeMap<Ipv4Addr, &str> = BTreeMap::new();
    for p in &pods {
        let ip: Ipv4Addr = p["ip"].as_str().unwrap().parse().unwrap();
        let name = p["name"].as_str().unwrap();
        assert!(by_ip.insert(ip, name).is_none(), "{ip} is held twice");
        let held = routectl(&sock0, &["ipam", "show", "--ip", &ip.to_string()]);
        let handle = held["handle"].as_str().unwrap_or_default();
        assert!(
            handle.contains(p["container_id"].as_str().unwrap()),
            "{ip} of {name} is held by {held}"
        );
    }
    let allocated: usize = routectl(&sock0, &["show", "blocks"])["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["node"] == node0.as_str())
        .map(|b| b["in_use"].as_u64().unwrap() as usize)
        .sum();
    assert_eq!(
        allocated, PODS,
        "node0's blocks hold exactly its pods' addresses"
    );

    // The kernels: no stale route, none missing.
    let blocks0: BTreeSet<String> = routectl(&sock0, &["show", "blocks"])["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["node"] == node0.as_str())
        .map(|b| b["block"].as_str().unwrap().to_string())
        .collect();
    labkit::wait_until(
        "node0's kernel to match its pods",
        Duration::from_secs(40),
        || {
            let r = routes(&ns0);
            let hosts: BTreeSet<Ipv4Addr> = r
                .iter()
                .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("cali")))
                .filter_map(|r| r["dst"].as_str()?.parse().ok())
                .collect();
            let holes: BTreeSet<String> = r
                .iter()
                .filter(|r| r["type"] == "blackhole")
                .map(|r| r["dst"].as_str().unwrap().to_string())
                .collect();
            hosts == by_ip.keys().copied().collect() && holes == blocks0
        },
    );
    labkit::wait_until(
        "node1 to route node0's blocks",
        Duration::from_secs(40),
        || {
            let via: BTreeSet<String> = routes(&ns1)
                .iter()
                .filter(|r| r["protocol"] == "bird" && r["gateway"].is_string())
                .map(|r| r["dst"].as_str().unwrap().to_string())
                .collect();
            via == blocks0
        },
    );
    let late = pods
        .iter()
        .find(|p| p["name"] == failed[0].as_str())
        .unwrap();
    let far = st["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "far")
        .unwrap();
    let ping = labkit::in_ns(
        late["netns"].as_str().unwrap(),
        &["ping", "-c", "2", "-W", "2", far["ip"].as_str().unwrap()],
    );
    assert!(
        ping.status.success(),
        "{}",
        String::from_utf8_lossy(&ping.stdout)
    );
}
