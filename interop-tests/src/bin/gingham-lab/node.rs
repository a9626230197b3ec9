//! Lab nodes: a namespace with `eth0` on the underlay bridge and a `gingham-agent` inside.

use crate::state::{AgentSpec, LabState, NodeState};
use crate::{bin, sys, AS, SUBNET_PREFIX};
use anyhow::{bail, Context, Result};
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

/// kind's naming: `<cluster>-control-plane`, `<cluster>-worker`, `<cluster>-worker2`, ...
pub fn default_name(prefix: &str, index: usize) -> String {
    match index {
        0 => format!("{prefix}-control-plane"),
        1 => format!("{prefix}-worker"),
        n => format!("{prefix}-worker{n}"),
    }
}

/// The namespace of node `name`: the name itself when it already carries the lab's prefix
/// (the default names do), else `<prefix>-<name>`, so two labs never share a namespace.
pub fn netns_name(prefix: &str, name: &str) -> String {
    if name.starts_with(&format!("{prefix}-")) {
        name.to_string()
    } else {
        format!("{prefix}-{name}")
    }
}

/// The address of node `index`: 172.18.0.2 upwards (.1 is the underlay's gateway), like kind's
/// Docker network; the lab's nodes fit in the /16.
pub fn address(index: usize) -> Result<Ipv4Addr> {
    let host = index + 2;
    if host > 0xfffe {
        bail!("no room for node {index} in 172.18.0.0/16");
    }
    Ok(Ipv4Addr::new(
        SUBNET_PREFIX[0],
        SUBNET_PREFIX[1],
        (host >> 8) as u8,
        (host & 0xff) as u8,
    ))
}

/// The agent's flags in the lab: the node's name and address, the lab's datastore (the shared
/// file directory, or the lab's etcd members), the node's own control socket, and metrics on
/// the node namespace's loopback.
pub fn lab_agent(name: &str, ip: Ipv4Addr, st: &LabState, node_dir: &Path) -> AgentSpec {
    let datastore = if st.uses_etcd() {
        vec![
            "--datastore".into(),
            "etcd".into(),
            "--etcd-endpoints".into(),
            st.etcd_endpoints(),
        ]
    } else {
        vec![
            "--datastore".into(),
            format!("file:{}", st.datastore.display()),
        ]
    };
    AgentSpec {
        args: [
            "--node-name".into(),
            name.into(),
            "--ip".into(),
            ip.to_string(),
            "--as".into(),
            AS.to_string(),
        ]
        .into_iter()
        .chain(datastore)
        .chain([
            "--control-socket".into(),
            node_dir.join("agent.sock").to_string_lossy().into_owned(),
            "--metrics-addr".into(),
            "127.0.0.1:9099".into(),
        ])
        .collect(),
        // One malloc arena, not glibc's one per thread, as the DaemonSet sets it: the agent's
        // threads allocate little, and each arena keeps its own free space (in a 250-node
        // mesh, 2 arenas cost 0.4 MB more per agent than 1, and 5 a quarter of its memory).
        env: [("LOG_LEVEL", "info"), ("MALLOC_ARENA_MAX", "1")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .chain(st.agent_env.iter().cloned())
            .collect(),
        container: None,
    }
}

/// The MAC of the node at `ip`, Docker's way (02:42 and the IPv4 address): the lab knows every
/// node's MAC, so it can write every neighbour entry itself.
pub fn mac(ip: Ipv4Addr) -> String {
    let o = ip.octets();
    format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3])
}

/// The underlay gateway (the bridge's own address), which every node's default route uses.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

/// Writes permanent neighbour entries for `others` (and the gateway) into `node`'s namespace,
/// in one `ip -batch`. The kernel's ARP table is shared by every namespace (gc_thresh3, 1,024
/// entries by default) and a full mesh of N nodes needs N×(N-1) entries; permanent entries are
/// exempt from that limit and need no ARP at all, so a 250-node lab runs on a stock kernel.
pub fn write_neighbours(node: &NodeState, others: &[&NodeState]) -> Result<()> {
    let ips: Vec<Ipv4Addr> = std::iter::once(GATEWAY)
        .chain(others.iter().filter(|o| o.name != node.name).map(|o| o.ip))
        .collect();
    write_neighbour_ips(&node.netns, &ips)
}

/// Permanent neighbour entries for `ips` on `eth0` of `netns`, in one `ip -batch`.
pub fn write_neighbour_ips(netns: &str, ips: &[Ipv4Addr]) -> Result<()> {
    let mut batch = String::new();
    for ip in ips {
        batch.push_str(&format!(
            "neigh replace {ip} lladdr {} dev eth0 nud permanent\n",
            mac(*ip)
        ));
    }
    sys::ip_batch(netns, &batch)
}

/// Creates node `name` (namespace, veth to the bridge, address, default route) and records
/// it; with `start`, starts its agent with `spec` too (`up` starts them once every node's
/// neighbours are written). On failure nothing of the node is left behind.
pub fn create(
    dir: &Path,
    st: &mut LabState,
    name: &str,
    spec: Option<AgentSpec>,
    start: bool,
) -> Result<()> {
    let index = st.next_node;
    let ip = address(index)?;
    let netns = netns_name(&st.prefix, name);
    if sys::netns_exists(&netns) {
        bail!("network namespace {netns} already exists (not made by this lab?): remove it with `ip netns del {netns}` or choose another name");
    }
    let node_dir = dir.join(name);
    // Never a directory the lab already has (its datastore, an etcd member's): a failed create
    // removes the node's directory.
    if node_dir.exists() {
        bail!(
            "{} already exists in the lab's directory: choose another node name",
            node_dir.display()
        );
    }
    std::fs::create_dir_all(&node_dir)?;
    let from_manifest = match (&spec, &st.manifest) {
        (None, Some(w)) => match crate::kubelet::prepare(w, st, name, ip, &node_dir) {
            Ok(p) => Some(p),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&node_dir);
                return Err(e);
            }
        },
        _ => None,
    };
    let (spec, control_socket, cni) = match from_manifest {
        Some(p) => (p.agent, p.control_socket, Some(p.cni)),
        None => (
            spec.unwrap_or_else(|| lab_agent(name, ip, st, &node_dir)),
            node_dir.join("agent.sock"),
            None,
        ),
    };
    let port = format!("p{}", index + 1);
    let built = (|| -> Result<i32> {
        sys::netns_add(&netns)?;
        // The veth is made in the node namespace and its other end moved to the bridge namespace.
        sys::ip(
            &netns,
            &[
                "link",
                "add",
                "eth0",
                "address",
                &mac(ip),
                "type",
                "veth",
                "peer",
                "name",
                &port,
            ],
        )?;
        sys::ip(&netns, &["link", "set", &port, "netns", &st.underlay_netns])?;
        sys::ip(
            &st.underlay_netns,
            &["link", "set", &port, "master", "br0", "up"],
        )?;
        sys::ip(&netns, &["addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
        sys::ip(&netns, &["link", "set", "eth0", "up"])?;
        sys::ip(&netns, &["route", "add", "default", "via", "172.18.0.1"])?;
        if let Some(w) = &st.manifest {
            crate::kubelet::run_init(w, &netns, &node_dir, name, ip)?;
        }
        if start {
            start_agent(&netns, &node_dir.join("agent.log"), &spec)
        } else {
            Ok(0)
        }
    })();
    let pid = match built {
        Ok(pid) => pid,
        Err(e) => {
            let _ = sys::netns_del(&netns);
            let _ = sys::ip(&st.underlay_netns, &["link", "del", &port]);
            let _ = std::fs::remove_dir_all(&node_dir);
            return Err(e);
        }
    };
    st.next_node = index + 1;
    st.nodes.push(NodeState {
        name: name.to_string(),
        netns,
        ip,
        control_socket,
        agent_pid: pid,
        log: node_dir.join("agent.log"),
        bridge_port: port,
        agent: spec,
        cni,
    });
    st.save(dir)
}

/// Starts `gingham-agent` in `netns` with `spec`, its output appended to `log`.
pub fn start_agent(netns: &str, log: &Path, spec: &AgentSpec) -> Result<i32> {
    let logf = std::fs::File::options()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    match &spec.container {
        // The DaemonSet's container: the launcher sets up its mounts and becomes the agent.
        Some(c) => {
            cmd.arg(bin("gingham-lab"))
                .arg("container-run")
                .arg(c.write()?)
                .env_clear();
        }
        None => {
            cmd.arg(bin("gingham-agent"))
                .args(&spec.args)
                .envs(spec.env.iter().map(|(k, v)| (k, v)));
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .context("starting gingham-agent")?;
    Ok(child.id() as i32)
}

/// SIGTERM to the node's agent (it leaves its routes in the kernel, as in a DaemonSet
/// rollout), waits for it to exit, and starts it again the same way.
pub fn restart_agent(dir: &Path, st: &mut LabState, name: &str) -> Result<i32> {
    let node = st
        .node(name)
        .with_context(|| format!("no node named {name} in the lab"))?
        .clone();
    if sys::pid_alive(node.agent_pid) && !sys::terminate(node.agent_pid, Duration::from_secs(10)) {
        bail!(
            "the agent of {name} (pid {}) did not exit within 10 s of SIGTERM",
            node.agent_pid
        );
    }
    let pid = start_agent(&node.netns, &node.log, &node.agent)?;
    if let Some(n) = st.node_mut(name) {
        n.agent_pid = pid;
    }
    st.save(dir)?;
    Ok(pid)
}
