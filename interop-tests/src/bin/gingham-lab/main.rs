//! `gingham-lab`: a kind-like cluster on one Linux machine, without Docker.
//!
//! A bridge in its own network namespace is the underlay (172.18.0.0/16, like kind's Docker
//! network); each node is a namespace with `eth0` on that bridge and a `gingham-agent` inside,
//! all sharing one `file` datastore; each pod is a namespace wired by the real `gingham-cni`
//! binary, called as a container runtime would call it.

mod state;
mod sys;

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use serde_json::{json, Value};
use state::{LabState, NodeState, PodState};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const SUBNET_PREFIX: [u8; 3] = [172, 18, 0];
const AS: u32 = 64512;

#[derive(Parser)]
#[command(
    name = "gingham-lab",
    version,
    about = "A kind-like Gingham cluster in network namespaces"
)]
struct Cli {
    /// Where the lab keeps its state, datastore, sockets and logs.
    #[arg(
        long,
        global = true,
        env = "GINGHAM_LAB_DIR",
        default_value = "/var/run/gingham-lab"
    )]
    dir: PathBuf,
    /// Prefix of every name the lab gives (nodes, namespaces), like kind's cluster name. Lets two
    /// labs (say, a test and yours) live side by side, each with its own --dir.
    #[arg(
        long,
        global = true,
        env = "GINGHAM_LAB_PREFIX",
        default_value = "gingham"
    )]
    prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab: underlay, nodes with agents, pods; show routes and a cross-node ping.
    Up {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=200))]
        nodes: u8,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=50))]
        pods_per_node: u8,
    },
    /// Nodes and pods of the running lab.
    Status {
        #[arg(short = 'o', long = "output", default_value = "table", value_parser = ["table", "json"])]
        output: String,
    },
    /// Add or delete a pod.
    Pod {
        #[command(subcommand)]
        what: PodCmd,
    },
    /// Add a node (it joins the mesh and gets routes to everyone).
    Node {
        #[command(subcommand)]
        what: NodeCmd,
    },
    /// Remove every namespace, link, process and file the lab made.
    Down,
}

#[derive(Subcommand)]
enum PodCmd {
    /// Create a pod on a node (name defaults to pod-<node index>-<n>).
    Add { node: String, name: Option<String> },
    /// Delete a pod (CNI DEL, then its namespace).
    Del { name: String },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Add a node to the running lab.
    Add { name: Option<String> },
}

/// The other Gingham binaries sit next to this one (`cargo build` puts them together), or on PATH.
fn bin(name: &str) -> PathBuf {
    if let Ok(me) = std::env::current_exe() {
        if let Some(dir) = me.parent() {
            let p = dir.join(name);
            if p.exists() {
                return p;
            }
        }
    }
    PathBuf::from(name)
}

/// kind's naming: `<cluster>-control-plane`, `<cluster>-worker`, `<cluster>-worker2`, ...
fn node_name(prefix: &str, index: usize) -> String {
    match index {
        0 => format!("{prefix}-control-plane"),
        1 => format!("{prefix}-worker"),
        n => format!("{prefix}-worker{n}"),
    }
}

fn routectl(node: &NodeState, args: &[&str]) -> Result<Value> {
    let sock = node.control_socket.to_string_lossy().into_owned();
    let mut argv = vec!["--socket", sock.as_str()];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["-o", "json"]);
    let out = Command::new(bin("routectl")).args(&argv).output()?;
    if !out.status.success() {
        bail!(
            "routectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

fn routectl_text(node: &NodeState, args: &[&str]) -> String {
    let sock = node.control_socket.to_string_lossy().into_owned();
    let mut argv = vec!["--socket", sock.as_str()];
    argv.extend_from_slice(args);
    match Command::new(bin("routectl")).args(&argv).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
        Err(e) => format!("routectl: {e}\n"),
    }
}

fn wait(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<()> {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match probe() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e.to_string(),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("timed out after {timeout:?} waiting for {what} {last}")
}

fn start_node(dir: &Path, st: &mut LabState, index: usize, name: String) -> Result<()> {
    let ip = Ipv4Addr::new(
        SUBNET_PREFIX[0],
        SUBNET_PREFIX[1],
        SUBNET_PREFIX[2],
        (index + 2) as u8,
    );
    let node_dir = dir.join(&name);
    std::fs::create_dir_all(&node_dir)?;
    sys::netns_add(&name)?;
    let port = format!("p{}", index + 1);
    // The veth is made in the node namespace and its other end moved to the bridge namespace.
    sys::ip(
        &name,
        &["link", "add", "eth0", "type", "veth", "peer", "name", &port],
    )?;
    sys::ip(&name, &["link", "set", &port, "netns", &st.underlay_netns])?;
    sys::ip(
        &st.underlay_netns,
        &["link", "set", &port, "master", "br0", "up"],
    )?;
    sys::ip(&name, &["addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
    sys::ip(&name, &["link", "set", "eth0", "up"])?;
    sys::ip(&name, &["route", "add", "default", "via", "172.18.0.1"])?;
    let sock = node_dir.join("agent.sock");
    let log = node_dir.join("agent.log");
    let logf = std::fs::File::create(&log)?;
    let child = Command::new("ip")
        .args(["netns", "exec", &name])
        .arg(bin("gingham-agent"))
        .args([
            "--node-name",
            &name,
            "--ip",
            &ip.to_string(),
            "--as",
            &AS.to_string(),
        ])
        .arg("--datastore")
        .arg(format!("file:{}", st.datastore.display()))
        .arg("--control-socket")
        .arg(&sock)
        .args(["--metrics-addr", "127.0.0.1:9099"])
        .env("LOG_LEVEL", "info")
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .context("starting gingham-agent")?;
    st.nodes.push(NodeState {
        netns: name.clone(),
        name,
        ip,
        control_socket: sock,
        agent_pid: child.id() as i32,
        log,
        bridge_port: port,
    });
    st.save(dir)
}

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

/// Calls the real CNI plugin inside the node's namespace, as kubelet's runtime would.
fn cni(node: &NodeState, pod: &PodState, command: &str) -> Result<Value> {
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

fn add_pod(
    dir: &Path,
    st: &mut LabState,
    node_name: &str,
    name: Option<String>,
) -> Result<PodState> {
    let node = st
        .node(node_name)
        .ok_or_else(|| anyhow!("no node named {node_name} in the lab"))?
        .clone();
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
        container_id: format!("lab{:016x}", fnv(&name) ^ std::process::id() as u64),
        ip: None,
        interface: String::new(),
    };
    st.pods.push(pod.clone());
    st.save(dir)?;
    let result = match cni(&node, &pod, "ADD") {
        Ok(r) => r,
        Err(e) => {
            let _ = sys::netns_del(&netns);
            st.pods.retain(|p| p.name != name);
            st.save(dir)?;
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
    if let Some(p) = st.pods.iter_mut().find(|p| p.name == name) {
        *p = pod.clone();
    }
    st.save(dir)?;
    Ok(pod)
}

fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    })
}

fn del_pod(dir: &Path, st: &mut LabState, name: &str) -> Result<()> {
    let pod = st
        .pods
        .iter()
        .find(|p| p.name == name)
        .cloned()
        .ok_or_else(|| anyhow!("no pod named {name}"))?;
    if let Some(node) = st.node(&pod.node).cloned() {
        cni(&node, &pod, "DEL")?;
    }
    sys::netns_del(&pod.netns)?;
    st.pods.retain(|p| p.name != name);
    st.save(dir)
}

fn mesh_up(st: &LabState) -> Result<bool> {
    for n in &st.nodes {
        let s = routectl(n, &["show"])?;
        let peers = s["peers"].as_array().cloned().unwrap_or_default();
        if peers.len() + 1 < st.nodes.len() || peers.iter().any(|p| p["state"] != "Established") {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Every node's kernel routes every other node's blocks via that node, and blackholes its own.
fn routes_converged(st: &LabState) -> Result<bool> {
    let Some(first) = st.nodes.first() else {
        return Ok(true);
    };
    let blocks = routectl(first, &["show", "blocks"])?;
    let blocks: Vec<(String, String)> = blocks["blocks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|b| {
            Some((
                b["block"].as_str()?.to_string(),
                b["node"].as_str()?.to_string(),
            ))
        })
        .collect();
    for n in &st.nodes {
        let routes: Value = serde_json::from_str(&sys::ip(
            &n.netns,
            &["-j", "route", "show", "proto", "bird"],
        )?)?;
        let routes = routes.as_array().cloned().unwrap_or_default();
        for (block, owner) in &blocks {
            let Some(owner_ip) = st.node(owner).map(|o| o.ip.to_string()) else {
                continue;
            };
            let ok = routes.iter().any(|r| {
                r["dst"] == block.as_str()
                    && if owner == &n.name {
                        r["type"] == "blackhole"
                    } else {
                        r["gateway"] == owner_ip.as_str()
                    }
            });
            if !ok && !block.ends_with("/32") {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

fn show(st: &LabState) {
    for n in &st.nodes {
        println!("=== {} ({}) — routectl show", n.name, n.ip);
        print!("{}", routectl_text(n, &["show"]));
        println!("--- {}: ip route | grep -E 'bird|blackhole|cali'", n.name);
        if let Ok(r) = sys::ip(&n.netns, &["route", "show"]) {
            for line in r
                .lines()
                .filter(|l| l.contains("bird") || l.contains("blackhole") || l.contains("cali"))
            {
                println!("{line}");
            }
        }
        println!();
    }
}

fn ping_across(st: &LabState) -> Result<bool> {
    let a = st
        .pods
        .iter()
        .find(|p| Some(&p.node) == st.nodes.first().map(|n| &n.name));
    let b = st
        .pods
        .iter()
        .find(|p| Some(&p.node) == st.nodes.get(1).map(|n| &n.name));
    let (Some(a), Some(b)) = (a, b) else {
        println!("(need pods on two nodes for a cross-node ping)");
        return Ok(true);
    };
    let dst =
        b.ip.ok_or_else(|| anyhow!("pod {} has no address", b.name))?
            .to_string();
    println!(
        "=== ping from {} ({}, on {}) to {} ({}, on {})",
        a.name,
        a.ip.map(|i| i.to_string()).unwrap_or_default(),
        a.node,
        b.name,
        dst,
        b.node
    );
    let out = Command::new("ip")
        .args([
            "netns", "exec", &a.netns, "ping", "-c", "3", "-i", "0.2", "-W", "2", &dst,
        ])
        .output()?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    Ok(out.status.success())
}

fn up(dir: &Path, prefix: &str, nodes: u8, pods_per_node: u8) -> Result<()> {
    if let Some(st) = LabState::load(dir)? {
        if !st.nodes.is_empty() {
            println!("A lab is already up ({} nodes, {} pods) in {}: nothing to do. `gingham-lab down` removes it.", st.nodes.len(), st.pods.len(), dir.display());
            status(&st, false);
            return Ok(());
        }
    }
    let underlay = format!("{prefix}-underlay");
    for name in (0..nodes as usize)
        .map(|i| node_name(prefix, i))
        .chain([underlay.clone()])
    {
        if sys::netns_exists(&name) {
            bail!("network namespace {name} exists but no lab state was found in {}: remove it (`ip netns del {name}`) or pass --dir", dir.display());
        }
    }
    std::fs::create_dir_all(dir)?;
    let mut st = LabState {
        prefix: prefix.to_string(),
        underlay_netns: underlay.clone(),
        subnet: "172.18.0.0/16".into(),
        datastore: dir.join("datastore"),
        nodes: vec![],
        pods: vec![],
    };
    st.save(dir)?;
    println!("Creating the underlay bridge (172.18.0.0/16) in namespace {underlay}");
    sys::netns_add(&underlay)?;
    sys::ip(&underlay, &["link", "add", "br0", "type", "bridge"])?;
    sys::ip(&underlay, &["link", "set", "br0", "up"])?;
    // Like Docker's network gateway on kind: nodes get a default route to it. Proxy ARP on the
    // cali devices only answers the pods' ARP for 169.254.1.1 when the node has a route toward
    // that address, which a real host's default route provides. Packets sent to it stop in the
    // underlay namespace (it does not forward).
    sys::ip(&underlay, &["addr", "add", "172.18.0.1/16", "dev", "br0"])?;
    for i in 0..nodes as usize {
        let name = node_name(prefix, i);
        start_node(dir, &mut st, i, name.clone())?;
        println!(
            "Node {name}: eth0 {}, gingham-agent pid {}",
            st.nodes[i].ip, st.nodes[i].agent_pid
        );
    }
    wait(
        "every agent's control socket",
        Duration::from_secs(30),
        || Ok(st.nodes.iter().all(|n| routectl(n, &["show"]).is_ok())),
    )
    .map_err(|e| anyhow!("{e}; agent logs are in {}", dir.display()))?;
    wait(
        "the BGP full mesh to reach Established",
        Duration::from_secs(60),
        || mesh_up(&st),
    )?;
    println!(
        "BGP full mesh established ({} sessions)",
        st.nodes.len() * (st.nodes.len() - 1) / 2
    );
    let names: Vec<String> = st.nodes.iter().map(|n| n.name.clone()).collect();
    for node in &names {
        for _ in 0..pods_per_node {
            let pod = add_pod(dir, &mut st, node, None)?;
            println!(
                "Pod {} on {}: {} via {}",
                pod.name,
                node,
                pod.ip.map(|i| i.to_string()).unwrap_or_default(),
                pod.interface
            );
        }
    }
    wait(
        "every node's kernel to route every block",
        Duration::from_secs(60),
        || routes_converged(&st),
    )?;
    println!();
    show(&st);
    if !ping_across(&st)? {
        bail!("the cross-node ping failed");
    }
    println!("\nThe lab is up. Try: gingham-lab status, routectl --socket {} show routes, gingham-lab down", st.nodes[0].control_socket.display());
    Ok(())
}

fn status(st: &LabState, as_json: bool) {
    if as_json {
        let v = json!({
            "nodes": st.nodes.iter().map(|n| json!({"name": n.name, "netns": n.netns, "ip": n.ip, "control_socket": n.control_socket, "agent_running": sys::pid_alive(n.agent_pid)})).collect::<Vec<_>>(),
            "pods": st.pods.iter().map(|p| json!({"name": p.name, "namespace": p.namespace, "node": p.node, "netns": p.netns, "ip": p.ip, "interface": p.interface})).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    println!(
        "{:<24} {:<24} {:<14} {:<8} CONTROL SOCKET",
        "NODE", "NETNS", "IP", "AGENT"
    );
    for n in &st.nodes {
        let running = if sys::pid_alive(n.agent_pid) {
            "running"
        } else {
            "stopped"
        };
        println!(
            "{:<24} {:<24} {:<14} {:<8} {}",
            n.name,
            n.netns,
            n.ip,
            running,
            n.control_socket.display()
        );
    }
    println!();
    println!(
        "{:<14} {:<10} {:<24} {:<20} {:<16} INTERFACE",
        "POD", "NAMESPACE", "NODE", "NETNS", "IP"
    );
    for p in &st.pods {
        println!(
            "{:<14} {:<10} {:<24} {:<20} {:<16} {}",
            p.name,
            p.namespace,
            p.node,
            p.netns,
            p.ip.map(|i| i.to_string()).unwrap_or_default(),
            p.interface
        );
    }
}

fn down(dir: &Path) -> Result<()> {
    let Some(st) = LabState::load(dir)? else {
        println!(
            "No lab is up (no state in {}): nothing to do.",
            dir.display()
        );
        return Ok(());
    };
    for p in &st.pods {
        if sys::netns_del(&p.netns)? {
            println!("Deleted pod namespace {}", p.netns);
        }
    }
    for n in &st.nodes {
        sys::stop_pid(n.agent_pid);
        if sys::netns_del(&n.netns)? {
            println!("Stopped the agent of {} and deleted its namespace", n.name);
        }
    }
    if sys::netns_del(&st.underlay_netns)? {
        println!("Deleted the underlay namespace {}", st.underlay_netns);
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    println!("Removed {}", dir.display());
    Ok(())
}

fn main() {
    let cli = Cli::parse();
    let result = (|| -> Result<()> {
        match cli.command {
            Cmd::Up {
                nodes,
                pods_per_node,
            } => up(&cli.dir, &cli.prefix, nodes, pods_per_node),
            Cmd::Down => down(&cli.dir),
            Cmd::Status { output } => {
                let st = LabState::load(&cli.dir)?
                    .ok_or_else(|| anyhow!("no lab is up (no state in {})", cli.dir.display()))?;
                status(&st, output == "json");
                Ok(())
            }
            Cmd::Pod { what } => {
                let mut st = LabState::load(&cli.dir)?.ok_or_else(|| anyhow!("no lab is up"))?;
                match what {
                    PodCmd::Add { node, name } => {
                        let pod = add_pod(&cli.dir, &mut st, &node, name)?;
                        println!(
                            "Pod {} on {}: {} via {}",
                            pod.name,
                            pod.node,
                            pod.ip.map(|i| i.to_string()).unwrap_or_default(),
                            pod.interface
                        );
                        Ok(())
                    }
                    PodCmd::Del { name } => {
                        del_pod(&cli.dir, &mut st, &name)?;
                        println!("Deleted pod {name}");
                        Ok(())
                    }
                }
            }
            Cmd::Node {
                what: NodeCmd::Add { name },
            } => {
                let mut st = LabState::load(&cli.dir)?.ok_or_else(|| anyhow!("no lab is up"))?;
                let index = st.nodes.len();
                let name = name.unwrap_or_else(|| node_name(&st.prefix, index));
                if st.node(&name).is_some() {
                    bail!("a node named {name} already exists");
                }
                start_node(&cli.dir, &mut st, index, name.clone())?;
                let node = st.nodes[index].clone();
                println!(
                    "Node {name}: eth0 {}, gingham-agent pid {}",
                    node.ip, node.agent_pid
                );
                wait(
                    "the new node to join the mesh",
                    Duration::from_secs(60),
                    || mesh_up(&st),
                )?;
                println!("{name} joined the mesh");
                Ok(())
            }
        }
    })();
    if let Err(e) = result {
        eprintln!("gingham-lab: {e:#}");
        std::process::exit(1);
    }
}
