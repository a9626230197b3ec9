//! `gingham-bench table`: one feeder sends N prefixes over eBGP to each target in turn, and the
//! clock runs from Established until all N are in the target's RIB and in its kernel.
//!
//! ```text
//!  gb-feed-… namespace                    gb-tgt-… namespace
//!  feeder (bgp crate codec) 10.99.0.1 ── veth ── 10.99.0.2  target: gingham-agent | bird | gobgpd | raw
//!                                                           kernel main table (fib_triestat)
//! ```
//!
//! Targets: `gingham` (the agent, explicit eBGP peer, no mesh), `bird` (BIRD 2 with a kernel
//! protocol exporting to the kernel, as Calico configures it), `gobgp` (RIB only: GoBGP does
//! not program the kernel without zebra), `raw` (a netlink writer with no BGP: the limit line).

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::feed::{self, Feed};
use super::proc_stats;
use crate::agent::{Agent, AgentConfig, AgentPeer};
use crate::netns::{run_host, Netns};
use crate::process::Daemon;
use crate::veth_pair;

pub const FEEDER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
pub const TARGET_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
pub const FEEDER_AS: u32 = 65001;
pub const TARGET_AS: u32 = 64512;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Gingham,
    Bird,
    Gobgp,
    Raw,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Gingham => "gingham",
            TargetKind::Bird => "bird",
            TargetKind::Gobgp => "gobgp",
            TargetKind::Raw => "raw",
        }
    }
}

/// One target's figures. Times are seconds from Established (from the start for `raw`).
#[derive(Debug, Clone, Serialize)]
pub struct TableResult {
    pub target: TargetKind,
    pub prefixes: usize,
    pub to_rib_s: Option<f64>,
    pub to_kernel_s: Option<f64>,
    pub peak_rss_bytes: u64,
    pub rss_bytes: u64,
    pub bytes_per_route: f64,
    pub cpu_s: f64,
    /// The feeder finished writing (the target read everything) at this time.
    pub fed_s: Option<f64>,
}

/// A started target: its process and how to count its RIB.
struct Running {
    pid: i32,
    rib: Box<dyn Fn() -> Result<u64> + Send>,
    _keep: Box<dyn Send>,
}

pub fn run(
    kinds: &[TargetKind],
    prefixes: usize,
    dir: &Path,
    timeout: Duration,
) -> Result<Vec<TableResult>> {
    eprintln!("encoding {prefixes} prefixes ...");
    let feed = feed::build(prefixes, FEEDER_AS, FEEDER_IP)?;
    eprintln!(
        "feed: {} UPDATE messages, {:.1} MB",
        feed.messages.len(),
        feed.bytes as f64 / 1e6
    );
    let mut out = Vec::new();
    for &kind in kinds {
        eprintln!("--- {}: {prefixes} prefixes", kind.name());
        let r = one(kind, &feed, &dir.join(kind.name()), timeout)
            .with_context(|| format!("table benchmark against {}", kind.name()))?;
        eprintln!("{}", row(&r));
        out.push(r);
    }
    Ok(out)
}

fn one(kind: TargetKind, feed: &Feed, dir: &Path, timeout: Duration) -> Result<TableResult> {
    std::fs::create_dir_all(dir)?;
    let feeder_ns = Netns::new("gb-feed")?;
    let target_ns = Netns::new("gb-tgt")?;
    veth_pair(
        &feeder_ns,
        "f0",
        Some(format!("{FEEDER_IP}/30").parse()?),
        &target_ns,
        "t0",
        Some(format!("{TARGET_IP}/30").parse()?),
    )?;
    let base = count_in(&target_ns, proc_stats::main_table_prefixes)?;
    let n = feed.prefixes as u64;

    if kind == TargetKind::Raw {
        return raw(&target_ns, dir, feed.prefixes, base, timeout);
    }
    let running = start(kind, &target_ns, dir)?;
    let pid = running.pid;

    // Poll the RIB and the kernel from a thread inside the target namespace.
    let rib = running.rib;
    let (ready_tx, ready_rx) = mpsc::channel::<()>();
    let (est_tx, est_rx) = mpsc::channel::<Instant>();
    let poller = target_ns.spawn_thread(move || -> Result<(Option<f64>, Option<f64>)> {
        let (mut to_rib, mut to_kernel) = (None, None);
        let kernel_needed = kind != TargetKind::Gobgp;
        // Listening before the feeder connects, so no notification is missed.
        let mut counter = proc_stats::RouteCounter::new()?;
        let _ = ready_tx.send(());
        let start = est_rx
            .recv_timeout(Duration::from_secs(70))
            .map_err(|_| anyhow::anyhow!("the feeder never reached Established"))?;
        let mut last_rib_poll = Instant::now() - Duration::from_secs(1);
        while start.elapsed() < timeout {
            // Blocks up to 20 ms reading route notifications: the loop's tick.
            counter.poll();
            if to_rib.is_none() && last_rib_poll.elapsed() >= Duration::from_millis(20) {
                last_rib_poll = Instant::now();
                if rib().unwrap_or(0) >= n {
                    to_rib = Some(start.elapsed().as_secs_f64());
                }
            }
            if kernel_needed && to_kernel.is_none() {
                let done = if counter.overflowed {
                    proc_stats::main_table_prefixes().unwrap_or(0) >= base + n
                } else {
                    counter.count >= n as i64
                };
                if done {
                    to_kernel = Some(start.elapsed().as_secs_f64());
                }
            }
            if to_rib.is_some() && (to_kernel.is_some() || !kernel_needed) {
                break;
            }
        }
        // Trust, but verify: the table really holds them all.
        if to_kernel.is_some() && proc_stats::main_table_prefixes()? < base + n {
            bail!("route notifications counted {n} routes but the table holds fewer");
        }
        Ok((to_rib, to_kernel))
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the route counter did not start")?;
    // The feeder runs on its own thread inside its namespace; it reports when it is
    // Established and when the last byte was written.
    let (tx, rx) = mpsc::channel::<Result<(Instant, Instant)>>();
    let messages = Feed {
        prefixes: feed.prefixes,
        messages: feed.messages.clone(),
        bytes: feed.bytes,
    };
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let feeder = feeder_ns.spawn_thread(move || {
        let r = (|| -> Result<(Instant, Instant)> {
            let mut s = feed::Session::establish(
                FEEDER_IP,
                SocketAddr::new(IpAddr::V4(TARGET_IP), 179),
                FEEDER_AS,
                FEEDER_IP,
                Duration::from_secs(60),
            )?;
            let est = Instant::now();
            let _ = est_tx.send(est);
            let sent = s.send(&messages)?;
            let _ = tx.send(Ok((est, sent)));
            // Keep the session up until the measurement is over.
            let _ = done_rx.recv();
            Ok((est, sent))
        })();
        if let Err(e) = &r {
            let _ = tx.send(Err(anyhow::anyhow!("{e:#}")));
        }
    })?;
    let (to_rib, to_kernel) = poller
        .join()
        .map_err(|_| anyhow::anyhow!("poller panicked"))??;
    let fed = match rx.recv_timeout(Duration::from_secs(5)) {
        Ok(Ok((est, sent))) => Some(sent.duration_since(est).as_secs_f64()),
        Ok(Err(e)) => bail!("feeder: {e:#}"),
        Err(_) => None,
    };
    let (peak, rss) = proc_stats::memory(pid)?;
    let cpu = proc_stats::cpu_seconds(pid)?;
    let _ = done_tx.send(());
    let _ = feeder.join();
    drop(running._keep);
    if to_rib.is_none() {
        bail!("not all {n} prefixes reached the RIB within {timeout:?}");
    }
    if kind != TargetKind::Gobgp && to_kernel.is_none() {
        bail!("not all {n} prefixes reached the kernel within {timeout:?}");
    }
    Ok(TableResult {
        target: kind,
        prefixes: feed.prefixes,
        to_rib_s: to_rib,
        to_kernel_s: to_kernel,
        peak_rss_bytes: peak,
        rss_bytes: rss,
        bytes_per_route: peak as f64 / n as f64,
        cpu_s: cpu,
        fed_s: fed,
    })
}

fn count_in(ns: &Netns, f: fn() -> Result<u64>) -> Result<u64> {
    ns.spawn_thread(f)?
        .join()
        .map_err(|_| anyhow::anyhow!("count thread panicked"))?
}

fn start(kind: TargetKind, ns: &Netns, dir: &Path) -> Result<Running> {
    match kind {
        TargetKind::Gingham => {
            let mut cfg = AgentConfig::new("bench-target", TARGET_IP, TARGET_AS)
                .peer(AgentPeer::new(FEEDER_IP, FEEDER_AS));
            cfg.env = vec![("RUST_LOG".into(), "warn".into())];
            let agent = Agent::start(ns, dir, cfg)?;
            let sock = agent.socket().to_path_buf();
            Ok(Running {
                pid: agent.pid(),
                rib: Box::new(move || {
                    let peers: Vec<agent::control::api::PeerInfo> = agent::control::call(
                        &sock,
                        agent::control::api::Command::Peers,
                        Duration::from_secs(5),
                    )?;
                    Ok(peers.iter().map(|p| p.prefixes_accepted).sum())
                }),
                _keep: Box::new(agent),
            })
        }
        TargetKind::Bird => {
            let conf = dir.join("bird.conf");
            let sock = dir.join("bird.ctl");
            std::fs::write(&conf, bird_config())?;
            let daemon = ns.spawn(
                dir,
                "bird",
                &[
                    "bird",
                    "-f",
                    "-c",
                    &conf.to_string_lossy(),
                    "-s",
                    &sock.to_string_lossy(),
                    "-P",
                    &dir.join("bird.pid").to_string_lossy(),
                ],
            )?;
            let s = sock.clone();
            daemon.wait_ready(Duration::from_secs(10), "bird control socket", || {
                Ok(birdc(&s, &["show", "status"]).is_ok())
            })?;
            Ok(Running {
                pid: daemon.pid(),
                rib: Box::new(move || bird_imported(&sock)),
                _keep: Box::new(daemon),
            })
        }
        TargetKind::Gobgp => {
            let conf = dir.join("gobgpd.toml");
            std::fs::write(&conf, gobgp_config())?;
            let daemon = ns.spawn(
                dir,
                "gobgpd",
                &[
                    "gobgpd",
                    "-f",
                    &conf.to_string_lossy(),
                    "-t",
                    "toml",
                    "--api-hosts",
                    "127.0.0.1:50051",
                ],
            )?;
            let name = ns.name().to_string();
            let n = name.clone();
            daemon.wait_ready(Duration::from_secs(10), "gobgpd API", || {
                Ok(gobgp(&n, &["global"]).is_ok())
            })?;
            Ok(Running {
                pid: daemon.pid(),
                rib: Box::new(move || gobgp_accepted(&name)),
                _keep: Box::new(daemon),
            })
        }
        TargetKind::Raw => unreachable!("raw has no BGP"),
    }
}

/// BIRD as Calico's bird.cfg runs it: a kernel protocol that learns, persists and scans every
/// 2 s, exporting BGP routes to the main table; the feeder is a passive eBGP neighbour.
fn bird_config() -> String {
    let mut s = String::new();
    let _ = writeln!(s, "router id {TARGET_IP};");
    let _ = writeln!(s, "log stderr {{ warning, error, fatal }};");
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    let _ = writeln!(
        s,
        "protocol kernel {{\n  learn;\n  persist;\n  scan time 2;\n  graceful restart;\n  merge paths on;\n  metric 0;\n  ipv4 {{ import all; export where source = RTS_BGP; }};\n}}"
    );
    let _ = writeln!(
        s,
        "protocol bgp feeder {{\n  local {TARGET_IP} as {TARGET_AS};\n  neighbor {FEEDER_IP} as {FEEDER_AS};\n  passive on;\n  direct;\n  ipv4 {{ import all; export none; }};\n}}"
    );
    s
}

fn birdc(sock: &Path, args: &[&str]) -> Result<String> {
    let mut argv = vec!["birdc", "-s"];
    let s = sock.to_string_lossy();
    argv.push(&s);
    argv.extend_from_slice(args);
    run_host(&argv)
}

/// "Routes:         1000000 imported, 0 exported, 1000000 preferred" of the feeder protocol.
fn bird_imported(sock: &Path) -> Result<u64> {
    let out = birdc(sock, &["show", "protocols", "all", "feeder"])?;
    let line = out
        .lines()
        .find(|l| l.trim_start().starts_with("Routes:"))
        .context("no Routes: line yet")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

fn gobgp_config() -> String {
    format!(
        "[global.config]\n  as = {TARGET_AS}\n  router-id = \"{TARGET_IP}\"\n  port = 179\n  local-address-list = [\"{TARGET_IP}\"]\n[[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{FEEDER_IP}\"\n    peer-as = {FEEDER_AS}\n  [neighbors.transport.config]\n    passive-mode = true\n  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n"
    )
}

fn gobgp(ns: &str, args: &[&str]) -> Result<String> {
    let mut argv = vec!["ip", "netns", "exec", ns, "gobgp", "-p", "50051"];
    argv.extend_from_slice(args);
    run_host(&argv)
}

fn gobgp_accepted(ns: &str) -> Result<u64> {
    let out = gobgp(ns, &["neighbor", &FEEDER_IP.to_string(), "-j"])?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let v = if v.is_array() { v[0].clone() } else { v };
    let afs = v["afi_safis"].as_array().cloned().unwrap_or_default();
    Ok(afs
        .iter()
        .filter_map(|a| a["state"]["accepted"].as_u64())
        .sum())
}

/// The limit line: `gingham-bench raw-writer` in the target namespace writes the same N routes
/// through the agent's kernel module, with no BGP at all.
fn raw(
    ns: &Netns,
    dir: &Path,
    prefixes: usize,
    base: u64,
    timeout: Duration,
) -> Result<TableResult> {
    let exe = std::env::current_exe()?;
    let n = prefixes.to_string();
    let (ready_tx, ready_rx) = mpsc::channel::<Instant>();
    let polled = ns.spawn_thread(move || -> Option<f64> {
        let mut counter = proc_stats::RouteCounter::new().ok()?;
        let start = Instant::now();
        let _ = ready_tx.send(start);
        while start.elapsed() < timeout {
            counter.poll();
            let done = if counter.overflowed {
                proc_stats::main_table_prefixes().unwrap_or(0) >= base + prefixes as u64
            } else {
                counter.count >= prefixes as i64
            };
            if done {
                return Some(start.elapsed().as_secs_f64());
            }
        }
        None
    })?;
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the route counter did not start")?;
    let mut daemon = Daemon::spawn(
        Some(ns.name()),
        dir,
        "raw-writer",
        &[
            &exe.to_string_lossy(),
            "raw-writer",
            "--prefixes",
            &n,
            "--gateway",
            &FEEDER_IP.to_string(),
        ],
        &[],
    )?;
    let pid = daemon.pid();
    let mut peak = (0, 0);
    let mut cpu = 0.0;
    // Read the writer's figures while it is still alive (it waits for SIGTERM once done).
    let to_kernel = polled
        .join()
        .map_err(|_| anyhow::anyhow!("poller panicked"))?;
    if let Ok(m) = proc_stats::memory(pid) {
        peak = m;
    }
    if let Ok(c) = proc_stats::cpu_seconds(pid) {
        cpu = c;
    }
    daemon.stop();
    let to_kernel = to_kernel.with_context(|| {
        format!(
            "raw writer: not all {prefixes} routes in the kernel within {timeout:?}: {}",
            daemon.log_tail(10)
        )
    })?;
    Ok(TableResult {
        target: TargetKind::Raw,
        prefixes,
        to_rib_s: None,
        to_kernel_s: Some(to_kernel),
        peak_rss_bytes: peak.0,
        rss_bytes: peak.1,
        bytes_per_route: peak.0 as f64 / prefixes as f64,
        cpu_s: cpu,
        fed_s: None,
    })
}

/// The raw writer's body: N `via` routes in batches, then wait to be stopped.
pub fn raw_writer(prefixes: usize, gateway: Ipv4Addr) -> Result<()> {
    use agent::kernel::{DesiredRoute, KernelRoutes, RouteOp};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut k = KernelRoutes::new()?;
        let ops: Vec<RouteOp> = (0..prefixes)
            .map(|i| RouteOp::Replace(DesiredRoute::via(feed::prefix(i), gateway)))
            .collect();
        let results = k.apply(&ops).await?;
        let failed = results.iter().filter(|r| r.is_some()).count();
        if failed > 0 {
            bail!("{failed} routes refused");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        term.recv().await;
        Ok(())
    })
}

pub fn row(r: &TableResult) -> String {
    let s = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} s"));
    format!(
        "| {} | {} | {} | {} | {:.0} MB ({:.0} B/route) | {:.1} s |",
        r.target.name(),
        r.prefixes,
        s(r.to_rib_s),
        s(r.to_kernel_s),
        r.peak_rss_bytes as f64 / 1e6,
        r.bytes_per_route,
        r.cpu_s
    )
}

pub fn markdown(results: &[TableResult]) -> String {
    let mut s = String::from(
        "| target | prefixes | Established → RIB | Established → kernel | peak RSS | CPU |\n|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&row(r));
        s.push('\n');
    }
    s
}

/// Where bench runs keep their files unless told otherwise. The time is in the name too: a
/// failed run keeps its directory, and a later run with the same pid must not reuse it.
pub fn default_dir() -> PathBuf {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    std::env::temp_dir().join(format!(
        "gingham-bench-{}-{}",
        std::process::id(),
        since.as_millis()
    ))
}
