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
    // The verbs the stores use: compare-and-swap is update (PUT), Node records are patches.
    let verbs = |r: &Value| -> Vec<String> {
        let mut v: Vec<String> = r["verbs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let rule = |doc: &Value, group: &str| -> Value {
        doc["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["apiGroups"][0] == group)
            .unwrap_or_else(|| panic!("no rule for {group:?}"))
            .clone()
    };
    assert_eq!(
        verbs(&rule(role, "gingham.io")),
        ["create", "delete", "get", "list", "update", "watch"]
    );
    assert_eq!(verbs(&rule(role, "")), ["get", "list", "patch", "watch"]);
    let ns_role = docs
        .iter()
        .find(|d| d["kind"] == "Role")
        .expect("a Role for the leases");
    assert_eq!(
        verbs(&rule(ns_role, "coordination.k8s.io")),
        ["create", "delete", "get", "list", "update", "watch"]
    );
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

/// Checks `v` against an OpenAPI v3 schema as the API server does for a custom resource: types,
/// nullability, required fields, enums, patterns, and no field the schema does not know (the
/// server would prune it: the data would be lost).
fn check(schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    if v.is_null() {
        if schema["nullable"] != true {
            errors.push(format!("{at}: null where the schema has no nullable"));
        }
        return;
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            errors.push(format!("{at}: {v} is not one of {allowed:?}"));
        }
    }
    match schema["type"].as_str() {
        Some("object") => {
            let Some(o) = v.as_object() else {
                return errors.push(format!("{at}: {v} is not an object"));
            };
            for r in schema["required"].as_array().into_iter().flatten() {
                if !o.contains_key(r.as_str().unwrap()) {
                    errors.push(format!("{at}: {r} is required"));
                }
            }
            for (k, field) in o {
                let sub = &schema["properties"][k];
                if !sub.is_null() {
                    check(sub, field, &format!("{at}.{k}"), errors);
                } else if schema["additionalProperties"].is_object() {
                    check(
                        &schema["additionalProperties"],
                        field,
                        &format!("{at}.{k}"),
                        errors,
                    );
                } else if schema["x-kubernetes-preserve-unknown-fields"] != true {
                    errors.push(format!(
                        "{at}.{k}: not in the schema (the API server would drop it)"
                    ));
                }
            }
        }
        Some("array") => match v.as_array() {
            Some(a) => a
                .iter()
                .enumerate()
                .for_each(|(i, x)| check(&schema["items"], x, &format!("{at}[{i}]"), errors)),
            None => errors.push(format!("{at}: {v} is not an array")),
        },
        Some("string") => match v.as_str() {
            Some(s) => {
                if let Some(p) = schema["pattern"].as_str() {
                    if !regex::Regex::new(p).unwrap().is_match(s) {
                        errors.push(format!("{at}: {s:?} does not match {p}"));
                    }
                }
            }
            None => errors.push(format!("{at}: {v} is not a string")),
        },
        Some("integer") => {
            if !(v.is_i64() || v.is_u64()) {
                errors.push(format!("{at}: {v} is not an integer"));
            } else if let Some(min) = schema["minimum"].as_f64() {
                if v.as_f64().unwrap() < min {
                    errors.push(format!("{at}: {v} is below {min}"));
                }
            }
        }
        Some("boolean") if !v.is_boolean() => errors.push(format!("{at}: {v} is not a boolean")),
        _ => {}
    }
}

#[test]
fn the_records_the_agent_writes_fit_their_crds() {
    use ipam::store::{Kind, MemoryStore, Store};
    use ipam::{AllocationAttrs, Ipam, IpamSettings, NodeRecord, NodeRegistry};
    use std::sync::Arc;
    // Records as the agent makes them: blocks claimed, confirmed, full, borrowed from, an
    // address released, a policy, an endpoint.
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for (i, n) in ["node-a", "node-b"].iter().enumerate() {
        NodeRegistry::new(store.clone())
            .register(&NodeRecord {
                name: n.to_string(),
                address: std::net::Ipv4Addr::new(172, 18, 0, 2 + i as u8),
                asn: 64512,
                last_heartbeat: 0,
            })
            .unwrap();
    }
    let ipam = Ipam::open(
        store.clone(),
        IpamSettings {
            pool_cidr: "10.9.0.0/28".parse().unwrap(),
            block_size: 30,
            ..Default::default()
        },
    )
    .unwrap();
    for i in 0..14 {
        let node = if i % 2 == 0 { "node-a" } else { "node-b" };
        let attrs = AllocationAttrs {
            node: node.into(),
            pod: Some(format!("pod-{i}")),
            namespace: Some("default".into()),
        };
        ipam.assign(&format!("k8s-pod-network.{i:064x}"), &attrs)
            .unwrap();
    }
    ipam.release(&format!("k8s-pod-network.{:064x}", 3))
        .unwrap();
    ipam.set_config(ipam::IpamConfig {
        strict_affinity: true,
        auto_allocate_blocks: true,
        max_blocks_per_host: 10,
    })
    .unwrap();
    let endpoint = agent::daemon::endpoints::WorkloadEndpoint {
        node: "node-a".into(),
        endpoint: agent::control::api::EndpointRecord {
            container_id: "0123abcd".into(),
            pod: Some("web".into()),
            namespace: None,
            interface: "cali0123456789a".into(),
            ip: "10.9.0.1".parse().unwrap(),
            netns: "/var/run/netns/cni-1".into(),
            pod_interface: "eth0".into(),
        },
    };
    store
        .create(
            Kind::WorkloadEndpoint,
            "node-a-0123abcd",
            serde_json::to_value(&endpoint).unwrap(),
        )
        .unwrap();

    let crds = agent::daemon::endpoints::crds();
    let mut seen = 0;
    for kind in Kind::ALL {
        let Some(crd) = crds.iter().find(|c| c.spec.names.kind == kind.as_str()) else {
            continue; // Node and Leases are not custom resources
        };
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        for r in store.list(kind).unwrap().records {
            let mut errors = Vec::new();
            check(
                spec,
                &r.data,
                &format!("{kind}/{}.spec", r.name),
                &mut errors,
            );
            assert!(errors.is_empty(), "{errors:#?}\n{}", r.data);
            seen += 1;
        }
    }
    assert!(seen >= 10, "{seen} records checked");
}
