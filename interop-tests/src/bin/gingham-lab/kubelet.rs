//! What a kubelet does with the DaemonSet's pod on one node, for `up --from-manifest`: each
//! container gets its volumes (a hostPath is the node's own directory under
//! `<lab>/<node>/root`, except what every node shares with the machine, like `/run/netns`; a
//! configMap is its files), the image's binaries (the lab's build) and its environment with the
//! `fieldRef`s filled in; the init containers run to completion first, then the agent runs as
//! the pod's main container.
//!
//! One thing differs from a cluster, and `up` says so: the agent's datastore is the lab's
//! (`DATASTORE` is replaced), since there is no Kubernetes API here.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

use crate::bin;
use crate::container::{Bind, ContainerSpec};
use crate::manifest::{self, Container, EnvSource, Volume, Workload};
use crate::state::{AgentSpec, LabState, NodeCni};

/// The agent container as a node runs it, where its control socket is, and how pods are wired.
pub struct Prepared {
    pub agent: AgentSpec,
    pub control_socket: PathBuf,
    pub cni: NodeCni,
}

/// The node's own directory for the machine's `path`.
fn node_root(node_dir: &Path) -> PathBuf {
    node_dir.join("root")
}

/// The container's environment: the image's PATH, then the manifest's, fields filled in.
fn environment(
    w: &Workload,
    c: &Container,
    node: &str,
    ip: std::net::Ipv4Addr,
) -> Result<Vec<(String, String)>> {
    let mut env = vec![("PATH".to_string(), manifest::IMAGE_PATH.to_string())];
    for (k, v) in &c.env {
        let value = match v {
            EnvSource::Value(v) => v.clone(),
            EnvSource::Field(f) => w
                .field(f, node, ip)
                .with_context(|| format!("container {}: env {k}", c.name))?,
        };
        env.retain(|(name, _)| name != k);
        env.push((k.clone(), value));
    }
    Ok(env)
}

/// The binds of `c` on this node: its volumes, and the image's binaries.
fn binds(w: &Workload, c: &Container, node_dir: &Path) -> Result<Vec<Bind>> {
    let root = node_root(node_dir);
    let mut out: Vec<Bind> = manifest::IMAGE_BINARIES
        .iter()
        .map(|b| Bind {
            source: bin(b),
            target: Path::new(manifest::IMAGE_BIN).join(b),
            read_only: true,
        })
        .collect();
    for m in &c.mounts {
        let source = match &w.volumes[&m.volume] {
            Volume::HostPath(h) => {
                let p = manifest::node_host_path(h, &root);
                // DirectoryOrCreate, as the manifest's node directories are.
                std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
                p
            }
            Volume::ConfigMap { files, .. } => {
                let p = node_dir.join("configmaps").join(&m.volume);
                std::fs::create_dir_all(&p)?;
                for (k, v) in files {
                    std::fs::write(p.join(k), v)?;
                }
                p
            }
        };
        out.push(Bind {
            source,
            target: PathBuf::from(&m.path),
            read_only: m.read_only,
        });
    }
    Ok(out)
}

/// The node's view of the machine, where a container runtime runs the CNI plugins: every
/// node-own hostPath of the pod at its own path, and the machine's network namespaces.
fn node_view(w: &Workload, node_dir: &Path) -> Vec<Bind> {
    let root = node_root(node_dir);
    let mut out: Vec<Bind> = w
        .volumes
        .values()
        .filter_map(|v| match v {
            Volume::HostPath(h) if !manifest::shared_host_path(h) => Some(Bind {
                source: manifest::node_host_path(h, &root),
                target: PathBuf::from(h),
                read_only: false,
            }),
            _ => None,
        })
        .collect();
    out.push(Bind {
        source: "/run/netns".into(),
        target: "/run/netns".into(),
        read_only: false,
    });
    out
}

/// Everything a node needs before its containers start.
pub fn prepare(
    w: &Workload,
    st: &LabState,
    node: &str,
    ip: std::net::Ipv4Addr,
    node_dir: &Path,
) -> Result<Prepared> {
    let c = &w.agent;
    let mut env = environment(w, c, node, ip)?;
    let mut binds = binds(w, c, node_dir)?;
    // The lab's datastore instead of the manifest's (there is no API server here).
    env.retain(|(k, _)| !matches!(k.as_str(), "DATASTORE" | "ETCD_ENDPOINTS"));
    if st.uses_etcd() {
        env.push(("DATASTORE".into(), "etcd".into()));
        env.push(("ETCD_ENDPOINTS".into(), st.etcd_endpoints()));
    } else {
        env.push((
            "DATASTORE".into(),
            format!("file:{}", st.datastore.display()),
        ));
        binds.push(Bind {
            source: st.datastore.clone(),
            target: st.datastore.clone(),
            read_only: false,
        });
    }
    env.extend(st.agent_env.iter().cloned());
    let argv: Vec<String> = if c.command.is_empty() {
        // The image's CMD (deploy/Dockerfile).
        vec!["gingham-agent".into()]
    } else {
        c.command.clone()
    }
    .into_iter()
    .chain(c.args.iter().cloned())
    .collect();
    std::fs::create_dir_all(&st.datastore)?;
    // Where clients on the node reach the agent: its socket, through the volume it is on.
    let socket = env
        .iter()
        .find(|(k, _)| k == "CONTROL_SOCKET")
        .map(|(_, v)| v.clone())
        .unwrap_or_else(|| "/var/run/gingham/agent.sock".into());
    let control_socket = w
        .host_path(c, &socket, &node_root(node_dir))
        .with_context(|| format!("the agent's control socket {socket} is on no hostPath volume: nothing on the node could reach it"))?;
    let view = node_view(w, node_dir);
    seed_cni_plugins(w, node_dir)?;
    Ok(Prepared {
        agent: AgentSpec {
            args: Vec::new(),
            env: Vec::new(),
            container: Some(ContainerSpec {
                state_dir: node_dir.join("containers").join(&c.name),
                binds,
                env,
                argv,
            }),
        },
        control_socket,
        cni: NodeCni {
            conf_dir: manifest::node_host_path("/etc/cni/net.d", &node_root(node_dir)),
            binds: view,
        },
    })
}

/// A kind node's image ships the standard CNI plugins in `/opt/cni/bin` (portmap for one, which
/// the conflist chains): the lab's nodes get Debian's, from `/usr/lib/cni`.
fn seed_cni_plugins(w: &Workload, node_dir: &Path) -> Result<()> {
    let has_bin_dir = w
        .volumes
        .values()
        .any(|v| matches!(v, Volume::HostPath(h) if h.trim_end_matches('/') == "/opt/cni/bin"));
    if !has_bin_dir {
        return Ok(());
    }
    let dir = manifest::node_host_path("/opt/cni/bin", &node_root(node_dir));
    std::fs::create_dir_all(&dir)?;
    for e in std::fs::read_dir("/usr/lib/cni")
        .into_iter()
        .flatten()
        .flatten()
    {
        let target = dir.join(e.file_name());
        if !target.exists() {
            std::os::unix::fs::symlink(e.path(), &target)?;
        }
    }
    Ok(())
}

/// Runs the pod's init containers on the node, in order, each to completion.
pub fn run_init(
    w: &Workload,
    netns: &str,
    node_dir: &Path,
    node: &str,
    ip: std::net::Ipv4Addr,
) -> Result<()> {
    for c in &w.init {
        let spec = ContainerSpec {
            state_dir: node_dir.join("containers").join(&c.name),
            binds: binds(w, c, node_dir)?,
            env: environment(w, c, node, ip)?,
            argv: c.command.iter().chain(&c.args).cloned().collect(),
        };
        let log = node_dir.join(format!("{}.log", c.name));
        let out = Command::new("ip")
            .args(["netns", "exec", netns])
            .arg(bin("gingham-lab"))
            .arg("container-run")
            .arg(spec.write()?)
            .env_clear()
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running init container {}", c.name))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(&log, &text)?;
        if !out.status.success() {
            bail!(
                "init container {} failed on {node} ({}):\n{}",
                c.name,
                out.status,
                text.trim_end()
            );
        }
    }
    Ok(())
}

/// A CNI plugin run as the node's container runtime runs it: in the node's namespace and
/// view, `config` on stdin. Returns the plugin's output.
pub fn run_plugin(
    cni: &NodeCni,
    node_dir: &Path,
    netns: &str,
    plugin: &str,
    env: &[(String, String)],
    config: &str,
) -> Result<std::process::Output> {
    use std::io::Write;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let state_dir = node_dir.join("containers").join(format!(
        "cni-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let spec = ContainerSpec {
        state_dir: state_dir.clone(),
        binds: cni.binds.clone(),
        env: std::iter::once(("PATH".to_string(), manifest::IMAGE_PATH.to_string()))
            .chain(env.iter().cloned())
            .collect(),
        argv: vec![format!("/opt/cni/bin/{plugin}")],
    };
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(bin("gingham-lab"))
        .arg("container-run")
        .arg(spec.write()?)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running the CNI plugin {plugin}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(config.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let _ = std::fs::remove_dir_all(&state_dir);
    Ok(out)
}
