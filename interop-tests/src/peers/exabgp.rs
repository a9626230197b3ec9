//! ExaBGP as a peer. ExaBGP has no RIB query CLI of its own, so it speaks through its API:
//! - a `recv` process gets every parsed UPDATE and neighbor state change as JSON and appends
//!   them to `events.jsonl`; received routes and session state are replayed from that file;
//! - a `cmd` process copies lines from a FIFO to ExaBGP, so `announce`/`withdraw` write
//!   `announce route ...` commands into the FIFO.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{BgpPeer, PeerConfig, ReceivedRoute};
use crate::netns::{run_host, Netns};
use crate::process::Daemon;

const PYTHON: &str = "/usr/bin/python3";

/// Copies FIFO lines to stdout; reopens after each writer closes.
const FIFO_READER: &str = r#"import sys
while True:
    with open(sys.argv[1]) as f:
        for line in f:
            sys.stdout.write(line)
            sys.stdout.flush()
"#;

/// Appends every API message to a file, flushed per line so tests see it at once.
const RECEIVER: &str = r#"import sys
with open(sys.argv[1], "a") as out:
    for line in sys.stdin:
        out.write(line)
        out.flush()
"#;

pub struct ExaBgp {
    cfg: PeerConfig,
    fifo: PathBuf,
    events: PathBuf,
    daemon: Daemon,
}

impl ExaBgp {
    /// Starts ExaBGP in `ns` with its files in `dir`.
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<ExaBgp> {
        std::fs::create_dir_all(dir)?;
        let fifo = dir.join("cmd.fifo");
        let events = dir.join("events.jsonl");
        std::fs::write(&events, "")?;
        run_host(&["mkfifo", &fifo.to_string_lossy()])?;
        std::fs::write(dir.join("fifo_reader.py"), FIFO_READER)?;
        std::fs::write(dir.join("receiver.py"), RECEIVER)?;
        let conf = dir.join("exabgp.conf");
        std::fs::write(&conf, render(&cfg, dir))?;
        let bind = cfg.local_ip.to_string();
        let port = cfg.listen_port.to_string();
        let env = [
            ("exabgp.daemon.user", "root"),
            ("exabgp.daemon.daemonize", "false"),
            // Our FIFO replaces ExaBGP's own CLI pipes, which live at fixed paths.
            ("exabgp.api.cli", "false"),
            // Nobody reads the acks our cmd process would get; unread they fill the pipe.
            ("exabgp.api.ack", "false"),
            ("exabgp.log.destination", "stdout"),
            // Without a bind address ExaBGP never listens, and passive peers need it to.
            ("exabgp.tcp.bind", &bind),
            ("exabgp.tcp.port", &port),
        ];
        let daemon = ns.spawn_env(dir, "exabgp", &["exabgp", &conf.to_string_lossy()], &env)?;
        let log = daemon.log_path().to_path_buf();
        daemon.wait_ready(Duration::from_secs(15), "ExaBGP to load its config", || {
            Ok(std::fs::read_to_string(&log)?.contains("loaded new configuration successfully"))
        })?;
        Ok(ExaBgp {
            cfg,
            fifo,
            events,
            daemon,
        })
    }

    /// Sends one API command line, e.g. `announce route 10.0.0.0/24 next-hop self`.
    pub fn command(&self, line: &str) -> Result<()> {
        // Non-blocking open fails (ENXIO) while the reader is between two opens or not yet
        // started, instead of hanging the test forever if it died.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut f = loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&self.fifo)
            {
                Ok(f) => break f,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).context("opening ExaBGP command FIFO"),
            }
        };
        f.write_all(format!("{line}\n").as_bytes())
            .context("writing ExaBGP command")?;
        Ok(())
    }

    /// The API messages received so far.
    fn events(&self) -> Result<Vec<Value>> {
        let text = std::fs::read_to_string(&self.events)?;
        // The last line may be half written; complete lines end with '\n'.
        let complete = text.rfind('\n').map_or("", |i| &text[..i]);
        complete
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).with_context(|| format!("ExaBGP API line {l}")))
            .collect()
    }
}

fn render(cfg: &PeerConfig, dir: &Path) -> String {
    let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "process cmd {{\n  run {PYTHON} {} {};\n  encoder text;\n}}",
        d("fifo_reader.py"),
        d("cmd.fifo")
    );
    let _ = writeln!(
        s,
        "process recv {{\n  run {PYTHON} {} {};\n  encoder json;\n}}",
        d("receiver.py"),
        d("events.jsonl")
    );
    for n in &cfg.neighbors {
        let _ = writeln!(s, "neighbor {} {{", n.addr);
        let _ = writeln!(s, "  router-id {};", cfg.router_id);
        let _ = writeln!(s, "  local-address {};", cfg.local_ip);
        let _ = writeln!(
            s,
            "  local-as {};\n  peer-as {};",
            cfg.local_as, n.remote_as
        );
        let _ = writeln!(s, "  hold-time {};", cfg.hold_time);
        if n.passive {
            let _ = writeln!(s, "  passive true;");
        }
        if n.port != 179 {
            let _ = writeln!(s, "  connect {};", n.port);
        }
        let _ = writeln!(s, "  family {{ ipv4 unicast; }}");
        if cfg.graceful_restart {
            let _ = writeln!(s, "  capability {{ graceful-restart 120; }}");
        }
        let _ = writeln!(s, "  api {{ processes [ cmd ]; }}");
        let _ = writeln!(
            s,
            "  api {{ processes [ recv ]; receive {{ parsed; update; }} neighbor-changes; }}"
        );
        let _ = writeln!(s, "}}");
    }
    s
}

/// Replays API events: per peer, the last session state and the routes it currently announces.
#[derive(Default)]
struct Replay {
    state: BTreeMap<Ipv4Addr, String>,
    routes: BTreeMap<Ipv4Addr, BTreeMap<Ipv4Net, Ipv4Addr>>,
}

fn replay(events: &[Value]) -> Result<Replay> {
    let mut r = Replay::default();
    for e in events {
        let Some(peer) = e["neighbor"]["address"]["peer"].as_str() else {
            continue;
        };
        let peer: Ipv4Addr = peer.parse().with_context(|| format!("peer {peer}"))?;
        match e["type"].as_str() {
            Some("state") => {
                let state = e["neighbor"]["state"].as_str().unwrap_or("").to_string();
                if state != "up" {
                    // A session going down takes its routes with it.
                    r.routes.remove(&peer);
                }
                r.state.insert(peer, state);
            }
            Some("update") => {
                let update = &e["neighbor"]["message"]["update"];
                let rib = r.routes.entry(peer).or_default();
                if let Some(by_hop) = update["announce"]["ipv4 unicast"].as_object() {
                    for (hop, nlris) in by_hop {
                        let hop: Ipv4Addr = hop.parse().with_context(|| format!("hop {hop}"))?;
                        for n in nlris.as_array().into_iter().flatten() {
                            if let Some(p) = n["nlri"].as_str() {
                                rib.insert(p.parse()?, hop);
                            }
                        }
                    }
                }
                for n in update["withdraw"]["ipv4 unicast"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(p) = n["nlri"].as_str() {
                        rib.remove(&p.parse::<Ipv4Net>()?);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(r)
}

impl BgpPeer for ExaBgp {
    fn kind(&self) -> &'static str {
        "exabgp"
    }

    fn established(&self, peer: Ipv4Addr) -> Result<bool> {
        if self.cfg.find(peer).is_none() {
            bail!("{peer} is not a configured neighbor");
        }
        let r = replay(&self.events()?)?;
        Ok(r.state.get(&peer).map(String::as_str) == Some("up"))
    }

    fn received_routes(&self) -> Result<Vec<ReceivedRoute>> {
        let r = replay(&self.events()?)?;
        Ok(r.routes
            .values()
            .flat_map(|rib| {
                rib.iter().map(|(p, h)| ReceivedRoute {
                    prefix: *p,
                    next_hop: *h,
                })
            })
            .collect())
    }

    fn announce(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.command(&format!("announce route {prefix} next-hop self"))
    }

    fn withdraw(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.command(&format!("withdraw route {prefix} next-hop self"))
    }

    fn stop(&mut self) -> Result<()> {
        self.daemon.kill();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn replays_state_announce_withdraw_and_down() {
        // Shapes captured from ExaBGP 4.2.21.
        let up = ev(
            r#"{"type":"state","neighbor":{"address":{"local":"10.5.0.1","peer":"10.5.0.2"},"state":"up"}}"#,
        );
        let ann = ev(
            r#"{"type":"update","neighbor":{"address":{"local":"10.5.0.1","peer":"10.5.0.2"},"direction":"receive","message":{"update":{"attribute":{"origin":"igp"},"announce":{"ipv4 unicast":{"10.5.0.2":[{"nlri":"10.20.0.0/24"},{"nlri":"10.21.0.0/24"}]}}}}}}"#,
        );
        let wd = ev(
            r#"{"type":"update","neighbor":{"address":{"local":"10.5.0.1","peer":"10.5.0.2"},"direction":"receive","message":{"update":{"withdraw":{"ipv4 unicast":[{"nlri":"10.20.0.0/24"}]}}}}}"#,
        );
        let down = ev(
            r#"{"type":"state","neighbor":{"address":{"local":"10.5.0.1","peer":"10.5.0.2"},"state":"down","reason":"x"}}"#,
        );
        let peer: Ipv4Addr = "10.5.0.2".parse().unwrap();

        let r = replay(&[up.clone(), ann.clone(), wd.clone()]).unwrap();
        assert_eq!(r.state[&peer], "up");
        let rib = &r.routes[&peer];
        assert_eq!(rib.len(), 1);
        assert_eq!(rib[&"10.21.0.0/24".parse().unwrap()], peer);

        let r = replay(&[up, ann, wd, down]).unwrap();
        assert_eq!(r.state[&peer], "down");
        assert!(!r.routes.contains_key(&peer));
    }
}
