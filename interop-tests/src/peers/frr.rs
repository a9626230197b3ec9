//! FRR as a peer: `zebra` and `bgpd` run directly (no watchfrr, no init scripts) in the
//! namespace, every socket and pid file in the instance directory; queried with `vtysh
//! --vty_socket <dir>`.
//!
//! Announcements are `network` statements with `no bgp network import-check`, so no static
//! route is needed to back them.

use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;
use serde_json::Value;

use super::{BgpPeer, PeerConfig, ReceivedRoute};
use crate::netns::{check, run_host, Netns};
use crate::process::Daemon;

const ZEBRA: &str = "/usr/lib/frr/zebra";
const BGPD: &str = "/usr/lib/frr/bgpd";

pub struct Frr {
    cfg: PeerConfig,
    dir: PathBuf,
    // bgpd before zebra: dropped (killed) in declaration order.
    bgpd: Daemon,
    zebra: Daemon,
}

impl Frr {
    /// Starts zebra then bgpd in `ns` with their files in `dir`; returns once vtysh reaches
    /// bgpd.
    pub fn start(ns: &Netns, dir: &Path, cfg: PeerConfig) -> Result<Frr> {
        std::fs::create_dir_all(dir)?;
        // zebra insists on dropping to the `frr` user (root is not in group frrvty), so its
        // directory must be the frr user's; bgpd keeps root with -S.
        run_host(&["chown", "frr:frr", &dir.to_string_lossy()])?;
        let d = |f: &str| dir.join(f).to_string_lossy().into_owned();
        std::fs::write(dir.join("zebra.conf"), "hostname zebra\n")?;
        std::fs::write(dir.join("bgpd.conf"), render(&cfg))?;
        let common = |conf: &str, pid: &str| {
            vec![
                "-f".to_string(),
                d(conf),
                "-i".to_string(),
                d(pid),
                "-z".to_string(),
                d("zserv.api"),
                "--vty_socket".to_string(),
                dir.to_string_lossy().into_owned(),
                // No TCP vty: only the Unix socket in our directory.
                "-P".to_string(),
                "0".to_string(),
                "--log".to_string(),
                "stdout".to_string(),
            ]
        };
        let mut zargv = vec![ZEBRA.to_string(), "-u".into(), "frr".into(), "-g".into()];
        zargv.push("frr".into());
        zargv.extend(common("zebra.conf", "zebra.pid"));
        let zargv: Vec<&str> = zargv.iter().map(String::as_str).collect();
        let zebra = ns.spawn(dir, "zebra", &zargv)?;
        let zserv = dir.join("zserv.api");
        zebra.wait_ready(Duration::from_secs(10), "zebra's zserv socket", || {
            Ok(zserv.exists())
        })?;

        let port = cfg.listen_port.to_string();
        let mut bargv = vec![BGPD.to_string(), "-S".into(), "-p".into(), port];
        bargv.extend(common("bgpd.conf", "bgpd.pid"));
        let bargv: Vec<&str> = bargv.iter().map(String::as_str).collect();
        let bgpd = ns.spawn(dir, "bgpd", &bargv)?;
        let frr = Frr {
            cfg,
            dir: dir.to_path_buf(),
            bgpd,
            zebra,
        };
        frr.bgpd
            .wait_ready(Duration::from_secs(10), "bgpd vty", || {
                Ok(frr.vtysh(&["show bgp summary json"]).is_ok())
            })?;
        Ok(frr)
    }

    /// Runs `vtysh --vty_socket <dir> -c <cmd> -c <cmd> ...`.
    pub fn vtysh(&self, cmds: &[&str]) -> Result<String> {
        let mut c = Command::new("vtysh");
        c.arg("--vty_socket").arg(&self.dir);
        for cmd in cmds {
            c.arg("-c").arg(cmd);
        }
        let out = c.output().context("running vtysh")?;
        let text = check(&format!("vtysh {cmds:?}"), out)?;
        // vtysh exits 0 on some command errors; catch the usual markers.
        if text.contains("% Unknown command") || text.contains("% Invalid") {
            bail!("vtysh {cmds:?}: {text}");
        }
        Ok(text)
    }

    fn vtysh_json(&self, cmd: &str) -> Result<Value> {
        let out = self.vtysh(&[cmd])?;
        serde_json::from_str(&out).with_context(|| format!("vtysh {cmd:?} JSON: {out}"))
    }

    fn network(&self, prefix: Ipv4Net, add: bool) -> Result<()> {
        let router = format!("router bgp {}", self.cfg.local_as);
        let stmt = format!("{}network {prefix}", if add { "" } else { "no " });
        self.vtysh(&[
            "configure terminal",
            &router,
            "address-family ipv4 unicast",
            &stmt,
        ])?;
        Ok(())
    }
}

fn render(cfg: &PeerConfig) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "hostname bgpd\nlog stdout informational");
    let _ = writeln!(s, "router bgp {}", cfg.local_as);
    let _ = writeln!(s, " bgp router-id {}", cfg.router_id);
    // FRR 8 refuses to exchange eBGP routes without policies unless told otherwise.
    let _ = writeln!(s, " no bgp ebgp-requires-policy");
    let _ = writeln!(s, " no bgp network import-check");
    // FRR advertises GR (helper) by default; a GR-aware neighbor would then keep our routes as
    // stale after we die instead of dropping them. Tests that want GR ask for it.
    if cfg.graceful_restart {
        let _ = writeln!(s, " bgp graceful-restart");
    } else {
        let _ = writeln!(s, " bgp graceful-restart-disable");
    }
    let keepalive = (cfg.hold_time / 3).max(1);
    for n in &cfg.neighbors {
        let a = n.addr;
        let _ = writeln!(s, " neighbor {a} remote-as {}", n.remote_as);
        let _ = writeln!(s, " neighbor {a} update-source {}", cfg.local_ip);
        let _ = writeln!(s, " neighbor {a} port {}", n.port);
        let _ = writeln!(s, " neighbor {a} timers {keepalive} {}", cfg.hold_time);
        let _ = writeln!(s, " neighbor {a} timers connect 2");
        if n.passive {
            let _ = writeln!(s, " neighbor {a} passive");
        }
    }
    let _ = writeln!(s, " address-family ipv4 unicast");
    for n in &cfg.neighbors {
        // iBGP: advertise our own address, as every other peer launcher does.
        let _ = writeln!(s, "  neighbor {} next-hop-self", n.addr);
    }
    let _ = writeln!(s, " exit-address-family");
    s
}

impl BgpPeer for Frr {
    fn kind(&self) -> &'static str {
        "frr"
    }

    fn established(&self, peer: Ipv4Addr) -> Result<bool> {
        let v = self.vtysh_json("show bgp summary json")?;
        let state = &v["ipv4Unicast"]["peers"][peer.to_string()]["state"];
        Ok(state.as_str() == Some("Established"))
    }

    fn received_routes(&self) -> Result<Vec<ReceivedRoute>> {
        parse_routes(&self.vtysh_json("show bgp ipv4 unicast json")?)
    }

    fn announce(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.network(prefix, true)
    }

    fn withdraw(&mut self, prefix: Ipv4Net) -> Result<()> {
        self.network(prefix, false)
    }

    fn stop(&mut self) -> Result<()> {
        self.bgpd.kill();
        self.zebra.kill();
        Ok(())
    }
}

/// Parses `show bgp ipv4 unicast json`; skips our own `network` routes (peerId "(unspec)").
fn parse_routes(v: &Value) -> Result<Vec<ReceivedRoute>> {
    let mut routes = Vec::new();
    let Some(map) = v["routes"].as_object() else {
        return Ok(routes);
    };
    for (prefix, paths) in map {
        let prefix: Ipv4Net = prefix.parse().with_context(|| format!("prefix {prefix}"))?;
        for path in paths.as_array().into_iter().flatten() {
            if path["peerId"]
                .as_str()
                .is_none_or(|p| p.parse::<Ipv4Addr>().is_err())
            {
                continue;
            }
            let Some(hop) = path["nexthops"][0]["ip"].as_str() else {
                bail!("FRR path for {prefix} without next hop: {path}");
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
    fn parses_routes_and_skips_local_networks() {
        // Captured from FRR 8.4.
        let v: Value = serde_json::from_str(r#"{"routerId":"10.5.0.1","routes":{"10.11.0.0/24":[{"valid":true,"bestpath":true,"peerId":"(unspec)","nexthops":[{"ip":"0.0.0.0","afi":"ipv4","used":true}]}],"10.20.0.0/24":[{"valid":true,"bestpath":true,"peerId":"10.5.0.2","path":"4200000001","nexthops":[{"ip":"10.5.0.2","afi":"ipv4","used":true}]}]}}"#).unwrap();
        let r = parse_routes(&v).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].prefix, "10.20.0.0/24".parse().unwrap());
        assert_eq!(r[0].next_hop, "10.5.0.2".parse::<Ipv4Addr>().unwrap());
    }
}
