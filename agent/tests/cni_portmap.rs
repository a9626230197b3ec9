//! Chaining: Debian's `portmap` plugin (`/usr/lib/cni/portmap`) takes our ADD result as its
//! `prevResult`, for ADD and DEL, in the node namespace, as a conflist with portmap would run.

mod cni_support;

use cni_support::*;
use serde_json::json;
use std::path::Path;

const PORTMAP: &str = "/usr/lib/cni/portmap";

fn nat_rules(node: &Netns) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &node.name, "iptables", "-t", "nat", "-S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn portmap_accepts_our_result() {
    // A missing peer plugin is a failure, never a silent skip: scripts/install-deps installs it.
    if !Path::new(PORTMAP).exists() {
        panic!("{PORTMAP} is not installed (Debian package containernetworking-plugins)");
    }
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let add = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "ctr-pm", Some(&pod), "pm-0"),
        &conf(&agent.socket, json!({})),
    );
    assert_eq!(add.code, 0, "{add:?}");

    let portmap_conf = |prev: &serde_json::Value| {
        json!({
            "cniVersion": "1.0.0",
            "name": "k8s-pod-network",
            "type": "portmap",
            "snat": true,
            "capabilities": {"portMappings": true},
            "runtimeConfig": {"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]},
            "prevResult": prev,
        })
        .to_string()
    };
    let pm_add = exec_in(
        &node,
        PORTMAP,
        &cni_env("ADD", "ctr-pm", Some(&pod), "pm-0"),
        &portmap_conf(&add.stdout),
    );
    assert_eq!(pm_add.code, 0, "{pm_add:?}");
    // portmap passes our result through, and has DNAT'ed the host port to our pod address.
    assert_eq!(pm_add.stdout["ips"], add.stdout["ips"]);
    let rules = nat_rules(&node);
    assert!(
        rules.contains("--dport 18080") && rules.contains("192.168.77.1:80"),
        "{rules}"
    );

    let pm_del = exec_in(
        &node,
        PORTMAP,
        &cni_env("DEL", "ctr-pm", Some(&pod), "pm-0"),
        &portmap_conf(&pm_add.stdout),
    );
    assert_eq!(pm_del.code, 0, "{pm_del:?}");
    assert!(
        !nat_rules(&node).contains("192.168.77.1:80"),
        "portmap DEL removed its DNAT"
    );
    let del = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "ctr-pm", Some(&pod), "pm-0"),
        &conf(&agent.socket, json!({"prevResult": pm_add.stdout})),
    );
    assert_eq!(del.code, 0, "{del:?}");
    assert_eq!(node.link_names(), ["lo"]);
}
