//! The lab's etcd cluster (`up --datastore etcd`): three members, each a namespace of its own on
//! the underlay (172.18.255.201 upwards, far above the nodes), with its data directory and log
//! under the lab dir. Agents are given all three endpoints; `etcd stop|start <member>` lets a
//! user watch the cluster lose a member, then its quorum, and recover.

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use interop_tests::etcd::{initial_cluster, member_argv, member_status, MemberSpec};

use crate::node::{mac, write_neighbour_ips};
use crate::state::{EtcdMemberState, LabState};
use crate::{sys, wait};

pub const MEMBERS: usize = 3;

fn address(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(172, 18, 255, 201 + i as u8)
}

pub fn spec(m: &EtcdMemberState) -> MemberSpec {
    MemberSpec {
        name: m.name.clone(),
        netns: m.netns.clone(),
        ip: m.ip,
        client_port: 2379,
        peer_port: 2380,
        tls: None,
    }
}

/// The namespaces the members will have, to check none exists before `up`.
pub fn netns_names(prefix: &str) -> Vec<String> {
    (0..MEMBERS).map(|i| format!("{prefix}-etcd{i}")).collect()
}

/// Makes the members' namespaces on the underlay and records them (nothing runs yet).
pub fn create(dir: &Path, st: &mut LabState) -> Result<()> {
    for (i, netns) in netns_names(&st.prefix).into_iter().enumerate() {
        let ip = address(i);
        let name = format!("etcd{i}");
        let member_dir = dir.join(&name);
        std::fs::create_dir_all(&member_dir)?;
        let port = format!("e{i}");
        sys::netns_add(&netns)?;
        // Recorded at once, so a failure below is still cleaned up by `down`.
        st.etcd.push(EtcdMemberState {
            name,
            netns: netns.clone(),
            ip,
            pid: 0,
            data_dir: member_dir.join("data"),
            log: member_dir.join("etcd.log"),
            bridge_port: port.clone(),
        });
        st.save(dir)?;
        sys::ip(
            &netns,
            &[
                "link",
                "add",
                "eth0",
                "address",
                &mac(ip),
                "type",
                "veth",
                "peer",
                "name",
                &port,
            ],
        )?;
        sys::ip(&netns, &["link", "set", &port, "netns", &st.underlay_netns])?;
        sys::ip(
            &st.underlay_netns,
            &["link", "set", &port, "master", "br0", "up"],
        )?;
        sys::ip(&netns, &["addr", "add", &format!("{ip}/16"), "dev", "eth0"])?;
        sys::ip(&netns, &["link", "set", "eth0", "up"])?;
    }
    Ok(())
}

/// Permanent neighbour entries between the members and every node (see
/// `node::write_neighbours`: the kernel's shared ARP table stays out of it).
pub fn write_neighbours(st: &LabState) -> Result<()> {
    let nodes: Vec<Ipv4Addr> = st.nodes.iter().map(|n| n.ip).collect();
    let members: Vec<Ipv4Addr> = st.etcd.iter().map(|m| m.ip).collect();
    for m in &st.etcd {
        let others: Vec<Ipv4Addr> = nodes
            .iter()
            .chain(members.iter())
            .copied()
            .filter(|ip| *ip != m.ip)
            .collect();
        write_neighbour_ips(&m.netns, &others)?;
    }
    for n in &st.nodes {
        write_neighbour_ips(&n.netns, &members)?;
    }
    Ok(())
}

/// Starts member `i` (with its data, if it ran before: it rejoins).
pub fn start(st: &mut LabState, i: usize) -> Result<i32> {
    let m = st.etcd.get(i).context("no such etcd member")?.clone();
    if sys::pid_alive(m.pid) {
        return Ok(m.pid);
    }
    let specs: Vec<MemberSpec> = st.etcd.iter().map(spec).collect();
    let argv = member_argv(&spec(&m), &m.data_dir, &initial_cluster(&specs), &st.prefix);
    let log = std::fs::File::options()
        .create(true)
        .append(true)
        .open(&m.log)
        .with_context(|| format!("opening {}", m.log.display()))?;
    interop_tests::process::find_program("etcd")
        .context("the etcd datastore needs Debian's etcd-server (./scripts/install-deps)")?;
    let child = Command::new("ip")
        .args(["netns", "exec", &m.netns])
        .args(&argv)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting etcd")?;
    let pid = child.id() as i32;
    st.etcd[i].pid = pid;
    Ok(pid)
}

/// SIGTERM, as `systemctl stop etcd` would; SIGKILL if it has not gone in 10 s.
pub fn stop(st: &mut LabState, i: usize) -> Result<()> {
    let m = st.etcd.get(i).context("no such etcd member")?;
    if !sys::terminate(m.pid, Duration::from_secs(10)) {
        sys::stop_pid(m.pid);
    }
    st.etcd[i].pid = 0;
    Ok(())
}

pub fn index(st: &LabState, member: &str) -> Result<usize> {
    st.etcd
        .iter()
        .position(|m| m.name == member)
        .with_context(|| {
            if st.uses_etcd() {
                let names: Vec<&str> = st.etcd.iter().map(|m| m.name.as_str()).collect();
                format!(
                    "no etcd member named {member} (the members: {})",
                    names.join(", ")
                )
            } else {
                "this lab runs on the file datastore (start one with `up --datastore etcd`)".into()
            }
        })
}

/// What a member is doing now: `leader`, `follower`, `stopped`, or `no answer`.
pub fn state(m: &EtcdMemberState) -> &'static str {
    if !sys::pid_alive(m.pid) {
        return "stopped";
    }
    match member_status(&spec(m)) {
        Ok((true, _)) => "leader",
        Ok((false, _)) => "follower",
        Err(_) => "no answer",
    }
}

/// Waits until the running members have elected a leader.
pub fn wait_healthy(st: &LabState, timeout: Duration) -> Result<()> {
    wait("etcd to elect a leader", timeout, || {
        for m in &st.etcd {
            if m.pid != 0 && !sys::pid_alive(m.pid) {
                bail!("etcd member {} exited; see {}", m.name, m.log.display());
            }
        }
        Ok(st.etcd.iter().any(|m| state(m) == "leader"))
    })
}

/// A store on the lab's etcd, for what the lab does without an agent (`node del`,
/// `pod del --force`). Its client lives in the underlay namespace, the one place besides the
/// nodes that reaches the members.
pub fn open_store(st: &LabState) -> Result<Arc<dyn ipam::Store>> {
    let cfg =
        ipam::store::EtcdConfig::new(st.etcd_endpoints().split(',').map(str::to_string).collect());
    let store = agent::netns::spawn_in_netns(&st.underlay_netns, move || {
        ipam::store::EtcdStore::connect(&cfg)
    })?
    .join()
    .map_err(|_| anyhow::anyhow!("connecting to etcd panicked"))??;
    Ok(Arc::new(store))
}
