//! `gingham-lab`: a kind-like cluster on one Linux machine, without Docker.
//!
//! A bridge in its own network namespace is the underlay (172.18.0.0/16, like kind's Docker
//! network); each node is a namespace with `eth0` on that bridge and a `gingham-agent` inside,
//! all sharing one `file` datastore (or, with `up --datastore etcd`, a three-member etcd cluster
//! in namespaces of its own on the underlay); each pod is a namespace wired by the real `gingham-cni`
//! binary, called as a container runtime would call it. Every command that changes the lab holds
//! the lab's lock, so commands can run side by side.

mod container;
mod etcd;
mod kubelet;
mod manifest;
mod node;
mod pod;
mod show;
mod state;
mod sys;

use agent::say;
use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use state::{LabLock, LabState};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const SUBNET_PREFIX: [u8; 2] = [172, 18];
pub const AS: u32 = 64512;
pub const DEFAULT_DIR: &str = "/var/run/gingham-lab";
pub const DEFAULT_PREFIX: &str = "gingham";

#[derive(Parser)]
#[command(
    name = "gingham-lab",
    version,
    about = "A kind-like Gingham cluster in network namespaces"
)]
pub struct Cli {
    /// Where the lab keeps its state, datastore, sockets and logs.
    #[arg(long, global = true, env = "GINGHAM_LAB_DIR", default_value = DEFAULT_DIR)]
    pub dir: PathBuf,
    /// Prefix of every name the lab gives (nodes, namespaces), like kind's cluster name. Lets two
    /// labs (say, a test and yours) live side by side, each with its own --dir.
    #[arg(long, global = true, env = "GINGHAM_LAB_PREFIX", default_value = DEFAULT_PREFIX)]
    pub prefix: String,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the lab: underlay, nodes with agents, pods; show routes and a cross-node ping.
    Up {
        #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=1000))]
        nodes: u16,
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(0..=50))]
        pods_per_node: u8,
        /// An environment variable for every agent, `KEY=VALUE` (repeatable), e.g.
        /// `--agent-env GRACEFUL_RESTART_TIME=0`.
        #[arg(long = "agent-env", value_parser = parse_env)]
        agent_env: Vec<(String, String)>,
        /// Make the nodes and start nothing in them (gingham-bench starts its own daemons;
        /// `down` removes everything as usual).
        #[arg(long, hide = true)]
        no_agents: bool,
        /// Where the agents keep IPAM and the registry: one `file` directory, or `etcd`, a
        /// three-member etcd cluster in namespaces of its own on the underlay.
        #[arg(long, default_value = "file", value_parser = ["file", "etcd"])]
        datastore: String,
        /// Run each node's agent as this manifest's DaemonSet says (deploy/gingham.yaml): its
        /// init containers, then the agent container with the manifest's command and
        /// environment, its volumes under the node's directory. Only the datastore is the
        /// lab's.
        #[arg(long, value_name = "FILE")]
        from_manifest: Option<PathBuf>,
    },
    /// (internal) Run a container of a manifest lab: `ip netns exec <node> gingham-lab
    /// container-run <spec>`.
    #[command(hide = true)]
    ContainerRun { spec: PathBuf },
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
    /// Add or delete a node.
    Node {
        #[command(subcommand)]
        what: NodeCmd,
    },
    /// Stop a node's agent with SIGTERM and start it again the same way (a DaemonSet
    /// rollout): its routes stay in the kernel meanwhile.
    RestartAgent { node: String },
    /// Print a node's agent log.
    Logs {
        node: String,
        /// Keep printing what the agent writes (like `tail -f`).
        #[arg(short, long)]
        follow: bool,
    },
    /// Run a command inside a node's or a pod's namespace, like `docker exec` on kind:
    /// `gingham-lab exec gingham-worker -- ip route`.
    Exec {
        /// A node or pod name.
        target: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Stop or start a member of the lab's etcd cluster (`up --datastore etcd`).
    Etcd {
        #[command(subcommand)]
        what: EtcdCmd,
    },
    /// Remove every namespace, link, process and file the lab made.
    Down,
}

#[derive(Subcommand)]
enum EtcdCmd {
    /// Stop a member (SIGTERM): with one of three stopped the cluster goes on; with two, it has
    /// no quorum and the agents' IPAM requests fail with "try again later".
    Stop { member: String },
    /// Start a stopped member again with its data: it rejoins the cluster.
    Start { member: String },
}

#[derive(Subcommand)]
enum PodCmd {
    /// Create a pod on a node (name defaults to pod-<node index>-<n>).
    Add { node: String, name: Option<String> },
    /// Delete a pod (CNI DEL, then its namespace).
    Del {
        name: String,
        /// Delete it even when its node's agent is stopped: the address is released in the
        /// datastore directly.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Subcommand)]
enum NodeCmd {
    /// Add a node to the running lab (it joins the mesh and gets routes to everyone).
    Add { name: Option<String> },
    /// Delete a node: its pods, its agent, its namespace, and its record (every other agent
    /// drops it from the mesh; its blocks and addresses are freed).
    Del { name: String },
}

/// The other Gingham binaries sit next to this one (`cargo build` puts them together), or on PATH.
pub fn bin(name: &str) -> PathBuf {
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

pub fn wait(what: &str, timeout: Duration, mut probe: impl FnMut() -> Result<bool>) -> Result<()> {
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

fn load(dir: &Path) -> Result<LabState> {
    LabState::load(dir)?.ok_or_else(|| {
        anyhow!(
            "no lab is up (no state in {}); start one with `gingham-lab up`",
            dir.display()
        )
    })
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err("expected KEY=VALUE".into()),
    }
}

/// A store on the lab's datastore, for what the lab does without an agent.
fn open_store(st: &LabState) -> Result<std::sync::Arc<dyn ipam::Store>> {
    if st.uses_etcd() {
        etcd::open_store(st)
    } else {
        Ok(ipam::open_store(&format!(
            "file:{}",
            st.datastore.display()
        ))?)
    }
}

fn up(
    cli: &Cli,
    nodes: u16,
    pods_per_node: u8,
    agent_env: &[(String, String)],
    no_agents: bool,
    datastore: &str,
    from_manifest: Option<&Path>,
) -> Result<()> {
    let workload = from_manifest.map(manifest::load).transpose()?;
    let (dir, prefix) = (cli.dir.as_path(), cli.prefix.as_str());
    let _lock = LabLock::acquire(dir)?;
    if let Some(st) = LabState::load(dir)? {
        if !st.nodes.is_empty() {
            say!(
                "A lab is already up ({} nodes, {} pods) in {}: nothing to do. `{}` removes it.",
                st.nodes.len(),
                st.pods.len(),
                dir.display(),
                show::lab_command(cli, "down")
            );
            show::status(&st, false, dir);
            return Ok(());
        }
    }
    let underlay = format!("{prefix}-underlay");
    for name in (0..nodes as usize)
        .map(|i| node::default_name(prefix, i))
        .chain([underlay.clone()])
        .chain(etcd::netns_names(prefix))
    {
        if sys::netns_exists(&name) {
            bail!("network namespace {name} exists but no lab state was found in {}: remove it (`ip netns del {name}`) or pass --dir and --prefix", dir.display());
        }
    }
    let mut st = LabState {
        prefix: prefix.to_string(),
        underlay_netns: underlay.clone(),
        subnet: "172.18.0.0/16".into(),
        datastore: dir.join("datastore"),
        nodes: vec![],
        pods: vec![],
        next_node: 0,
        agent_env: agent_env.to_vec(),
        etcd: vec![],
        manifest: workload,
    };
    st.save(dir)?;
    say!("Creating the underlay bridge (172.18.0.0/16) in namespace {underlay}");
    sys::netns_add(&underlay)?;
    sys::ip(
        &underlay,
        &[
            "link",
            "add",
            "br0",
            "address",
            &node::mac(node::GATEWAY),
            "type",
            "bridge",
        ],
    )?;
    sys::ip(&underlay, &["link", "set", "br0", "up"])?;
    // Like Docker's network gateway on kind: nodes get a default route to it. Proxy ARP on the
    // cali devices only answers the pods' ARP for 169.254.1.1 when the node has a route toward
    // that address, which a real host's default route provides. Packets sent to it stop in the
    // underlay namespace (it does not forward).
    sys::ip(&underlay, &["addr", "add", "172.18.0.1/16", "dev", "br0"])?;
    if datastore == "etcd" {
        say!(
            "Starting a {}-member etcd cluster, each member in a namespace of its own on the underlay",
            etcd::MEMBERS
        );
        etcd::create(dir, &mut st)?;
        for i in 0..st.etcd.len() {
            etcd::start(&mut st, i)?;
        }
        st.save(dir)?;
        etcd::wait_healthy(&st, Duration::from_secs(60))?;
        for m in &st.etcd {
            say!("etcd member {}: {}:2379 ({})", m.name, m.ip, etcd::state(m));
        }
    }
    if let Some(w) = &st.manifest {
        say!(
            "Running DaemonSet {}/{} of {} on every node: {}, then {} with the manifest's command and environment",
            w.namespace,
            w.daemonset,
            w.source.display(),
            if w.init.is_empty() {
                "no init container".to_string()
            } else {
                format!(
                    "init container{} {}",
                    if w.init.len() > 1 { "s" } else { "" },
                    w.init.iter().map(|c| c.name.as_str()).collect::<Vec<_>>().join(", ")
                )
            },
            w.agent.name
        );
        say!(
            "The one difference: the datastore is the lab's {} (the manifest's DATASTORE is for a cluster's API server); each node's hostPath volumes are under {}/<node>/root",
            if st.uses_etcd() {
                "etcd cluster".to_string()
            } else {
                format!("file store, {}", st.datastore.display())
            },
            dir.display()
        );
    }
    for i in 0..nodes as usize {
        let name = node::default_name(prefix, i);
        node::create(dir, &mut st, &name, None, false)?;
    }
    // Every node knows every other node's MAC before any agent sends a packet.
    let all: Vec<&state::NodeState> = st.nodes.iter().collect();
    for n in &st.nodes {
        node::write_neighbours(n, &all)?;
    }
    etcd::write_neighbours(&st)?;
    say!(
        "{} nodes on the underlay, each with permanent neighbour entries for the others (no ARP)",
        st.nodes.len()
    );
    if no_agents {
        st.save(dir)?;
        return Ok(());
    }
    for i in 0..st.nodes.len() {
        let n = &st.nodes[i];
        let pid = node::start_agent(&n.netns, &n.log, &n.agent)?;
        st.nodes[i].agent_pid = pid;
        let n = &st.nodes[i];
        // One line per node is enough to follow; a big lab says less.
        if st.nodes.len() <= 20 {
            say!("Node {}: eth0 {}, gingham-agent pid {pid}", n.name, n.ip);
        }
    }
    st.save(dir)?;
    wait(
        "every agent's control socket",
        Duration::from_secs(30),
        || {
            Ok(st
                .nodes
                .iter()
                .all(|n| show::routectl(n, &["show"]).is_ok()))
        },
    )
    .map_err(|e| anyhow!("{e}; agent logs are in {}/<node>/agent.log", dir.display()))?;
    wait(
        "the BGP full mesh to reach Established",
        Duration::from_secs(60),
        || show::mesh_up(&st),
    )?;
    say!(
        "BGP full mesh established ({} sessions)",
        st.nodes.len() * (st.nodes.len() - 1) / 2
    );
    let names: Vec<String> = st.nodes.iter().map(|n| n.name.clone()).collect();
    for node in &names {
        for _ in 0..pods_per_node {
            let pod = pod::add(dir, &mut st, node, None)?;
            say!(
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
        || show::routes_converged(&st),
    )?;
    say!();
    show::routes(&st);
    if !show::ping_across(&st)? {
        bail!("the cross-node ping failed");
    }
    say!();
    say!("{}", show::hints(cli, &st));
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let lock = LabLock::acquire(dir)?;
    let Some(st) = LabState::load(dir)? else {
        drop(lock);
        let _ = std::fs::remove_dir_all(dir);
        say!(
            "No lab is up (no state in {}): nothing to do.",
            dir.display()
        );
        return Ok(());
    };
    // Everything at once: every agent is told to stop before any is waited for, and the
    // namespaces go in parallel, so 250 nodes come down in seconds, not minutes.
    let pids: Vec<i32> = st.nodes.iter().map(|n| n.agent_pid).collect();
    sys::stop_all(&pids);
    // The members after the agents, so no agent logs a lost datastore on its way out.
    let members: Vec<i32> = st.etcd.iter().map(|m| m.pid).collect();
    sys::stop_all(&members);
    let names: Vec<&str> = st
        .pods
        .iter()
        .map(|p| p.netns.as_str())
        .chain(st.nodes.iter().map(|n| n.netns.as_str()))
        .chain(st.etcd.iter().map(|m| m.netns.as_str()))
        .collect();
    let deleted = sys::netns_del_all(&names)?;
    say!(
        "Stopped {} agents{} and deleted {deleted} namespaces ({} pods, {} nodes{})",
        pids.len(),
        if st.uses_etcd() {
            " and the etcd members"
        } else {
            ""
        },
        st.pods.len(),
        st.nodes.len(),
        if st.uses_etcd() {
            ", the etcd members"
        } else {
            ""
        }
    );
    if sys::netns_del(&st.underlay_netns)? {
        say!("Deleted the underlay namespace {}", st.underlay_netns);
    }
    drop(lock);
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    say!("Removed {}", dir.display());
    Ok(())
}

/// Node and pod names become namespace and directory names: like Kubernetes names they are
/// RFC 1123 labels (lower-case letters, digits and '-', at most 63), which also keeps them
/// from reaching outside the lab's directory (`../x`).
fn check_name(what: &str, name: &str) -> Result<()> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        bail!("invalid {what} name '{name}': use lower-case letters, digits and '-' (at most 63, starting and ending with a letter or digit), as Kubernetes names");
    }
    Ok(())
}

fn node_add(cli: &Cli, name: Option<String>) -> Result<()> {
    let dir = cli.dir.as_path();
    let node = {
        let _lock = LabLock::acquire(dir)?;
        let mut st = load(dir)?;
        let name = name.unwrap_or_else(|| node::default_name(&st.prefix, st.next_node));
        check_name("node", &name)?;
        if st.node(&name).is_some() {
            bail!("a node named {name} already exists");
        }
        node::create(dir, &mut st, &name, None, false)?;
        let new = st.node(&name).cloned().context("node just created")?;
        let all: Vec<&state::NodeState> = st.nodes.iter().collect();
        node::write_neighbours(&new, &all)?;
        for other in st.nodes.iter().filter(|n| n.name != name) {
            node::write_neighbours(other, &[&new])?;
        }
        etcd::write_neighbours(&st)?;
        let pid = node::start_agent(&new.netns, &new.log, &new.agent)?;
        if let Some(n) = st.node_mut(&name) {
            n.agent_pid = pid;
        }
        st.save(dir)?;
        st.node(&name).cloned().context("node just created")?
    };
    say!(
        "Node {}: eth0 {}, gingham-agent pid {} (namespace {})",
        node.name,
        node.ip,
        node.agent_pid,
        node.netns
    );
    let st = load(dir)?;
    wait(
        "the new node to join the mesh",
        Duration::from_secs(60),
        || show::mesh_up(&st),
    )?;
    say!("{} joined the mesh", node.name);
    Ok(())
}

fn node_del(cli: &Cli, name: &str) -> Result<()> {
    let dir = cli.dir.as_path();
    let _lock = LabLock::acquire(dir)?;
    let mut st = load(dir)?;
    let node = st
        .node(name)
        .cloned()
        .with_context(|| format!("no node named {name} in the lab"))?;
    let pods: Vec<String> = st
        .pods
        .iter()
        .filter(|p| p.node == name)
        .map(|p| p.name.clone())
        .collect();
    for p in pods {
        pod::del(dir, &mut st, &p, true)?;
        say!("Deleted pod {p}");
    }
    sys::stop_pid(node.agent_pid);
    sys::netns_del(&node.netns)?;
    let _ = sys::ip(&st.underlay_netns, &["link", "del", &node.bridge_port]);
    for other in st.nodes.iter().filter(|n| n.name != name) {
        let _ = sys::ip(
            other.netns.as_str(),
            &["neigh", "del", &node.ip.to_string(), "dev", "eth0"],
        );
    }
    // What `routectl node remove` does: the record goes (every agent drops the peer and its
    // routes) and its blocks and addresses are freed.
    let store = open_store(&st)?;
    let registered = ipam::NodeRegistry::new(store.clone()).remove(name)?;
    let freed = ipam::Ipam::open(store, ipam::IpamSettings::default())?.release_node(name)?;
    st.nodes.retain(|n| n.name != name);
    st.save(dir)?;
    let _ = std::fs::remove_dir_all(dir.join(name));
    say!(
        "Deleted node {name}{}: {} blocks and {} addresses freed",
        if registered {
            ""
        } else {
            " (it was not registered)"
        },
        freed.blocks.len(),
        freed.addresses.len()
    );
    Ok(())
}

fn logs(cli: &Cli, name: &str, follow: bool) -> Result<()> {
    let st = load(&cli.dir)?;
    let node = st
        .node(name)
        .with_context(|| format!("no node named {name} in the lab"))?;
    let mut f = std::fs::File::open(&node.log)
        .with_context(|| format!("opening {}", node.log.display()))?;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        std::io::Read::read_to_end(&mut f, &mut buf)?;
        if !buf.is_empty() {
            agent::output::print(&String::from_utf8_lossy(&buf));
        }
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn exec(cli: &Cli, target: &str, command: &[String]) -> Result<i32> {
    let st = load(&cli.dir)?;
    let netns = st
        .node(target)
        .map(|n| n.netns.clone())
        .or_else(|| {
            st.pods
                .iter()
                .find(|p| p.name == target)
                .map(|p| p.netns.clone())
        })
        .with_context(|| format!("no node or pod named {target} in the lab"))?;
    let status = Command::new("ip")
        .args(["netns", "exec", &netns])
        .args(command)
        .status()
        .with_context(|| format!("running {command:?} in {netns}"))?;
    Ok(status.code().unwrap_or(1))
}

fn run(cli: &Cli) -> Result<i32> {
    let dir = cli.dir.as_path();
    match &cli.command {
        Cmd::Up {
            nodes,
            pods_per_node,
            agent_env,
            no_agents,
            datastore,
            from_manifest,
        } => up(
            cli,
            *nodes,
            *pods_per_node,
            agent_env,
            *no_agents,
            datastore,
            from_manifest.as_deref(),
        )?,
        Cmd::ContainerRun { spec } => match container::run(spec)? {},
        Cmd::Etcd { what } => {
            let _lock = LabLock::acquire(dir)?;
            let mut st = load(dir)?;
            match what {
                EtcdCmd::Stop { member } => {
                    let i = etcd::index(&st, member)?;
                    etcd::stop(&mut st, i)?;
                    st.save(dir)?;
                    let running = st.etcd.iter().filter(|m| sys::pid_alive(m.pid)).count();
                    say!(
                        "Stopped etcd member {member}: {running} of {} running{}",
                        st.etcd.len(),
                        if running * 2 > st.etcd.len() {
                            " (a majority: the cluster goes on)"
                        } else {
                            " (no quorum: IPAM requests fail with \"try again later\"; forwarding goes on)"
                        }
                    );
                }
                EtcdCmd::Start { member } => {
                    let i = etcd::index(&st, member)?;
                    let pid = etcd::start(&mut st, i)?;
                    st.save(dir)?;
                    say!("Started etcd member {member} (pid {pid}); it rejoins with its data");
                }
            }
        }
        Cmd::Down => down(dir)?,
        Cmd::Status { output } => show::status(&load(dir)?, output == "json", dir),
        Cmd::Pod {
            what: PodCmd::Add { node, name },
        } => {
            let _lock = LabLock::acquire(dir)?;
            let mut st = load(dir)?;
            if let Some(n) = name {
                check_name("pod", n)?;
            }
            let pod = pod::add(dir, &mut st, node, name.clone())?;
            say!(
                "Pod {} on {}: {} via {}",
                pod.name,
                pod.node,
                pod.ip.map(|i| i.to_string()).unwrap_or_default(),
                pod.interface
            );
        }
        Cmd::Pod {
            what: PodCmd::Del { name, force },
        } => {
            let _lock = LabLock::acquire(dir)?;
            let mut st = load(dir)?;
            let forced = pod::del(dir, &mut st, name, *force)?;
            match forced.agent_error {
                Some(e) => say!(
                    "Deleted pod {name} without its agent ({e}); its address was {} in the datastore",
                    if forced.released_address {
                        "released"
                    } else {
                        "already free"
                    }
                ),
                None => say!("Deleted pod {name}"),
            }
        }
        Cmd::Node {
            what: NodeCmd::Add { name },
        } => node_add(cli, name.clone())?,
        Cmd::Node {
            what: NodeCmd::Del { name },
        } => node_del(cli, name)?,
        Cmd::RestartAgent { node } => {
            let _lock = LabLock::acquire(dir)?;
            let mut st = load(dir)?;
            let pid = node::restart_agent(dir, &mut st, node)?;
            let n = st.node(node).cloned().context("restarted node")?;
            wait(
                "the agent's control socket",
                Duration::from_secs(30),
                || Ok(show::routectl(&n, &["show"]).is_ok()),
            )?;
            say!("Restarted the agent of {node} (pid {pid}); its routes stayed in the kernel");
        }
        Cmd::Logs { node, follow } => logs(cli, node, *follow)?,
        Cmd::Exec { target, command } => return exec(cli, target, command),
    }
    Ok(0)
}

fn main() {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("gingham-lab: {e:#}");
            std::process::exit(1);
        }
    }
}
