//! End to end on one node: the real `gingham-agent` (file datastore in a temp dir, no peers)
//! in a node namespace, the real `gingham-cni` doing ADD, CHECK, DEL for a pod namespace.

mod cni_support;

use cni_support::*;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the agent on drop, also when an assertion fails.
struct AgentProcess(Child);

impl Drop for AgentProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn add_check_del_against_the_real_agent() {
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _agent = AgentProcess(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                &node.name,
                env!("CARGO_BIN_EXE_gingham-agent"),
            ])
            .args([
                "--node-name",
                "n1",
                "--ip",
                "10.99.0.1",
                "--bgp-port",
                "17979",
            ])
            .args(["--metrics-addr", "127.0.0.1:19099"])
            .arg("--control-socket")
            .arg(&socket)
            .arg("--datastore")
            .arg(format!("file:{}", dir.path().join("store").display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // STATUS turns ready once the agent serves its socket.
    let status_conf = conf(&socket, json!({"cniVersion": "1.1.0"}));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let st = exec_in(
            &node,
            PLUGIN,
            &[("CNI_COMMAND", "STATUS".into())],
            &status_conf,
        );
        if st.code == 0 {
            break;
        }
        assert_eq!(st.stdout["code"], 50, "{st:?}");
        assert!(Instant::now() < deadline, "agent never became ready");
        std::thread::sleep(Duration::from_millis(200));
    }

    let stdin = conf(&socket, json!({}));
    let add = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "real-1", Some(&pod), "e2e"),
        &stdin,
    );
    assert_eq!(add.code, 0, "{add:?}");
    let address = add.stdout["ips"][0]["address"]
        .as_str()
        .unwrap()
        .to_string();
    let ip = address.trim_end_matches("/32").to_string();
    assert!(
        address.starts_with("192.168.") && address.ends_with("/32"),
        "{address}"
    );
    assert!(
        node.route_dsts().contains(&ip),
        "host route {ip}: {:?}",
        node.route_dsts()
    );
    assert!(pod.addresses().contains(&address));

    let again = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "real-1", Some(&pod), "e2e"),
        &stdin,
    );
    assert_eq!(again.stdout["ips"], add.stdout["ips"], "{again:?}");

    let with_prev = conf(&socket, json!({"prevResult": add.stdout}));
    let check = exec_in(
        &node,
        PLUGIN,
        &cni_env("CHECK", "real-1", Some(&pod), "e2e"),
        &with_prev,
    );
    assert_eq!(check.code, 0, "{check:?}");

    let del = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "real-1", Some(&pod), "e2e"),
        &with_prev,
    );
    assert_eq!(del.code, 0, "{del:?}");
    assert!(!node.route_dsts().contains(&ip), "{:?}", node.route_dsts());
    assert!(!node.link_names().iter().any(|l| l.starts_with("cali")));
    assert_eq!(pod.link_names(), ["lo"]);
    // The agent no longer has an endpoint for it: CHECK now fails.
    let check = exec_in(
        &node,
        PLUGIN,
        &cni_env("CHECK", "real-1", Some(&pod), "e2e"),
        &with_prev,
    );
    assert_ne!(check.stdout, Value::Null);
    assert_ne!(check.code, 0);
}
