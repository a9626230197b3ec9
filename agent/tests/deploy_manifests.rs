//! `deploy/gingham.yaml` must not drift from the binaries:
//! - its CustomResourceDefinitions are generated from the Rust types; this test fails when the
//!   checked-in YAML differs (regenerate with `UPDATE_CRDS=1 cargo test -p agent --test
//!   deploy_manifests`);
//! - the ClusterRole grants exactly the custom resources the store uses;
//! - every environment variable the DaemonSet gives the agent is one it reads, and the values
//!   it gives parse (the lab's `up --from-manifest` then starts agents with exactly them).

use std::path::PathBuf;

use serde_json::Value;

const BEGIN: &str = "# --- BEGIN generated CustomResourceDefinitions";
const END: &str = "# --- END generated CustomResourceDefinitions";

fn manifest_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/gingham.yaml")
}

fn generated() -> String {
    let mut out = String::new();
    for crd in agent::daemon::endpoints::crds() {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&crd).expect("CRD as YAML"));
    }
    out
}

fn documents(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_norway::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).expect("a YAML document"))
        .filter(|v| v.is_object())
        .collect()
}

#[test]
fn the_crds_in_deploy_are_generated_from_the_types() {
    let path = manifest_path();
    let text = std::fs::read_to_string(&path).expect("deploy/gingham.yaml");
    // The BEGIN line and the comment lines after it stay; from there up to the END line, the
    // generated documents.
    let mut body_start = text.find(BEGIN).expect("the BEGIN marker");
    for line in text[body_start..].split_inclusive('\n') {
        if !line.starts_with('#') || line.starts_with(END) {
            break;
        }
        body_start += line.len();
    }
    let end = text.find(END).expect("the END marker");
    assert!(body_start <= end, "END before BEGIN");
    let want = generated();
    if std::env::var_os("UPDATE_CRDS").is_some() {
        let new = format!("{}{}{}", &text[..body_start], want, &text[end..]);
        std::fs::write(&path, new).unwrap();
        return;
    }
    assert!(
        text[body_start..end] == want,
        "deploy/gingham.yaml's CRDs differ from the Rust types: run \
         `UPDATE_CRDS=1 cargo test -p agent --test deploy_manifests` and commit the result"
    );
}

#[test]
fn the_cluster_role_grants_the_crds_and_nothing_more() {
    let text = std::fs::read_to_string(manifest_path()).unwrap();
    let docs = documents(&text);
    let role = docs
        .iter()
        .find(|d| d["kind"] == "ClusterRole")
        .expect("a ClusterRole");
    let mut granted: Vec<String> = role["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["apiGroups"][0] == "gingham.io")
        .flat_map(|r| r["resources"].as_array().unwrap().clone())
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    granted.sort();
    let mut plurals: Vec<String> = agent::daemon::endpoints::crds()
        .iter()
        .map(|c| c.spec.names.plural.clone())
        .collect();
    plurals.sort();
    assert_eq!(granted, plurals);
    // Every generated CRD is in the file, once.
    let crds: Vec<&Value> = docs
        .iter()
        .filter(|d| d["kind"] == "CustomResourceDefinition")
        .collect();
    assert_eq!(crds.len(), plurals.len());
}

#[test]
fn the_daemonsets_environment_is_what_the_agent_reads() {
    let text = std::fs::read_to_string(manifest_path()).unwrap();
    let docs = documents(&text);
    let ds = docs
        .iter()
        .find(|d| d["kind"] == "DaemonSet")
        .expect("a DaemonSet");
    let container = ds["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "gingham-agent")
        .expect("the gingham-agent container");
    let mut vars = Vec::new();
    for e in container["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
            (Value::String(v), _) => v.clone(),
            (_, Value::String(f)) if f == "spec.nodeName" => "gingham-worker".into(),
            _ => panic!("{name}: neither a value nor spec.nodeName"),
        };
        vars.push((name, value));
    }
    // Every variable but the allocator's tuning is one of the agent's flags' variables.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_gingham-agent"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for (name, _) in &vars {
        let known = help.contains(&format!("[env: {name}="))
            || ["MALLOC_ARENA_MAX", "LOG_LEVEL", "RUST_LOG"].contains(&name.as_str());
        assert!(
            known,
            "the DaemonSet sets {name}, which the agent does not read"
        );
    }
    // And the values parse, with the agent's own parser and checks. (The only test of this
    // binary that touches the environment.)
    for (k, v) in &vars {
        std::env::set_var(k, v);
    }
    let cfg = <agent::config::AgentConfig as clap::Parser>::try_parse_from(["gingham-agent"])
        .unwrap_or_else(|e| panic!("the DaemonSet's environment does not parse: {e}"));
    cfg.validate()
        .unwrap_or_else(|e| panic!("the DaemonSet's environment does not validate: {e}"));
    assert_eq!(cfg.datastore, agent::config::Datastore::Kubernetes);
    assert_eq!(cfg.node_name().unwrap(), "gingham-worker");
}
