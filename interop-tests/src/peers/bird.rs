//! BIRD 2 as a peer: `bird -f` in the namespace, driven through `birdc` on a private socket.
//!
//! Announcements are static blackhole routes in a protocol named `announced`; changing them
//! rewrites the config and runs `birdc configure`, which is how an operator would do it.
//! There is no `kernel` protocol: BIRD never touches the namespace's routing table.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;

use super::{BgpPeer, PeerConfig, ReceivedRoute};
use crate::netns::{check, Netns};
use crate::process::Daemon;

pub struct Bird {
    cfg: PeerConfig,
    dir: PathBuf,
    conf: PathBuf,
    sock: PathBuf,
    announced: BTreeSet<Ipv4Net>,
    daemon: Daemon,
    netns: String,
}

impl Bird {
    /// Starts BIRD in `ns` with its files in `dir`; returns once its control socket answers.
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Bird> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("bird.conf");
        let sock = dir.join("bird.ctl");
        std::fs::write(&conf, render(&cfg, &BTreeSet::new()))?;
        let daemon = Self::spawn(ns.name(), dir, &conf, &sock, false)?;
        let bird = Bird {
            cfg,
            dir: dir.to_path_buf(),
            conf,
            sock,
            announced: BTreeSet::new(),
            daemon,
            netns: ns.name().to_string(),
        };
        bird.wait_ready()?;
        Ok(bird)
    }

    fn spawn(netns: &str, dir: &Path, conf: &Path, sock: &Path, recovery: bool) -> Result<Daemon> {
        let pid = dir.join("bird.pid");
        let mut argv = vec![
            "bird".to_string(),
            "-f".into(),
            "-c".into(),
            conf.to_string_lossy().into_owned(),
            "-s".into(),
            sock.to_string_lossy().into_owned(),
            "-P".into(),
            pid.to_string_lossy().into_owned(),
        ];
        if recovery {
            // Graceful restart recovery (RFC 4724 restarting speaker).
            argv.push("-R".into());
        }
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        Daemon::spawn(Some(netns), dir, "bird", &argv, &[])
    }

    fn wait_ready(&self) -> Result<()> {
        self.daemon
            .wait_ready(Duration::from_secs(10), "BIRD control socket", || {
                Ok(self.birdc(&["show", "status"]).is_ok())
            })
    }

    /// Starts BIRD again with the same configuration and announcements, after `stop` killed it;
    /// with `recovery` as a graceful restart (`bird -R`).
    pub fn restart(&mut self, recovery: bool) -> Result<()> {
        self.daemon.kill();
        std::fs::write(&self.conf, render(&self.cfg, &self.announced))?;
        self.daemon = Self::spawn(&self.netns, &self.dir, &self.conf, &self.sock, recovery)?;
        self.wait_ready()
    }

    /// Runs `birdc -s <sock> <args>` (a Unix socket: no need to enter the namespace).
    pub fn birdc(&self, args: &[&str]) -> Result<String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(&self.sock)
            .args(args)
            .output()
            .context("running birdc")?;
        check(&format!("birdc {args:?}"), out)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Sends `signal` to BIRD (SIGSTOP to make a peer go silent, SIGCONT to wake it).
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        self.daemon.signal(signal);
    }

    fn reconfigure(&self) -> Result<()> {
        std::fs::write(&self.conf, render(&self.cfg, &self.announced))?;
        let out = self.birdc(&["configure"])?;
        if !out.contains("Reconfigured") && !out.contains("Reconfiguration in progress") {
            bail!("birdc configure: {out}");
        }
        Ok(())
    }
}

/// The protocol name of neighbor `i` in the config.
fn proto_name(i: usize) -> String {
    format!("n{i}")
}

fn render(cfg: &PeerConfig, announced: &BTreeSet<Ipv4Net>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "router id {};", cfg.router_id);
    let _ = writeln!(s, "log stderr all;");
    // The device protocol tells BIRD which addresses are local, which direct sessions need.
    let _ = writeln!(s, "protocol device {{ scan time 10; }}");
    let _ = writeln!(s, "protocol static announced {{\n  ipv4;");
    for p in announced {
        let _ = writeln!(s, "  route {p} blackhole;");
    }
    let _ = writeln!(s, "}}");
    for (i, n) in cfg.neighbors.iter().enumerate() {
        let _ = writeln!(s, "protocol bgp {} {{", proto_name(i));
        let _ = writeln!(
            s,
            "  local {} port {} as {};",
            cfg.local_ip, cfg.listen_port, cfg.local_as
        );
        let _ = writeln!(
            s,
            "  neighbor {} port {} as {};",
            n.addr, n.port, n.remote_as
        );
        // Same link for iBGP too: next hops are on-link, no IGP to resolve them through.
        let _ = writeln!(s, "  direct;");
        let _ = writeln!(s, "  passive {};", if n.passive { "on" } else { "off" });
        let _ = writeln!(s, "  hold time {};", cfg.hold_time);
        // Defaults (5 s delay, 120 s retry) would make tests wait minutes after a failure.
        let _ = writeln!(s, "  connect delay time 1;\n  connect retry time 2;");
        let _ = writeln!(s, "  error wait time 1, 4;");
        if let Some(p) = &n.password {
            let _ = writeln!(s, "  password \"{p}\";");
        }
        if n.ttl_security {
            let _ = writeln!(s, "  ttl security on;");
        }
        let gr = if cfg.graceful_restart { "on" } else { "off" };
        let _ = writeln!(
            s,
            "  graceful restart {gr};\n  long lived graceful restart off;"
        );
        if cfg.graceful_restart {
            let _ = writeln!(s, "  graceful restart time {};", cfg.graceful_restart_time);
        }
        let _ = writeln!(
            s,
            "  ipv4 {{ import all; export where proto = \"announced\"; next hop self; }};"
        );
        let _ = writeln!(s, "}}");
    }
    s
}

impl BgpPeer for Bird {
    fn kind(&self) -> &'static str {
        "bird"
    }

    fn established(&self, peer: Ipv4Addr) -> Result<bool> {
        let Some((i, _)) = self.cfg.find(peer) else {
            bail!("{peer} is not a configured neighbor");
        };
        let out = self.birdc(&["show", "protocols", "all", &proto_name(i)])?;
        Ok(out
            .lines()
            .any(|l| l.trim().starts_with("BGP state:") && l.contains("Established")))
    }

    fn received_routes(&self) -> Result<Vec<ReceivedRoute>> {
        let mut all = Vec::new();
        for i in 0..self.cfg.neighbors.len() {
            let out = self.birdc(&["show", "route", "all", "protocol", &proto_name(i)])?;
            all.extend(parse_routes(&out)?);
        }
        Ok(all)
    }

    fn announce(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.announced.insert(prefix);
        self.reconfigure()
    }

    fn withdraw(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.announced.remove(&prefix);
        self.reconfigure()
    }

    fn stop(&mut self) -> Result<()> {
        self.daemon.kill();
        Ok(())
    }
}

/// Parses `show route all`: a route starts with a line whose first field is the prefix (or,
/// for a second route of the same prefix, with blanks), and carries a `BGP.next_hop:` line.
fn parse_routes(out: &str) -> Result<Vec<ReceivedRoute>> {
    let mut routes = Vec::new();
    let mut prefix: Option<Ipv4Net> = None;
    for line in out.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if !line.starts_with(char::is_whitespace) {
            if let Ok(p) = first.parse::<Ipv4Net>() {
                prefix = Some(p);
            }
            continue;
        }
        if let Some(rest) = line.trim().strip_prefix("BGP.next_hop:") {
            let hop = rest.split_whitespace().next().unwrap_or("");
            let next_hop: Ipv4Addr = hop
                .parse()
                .with_context(|| format!("next hop in BIRD line {line:?}"))?;
            let Some(prefix) = prefix else {
                bail!("BIRD next hop before any prefix: {line:?}");
            };
            routes.push(ReceivedRoute { prefix, next_hop });
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_route_all() {
        let out = "BIRD 2.0.12 ready.\nTable master4:\n\
10.1.0.0/24          unicast [n0 08:00:00.000] * (100) [AS65001i]\n\
\tvia 172.18.0.2 on eth0\n\
\tType: BGP univ\n\
\tBGP.origin: IGP\n\
\tBGP.as_path: 65001\n\
\tBGP.next_hop: 172.18.0.2\n\
\tBGP.local_pref: 100\n\
10.2.0.0/24          unicast [n0 08:00:00.000] * (100) [AS65001i]\n\
\tvia 172.18.0.2 on eth0\n\
\tBGP.next_hop: 172.18.0.2\n";
        let r = parse_routes(out).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].prefix, "10.2.0.0/24".parse().unwrap());
        assert_eq!(r[1].next_hop, "172.18.0.2".parse::<Ipv4Addr>().unwrap());
    }
}
