//! `gingham-bench mesh`: a full iBGP mesh of N nodes on one underlay, built by `gingham-lab`
//! (with permanent neighbour entries, so it fits a stock kernel's ARP limits), once with
//! `gingham-agent` on every node and once with BIRD 2 configured like Calico's bird.cfg. Each
//! node owns one block from the start (Gingham: claimed in the datastore before the agents
//! start; BIRD: a static blackhole). The clock runs from the first daemon's start until every
//! node's kernel has N `proto bird` routes: its own blackhole and a route to each other block.
//! Then: RSS per daemon, CPU spent converging, and CPU over an idle window after it.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use super::proc_stats::{self, RouteCounter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum MeshTarget {
    Gingham,
    Bird,
}

impl MeshTarget {
    pub fn name(self) -> &'static str {
        match self {
            MeshTarget::Gingham => "gingham",
            MeshTarget::Bird => "bird",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MeshResult {
    pub target: MeshTarget,
    pub nodes: usize,
    /// From the first start until the last node's kernel was complete.
    pub converge_s: Option<f64>,
    /// The median node's time to complete.
    pub node_p50_s: Option<f64>,
    pub rss_mean_bytes: u64,
    pub rss_max_bytes: u64,
    /// Mean `RssAnon`: what each daemon holds on its own (RSS less the shared binary pages).
    pub anon_mean_bytes: u64,
    /// CPU seconds of all daemons together until convergence.
    pub cpu_converge_s: f64,
    /// CPU of all daemons together over the idle window, in cores.
    pub idle_cores: f64,
    pub idle_window_s: f64,
    /// `gingham-lab down` of the whole lab.
    pub down_s: f64,
}

/// The lab binary sits next to this one.
fn lab_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe.with_file_name("gingham-lab");
    if !p.exists() {
        bail!(
            "{} not found: build it with `cargo build -p interop-tests --bins`",
            p.display()
        );
    }
    Ok(p)
}

pub(crate) fn lab(dir: &Path, prefix: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(lab_bin()?)
        .arg("--dir")
        .arg(dir)
        .args(["--prefix", prefix])
        .args(args)
        .output()
        .context("running gingham-lab")?;
    if !out.status.success() {
        bail!(
            "gingham-lab {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(crate) struct LabNode {
    pub name: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub dir: PathBuf,
    pub control_socket: PathBuf,
}

/// The lab's nodes from its state file.
pub(crate) fn lab_nodes(dir: &Path) -> Result<(Vec<LabNode>, PathBuf)> {
    let st: Value = serde_json::from_slice(&std::fs::read(dir.join("lab.json"))?)?;
    let datastore = PathBuf::from(st["datastore"].as_str().context("datastore")?);
    let mut nodes = Vec::new();
    for n in st["nodes"].as_array().context("nodes")? {
        let strings = |v: &Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let env = n["agent"]["env"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|kv| {
                        Some((kv[0].as_str()?.to_string(), kv[1].as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let name = n["name"].as_str().context("name")?.to_string();
        nodes.push(LabNode {
            dir: dir.join(&name),
            name,
            netns: n["netns"].as_str().context("netns")?.to_string(),
            ip: n["ip"].as_str().context("ip")?.parse()?,
            args: strings(&n["agent"]["args"]),
            env,
            control_socket: PathBuf::from(n["control_socket"].as_str().unwrap_or_default()),
        });
    }
    Ok((nodes, datastore))
}

/// The block of node `i`: 192.168.0.0/16 cut into /26s in order.
pub(crate) fn block(i: usize) -> String {
    let n = (i as u32) << 6;
    format!("192.168.{}.{}/26", n >> 8 & 0xff, n & 0xff)
}

/// BIRD as Calico's bird.cfg runs a node-to-node mesh: a static blackhole for the node's
/// block, a kernel protocol that learns, persists and scans every 2 s, and one iBGP session
/// per other node with Calico's timers; the higher address waits (Calico's rule).
pub(crate) fn bird_config(me: &LabNode, i: usize, all: &[LabNode], blocks: &[String]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "router id {};", me.ip);
    let _ = writeln!(s, "log stderr {{ warning, error, fatal }};");
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    let _ = writeln!(
        s,
        "protocol kernel {{\n  learn;\n  persist;\n  scan time 2;\n  graceful restart;\n  merge paths on;\n  ipv4 {{ import all; export all; }};\n}}"
    );
    let _ = writeln!(s, "protocol static {{\n  ipv4;");
    for b in blocks {
        let _ = writeln!(s, "  route {b} blackhole;");
    }
    let _ = writeln!(s, "}}");
    let _ = writeln!(
        s,
        "template bgp mesh {{\n  local {} as 64512;\n  direct;\n  graceful restart;\n  connect delay time 2;\n  connect retry time 5;\n  error wait time 5,30;\n  ipv4 {{ import all; export where source = RTS_STATIC; }};\n}}",
        me.ip
    );
    for (j, other) in all.iter().enumerate() {
        if j == i {
            continue;
        }
        let passive = if me.ip > other.ip { " passive on;" } else { "" };
        let _ = writeln!(
            s,
            "protocol bgp n{j} from mesh {{ neighbor {} as 64512;{passive} }}",
            other.ip
        );
    }
    s
}

pub(crate) fn start_daemon(
    ns: &str,
    argv: &[String],
    env: &[(String, String)],
    log: &Path,
) -> Result<Child> {
    let logf = std::fs::File::create(log)?;
    Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .with_context(|| format!("starting {} in {ns}", argv[0]))
}

/// How many of the functions `agent/hot-symbols.txt` lists the agent binary has. A release
/// build lays those out together (agent/build.rs); names it no longer has (a new toolchain,
/// new dependencies) leave the agent's code spread out again, and its resident memory grows.
fn hot_symbols_found(agent: &Path) -> Result<(usize, usize)> {
    let list = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../agent/hot-symbols.txt"
    ))
    .context("reading agent/hot-symbols.txt")?;
    let out = Command::new("nm")
        .arg("--defined-only")
        .arg(agent)
        .output()
        .context("running nm (binutils)")?;
    if !out.status.success() {
        anyhow::bail!(
            "nm {}: {}",
            agent.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let symbols = String::from_utf8_lossy(&out.stdout);
    let names: std::collections::HashSet<&str> = symbols
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    let listed: Vec<&str> = list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let found = listed.iter().filter(|n| names.contains(**n)).count();
    Ok((found, listed.len()))
}

fn cpu_sum(pids: &[i32]) -> f64 {
    pids.iter()
        .map(|p| proc_stats::cpu_seconds(*p).unwrap_or(0.0))
        .sum()
}

pub fn run(
    targets: &[MeshTarget],
    nodes: usize,
    dir: &Path,
    timeout: Duration,
    idle: Duration,
    keep: bool,
) -> Result<Vec<MeshResult>> {
    std::fs::create_dir_all(dir)?;
    let mut results = Vec::new();
    for (t, target) in targets.iter().enumerate() {
        let lab_dir = dir.join(format!("mesh-{}", target.name()));
        let prefix = format!("gbm{}{t}", std::process::id() % 10000);
        eprintln!("mesh {}: {nodes} nodes", target.name());
        lab(
            &lab_dir,
            &prefix,
            &[
                "up",
                "--nodes",
                &nodes.to_string(),
                "--pods-per-node",
                "0",
                "--no-agents",
            ],
        )?;
        let result = run_one(*target, &lab_dir, timeout, idle);
        if keep {
            eprintln!(
                "kept the lab: `gingham-lab --dir {} --prefix {prefix} down` removes it",
                lab_dir.display()
            );
            results.push(result?);
            continue;
        }
        let down = Instant::now();
        let downed = lab(&lab_dir, &prefix, &["down"]);
        let down_s = down.elapsed().as_secs_f64();
        let mut r = result?;
        downed?;
        r.down_s = down_s;
        eprintln!("{}", row(&r));
        results.push(r);
    }
    Ok(results)
}

fn run_one(
    target: MeshTarget,
    lab_dir: &Path,
    timeout: Duration,
    idle: Duration,
) -> Result<MeshResult> {
    let (nodes, datastore) = lab_nodes(lab_dir)?;
    let n = nodes.len();
    // One route counter per node, each bound inside that node's namespace.
    let mut counters = Vec::with_capacity(n);
    for node in &nodes {
        let c = agent::netns::spawn_in_netns(&node.netns, RouteCounter::small)?
            .join()
            .map_err(|_| anyhow::anyhow!("counter thread panicked"))??;
        counters.push(c);
    }
    if target == MeshTarget::Gingham {
        // Every node owns a block before its agent starts, as BIRD's nodes own theirs.
        let store = ipam::open_store(&format!("file:{}", datastore.display()))?;
        let ipam = ipam::Ipam::open(store, ipam::IpamSettings::default())?;
        for node in &nodes {
            ipam.assign(
                &format!("bench-{}", node.name),
                &ipam::AllocationAttrs::node(&node.name),
            )?;
        }
    }
    let agent_bin = std::env::current_exe()?.with_file_name("gingham-agent");
    if target == MeshTarget::Gingham {
        match hot_symbols_found(&agent_bin) {
            Ok((found, listed)) => eprintln!(
                "mesh gingham: {found} of the {listed} functions in agent/hot-symbols.txt are in {}{}",
                agent_bin.display(),
                if found * 10 < listed * 9 {
                    " (a debug build, or the list is stale: scripts/hot-symbols writes it again)"
                } else {
                    ""
                }
            ),
            Err(e) => eprintln!("mesh gingham: cannot check the agent's code layout: {e:#}"),
        }
    }
    let start = Instant::now();
    let mut children = Vec::with_capacity(n);
    for (i, node) in nodes.iter().enumerate() {
        std::fs::create_dir_all(&node.dir)?;
        let child = match target {
            MeshTarget::Gingham => {
                let mut argv = vec![agent_bin.to_string_lossy().into_owned()];
                argv.extend(node.args.iter().cloned());
                let mut env = node.env.clone();
                env.push(("LOG_LEVEL".into(), "warn".into()));
                start_daemon(&node.netns, &argv, &env, &node.dir.join("agent.log"))?
            }
            MeshTarget::Bird => {
                let conf = node.dir.join("bird.conf");
                std::fs::write(&conf, bird_config(node, i, &nodes, &[block(i)]))?;
                let argv: Vec<String> = [
                    "bird",
                    "-f",
                    "-c",
                    &conf.to_string_lossy(),
                    "-s",
                    &node.dir.join("bird.ctl").to_string_lossy(),
                    "-P",
                    &node.dir.join("bird.pid").to_string_lossy(),
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                start_daemon(&node.netns, &argv, &[], &node.dir.join("bird.log"))?
            }
        };
        children.push(child);
    }
    let pids: Vec<i32> = children.iter().map(|c| c.id() as i32).collect();
    let mut done: Vec<Option<f64>> = vec![None; n];
    while start.elapsed() < timeout && done.iter().any(Option::is_none) {
        for (i, c) in counters.iter_mut().enumerate() {
            c.drain();
            if done[i].is_none() && c.count >= n as i64 {
                done[i] = Some(start.elapsed().as_secs_f64());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let converge = done
        .iter()
        .copied()
        .collect::<Option<Vec<f64>>>()
        .map(|mut v| {
            v.sort_by(f64::total_cmp);
            (v[v.len() - 1], v[v.len() / 2])
        });
    let cpu_converge = cpu_sum(&pids);
    let rss: Vec<u64> = pids
        .iter()
        .map(|p| proc_stats::memory(*p).map(|m| m.1).unwrap_or(0))
        .collect();
    let anon: Vec<u64> = pids
        .iter()
        .map(|p| proc_stats::rss_anon(*p).unwrap_or(0))
        .collect();
    let idle_start = cpu_sum(&pids);
    let t = Instant::now();
    std::thread::sleep(idle);
    let idle_cores = (cpu_sum(&pids) - idle_start) / t.elapsed().as_secs_f64();
    if converge.is_none() {
        let missing: Vec<&str> = nodes
            .iter()
            .zip(&done)
            .filter(|(_, d)| d.is_none())
            .map(|(node, _)| node.name.as_str())
            .take(5)
            .collect();
        eprintln!(
            "mesh {}: not converged within {timeout:?} (for example {missing:?}; logs in {})",
            target.name(),
            lab_dir.display()
        );
    }
    // `down` kills what runs in the namespaces; reap our children afterwards.
    std::thread::spawn(move || {
        for mut c in children {
            let _ = c.wait();
        }
    });
    Ok(MeshResult {
        target,
        nodes: n,
        converge_s: converge.map(|c| c.0),
        node_p50_s: converge.map(|c| c.1),
        rss_mean_bytes: rss.iter().sum::<u64>() / n.max(1) as u64,
        rss_max_bytes: rss.iter().copied().max().unwrap_or(0),
        anon_mean_bytes: anon.iter().sum::<u64>() / n.max(1) as u64,
        cpu_converge_s: cpu_converge,
        idle_cores,
        idle_window_s: idle.as_secs_f64(),
        down_s: 0.0,
    })
}

pub fn row(r: &MeshResult) -> String {
    let s = |v: Option<f64>| v.map_or("not converged".to_string(), |v| format!("{v:.2} s"));
    format!(
        "| {} | {} | {} | {} | {:.1} / {:.1} MB | {:.1} MB | {:.2} s | {:.3} | {:.2} s |",
        r.target.name(),
        r.nodes,
        s(r.converge_s),
        s(r.node_p50_s),
        r.rss_mean_bytes as f64 / 1e6,
        r.rss_max_bytes as f64 / 1e6,
        r.anon_mean_bytes as f64 / 1e6,
        r.cpu_converge_s,
        r.idle_cores,
        r.down_s
    )
}

pub fn markdown(results: &[MeshResult]) -> String {
    let mut s = String::from(
        "| target | nodes | all converged | median node | RSS per daemon (mean / max) | private (RssAnon, mean) | CPU to converge (all) | idle CPU (cores, all) | lab down |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&row(r));
        s.push('\n');
    }
    s
}
