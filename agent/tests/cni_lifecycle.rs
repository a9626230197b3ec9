//! ADD, CHECK, DEL of the real `gingham-cni` in a node namespace with a pod namespace, against a
//! fake agent that really installs the host route: what the kernel holds afterwards, and that
//! failures leave nothing behind.

mod cni_support;

use cni_support::*;
use serde_json::{json, Value};

/// `cali` + 11 hex of sha1("default.<pod>"), computed by the library the plugin uses.
fn host_name(pod: &str) -> String {
    agent::cni::host_ifname(&agent::cni::CniEnv {
        command: agent::cni::CniCommand::Add,
        container_id: "unused".into(),
        netns: None,
        ifname: "eth0".into(),
        pod: Some(pod.into()),
        namespace: Some("default".into()),
    })
}

#[test]
fn add_check_del_leaves_nothing() {
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    let host = host_name("web-0");

    let add = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "ctr-1", Some(&pod), "web-0"),
        &stdin,
    );
    assert_eq!(add.code, 0, "{add:?}");
    let r = &add.stdout;
    assert_eq!(r["cniVersion"], "1.0.0");
    assert_eq!(r["interfaces"][0]["name"], host.as_str());
    assert_eq!(r["interfaces"][0]["mac"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(r["interfaces"][1]["name"], "eth0");
    assert_eq!(r["interfaces"][1]["sandbox"], pod.path().as_str());
    assert_eq!(r["ips"][0]["address"], "192.168.77.1/32");
    assert_eq!(r["ips"][0]["gateway"], "169.254.1.1");
    assert_eq!(r["ips"][0]["interface"], 1);
    assert_eq!(
        r["routes"],
        json!([{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}])
    );
    assert_eq!(r["dns"], json!({}));

    // The kernel: host end with its MAC and MTU, the host route; pod end with /32 and routes.
    let links = node.ip_json(&["link", "show", "dev", &host]);
    assert_eq!(links[0]["address"], "ee:ee:ee:ee:ee:ee");
    assert_eq!(links[0]["mtu"], 1400);
    assert!(
        node.route_dsts().contains(&"192.168.77.1".to_string()),
        "{:?}",
        node.route_dsts()
    );
    let pod_link = pod.ip_json(&["link", "show", "dev", "eth0"]);
    assert_eq!(pod_link[0]["address"], r["interfaces"][1]["mac"]);
    assert_eq!(pod_link[0]["mtu"], 1400);
    assert_eq!(pod.addresses(), ["127.0.0.1/8", "192.168.77.1/32"]);
    let routes = pod.ip_json(&["route", "show"]);
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|rt| rt["dst"] == "default" && rt["gateway"] == "169.254.1.1"),
        "{routes}"
    );
    assert!(
        routes
            .as_array()
            .unwrap()
            .iter()
            .any(|rt| rt["dst"] == "169.254.1.1" && rt["scope"] == "link"),
        "{routes}"
    );
    let proxy_arp = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &node.name,
            "cat",
            &format!("/proc/sys/net/ipv4/conf/{host}/proxy_arp"),
        ])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&proxy_arp.stdout).trim(), "1");

    // CHECK with the ADD result passes; after the pod loses its default route it fails.
    let check_conf = conf(&agent.socket, json!({"prevResult": r}));
    let check = exec_in(
        &node,
        PLUGIN,
        &cni_env("CHECK", "ctr-1", Some(&pod), "web-0"),
        &check_conf,
    );
    assert_eq!(check.code, 0, "{check:?}");
    assert_eq!(check.stdout, Value::Null);
    run_ip(&["-n", &pod.name, "route", "del", "default"]);
    let check = exec_in(
        &node,
        PLUGIN,
        &cni_env("CHECK", "ctr-1", Some(&pod), "web-0"),
        &check_conf,
    );
    assert_eq!(check.stdout["code"], 1001, "{check:?}");
    // CHECK without prevResult is a config error.
    let check = exec_in(
        &node,
        PLUGIN,
        &cni_env("CHECK", "ctr-1", Some(&pod), "web-0"),
        &stdin,
    );
    assert_eq!(check.stdout["code"], 7, "{check:?}");

    let del_conf = conf(&agent.socket, json!({"prevResult": r}));
    let del = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "ctr-1", Some(&pod), "web-0"),
        &del_conf,
    );
    assert_eq!(del.code, 0, "{del:?}");
    assert_eq!(node.link_names(), ["lo"]);
    assert!(node.route_dsts().is_empty(), "{:?}", node.route_dsts());
    assert_eq!(pod.link_names(), ["lo"]);
    assert_eq!(pod.addresses(), ["127.0.0.1/8"]);
    {
        let st = agent.state.lock().unwrap();
        assert!(st.assigned.is_empty() && st.endpoints.is_empty(), "{st:?}");
    }

    // DEL again, and DEL with the namespace gone or not given: all succeed.
    let again = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "ctr-1", Some(&pod), "web-0"),
        &stdin,
    );
    assert_eq!(again.code, 0, "{again:?}");
    let no_ns = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "ctr-1", None, "web-0"),
        &stdin,
    );
    assert_eq!(no_ns.code, 0, "{no_ns:?}");
    let mut gone = cni_env("DEL", "ctr-1", None, "web-0");
    gone.push(("CNI_NETNS", "/var/run/netns/gcni-never-existed".into()));
    let gone = exec_in(&node, PLUGIN, &gone, &stdin);
    assert_eq!(gone.code, 0, "{gone:?}");
}

#[test]
fn second_add_gets_the_same_address_and_del_after_netns_is_gone() {
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({"cniVersion": "0.4.0"}));
    let env = cni_env("ADD", "ctr-2", Some(&pod), "db-0");
    let first = exec_in(&node, PLUGIN, &env, &stdin);
    assert_eq!(first.code, 0, "{first:?}");
    // 0.4.0 results carry ips[].version.
    assert_eq!(first.stdout["ips"][0]["version"], "4");
    let second = exec_in(&node, PLUGIN, &env, &stdin);
    assert_eq!(second.code, 0, "{second:?}");
    assert_eq!(first.stdout["ips"], second.stdout["ips"]);
    assert_eq!(
        node.link_names().len(),
        2,
        "one veth, not two: {:?}",
        node.link_names()
    );
    assert_eq!(pod.addresses(), ["127.0.0.1/8", "192.168.77.1/32"]);

    // The runtime tears the sandbox down before DEL: the pair dies with it, DEL still succeeds
    // and releases the address.
    let pod_path = pod.path();
    drop(pod);
    let mut del_env = cni_env("DEL", "ctr-2", None, "db-0");
    del_env.push(("CNI_NETNS", pod_path));
    let del = exec_in(&node, PLUGIN, &del_env, &stdin);
    assert_eq!(del.code, 0, "{del:?}");
    assert!(agent.state.lock().unwrap().assigned.is_empty());
    // The kernel destroys a deleted namespace (and the veth pair with it) asynchronously, so
    // the host end may outlive `ip netns del` by a moment; it must not outlive that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while node.link_names() != ["lo"] {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            node.link_names()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(node.route_dsts().is_empty());
}

#[test]
fn failed_attach_rolls_everything_back() {
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    agent.state.lock().unwrap().refuse_attach = true;
    let stdin = conf(&agent.socket, json!({}));
    let add = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "ctr-3", Some(&pod), "api-0"),
        &stdin,
    );
    assert_ne!(add.code, 0);
    assert_eq!(add.stdout["code"], 999, "{add:?}");
    // The veth had been made (attach comes after it): it is gone again, and the address is back.
    assert_eq!(node.link_names(), ["lo"]);
    assert_eq!(pod.link_names(), ["lo"]);
    assert!(node.route_dsts().is_empty());
    let st = agent.state.lock().unwrap();
    assert_eq!(st.calls, ["assign ctr-3", "attach ctr-3", "release ctr-3"]);
    assert!(st.assigned.is_empty());
}

#[test]
fn failed_veth_rolls_back_the_address() {
    let node = Netns::new("gcni-n");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    // A netns path that exists but is not a network namespace (a missing one is refused before
    // any assignment): the veth cannot be made after the address was given.
    let not_a_netns = tempfile::NamedTempFile::new().unwrap();
    let mut env = cni_env("ADD", "ctr-4", None, "x-0");
    env.push((
        "CNI_NETNS",
        not_a_netns.path().to_string_lossy().into_owned(),
    ));
    let add = exec_in(&node, PLUGIN, &env, &stdin);
    assert_eq!(add.stdout["code"], 1000, "{add:?}");
    assert_eq!(node.link_names(), ["lo"]);
    let st = agent.state.lock().unwrap();
    assert_eq!(st.calls, ["assign ctr-4", "release ctr-4"]);
    assert!(st.assigned.is_empty());
}

#[test]
fn gc_releases_what_the_runtime_no_longer_lists() {
    let node = Netns::new("gcni-n");
    let pod_a = Netns::new("gcni-p");
    let pod_b = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    for (id, ns, name) in [("keep-1", &pod_a, "a-0"), ("stale-1", &pod_b, "b-0")] {
        let add = exec_in(&node, PLUGIN, &cni_env("ADD", id, Some(ns), name), &stdin);
        assert_eq!(add.code, 0, "{add:?}");
    }
    let gc_env = [("CNI_COMMAND", "GC".to_string())];
    let gc_conf = |v: &str| {
        conf(
            &agent.socket,
            json!({"cniVersion": v, "cni.dev/valid-attachments": [{"containerID": "keep-1", "ifname": "eth0"}]}),
        )
    };
    // GC is a 1.1 verb.
    let old = exec_in(&node, PLUGIN, &gc_env, &gc_conf("1.0.0"));
    assert_eq!(old.stdout["code"], 1, "{old:?}");
    let gc = exec_in(&node, PLUGIN, &gc_env, &gc_conf("1.1.0"));
    assert_eq!(gc.code, 0, "{gc:?}");
    {
        let st = agent.state.lock().unwrap();
        assert_eq!(st.assigned.keys().collect::<Vec<_>>(), ["keep-1"]);
        assert_eq!(st.endpoints.keys().collect::<Vec<_>>(), ["keep-1"]);
    }
    assert_eq!(node.link_names(), ["lo", host_name("a-0").as_str()]);
    assert_eq!(pod_b.link_names(), ["lo"]);
    assert!(pod_a.link_names().contains(&"eth0".to_string()));
    assert_eq!(node.route_dsts(), ["192.168.77.1"]);
}

#[test]
fn del_with_the_agent_down_removes_the_veth_and_asks_for_a_retry() {
    let node = Netns::new("gcni-n");
    let pod = Netns::new("gcni-p");
    let mut agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    let add = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "ctr-5", Some(&pod), "q-0"),
        &stdin,
    );
    assert_eq!(add.code, 0, "{add:?}");
    agent.stop();
    let del = exec_in(
        &node,
        PLUGIN,
        &cni_env("DEL", "ctr-5", Some(&pod), "q-0"),
        &stdin,
    );
    // The address could not be released: code 11 so the runtime retries; the veth is gone.
    assert_eq!(del.stdout["code"], 11, "{del:?}");
    assert_eq!(node.link_names(), ["lo"]);
    assert_eq!(pod.link_names(), ["lo"]);
}
