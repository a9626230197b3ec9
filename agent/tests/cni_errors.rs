//! VERSION, STATUS and every error path of the real `gingham-cni` binary: the spec's error
//! object on stdout, the spec's code, a non-zero exit, and nothing created.

mod cni_support;

use cni_support::*;
use serde_json::{json, Value};

fn assert_error(run: &Run, code: u64) {
    assert_ne!(run.code, 0, "must fail: {run:?}");
    assert_eq!(run.stdout["code"], code, "{run:?}");
    assert!(
        run.stdout["msg"].as_str().is_some_and(|m| !m.is_empty()),
        "{run:?}"
    );
    assert!(run.stdout["cniVersion"].is_string(), "{run:?}");
}

#[test]
fn version_lists_supported_versions() {
    let node = Netns::new("gcni-e");
    let run = exec_in(
        &node,
        PLUGIN,
        &[("CNI_COMMAND", "VERSION".into())],
        r#"{"cniVersion":"0.4.0"}"#,
    );
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout["cniVersion"], "0.4.0");
    let versions: Vec<&str> = run.stdout["supportedVersions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(versions, ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]);
    // Without a usable version on stdin it answers in 1.0.0.
    let run = exec_in(&node, PLUGIN, &[("CNI_COMMAND", "VERSION".into())], "");
    assert_eq!(run.code, 0);
    assert_eq!(run.stdout["cniVersion"], "1.0.0");
}

#[test]
fn bad_configuration_gives_the_spec_codes() {
    let node = Netns::new("gcni-e");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let env = cni_env("ADD", "c-bad", Some(&pod), "bad");
    let good = serde_json::from_str::<Value>(&conf(&agent.socket, json!({}))).unwrap();
    let with = |patch: Value| {
        let mut c = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c.to_string()
    };
    let cases: Vec<(String, u64)> = vec![
        ("{not json".into(), 6),
        ("[]".into(), 6),
        (with(json!({"cniVersion": null})), 7),
        (with(json!({"name": null})), 7),
        (with(json!({"type": null})), 7),
        (with(json!({"cniVersion": "0.2.0"})), 1),
        (with(json!({"cniVersion": "9.9.9"})), 1),
        (with(json!({"mtu": "jumbo"})), 7),
        (
            with(json!({"ipam": {"type": "host-local", "subnet": "10.0.0.0/24"}})),
            2,
        ),
    ];
    for (stdin, code) in cases {
        let run = exec_in(&node, PLUGIN, &env, &stdin);
        assert_error(&run, code);
        // Logs go to stderr only; stdout is exactly one JSON object.
        assert!(run.stdout.is_object());
    }
    let unsupported = exec_in(
        &node,
        PLUGIN,
        &env,
        &with(json!({"ipam": {"type": "host-local"}})),
    );
    assert!(unsupported.stdout["msg"]
        .as_str()
        .unwrap()
        .contains("host-local"));
    // The error is written in the version the config asked for.
    let old = exec_in(
        &node,
        PLUGIN,
        &env,
        &with(json!({"cniVersion": "0.4.0", "mtu": 1})),
    );
    assert_eq!(old.stdout["cniVersion"], "0.4.0");

    // Nothing was assigned or created by any of them.
    assert!(agent.state.lock().unwrap().calls.is_empty());
    assert_eq!(node.link_names(), ["lo"]);
}

#[test]
fn bad_environment_gives_code_4() {
    let node = Netns::new("gcni-e");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    let run = exec_in(&node, PLUGIN, &[], &stdin);
    assert_error(&run, 4);
    let run = exec_in(&node, PLUGIN, &[("CNI_COMMAND", "FROB".into())], &stdin);
    assert_error(&run, 4);
    // ADD without CNI_NETNS names the variable.
    let run = exec_in(&node, PLUGIN, &cni_env("ADD", "c1", None, "p"), &stdin);
    assert_error(&run, 4);
    assert!(
        run.stdout["msg"].as_str().unwrap().contains("CNI_NETNS"),
        "{run:?}"
    );
    let mut env = cni_env("DEL", "c1", None, "p");
    env.retain(|(k, _)| *k != "CNI_IFNAME");
    let run = exec_in(&node, PLUGIN, &env, &stdin);
    assert_error(&run, 4);
    assert!(agent.state.lock().unwrap().calls.is_empty());
}

#[test]
fn status_follows_the_agent() {
    let node = Netns::new("gcni-e");
    let mut agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({"cniVersion": "1.1.0"}));
    let env = [("CNI_COMMAND", "STATUS".to_string())];
    let run = exec_in(&node, PLUGIN, &env, &stdin);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stdout, Value::Null, "STATUS prints nothing on success");
    // STATUS exists from 1.1.0 on.
    let run = exec_in(&node, PLUGIN, &env, &conf(&agent.socket, json!({})));
    assert_error(&run, 1);
    agent.stop();
    let run = exec_in(&node, PLUGIN, &env, &stdin);
    assert_error(&run, 50);
}

#[test]
fn add_with_the_agent_down_fails_with_11_and_creates_nothing() {
    let node = Netns::new("gcni-e");
    let pod = Netns::new("gcni-p");
    let mut agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    agent.stop();
    let run = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "c-down", Some(&pod), "down"),
        &stdin,
    );
    assert_error(&run, 11);
    assert!(
        run.stdout["details"]
            .as_str()
            .unwrap()
            .contains("agent.sock"),
        "{run:?}"
    );
    assert_eq!(node.link_names(), ["lo"]);
    assert_eq!(pod.link_names(), ["lo"]);
    assert!(node.route_dsts().is_empty());
}

#[test]
fn add_into_a_missing_namespace_fails_before_any_address_is_assigned() {
    let node = Netns::new("gcni-e");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({}));
    let mut env = cni_env("ADD", "c-gone", None, "gone");
    env.push(("CNI_NETNS", "/var/run/netns/gcni-no-such-namespace".into()));
    let run = exec_in(&node, PLUGIN, &env, &stdin);
    assert_error(&run, 4);
    assert!(
        run.stdout["details"]
            .as_str()
            .unwrap()
            .contains("gcni-no-such-namespace"),
        "{run:?}"
    );
    assert!(
        agent.state.lock().unwrap().calls.is_empty(),
        "no address was asked for"
    );
}

#[test]
fn a_configuration_for_another_plugin_is_refused() {
    let node = Netns::new("gcni-e");
    let pod = Netns::new("gcni-p");
    let agent = FakeAgent::start(&node);
    let stdin = conf(&agent.socket, json!({"type": "calico"}));
    let run = exec_in(
        &node,
        PLUGIN,
        &cni_env("ADD", "c-t", Some(&pod), "t"),
        &stdin,
    );
    assert_error(&run, 7);
    assert!(agent.state.lock().unwrap().calls.is_empty());
}

#[test]
fn help_and_version_are_for_people() {
    let out = std::process::Command::new(PLUGIN)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gingham-cni") && text.contains("CNI_COMMAND"),
        "{text}"
    );
    assert!(
        !text.trim_start().starts_with('{'),
        "not an error JSON: {text}"
    );
    let out = std::process::Command::new(PLUGIN)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("gingham-cni "));
}
