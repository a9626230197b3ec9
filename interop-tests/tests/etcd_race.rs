//! Four processes on two nodes assign 2000 addresses and release 1000 on a real three-member
//! etcd cluster; halfway through, the leader is killed (SIGKILL) and later started again. No
//! address is held twice, the store holds exactly what the workers believe they hold, `check()`
//! finds nothing, and every assign either succeeded once or failed with a clear error.
//!
//! The test re-executes its own binary as the workers, inside the cluster's namespace.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use interop_tests::etcd::EtcdCluster;
use interop_tests::{wait_until, Netns, TestDir};
use ipam::store::{EtcdConfig, EtcdStore, Store, StoreError};
use ipam::{AllocationAttrs, Ipam, IpamError, IpamSettings, NodeRecord, NodeRegistry};

const ROLE: &str = "GINGHAM_ETCD_RACE_WORKER";
const RESULT: &str = "RACE-RESULT ";
const POOL: &str = "10.96.0.0/20";
const PER_WORKER: usize = 500;

fn open(endpoints: &str) -> Ipam {
    let mut cfg = EtcdConfig::new(endpoints.split(',').map(str::to_string).collect());
    cfg.prefix = "/race/".into();
    cfg.timeout = Duration::from_secs(3);
    let store: Arc<dyn Store> = Arc::new(EtcdStore::connect(&cfg).expect("connect"));
    let settings = IpamSettings {
        pool_cidr: POOL.parse().unwrap(),
        ..Default::default()
    };
    // etcd may be electing a leader right now: opening waits for it, as the agent does.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match Ipam::open(store.clone(), settings.clone()) {
            Ok(ipam) => return ipam,
            Err(IpamError::Store(StoreError::Unavailable(_))) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200))
            }
            Err(e) => panic!("open ipam: {e}"),
        }
    }
}

fn unavailable(e: &IpamError) -> bool {
    matches!(e, IpamError::Store(StoreError::Unavailable(_)))
}

/// Retries `f` while etcd is unavailable (a leader election): an assign is idempotent per
/// handle, so a retry after a timeout whose write did commit returns the same address.
fn retrying<T>(what: &str, mut f: impl FnMut() -> Result<T, IpamError>) -> (T, u32) {
    let mut failures = 0;
    loop {
        match f() {
            Ok(v) => return (v, failures),
            Err(e) if unavailable(&e) && failures < 60 => {
                // The error must say what is wrong, in words a user can act on.
                let msg = e.to_string();
                assert!(msg.contains("etcd"), "{what}: unclear error: {msg}");
                failures += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            Err(e) => panic!("{what}: {e}"),
        }
    }
}

/// The worker role: assign `PER_WORKER` addresses, releasing an earlier one after every second
/// assign; write progress to a file, then print what it still holds.
#[test]
fn worker() {
    let Ok(spec) = std::env::var(ROLE) else {
        return; // run as a normal test: nothing to do
    };
    let mut parts = spec.split(';');
    let mut part = || parts.next().unwrap().to_string();
    let (endpoints, node, id, progress) = (part(), part(), part(), part());
    let ipam = open(&endpoints);
    let attrs = AllocationAttrs {
        node: node.clone(),
        pod: None,
        namespace: Some("race".into()),
    };
    let mut held: Vec<(String, Ipv4Addr)> = Vec::new();
    let (mut released, mut retries) = (0, 0);
    for i in 0..PER_WORKER {
        let handle = format!("w{id}-{i}");
        let (ip, r) = retrying("assign", || ipam.assign(&handle, &attrs));
        retries += r;
        assert!(!held.iter().any(|(_, h)| *h == ip), "{ip} given twice");
        held.push((handle, ip));
        if i % 2 == 1 {
            let (h, ip) = held.remove(held.len() / 2);
            let (freed, r) = retrying("release", || ipam.release(&h));
            retries += r;
            // A release retried after a timeout that did commit frees nothing the second time.
            assert!(
                freed == vec![ip] || (r > 0 && freed.is_empty()),
                "{freed:?}"
            );
            released += 1;
        }
        if i % 20 == 0 {
            let _ = std::fs::write(&progress, i.to_string());
        }
    }
    let ips: Vec<String> = held.iter().map(|(_, ip)| ip.to_string()).collect();
    println!("{RESULT}{released} {retries} {}", ips.join(","));
}

fn progress(dir: &Path, workers: usize) -> usize {
    (0..workers)
        .filter_map(|i| std::fs::read_to_string(dir.join(format!("progress-{i}"))).ok())
        .filter_map(|s| s.trim().parse::<usize>().ok())
        .sum()
}

#[test]
fn four_processes_race_on_a_three_member_cluster_while_its_leader_is_killed() -> Result<()> {
    let dir = TestDir::new("etcdrace")?;
    let ns = Netns::new("getcdr")?;
    let mut cluster = EtcdCluster::on_loopback(ns.name(), 3, dir.path())?;
    cluster.start()?;
    let endpoints = cluster.endpoints().join(",");
    let ipam = {
        let e = endpoints.clone();
        ns.spawn_thread(move || open(&e))?
            .join()
            .map_err(|_| anyhow::anyhow!("open panicked"))?
    };
    let registry = NodeRegistry::new(ipam.store().clone());
    let nodes = ["node-a", "node-b"];
    for (i, n) in nodes.iter().enumerate() {
        registry.register(&NodeRecord {
            name: n.to_string(),
            address: Ipv4Addr::new(172, 18, 0, 2 + i as u8),
            asn: 64512,
            last_heartbeat: 0,
        })?;
    }
    let exe = std::env::current_exe()?;
    let workers = 4;
    let start = Instant::now();
    let children: Vec<_> = (0..workers)
        .map(|id| {
            let progress = dir.path().join(format!("progress-{id}"));
            Command::new("ip")
                .args(["netns", "exec", ns.name()])
                .arg(&exe)
                .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
                .env(
                    ROLE,
                    format!("{endpoints};{};{id};{}", nodes[id % 2], progress.display()),
                )
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .context("starting a worker")
        })
        .collect::<Result<_>>()?;

    // Halfway: kill the leader, let the others elect a new one, then bring it back.
    wait_until(Duration::from_secs(300), "half of the assigns", || {
        Ok(progress(dir.path(), workers) >= workers * PER_WORKER / 2)
    })?;
    let leader = cluster.leader()?.context("a leader")?;
    cluster.kill_member(leader);
    let killed_at = progress(dir.path(), workers);
    std::thread::sleep(Duration::from_secs(3));
    cluster.start_member(leader)?;

    let mut all = BTreeSet::new();
    let (mut released, mut retries) = (0, 0);
    for child in children {
        let out = child.wait_with_output()?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            .find_map(|l| l.find(RESULT).map(|i| &l[i + RESULT.len()..]))
            .context("worker printed no result")?;
        let mut f = line.split(' ');
        released += f.next().context("released")?.parse::<usize>()?;
        retries += f.next().context("retries")?.parse::<u32>()?;
        for ip in f.next().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
            let ip: Ipv4Addr = ip.parse()?;
            assert!(all.insert(ip), "{ip} is held by two workers");
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(released, workers * PER_WORKER / 2);
    assert_eq!(all.len(), workers * PER_WORKER / 2);
    let stored: BTreeSet<Ipv4Addr> = nodes
        .iter()
        .flat_map(|n| ipam.allocations(n).unwrap())
        .map(|a| a.ip)
        .collect();
    assert_eq!(
        stored, all,
        "the store disagrees with what the workers hold"
    );
    let problems = ipam.check()?;
    assert!(problems.is_empty(), "{problems:#?}");
    cluster.wait_healthy(Duration::from_secs(30))?;
    eprintln!(
        "etcd race: {} assigned, {released} released, leader etcd{leader} killed after {killed_at} assigns, \
         {retries} calls retried while etcd was unavailable, {} conflicts in the checker, {elapsed:.2?}",
        workers * PER_WORKER,
        ipam.conflicts()
    );
    Ok(())
}
