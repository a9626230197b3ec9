//! Launcher for our own node daemon, `gingham-agent`, inside a namespace, and `routectl`
//! against its control socket.
//!
//! Cargo does not build a dependency's binaries for another crate's tests, so the binaries are
//! found in the workspace's target directory (build them first: `cargo build -p agent --bins`),
//! or at `GINGHAM_AGENT_BIN` / `ROUTECTL_BIN`.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use agent::control::api::{PeerInfo, RouteInfo, Summary};
use bgp::fsm::State;
use bgp::PeerKind;

use crate::netns::{check, Netns};
use crate::process::Daemon;

/// An explicit BGP peer of the agent (`--peer <ip>[:<port>],as=<n>`).
#[derive(Debug, Clone)]
pub struct AgentPeer {
    pub addr: Ipv4Addr,
    pub port: Option<u16>,
    pub asn: u32,
}

impl AgentPeer {
    pub fn new(addr: Ipv4Addr, asn: u32) -> AgentPeer {
        AgentPeer {
            addr,
            port: None,
            asn,
        }
    }

    fn flag(&self) -> String {
        match self.port {
            Some(p) => format!("{}:{p},as={}", self.addr, self.asn),
            None => format!("{},as={}", self.addr, self.asn),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    pub ip: Ipv4Addr,
    pub asn: u32,
    pub peers: Vec<AgentPeer>,
    /// Off by default here: the interop tests peer with one daemon only.
    pub mesh: bool,
    /// On the namespace's own loopback, so every agent may use the same port.
    pub metrics_port: u16,
    /// The datastore directory; by default `<instance dir>/datastore`. Agents of one lab share
    /// one directory (the file backend locks it).
    pub datastore: Option<PathBuf>,
    /// A `--datastore` value other than a directory (`kubernetes`, `etcd`): replaces it.
    pub datastore_spec: Option<String>,
    /// Extra prefixes to announce (`--advertise`), besides the node's IPAM blocks.
    pub advertise: Vec<ipnet::Ipv4Net>,
    pub extra_args: Vec<String>,
    pub env: Vec<(String, String)>,
    /// Appended to every `--peer` flag (e.g. `,ttl-security=on,max-prefixes=10`).
    pub peer_options: String,
}

impl AgentConfig {
    pub fn new(node_name: &str, ip: Ipv4Addr, asn: u32) -> AgentConfig {
        AgentConfig {
            node_name: node_name.to_string(),
            ip,
            asn,
            peers: Vec::new(),
            mesh: false,
            metrics_port: 9099,
            datastore: None,
            datastore_spec: None,
            advertise: Vec::new(),
            extra_args: Vec::new(),
            env: vec![("RUST_LOG".into(), "info".into())],
            peer_options: String::new(),
        }
    }

    pub fn peer(mut self, p: AgentPeer) -> AgentConfig {
        self.peers.push(p);
        self
    }

    /// The command line, without the binary.
    pub fn args(&self, dir: &Path) -> Vec<String> {
        let datastore = self
            .datastore
            .clone()
            .unwrap_or_else(|| dir.join("datastore"));
        let mut a = vec![
            "--node-name".to_string(),
            self.node_name.clone(),
            "--ip".into(),
            self.ip.to_string(),
            "--as".into(),
            self.asn.to_string(),
        ];
        for p in &self.peers {
            a.push("--peer".into());
            a.push(format!("{}{}", p.flag(), self.peer_options));
        }
        for p in &self.advertise {
            a.push("--advertise".into());
            a.push(p.to_string());
        }
        if !self.mesh {
            a.push("--no-mesh".into());
        }
        a.push("--control-socket".into());
        a.push(dir.join("agent.sock").to_string_lossy().into_owned());
        a.push("--metrics-addr".into());
        a.push(format!("127.0.0.1:{}", self.metrics_port));
        a.push("--datastore".into());
        a.push(match &self.datastore_spec {
            Some(spec) => spec.clone(),
            None => format!("file:{}", datastore.display()),
        });
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// A running `gingham-agent`.
pub struct Agent {
    pub cfg: AgentConfig,
    sock: PathBuf,
    netns: String,
    daemon: Daemon,
}

impl Agent {
    /// Starts the agent in `ns` with its socket, datastore and log in `dir`; returns once
    /// `routectl show` answers.
    pub fn start(ns: &Netns, dir: &Path, cfg: AgentConfig) -> Result<Agent> {
        let agent = Agent::launch(ns, dir, cfg)?;
        agent.wait_ready(Duration::from_secs(15))?;
        Ok(agent)
    }

    /// Waits until `routectl show` answers (or the agent exits, with its log).
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        self.daemon
            .wait_ready(timeout, "gingham-agent control socket", || {
                Ok(self.routectl(&["show"]).is_ok())
            })
    }

    /// Starts the agent and returns at once (it may be waiting for its datastore).
    pub fn launch(ns: &Netns, dir: &Path, cfg: AgentConfig) -> Result<Agent> {
        std::fs::create_dir_all(dir)?;
        let bin = binary("GINGHAM_AGENT_BIN", "gingham-agent")?;
        let mut argv = vec![bin.to_string_lossy().into_owned()];
        argv.extend(cfg.args(dir));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = cfg
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let daemon = ns.spawn_env(dir, &format!("agent-{}", cfg.node_name), &argv, &env)?;
        Ok(Agent {
            cfg,
            sock: dir.join("agent.sock"),
            netns: ns.name().to_string(),
            daemon,
        })
    }

    /// `GET /metrics` on the agent's metrics port, inside its namespace.
    pub fn metrics(&self) -> Result<String> {
        let url = format!("http://127.0.0.1:{}/metrics", self.cfg.metrics_port);
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.netns,
                "curl",
                "-s",
                "--max-time",
                "5",
                &url,
            ])
            .output()
            .context("running curl")?;
        check("curl /metrics", out)
    }

    pub fn pid(&self) -> i32 {
        self.daemon.pid()
    }

    pub fn socket(&self) -> &Path {
        &self.sock
    }

    pub fn log_tail(&self, lines: usize) -> String {
        self.daemon.log_tail(lines)
    }

    /// `routectl --socket <sock> <args> -o json`, parsed. The socket is a file, so routectl
    /// runs in the host namespace.
    pub fn routectl(&self, args: &[&str]) -> Result<Value> {
        let bin = binary("ROUTECTL_BIN", "routectl")?;
        let out = Command::new(&bin)
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .args(["-o", "json"])
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let text = check(&format!("routectl {args:?}"), out)?;
        serde_json::from_str(&text).with_context(|| format!("routectl {args:?} JSON: {text}"))
    }

    /// `routectl --socket <sock> <args>` as people read it (the table output).
    pub fn routectl_text(&self, args: &[&str]) -> Result<String> {
        let bin = binary("ROUTECTL_BIN", "routectl")?;
        let out = Command::new(&bin)
            .arg("--socket")
            .arg(&self.sock)
            .args(args)
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        check(&format!("routectl {args:?}"), out)
    }

    pub fn summary(&self) -> Result<Summary> {
        Ok(serde_json::from_value(self.routectl(&["show"])?)?)
    }

    pub fn peers(&self) -> Result<Vec<PeerInfo>> {
        Ok(serde_json::from_value(self.routectl(&["show", "peers"])?)?)
    }

    pub fn routes(&self) -> Result<Vec<RouteInfo>> {
        Ok(serde_json::from_value(self.routectl(&["show", "routes"])?)?)
    }

    /// The session state with `peer` as `routectl show peers` reports it.
    pub fn peer_state(&self, peer: Ipv4Addr) -> Result<Option<State>> {
        Ok(self
            .peers()?
            .into_iter()
            .find(|p| p.address == std::net::IpAddr::V4(peer))
            .map(|p| p.state))
    }

    pub fn established(&self, peer: Ipv4Addr) -> Result<bool> {
        Ok(self.peer_state(peer)? == Some(State::Established))
    }

    /// `routectl ipam assign --handle <h>`: makes the agent claim a block (and so announce it).
    pub fn assign(&self, handle: &str) -> Result<Ipv4Addr> {
        let v = self.routectl(&["ipam", "assign", "--handle", handle])?;
        let ip = v["ip"]
            .as_str()
            .with_context(|| format!("no address assigned: {v}"))?;
        Ok(ip.parse()?)
    }

    pub fn release(&self, handle: &str) -> Result<()> {
        self.routectl(&["ipam", "release", "--handle", handle])?;
        Ok(())
    }

    /// SIGTERM (the agent leaves its kernel routes in place, per the design).
    pub fn stop(&mut self) {
        self.daemon.stop();
    }

    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// How the agent ended, or `None` while it runs.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.daemon.exit_status()
    }
}

/// `$<env>` if set, else `<workspace>/target/<profile>/<name>`.
pub fn binary(env: &str, name: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Ok(PathBuf::from(p));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    let p = target.join(profile).join(name);
    if !p.exists() {
        bail!(
            "{} not found: build it first with `cargo build -p agent --bins` (or set {env})",
            p.display()
        );
    }
    // `cargo test -p interop-tests` does not rebuild the agent: refuse to test an old binary
    // against new sources, which would report yesterday's behaviour as today's.
    let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let built = std::fs::metadata(&p)?.modified()?;
    for krate in ["agent", "bgp", "ipam"] {
        if let Some(src) = newest_file(&ws.join(krate).join("src")) {
            if src.1 > built {
                bail!(
                    "{} is older than {}: rebuild with `cargo build -p agent --bins` (or set {env})",
                    p.display(),
                    src.0.display()
                );
            }
        }
    }
    Ok(p)
}

/// The most recently modified file under `dir`, recursively.
fn newest_file(dir: &Path) -> Option<(PathBuf, std::time::SystemTime)> {
    let mut newest: Option<(PathBuf, std::time::SystemTime)> = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let candidate = if path.is_dir() {
            newest_file(&path)
        } else {
            entry.metadata().ok()?.modified().ok().map(|t| (path, t))
        };
        if let Some(c) = candidate {
            if newest.as_ref().is_none_or(|n| c.1 > n.1) {
                newest = Some(c);
            }
        }
    }
    newest
}

/// A member of a node-to-node mesh: `node<i>` at the underlay's i-th address, on a datastore
/// shared by the whole mesh.
pub fn mesh_member(underlay: &crate::Underlay, i: usize, datastore: &Path) -> AgentConfig {
    let mut cfg = AgentConfig::new(&format!("node{i}"), underlay.node(i).ip, 64512);
    cfg.mesh = true;
    cfg.datastore = Some(datastore.to_path_buf());
    cfg
}

/// Starts a mesh agent on every underlay node (`extra_args` added to each command line), all on
/// `<dir>/datastore`, and waits until each has every other node as an Established mesh peer.
pub fn start_mesh(
    underlay: &crate::Underlay,
    dir: &crate::TestDir,
    extra_args: &[&str],
) -> Result<Vec<Agent>> {
    let datastore = dir.sub("datastore")?;
    let n = underlay.nodes.len();
    let mut agents = Vec::with_capacity(n);
    for i in 0..n {
        let mut cfg = mesh_member(underlay, i, &datastore);
        cfg.extra_args = extra_args.iter().map(|a| a.to_string()).collect();
        agents.push(Agent::start(
            &underlay.node(i).ns,
            &dir.sub(&format!("node{i}"))?,
            cfg,
        )?);
    }
    for (i, a) in agents.iter().enumerate() {
        crate::wait_until(
            Duration::from_secs(30),
            &format!("node{i}'s mesh sessions"),
            || {
                let peers = a.peers()?;
                Ok(peers.len() + 1 == n
                    && peers
                        .iter()
                        .all(|p| p.state == State::Established && p.peer_type == PeerKind::Mesh))
            },
        )
        .with_context(|| a.log_tail(30))?;
    }
    Ok(agents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_file_finds_the_latest_write() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), "a").unwrap();
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(dir.path().join("sub/b"), "b").unwrap();
        let (p, _) = newest_file(dir.path()).unwrap();
        assert!(p.ends_with("sub/b"), "{}", p.display());
    }

    #[test]
    fn command_line_has_every_flag() {
        let cfg = AgentConfig::new("node-1", "172.18.0.2".parse().unwrap(), 64512)
            .peer(AgentPeer::new("172.18.0.3".parse().unwrap(), 4200000001))
            .peer(AgentPeer {
                port: Some(1790),
                ..AgentPeer::new("172.18.0.4".parse().unwrap(), 65001)
            });
        let a = cfg.args(Path::new("/tmp/x")).join(" ");
        assert_eq!(
            a,
            "--node-name node-1 --ip 172.18.0.2 --as 64512 \
             --peer 172.18.0.3,as=4200000001 --peer 172.18.0.4:1790,as=65001 --no-mesh \
             --control-socket /tmp/x/agent.sock --metrics-addr 127.0.0.1:9099 \
             --datastore file:/tmp/x/datastore"
        );
    }
}
