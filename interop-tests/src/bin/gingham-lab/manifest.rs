//! `up --from-manifest`: the DaemonSet of `deploy/gingham.yaml` as the lab runs it, so that the
//! manifests cannot drift from the binaries unnoticed.
//!
//! What is read, as a kubelet would: the pod template's init containers and the agent container
//! (command, args, env with values, `fieldRef`s filled in per node), its volumes (hostPath and
//! configMap, with the ConfigMaps of the same file), and each container's volume mounts. The
//! image must be Gingham's: its binaries are the lab's build, at the image's paths.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where the image keeps its binaries (deploy/Dockerfile), and the environment it sets.
pub const IMAGE_BIN: &str = "/usr/local/bin";
pub const IMAGE_BINARIES: [&str; 3] = ["gingham-agent", "routectl", "gingham-cni"];
pub const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EnvSource {
    Value(String),
    /// `valueFrom.fieldRef.fieldPath`.
    Field(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, EnvSource)>,
    pub mounts: Vec<Mount>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Volume {
    HostPath(String),
    /// A ConfigMap's files: key → content.
    ConfigMap {
        name: String,
        files: BTreeMap<String, String>,
    },
}

/// The DaemonSet's pod as the lab runs it on each node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    pub source: PathBuf,
    pub daemonset: String,
    pub namespace: String,
    pub init: Vec<Container>,
    pub agent: Container,
    pub volumes: BTreeMap<String, Volume>,
}

/// Host paths every node shares with the machine (one kernel, one set of network namespaces);
/// every other hostPath is the node's own, under the lab directory.
pub fn shared_host_path(path: &str) -> bool {
    let p = path.trim_end_matches('/');
    [
        "/lib/modules",
        "/run/netns",
        "/var/run/netns",
        "/proc",
        "/sys",
        "/dev",
    ]
    .contains(&p)
}

fn strings(v: &Value, what: &str) -> Result<Vec<String>> {
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Array(a) => a
            .iter()
            .map(|s| {
                s.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| anyhow!("{what}: {s} is not a string"))
            })
            .collect(),
        other => bail!("{what}: expected a list, found {other}"),
    }
}

fn container(
    c: &Value,
    configmaps: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<Container> {
    let name = c["name"]
        .as_str()
        .context("a container without a name")?
        .to_string();
    let what = |field: &str| format!("container {name}: {field}");
    let mut env = Vec::new();
    for e in c["env"].as_array().into_iter().flatten() {
        let var = e["name"]
            .as_str()
            .with_context(|| what("env entry without a name"))?;
        let source = if let Some(v) = e.get("value") {
            EnvSource::Value(v.as_str().unwrap_or_default().to_string())
        } else if let Some(f) = e["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
            EnvSource::Field(f.to_string())
        } else if let Some(r) = e["valueFrom"].get("configMapKeyRef") {
            let (map, key) = (
                r["name"].as_str().unwrap_or(""),
                r["key"].as_str().unwrap_or(""),
            );
            let v = configmaps
                .get(map)
                .and_then(|m| m.get(key))
                .with_context(|| {
                    what(&format!(
                        "env {var}: no key {key} in ConfigMap {map} of this file"
                    ))
                })?;
            EnvSource::Value(v.clone())
        } else if e.get("valueFrom").is_some() {
            bail!(
                "{}",
                what(&format!(
                    "env {var}: only value, fieldRef and configMapKeyRef are supported by the lab"
                ))
            );
        } else {
            EnvSource::Value(String::new())
        };
        env.push((var.to_string(), source));
    }
    let mut mounts = Vec::new();
    for m in c["volumeMounts"].as_array().into_iter().flatten() {
        mounts.push(Mount {
            volume: m["name"]
                .as_str()
                .with_context(|| what("a volumeMount without a name"))?
                .into(),
            path: m["mountPath"]
                .as_str()
                .with_context(|| what("a volumeMount without a mountPath"))?
                .into(),
            read_only: m["readOnly"].as_bool().unwrap_or(false),
        });
    }
    let image = c["image"].as_str().unwrap_or("").to_string();
    let repo = image
        .rsplit('/')
        .next()
        .unwrap_or("")
        .split([':', '@'])
        .next()
        .unwrap_or("");
    if repo != "gingham" {
        bail!("{}", what(&format!("image {image:?}: the lab runs only Gingham's image (gingham:<tag>), whose binaries it has built")));
    }
    Ok(Container {
        command: strings(&c["command"], &what("command"))?,
        args: strings(&c["args"], &what("args"))?,
        name,
        image,
        env,
        mounts,
    })
}

/// Reads the first DaemonSet of `path` that runs `gingham-agent`.
pub fn load(path: &Path) -> Result<Workload> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut docs = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v =
            Value::deserialize(doc).with_context(|| format!("{} is not YAML", path.display()))?;
        if v.is_object() {
            docs.push(v);
        }
    }
    let configmaps: BTreeMap<String, BTreeMap<String, String>> = docs
        .iter()
        .filter(|d| d["kind"] == "ConfigMap")
        .filter_map(|d| {
            let name = d["metadata"]["name"].as_str()?.to_string();
            let files = d["data"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                        .collect()
                })
                .unwrap_or_default();
            Some((name, files))
        })
        .collect();
    let runs_agent = |c: &Value| {
        c["name"] == "gingham-agent"
            || strings(&c["command"], "")
                .unwrap_or_default()
                .first()
                .is_some_and(|s| s.ends_with("gingham-agent"))
    };
    let ds = docs
        .iter()
        .filter(|d| d["kind"] == "DaemonSet")
        .find(|d| {
            d["spec"]["template"]["spec"]["containers"]
                .as_array()
                .is_some_and(|cs| cs.iter().any(runs_agent))
        })
        .with_context(|| {
            format!(
                "{}: no DaemonSet with a gingham-agent container",
                path.display()
            )
        })?;
    let pod = &ds["spec"]["template"]["spec"];
    if pod["hostNetwork"] != true {
        bail!("{}: the DaemonSet's pods must use hostNetwork: true (the agent programs the node's routes)", path.display());
    }
    let agent = pod["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| runs_agent(c))
        .map(|c| container(c, &configmaps))
        .transpose()?
        .context("no agent container")?;
    let init = pod["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| container(c, &configmaps))
        .collect::<Result<Vec<_>>>()?;
    let mut volumes = BTreeMap::new();
    for v in pod["volumes"].as_array().into_iter().flatten() {
        let name = v["name"]
            .as_str()
            .context("a volume without a name")?
            .to_string();
        let vol = if let Some(p) = v["hostPath"]["path"].as_str() {
            Volume::HostPath(p.to_string())
        } else if let Some(map) = v["configMap"]["name"].as_str() {
            let files = configmaps
                .get(map)
                .with_context(|| {
                    format!(
                        "volume {name}: ConfigMap {map} is not in {}",
                        path.display()
                    )
                })?
                .clone();
            Volume::ConfigMap {
                name: map.to_string(),
                files,
            }
        } else {
            bail!("volume {name}: the lab supports hostPath and configMap volumes only");
        };
        volumes.insert(name, vol);
    }
    for c in init.iter().chain([&agent]) {
        for m in &c.mounts {
            if !volumes.contains_key(&m.volume) {
                bail!(
                    "container {}: volumeMount {} names no volume of the pod",
                    c.name,
                    m.volume
                );
            }
        }
    }
    Ok(Workload {
        source: path.to_path_buf(),
        daemonset: ds["metadata"]["name"]
            .as_str()
            .unwrap_or("gingham")
            .to_string(),
        namespace: ds["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        init,
        agent,
        volumes,
    })
}

impl Workload {
    /// The value of a `fieldRef` for the pod on `node` (host network: the pod's IP is the
    /// node's).
    pub fn field(&self, field: &str, node: &str, ip: std::net::Ipv4Addr) -> Result<String> {
        Ok(match field {
            "spec.nodeName" => node.to_string(),
            "metadata.name" => format!("{}-{node}", self.daemonset),
            "metadata.namespace" => self.namespace.clone(),
            "status.hostIP" | "status.podIP" => ip.to_string(),
            other => bail!("fieldRef {other} is not supported by the lab"),
        })
    }

    /// Where a path inside `c` is on the machine, through its volume mounts, for a node whose
    /// own directories are under `node_root`: `None` when no mount covers it.
    pub fn host_path(&self, c: &Container, path: &str, node_root: &Path) -> Option<PathBuf> {
        let m = c
            .mounts
            .iter()
            .filter(|m| {
                path == m.path || path.starts_with(&format!("{}/", m.path.trim_end_matches('/')))
            })
            .max_by_key(|m| m.path.len())?;
        let rest = path[m.path.len()..].trim_start_matches('/');
        match self.volumes.get(&m.volume)? {
            Volume::HostPath(h) => Some(node_host_path(h, node_root).join(rest)),
            Volume::ConfigMap { .. } => None,
        }
    }
}

/// A node's view of a host path: shared ones as they are, the others under its own root.
pub fn node_host_path(host_path: &str, node_root: &Path) -> PathBuf {
    if shared_host_path(host_path) {
        PathBuf::from(host_path)
    } else {
        node_root.join(host_path.trim_start_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_repositorys_daemonset_reads() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/gingham.yaml");
        let w = load(&path).unwrap();
        assert_eq!(w.agent.name, "gingham-agent");
        assert_eq!(w.init.len(), 1);
        assert!(w
            .agent
            .env
            .iter()
            .any(|(k, v)| k == "NODENAME" && *v == EnvSource::Field("spec.nodeName".into())));
        let Volume::ConfigMap { files, .. } = &w.volumes["cni-config"] else {
            panic!("cni-config is a ConfigMap volume")
        };
        assert!(files["10-gingham.conflist"].contains("gingham-cni"));
        let root = Path::new("/lab/node1/root");
        assert_eq!(
            w.host_path(&w.agent, "/var/run/gingham/agent.sock", root),
            Some(root.join("var/run/gingham/agent.sock"))
        );
        assert_eq!(
            w.host_path(&w.agent, "/run/netns/x", root),
            Some(PathBuf::from("/run/netns/x"))
        );
        assert_eq!(
            w.field("spec.nodeName", "n1", "172.18.0.2".parse().unwrap())
                .unwrap(),
            "n1"
        );
    }
}
