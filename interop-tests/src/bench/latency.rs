//! `gingham-bench propagate` and `gingham-bench cni`: latencies, as percentiles over trials.
//!
//! - propagate: in a 3-node lab, a CNI ADD on node A that claims a new block, until the
//!   block's route is in node B's kernel (a netlink route monitor in B's namespace). Before each
//!   trial A's blocks are filled (untimed), so every ADD claims. Baseline: three BIRDs
//!   configured like Calico's, the new block announced the way confd does it (its static
//!   route written into the config, then `birdc configure`).
//! - cni: CNI ADD, then DEL, of K pods on one node; the pods' namespaces exist before the
//!   clock starts, as a container runtime makes them first.
//!
//! The plugin is started from a thread inside the node's namespace (no `ip netns exec` in the
//! measured time), as a runtime on the node would start it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use super::mesh::{self, LabNode};
use super::proc_stats::RouteCounter;

#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    pub measure: String,
    pub target: String,
    pub trials: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn latency(measure: &str, target: &str, mut ms: Vec<f64>) -> Latency {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Latency {
        measure: measure.into(),
        target: target.into(),
        trials: ms.len(),
        p50_ms: at(0.5),
        p99_ms: at(0.99),
        max_ms: ms[ms.len() - 1],
    }
}

/// Pod namespaces made for a bench, removed when it ends (also on error).
struct PodNamespaces(Vec<String>);

impl PodNamespaces {
    fn add(&mut self, name: String) -> Result<&str> {
        agent::netns::Netns::named(&name)?.keep();
        self.0.push(name);
        Ok(self.0.last().map(String::as_str).unwrap_or_default())
    }
}

impl Drop for PodNamespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = agent::netns::delete(n);
        }
    }
}

/// A lab taken down when dropped.
struct Lab {
    dir: PathBuf,
    prefix: String,
}

impl Lab {
    fn up(dir: PathBuf, prefix: String, args: &[&str]) -> Result<Lab> {
        let mut full = vec!["up"];
        full.extend_from_slice(args);
        mesh::lab(&dir, &prefix, &full)?;
        Ok(Lab { dir, prefix })
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = mesh::lab(&self.dir, &self.prefix, &["down"]);
    }
}

fn cni_conf(socket: &Path) -> String {
    json!({
        "cniVersion": "1.0.0",
        "name": "k8s-pod-network",
        "type": "gingham-cni",
        "mtu": 1500,
        "control_socket": socket,
        "ipam": {"type": "gingham-ipam"}
    })
    .to_string()
}

/// Runs one CNI command for the pod in `pod_ns` from inside `node_ns`; its wall time.
fn cni(node: &LabNode, pod_ns: &str, id: &str, command: &'static str) -> Result<Duration> {
    let plugin = std::env::current_exe()?.with_file_name("gingham-cni");
    let conf = cni_conf(&node.control_socket);
    let (pod_ns, id) = (pod_ns.to_string(), id.to_string());
    agent::netns::spawn_in_netns(&node.netns, move || -> Result<Duration> {
        let start = Instant::now();
        let mut child = Command::new(&plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", &id)
            .env("CNI_NETNS", format!("/var/run/netns/{pod_ns}"))
            .env("CNI_IFNAME", "eth0")
            .env(
                "CNI_ARGS",
                format!("K8S_POD_NAMESPACE=bench;K8S_POD_NAME={id}"),
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
            .context("stdin")?
            .write_all(conf.as_bytes())?;
        let out = child.wait_with_output()?;
        let took = start.elapsed();
        if !out.status.success() {
            bail!(
                "gingham-cni {command} {id}: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(took)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("CNI thread panicked"))?
}

fn routectl(node: &LabNode, args: &[&str]) -> Result<Value> {
    let bin = std::env::current_exe()?.with_file_name("routectl");
    let out = Command::new(bin)
        .arg("--socket")
        .arg(&node.control_socket)
        .args(args)
        .args(["-o", "json"])
        .output()?;
    if !out.status.success() {
        bail!(
            "routectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// Fills every block `node` owns, so that its next assignment claims a new one.
fn fill_blocks(node: &LabNode, tag: &str) -> Result<()> {
    let blocks = routectl(node, &["show", "blocks"])?;
    let free: u64 = blocks["blocks"]
        .as_array()
        .context("blocks")?
        .iter()
        .filter(|b| b["node"] == node.name.as_str())
        .map(|b| b["free"].as_u64().unwrap_or(0))
        .sum();
    for k in 0..free {
        routectl(
            node,
            &["ipam", "assign", "--handle", &format!("fill-{tag}-{k}")],
        )?;
    }
    Ok(())
}

fn counter_in(node: &LabNode) -> Result<RouteCounter> {
    agent::netns::spawn_in_netns(&node.netns, RouteCounter::small)?
        .join()
        .map_err(|_| anyhow::anyhow!("counter thread panicked"))?
}

/// Waits until `counter` has grown past `base`; the time it happened, measured from `t0`.
fn wait_for_route(counter: &mut RouteCounter, base: i64, t0: Instant) -> Result<f64> {
    while t0.elapsed() < Duration::from_secs(30) {
        counter.drain();
        if counter.count > base {
            return Ok(t0.elapsed().as_secs_f64() * 1e3);
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    bail!("the route never reached the other node")
}

pub fn propagate(trials: usize, dir: &Path, bird: bool) -> Result<Vec<Latency>> {
    let mut out = vec![propagate_gingham(trials, dir)?];
    if bird {
        out.push(propagate_bird(trials, dir)?);
    }
    Ok(out)
}

fn propagate_gingham(trials: usize, dir: &Path) -> Result<Latency> {
    let prefix = format!("gbp{}", std::process::id() % 10000);
    let lab = Lab::up(
        dir.join("propagate-gingham"),
        prefix.clone(),
        &["--nodes", "3", "--pods-per-node", "0"],
    )?;
    let (nodes, _) = mesh::lab_nodes(&lab.dir)?;
    let (a, b) = (&nodes[0], &nodes[1]);
    // Every trial claims one more block on A: lift the per-node limit (20 by default) above
    // the trials, as `IPAMConfig.maxBlocksPerHost` does on a real cluster.
    {
        let store = ipam::open_store(&format!("file:{}", lab.dir.join("datastore").display()))?;
        let ipam = ipam::Ipam::open(store, ipam::IpamSettings::default())?;
        ipam.set_config(ipam::IpamConfig {
            max_blocks_per_host: trials as u32 + 8,
            ..ipam.config()?
        })?;
    }
    let mut b_routes = counter_in(b)?;
    let mut pods = PodNamespaces(Vec::new());
    let mut ms = Vec::with_capacity(trials);
    for k in 0..trials {
        fill_blocks(a, &k.to_string())?;
        let ns = pods.add(format!("{prefix}-pod{k}"))?.to_string();
        std::thread::sleep(Duration::from_millis(50));
        b_routes.drain();
        let base = b_routes.count;
        let t0 = Instant::now();
        let add = {
            let a_name = a.netns.clone();
            let node = LabNode {
                name: a.name.clone(),
                netns: a_name,
                ip: a.ip,
                args: vec![],
                env: vec![],
                dir: a.dir.clone(),
                control_socket: a.control_socket.clone(),
            };
            let id = format!("bench{k:04}");
            std::thread::spawn(move || cni(&node, &ns, &id, "ADD"))
        };
        let took = wait_for_route(&mut b_routes, base, t0);
        let added = add
            .join()
            .map_err(|_| anyhow::anyhow!("ADD thread panicked"))?;
        let blocks = || routectl(a, &["show", "blocks"]).map(|v| v["blocks"].clone());
        let took = took.with_context(|| {
            format!(
                "trial {k}: the CNI ADD on {} said {added:?}; its blocks: {:?}",
                a.name,
                blocks()
            )
        })?;
        added?;
        ms.push(took);
    }
    drop(pods);
    drop(lab);
    Ok(latency(
        "new block: CNI ADD on A → route in B's kernel",
        "gingham",
        ms,
    ))
}

fn propagate_bird(trials: usize, dir: &Path) -> Result<Latency> {
    let prefix = format!("gbq{}", std::process::id() % 10000);
    let lab = Lab::up(
        dir.join("propagate-bird"),
        prefix,
        &["--nodes", "3", "--pods-per-node", "0", "--no-agents"],
    )?;
    let (nodes, _) = mesh::lab_nodes(&lab.dir)?;
    // Listening before any BIRD starts: B's own blackhole can be written within milliseconds
    // of its start, and a counter opened after it would wait for a third route forever.
    let mut b_routes = counter_in(&nodes[1])?;
    let mut children = Vec::new();
    let mut a_blocks = vec![mesh::block(0)];
    for (i, node) in nodes.iter().enumerate() {
        std::fs::create_dir_all(&node.dir)?;
        let conf = node.dir.join("bird.conf");
        let blocks = if i == 0 {
            a_blocks.clone()
        } else {
            vec![mesh::block(i)]
        };
        std::fs::write(&conf, mesh::bird_config(node, i, &nodes, &blocks))?;
        let argv: Vec<String> = [
            "bird".to_string(),
            "-f".into(),
            "-c".into(),
            conf.to_string_lossy().into_owned(),
            "-s".into(),
            node.dir.join("bird.ctl").to_string_lossy().into_owned(),
            "-P".into(),
            node.dir.join("bird.pid").to_string_lossy().into_owned(),
        ]
        .to_vec();
        children.push(mesh::start_daemon(
            &node.netns,
            &argv,
            &[],
            &node.dir.join("bird.log"),
        )?);
    }
    let a = &nodes[0];
    // Converged first: B has A's and C's blocks and its own.
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(60) {
        b_routes.drain();
        if b_routes.count >= 3 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    if b_routes.count < 3 {
        bail!("the BIRD mesh did not converge");
    }
    let birdc = |args: &[&str]| -> Result<()> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(a.dir.join("bird.ctl"))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("birdc {args:?}: {}", String::from_utf8_lossy(&out.stdout));
        }
        Ok(())
    };
    let mut ms = Vec::with_capacity(trials);
    for k in 0..trials {
        std::thread::sleep(Duration::from_millis(50));
        b_routes.drain();
        let base = b_routes.count;
        a_blocks.push(mesh::block(10 + k));
        let t0 = Instant::now();
        std::fs::write(
            a.dir.join("bird.conf"),
            mesh::bird_config(a, 0, &nodes, &a_blocks),
        )?;
        birdc(&["configure"])?;
        ms.push(wait_for_route(&mut b_routes, base, t0)?);
    }
    drop(lab);
    for mut c in children {
        let _ = c.wait();
    }
    Ok(latency(
        "new block: config + birdc configure on A → route in B's kernel",
        "bird",
        ms,
    ))
}

pub fn cni_latency(pods: usize, dir: &Path) -> Result<Vec<Latency>> {
    let prefix = format!("gbc{}", std::process::id() % 10000);
    let lab = Lab::up(
        dir.join("cni"),
        prefix.clone(),
        &["--nodes", "1", "--pods-per-node", "0"],
    )?;
    let (nodes, _) = mesh::lab_nodes(&lab.dir)?;
    let node = &nodes[0];
    let mut ns = PodNamespaces(Vec::new());
    for k in 0..pods {
        ns.add(format!("{prefix}-pod{k}"))?;
    }
    let mut add = Vec::with_capacity(pods);
    for (k, pod) in ns.0.iter().enumerate() {
        add.push(cni(node, pod, &format!("bench{k:04}"), "ADD")?.as_secs_f64() * 1e3);
    }
    let mut del = Vec::with_capacity(pods);
    for (k, pod) in ns.0.iter().enumerate() {
        del.push(cni(node, pod, &format!("bench{k:04}"), "DEL")?.as_secs_f64() * 1e3);
    }
    drop(ns);
    drop(lab);
    Ok(vec![
        latency("CNI ADD", "gingham", add),
        latency("CNI DEL", "gingham", del),
    ])
}

pub fn markdown(results: &[Latency]) -> String {
    let mut s = String::from(
        "| measure | target | trials | p50 | p99 | max |\n|---|---|---|---|---|---|\n",
    );
    for r in results {
        s.push_str(&format!(
            "| {} | {} | {} | {:.2} ms | {:.2} ms | {:.2} ms |\n",
            r.measure, r.target, r.trials, r.p50_ms, r.p99_ms, r.max_ms
        ));
    }
    s
}
