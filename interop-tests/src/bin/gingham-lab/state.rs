//! What the lab made, recorded so `status`, `pod`, `node` and `down` (separate processes) find
//! it, and the lock that lets several of them run at once.

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LabState {
    /// Prefix of every name the lab gave.
    pub prefix: String,
    /// The namespace holding the underlay bridge (like kind's Docker network).
    pub underlay_netns: String,
    pub subnet: String,
    pub datastore: PathBuf,
    pub nodes: Vec<NodeState>,
    pub pods: Vec<PodState>,
    /// Index of the next node (addresses are never reused within one lab).
    #[serde(default)]
    pub next_node: usize,
    /// Extra environment for every agent (`up --agent-env KEY=VALUE`).
    #[serde(default)]
    pub agent_env: Vec<(String, String)>,
    /// The lab's etcd cluster (`up --datastore etcd`); empty with the file datastore.
    #[serde(default)]
    pub etcd: Vec<EtcdMemberState>,
    /// `up --from-manifest`: the DaemonSet every node runs.
    #[serde(default)]
    pub manifest: Option<crate::manifest::Workload>,
}

/// One etcd member: a namespace of its own on the underlay, its data and log under the lab dir.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EtcdMemberState {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub pid: i32,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    pub bridge_port: String,
}

/// How a node's agent is started: kept so `restart-agent` starts it exactly the same way.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AgentSpec {
    /// The agent's command line after the binary.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// From a manifest: the agent runs as the DaemonSet's container (`args` and `env` unused).
    #[serde(default)]
    pub container: Option<crate::container::ContainerSpec>,
}

/// How a container runtime on the node runs CNI (labs from a manifest): the node's conflist
/// directory, and the node's view of the machine the plugins run in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeCni {
    /// The node's `/etc/cni/net.d`, on the machine.
    pub conf_dir: PathBuf,
    /// The node's own directories at the paths the node sees them.
    pub binds: Vec<crate::container::Bind>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeState {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub control_socket: PathBuf,
    pub agent_pid: i32,
    pub log: PathBuf,
    /// The bridge-side end of the node's veth, in the underlay namespace.
    pub bridge_port: String,
    #[serde(default)]
    pub agent: AgentSpec,
    /// Set for a lab from a manifest: pods are wired through the node's conflist.
    #[serde(default)]
    pub cni: Option<NodeCni>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodState {
    pub name: String,
    pub namespace: String,
    pub node: String,
    pub netns: String,
    pub container_id: String,
    pub ip: Option<Ipv4Addr>,
    pub interface: String,
}

impl LabState {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join("lab.json")
    }

    pub fn load(dir: &Path) -> Result<Option<LabState>> {
        let path = Self::path(dir);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(
                serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", path.display()))?,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Written after every step (write-temp, rename), so an interrupted `up` can still be
    /// taken `down`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("lab.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(dir))?;
        Ok(())
    }

    pub fn uses_etcd(&self) -> bool {
        !self.etcd.is_empty()
    }

    /// `--etcd-endpoints` for the lab's agents.
    pub fn etcd_endpoints(&self) -> String {
        self.etcd
            .iter()
            .map(|m| format!("http://{}:2379", m.ip))
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn node(&self, name: &str) -> Option<&NodeState> {
        self.nodes.iter().find(|n| n.name == name)
    }

    pub fn node_mut(&mut self, name: &str) -> Option<&mut NodeState> {
        self.nodes.iter_mut().find(|n| n.name == name)
    }
}

/// An exclusive lock on the lab directory (`flock` on `<dir>/lab.lock`), held while a command
/// reads, changes and writes the state: four `pod add` at once give four pods, not one.
pub struct LabLock {
    _file: File,
}

impl LabLock {
    pub fn acquire(dir: &Path) -> Result<LabLock> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("lab.lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        loop {
            match file.lock() {
                Ok(()) => return Ok(LabLock { _file: file }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("locking {}", path.display())),
            }
        }
    }
}
