//! GoBGP as a peer: `gobgpd` with a TOML config in the namespace, driven by the `gobgp` CLI over
//! gRPC on the namespace's own loopback (so every instance may use the same port).

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{BgpPeer, PeerConfig, ReceivedRoute};
use crate::netns::Netns;
use crate::process::Daemon;

/// gRPC port; explicit so no instance relies on the default.
const API_PORT: u16 = 50051;

/// `session_state` value of an Established peer in gobgp's JSON (apipb.PeerState).
const ESTABLISHED: u64 = 6;

pub struct GoBgp {
    cfg: PeerConfig,
    ns_name: String,
    daemon: Daemon,
}

impl GoBgp {
    /// Starts gobgpd in `ns` with its files in `dir`; returns once its API answers.
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<GoBgp> {
        std::fs::create_dir_all(dir)?;
        let conf = dir.join("gobgpd.toml");
        std::fs::write(&conf, render(&cfg))?;
        let api = format!("127.0.0.1:{API_PORT}");
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
                &api,
            ],
        )?;
        let g = GoBgp {
            cfg,
            ns_name: ns.name().to_string(),
            daemon,
        };
        g.daemon
            .wait_ready(Duration::from_secs(10), "gobgpd API", || {
                Ok(g.gobgp(&["global"]).is_ok())
            })?;
        Ok(g)
    }

    /// Runs `gobgp -p <port> <args>` inside the namespace (the API listens on its loopback).
    pub fn gobgp(&self, args: &[&str]) -> Result<String> {
        let port = API_PORT.to_string();
        let mut argv = vec![
            "ip",
            "netns",
            "exec",
            &self.ns_name,
            "gobgp",
            "--host",
            "127.0.0.1",
            "-p",
            &port,
        ];
        argv.extend_from_slice(args);
        crate::netns::run_host(&argv)
    }

    fn gobgp_json(&self, args: &[&str]) -> Result<Value> {
        let out = self.gobgp(args)?;
        if out.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&out).with_context(|| format!("gobgp {args:?} JSON: {out}"))
    }
}

fn render(cfg: &PeerConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "[global.config]");
    let _ = writeln!(s, "  as = {}", cfg.local_as);
    let _ = writeln!(s, "  router-id = \"{}\"", cfg.router_id);
    let _ = writeln!(s, "  port = {}", cfg.listen_port);
    let _ = writeln!(s, "  local-address-list = [\"{}\"]", cfg.local_ip);
    for n in &cfg.neighbors {
        let _ = writeln!(s, "[[neighbors]]\n  [neighbors.config]");
        let _ = writeln!(s, "    neighbor-address = \"{}\"", n.addr);
        let _ = writeln!(s, "    peer-as = {}", n.remote_as);
        let _ = writeln!(s, "  [neighbors.timers.config]");
        let _ = writeln!(s, "    hold-time = {}", cfg.hold_time);
        let _ = writeln!(s, "    keepalive-interval = {}", (cfg.hold_time / 3).max(1));
        // The default (120 s) would stall a test after one refused connection.
        let _ = writeln!(s, "    connect-retry = 2");
        let _ = writeln!(s, "    idle-hold-time-after-reset = 1");
        let _ = writeln!(s, "  [neighbors.transport.config]");
        let _ = writeln!(s, "    local-address = \"{}\"", cfg.local_ip);
        let _ = writeln!(s, "    remote-port = {}", n.port);
        let _ = writeln!(s, "    passive-mode = {}", n.passive);
        let _ = writeln!(
            s,
            "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]"
        );
        let _ = writeln!(s, "      afi-safi-name = \"ipv4-unicast\"");
        if cfg.graceful_restart {
            let _ = writeln!(s, "    [neighbors.afi-safis.mp-graceful-restart.config]");
            let _ = writeln!(s, "      enabled = true");
            let _ = writeln!(s, "  [neighbors.graceful-restart.config]");
            let _ = writeln!(s, "    enabled = true\n    restart-time = 120");
        }
    }
    s
}

impl BgpPeer for GoBgp {
    fn kind(&self) -> &'static str {
        "gobgp"
    }

    fn established(&self, peer: Ipv4Addr) -> Result<bool> {
        let v = self.gobgp_json(&["neighbor", &peer.to_string(), "-j"])?;
        // `neighbor <ip> -j` prints one object; `neighbor -j` a list. Accept both.
        let peer_obj = match &v {
            Value::Array(a) => a.first().cloned().unwrap_or(Value::Null),
            other => other.clone(),
        };
        Ok(peer_obj["state"]["session_state"].as_u64() == Some(ESTABLISHED))
    }

    fn received_routes(&self) -> Result<Vec<ReceivedRoute>> {
        let mut all = Vec::new();
        for n in &self.cfg.neighbors {
            // adj-in shows what the neighbor sent even when a local path wins best-path.
            match self.gobgp_json(&["neighbor", &n.addr.to_string(), "adj-in", "-j"]) {
                Ok(v) => all.extend(parse_rib(&v)?),
                // gobgp refuses adj-in for a neighbor that is down: it holds nothing from it.
                Err(e) if format!("{e:#}").contains("is not established") => {}
                Err(e) => return Err(e),
            }
        }
        Ok(all)
    }

    fn announce(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.gobgp(&["global", "rib", "add", "-a", "ipv4", &prefix.to_string()])?;
        Ok(())
    }

    fn withdraw(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.gobgp(&["global", "rib", "del", "-a", "ipv4", &prefix.to_string()])?;
        Ok(())
    }

    fn stop(&mut self) -> Result<()> {
        self.daemon.kill();
        Ok(())
    }
}

/// Parses `{"<prefix>": [{"attrs": [{"type": 3, "nexthop": "<ip>"}, ...]}, ...]}`.
fn parse_rib(v: &Value) -> Result<Vec<ReceivedRoute>> {
    let Some(map) = v.as_object() else {
        // An empty adj-in prints nothing or `null`.
        return Ok(Vec::new());
    };
    let mut routes = Vec::new();
    for (prefix, paths) in map {
        let prefix: Ipv4Net = prefix.parse().with_context(|| format!("prefix {prefix}"))?;
        for path in paths.as_array().into_iter().flatten() {
            let hop = path["attrs"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|a| a["nexthop"].as_str());
            let Some(hop) = hop else {
                bail!("gobgp path for {prefix} without next hop: {path}");
            };
            routes.push(ReceivedRoute {
                prefix,
                next_hop: hop.parse().with_context(|| format!("next hop {hop}"))?,
            });
        }
    }
    Ok(routes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_adj_in() {
        // Captured from gobgp 3.10.
        let v: Value = serde_json::from_str(r#"{"10.20.0.0/24":[{"nlri":{"prefix":"10.20.0.0/24"},"age":1795334720,"best":false,"attrs":[{"type":1,"value":0},{"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[4200000001]}]},{"type":3,"nexthop":"10.5.0.2"}],"stale":false,"source-id":"10.5.0.2","neighbor-ip":"10.5.0.2"}]}"#).unwrap();
        let r = parse_rib(&v).unwrap();
        assert_eq!(
            r,
            vec![ReceivedRoute {
                prefix: "10.20.0.0/24".parse().unwrap(),
                next_hop: "10.5.0.2".parse().unwrap()
            }]
        );
    }
}
