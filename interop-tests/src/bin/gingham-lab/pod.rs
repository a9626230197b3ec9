//! Lab pods: a namespace each, wired by the real `gingham-cni` binary as a container runtime
//! calls it.

use crate::state::{LabState, NodeState, PodState};
use crate::{bin, sys};
use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn cni_config(node: &NodeState) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "gingham-cni",
        "mtu": 1500,
        "control_socket": node.control_socket,
        "ipam": {"type": "gingham-ipam"}
    })
    .to_string()
}

/// The CNI environment of a call for `pod`.
fn cni_env(pod: &PodState, command: &str, path: &str) -> Vec<(String, String)> {
    [
        ("CNI_COMMAND", command.to_string()),
        ("CNI_CONTAINERID", pod.container_id.clone()),
        ("CNI_NETNS", format!("/var/run/netns/{}", pod.netns)),
        ("CNI_IFNAME", "eth0".to_string()),
        (
            "CNI_ARGS",
            format!(
                "K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                pod.namespace, pod.name
            ),
        ),
        ("CNI_PATH", path.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// A lab from a manifest: the node's conflist, as its container runtime reads it (the first
/// `*.conflist`, `*.conf` or `*.json` by name), each plugin in turn with the result of the one
/// before for ADD, in reverse order for DEL.
fn cni_from_conflist(dir: &Path, node: &NodeState, pod: &PodState, command: &str) -> Result<Value> {
    let cni = node.cni.as_ref().context("not a node from a manifest")?;
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(&cni.conf_dir)
        .with_context(|| {
            format!(
                "{} (no CNI configuration on {}: did its init container run?)",
                cni.conf_dir.display(),
                node.name
            )
        })?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "conflist" || x == "conf" || x == "json")
        })
        .collect();
    files.sort();
    let file = files.first().with_context(|| {
        format!(
            "no CNI configuration in {} on {}",
            cni.conf_dir.display(),
            node.name
        )
    })?;
    let list: Value = serde_json::from_slice(&std::fs::read(file)?)
        .with_context(|| format!("reading {}", file.display()))?;
    let plugins: Vec<Value> = match list["plugins"].as_array() {
        Some(p) => p.clone(),
        None => vec![list.clone()], // a single-plugin .conf
    };
    let order: Vec<&Value> = if command == "DEL" {
        plugins.iter().rev().collect()
    } else {
        plugins.iter().collect()
    };
    let node_dir = dir.join(&node.name);
    let mut result = Value::Null;
    for p in order {
        let mut conf = p.clone();
        conf["name"] = list["name"].clone();
        conf["cniVersion"] = list["cniVersion"].clone();
        if command == "ADD" && !result.is_null() {
            conf["prevResult"] = result.clone();
        }
        let plugin = p["type"].as_str().context("a plugin without a type")?;
        let out = crate::kubelet::run_plugin(
            cni,
            &node_dir,
            &node.netns,
            plugin,
            &cni_env(pod, command, "/opt/cni/bin"),
            &conf.to_string(),
        )?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            bail!(
                "{plugin} {command} for {}: {} {}",
                pod.name,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if !stdout.trim().is_empty() {
            result = serde_json::from_str(&stdout)?;
        }
    }
    Ok(result)
}

/// Calls the CNI plugin inside the node's namespace, as kubelet's runtime would.
fn cni(dir: &Path, node: &NodeState, pod: &PodState, command: &str) -> Result<Value> {
    if node.cni.is_some() {
        return cni_from_conflist(dir, node, pod, command);
    }
    let mut child = Command::new("ip")
        .args(["netns", "exec", &node.netns])
        .arg(bin("gingham-cni"))
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &pod.container_id)
        .env("CNI_NETNS", format!("/var/run/netns/{}", pod.netns))
        .env("CNI_IFNAME", "eth0")
        .env(
            "CNI_ARGS",
            format!(
                "K8S_POD_NAMESPACE={};K8S_POD_NAME={}",
                pod.namespace, pod.name
            ),
        )
        .env("CNI_PATH", "/usr/lib/cni:/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting gingham-cni")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("no stdin"))?
        .write_all(cni_config(node).as_bytes())?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "gingham-cni {command} for {}: {} {}",
            pod.name,
            stdout.trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if stdout.trim().is_empty() {
        return Ok(Value::Null);
    }
    Ok(serde_json::from_str(&stdout)?)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

/// Creates a pod on `node_name` (named `pod-<node index>-<n>` unless given).
pub fn add(
    dir: &Path,
    st: &mut LabState,
    node_name: &str,
    name: Option<String>,
) -> Result<PodState> {
    let node = st
        .node(node_name)
        .ok_or_else(|| anyhow!("no node named {node_name} in the lab"))?
        .clone();
    if !sys::pid_alive(node.agent_pid) {
        bail!("the agent of {node_name} is not running: start it with `gingham-lab restart-agent {node_name}`");
    }
    let index = st
        .nodes
        .iter()
        .position(|n| n.name == node_name)
        .unwrap_or(0)
        + 1;
    let name = name.unwrap_or_else(|| {
        (1..)
            .map(|k| format!("pod-{index}-{k}"))
            .find(|n| !st.pods.iter().any(|p| &p.name == n))
            .expect("unbounded")
    });
    if st.pods.iter().any(|p| p.name == name) {
        bail!("a pod named {name} already exists");
    }
    let netns = format!("{}-{name}", st.prefix);
    sys::netns_add(&netns)?;
    let mut pod = PodState {
        name: name.clone(),
        namespace: "default".into(),
        node: node.name.clone(),
        netns: netns.clone(),
        container_id: format!("lab{:016x}", fnv(&format!("{}/{name}", st.prefix))),
        ip: None,
        interface: String::new(),
    };
    let result = match cni(dir, &node, &pod, "ADD") {
        Ok(r) => r,
        Err(e) => {
            // ADD rolled back on the agent's side; the namespace is ours to remove.
            let _ = sys::netns_del(&netns);
            return Err(e);
        }
    };
    pod.ip = result["ips"][0]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok());
    pod.interface = result["interfaces"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    st.pods.push(pod.clone());
    st.save(dir)?;
    Ok(pod)
}

/// What `pod del --force` could not do through the agent and did itself.
#[derive(Debug, Default)]
pub struct Forced {
    pub released_address: bool,
    pub agent_error: Option<String>,
}

/// Deletes a pod: CNI DEL through its node's agent, then its namespace. With `force`, a pod
/// whose agent is stopped (or whose DEL fails) is deleted anyway: its address is released in
/// the lab's datastore directly and its endpoint record removed.
pub fn del(dir: &Path, st: &mut LabState, name: &str, force: bool) -> Result<Forced> {
    let pod = st
        .pods
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| anyhow!("no pod named {name}"))?;
    let mut forced = Forced::default();
    let node = st.node(&pod.node).cloned();
    let result = match &node {
        Some(node) if sys::pid_alive(node.agent_pid) => cni(dir, node, &pod, "DEL").map(|_| ()),
        Some(_) => Err(anyhow!("the agent of {} is not running", pod.node)),
        None => Err(anyhow!("its node {} is gone", pod.node)),
    };
    if let Err(e) = result {
        if !force {
            bail!("{e:#}: start the agent (`gingham-lab restart-agent {}`), or pass --force to delete the pod anyway", pod.node);
        }
        forced.agent_error = Some(format!("{e:#}"));
        forced.released_address = release_directly(st, &pod)?;
    }
    sys::netns_del(&pod.netns)?;
    st.pods.retain(|p| p.name != name);
    st.save(dir)?;
    Ok(forced)
}

/// What CNI DEL would have done on the agent's side, done on the datastore: the address goes
/// back to the pool and the endpoint record goes (the agent, when it runs again, removes the
/// host route as stale; the device went with the pod's namespace).
fn release_directly(st: &LabState, pod: &PodState) -> Result<bool> {
    let store = crate::open_store(st)?;
    let ipam = ipam::Ipam::open(store.clone(), ipam::IpamSettings::default())?;
    let handle = agent::daemon::endpoints::pod_handle(&pod.container_id);
    let released = !ipam.release(&handle)?.is_empty();
    let record = agent::daemon::endpoints::record_name(&pod.node, &pod.container_id);
    if let Some(v) =
        ipam::resources::get::<agent::daemon::endpoints::WorkloadEndpoint>(store.as_ref(), &record)?
    {
        match ipam::resources::delete(store.as_ref(), &v) {
            Ok(()) | Err(ipam::StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(released)
}
