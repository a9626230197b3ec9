//! What the lab prints: status, routes, the cross-node ping, and hints that work as printed.

use crate::state::{LabState, NodeState};
use crate::{bin, sys, Cli, DEFAULT_DIR, DEFAULT_PREFIX};
use agent::say;
use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;

pub fn routectl(node: &NodeState, args: &[&str]) -> Result<Value> {
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

pub fn mesh_up(st: &LabState) -> Result<bool> {
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
pub fn routes_converged(st: &LabState) -> Result<bool> {
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

/// `routectl show` and the Gingham routes of every node.
pub fn routes(st: &LabState) {
    for n in &st.nodes {
        say!("=== {} ({}) — routectl show", n.name, n.ip);
        agent::output::print(&routectl_text(n, &["show"]));
        say!("--- {}: ip route | grep -E 'bird|blackhole|cali'", n.name);
        if let Ok(r) = sys::ip(&n.netns, &["route", "show"]) {
            for line in r
                .lines()
                .filter(|l| l.contains("bird") || l.contains("blackhole") || l.contains("cali"))
            {
                say!("{line}");
            }
        }
        say!();
    }
}

pub fn ping_across(st: &LabState) -> Result<bool> {
    let a = st
        .pods
        .iter()
        .find(|p| Some(&p.node) == st.nodes.first().map(|n| &n.name));
    let b = st
        .pods
        .iter()
        .find(|p| Some(&p.node) == st.nodes.get(1).map(|n| &n.name));
    let (Some(a), Some(b)) = (a, b) else {
        say!("(need pods on two nodes for a cross-node ping)");
        return Ok(true);
    };
    let dst =
        b.ip.ok_or_else(|| anyhow!("pod {} has no address", b.name))?
            .to_string();
    say!(
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
    agent::output::print(&String::from_utf8_lossy(&out.stdout));
    Ok(out.status.success())
}

/// `gingham-lab <args>` as the user can type it: the binary's full path, and `--dir` /
/// `--prefix` when this lab is not the default one.
pub fn lab_command(cli: &Cli, args: &str) -> String {
    let mut s = bin("gingham-lab").display().to_string();
    if cli.dir != Path::new(DEFAULT_DIR) {
        s.push_str(&format!(" --dir {}", cli.dir.display()));
    }
    if cli.prefix != DEFAULT_PREFIX {
        s.push_str(&format!(" --prefix {}", cli.prefix));
    }
    format!("{s} {args}")
}

/// What to try next, every line a command that works as printed.
pub fn hints(cli: &Cli, st: &LabState) -> String {
    let routectl = bin("routectl").display().to_string();
    let mut s = String::from("The lab is up. Try:\n");
    s.push_str(&format!("  {}\n", lab_command(cli, "status")));
    if let Some(n) = st.nodes.get(1).or(st.nodes.first()) {
        s.push_str(&format!(
            "  {routectl} --socket {} show routes\n",
            n.control_socket.display()
        ));
        s.push_str(&format!(
            "  {}\n",
            lab_command(cli, &format!("exec {} -- ip route", n.name))
        ));
        s.push_str(&format!(
            "  {}\n",
            lab_command(cli, &format!("exec {} -- tcpdump -ni eth0 icmp", n.name))
        ));
        s.push_str(&format!(
            "  {}\n",
            lab_command(cli, &format!("logs {}", n.name))
        ));
    }
    if let Some(p) = st.pods.first() {
        s.push_str(&format!(
            "  {}\n",
            lab_command(cli, &format!("exec {} -- ip addr", p.name))
        ));
    }
    s.push_str(&format!("  {}", lab_command(cli, "down")));
    s
}

/// The datastore as the agents' flags name it.
fn datastore(st: &LabState) -> String {
    if st.uses_etcd() {
        format!("etcd {}", st.etcd_endpoints())
    } else {
        format!("file:{}", st.datastore.display())
    }
}

pub fn status(st: &LabState, as_json: bool, dir: &Path) {
    if as_json {
        let v = json!({
            "dir": dir,
            "prefix": st.prefix,
            "underlay_netns": st.underlay_netns,
            "subnet": st.subnet,
            "datastore": datastore(st),
            "datastore_dir": (!st.uses_etcd()).then_some(&st.datastore),
            "from_manifest": st.manifest.as_ref().map(|w| &w.source),
            "etcd": st.etcd.iter().map(|m| json!({
                "name": m.name,
                "netns": m.netns,
                "endpoint": format!("http://{}:2379", m.ip),
                "running": sys::pid_alive(m.pid),
                "state": crate::etcd::state(m),
                "pid": m.pid,
                "data_dir": m.data_dir,
                "log": m.log,
            })).collect::<Vec<_>>(),
            "nodes": st.nodes.iter().map(|n| json!({
                "name": n.name,
                "netns": n.netns,
                "ip": n.ip,
                "control_socket": n.control_socket,
                "agent_running": sys::pid_alive(n.agent_pid),
                "agent_pid": n.agent_pid,
                "log": n.log,
            })).collect::<Vec<_>>(),
            "pods": st.pods.iter().map(|p| json!({
                "name": p.name,
                "namespace": p.namespace,
                "node": p.node,
                "netns": p.netns,
                "ip": p.ip,
                "interface": p.interface,
                "container_id": p.container_id,
            })).collect::<Vec<_>>(),
        });
        say!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return;
    }
    say!(
        "Lab in {} (datastore {}), underlay {} in namespace {}",
        dir.display(),
        datastore(st),
        st.subnet,
        st.underlay_netns
    );
    if st.uses_etcd() {
        say!();
        say!(
            "{:<10} {:<24} {:<26} {:<10} {:<8} LOG",
            "ETCD",
            "NETNS",
            "ENDPOINT",
            "STATE",
            "PID"
        );
        for m in &st.etcd {
            say!(
                "{:<10} {:<24} {:<26} {:<10} {:<8} {}",
                m.name,
                m.netns,
                format!("http://{}:2379", m.ip),
                crate::etcd::state(m),
                m.pid,
                m.log.display()
            );
        }
    }
    say!();
    say!(
        "{:<24} {:<24} {:<14} {:<8} {:<44} LOG",
        "NODE",
        "NETNS",
        "IP",
        "AGENT",
        "CONTROL SOCKET"
    );
    for n in &st.nodes {
        let running = if sys::pid_alive(n.agent_pid) {
            "running"
        } else {
            "stopped"
        };
        say!(
            "{:<24} {:<24} {:<14} {:<8} {:<44} {}",
            n.name,
            n.netns,
            n.ip,
            running,
            n.control_socket.display(),
            n.log.display()
        );
    }
    say!();
    say!(
        "{:<14} {:<10} {:<24} {:<20} {:<16} INTERFACE",
        "POD",
        "NAMESPACE",
        "NODE",
        "NETNS",
        "IP"
    );
    for p in &st.pods {
        say!(
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
