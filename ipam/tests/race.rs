//! Several processes assign and release addresses concurrently on one `file` store, as the
//! agents of the lab do. The test re-executes its own binary as the workers (selected by an
//! environment variable), then checks that no address is held twice, that the store holds
//! exactly what the workers believe they hold, and that `check()` finds nothing.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::store::FileStore;
use ipam::{AllocationAttrs, Ipam, IpamSettings, NodeRecord, NodeRegistry, Store};

const ROLE: &str = "GINGHAM_RACE_WORKER";
const RESULT: &str = "RACE-RESULT ";

fn open(dir: &str) -> Ipam {
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir).expect("open store"));
    Ipam::open(store, IpamSettings::default()).expect("open ipam")
}

/// A tiny deterministic generator so each worker releases in its own order.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The worker role: assign `count` addresses, releasing one of its earlier ones after every
/// second assign, then print what it still holds.
#[test]
fn worker() {
    let Ok(spec) = std::env::var(ROLE) else {
        return; // run as a normal test: nothing to do
    };
    let mut parts = spec.split(',');
    let (dir, node, id, count) = (
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().to_string(),
        parts.next().unwrap().parse::<usize>().unwrap(),
    );
    let ipam = open(&dir);
    let attrs = AllocationAttrs {
        node: node.clone(),
        pod: None,
        namespace: Some("race".into()),
    };
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ id.bytes().fold(0u64, |h, b| h * 31 + b as u64);
    let mut held: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut released = 0;
    for i in 0..count {
        let handle = format!("w{id}-{i}");
        let ip = ipam.assign(&handle, &attrs).expect("assign");
        assert!(
            !held.iter().any(|(_, h)| *h == ip),
            "{ip} handed out twice to one worker"
        );
        held.push((handle, ip));
        if i % 2 == 1 {
            let k = (next(&mut rng) as usize) % held.len();
            let (h, ip) = held.swap_remove(k);
            assert_eq!(ipam.release(&h).expect("release"), vec![ip]);
            released += 1;
        }
    }
    let ips: Vec<String> = held.iter().map(|(_, ip)| ip.to_string()).collect();
    println!(
        "{RESULT}{} {} {} {}",
        count,
        released,
        ipam.conflicts(),
        ips.join(",")
    );
}

struct Outcome {
    assigned: usize,
    released: usize,
    conflicts: u64,
    held: Vec<Ipv4Addr>,
}

fn run(nodes: &[&str], per_worker: usize) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_str().unwrap().to_string();
    let ipam = open(&path);
    let registry = NodeRegistry::new(ipam.store().clone());
    for (i, n) in nodes.iter().enumerate() {
        registry
            .register(&NodeRecord {
                name: n.to_string(),
                address: Ipv4Addr::new(172, 18, 0, 2 + i as u8),
                asn: 64512,
                last_heartbeat: 0,
            })
            .unwrap();
    }
    let exe = std::env::current_exe().unwrap();
    let start = Instant::now();
    let children: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(id, node)| {
            Command::new(&exe)
                .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{path},{node},{id},{per_worker}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outcomes = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "worker failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = stdout
            .lines()
            // libtest may print "test worker ... " on the same line first.
            .find_map(|l| l.find(RESULT).map(|i| &l[i + RESULT.len()..]))
            .expect("worker printed no result");
        let mut f = line.split(' ');
        let mut num = || f.next().unwrap().to_string();
        let (assigned, released, conflicts) = (num(), num(), num());
        let held = num()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        outcomes.push(Outcome {
            assigned: assigned.parse().unwrap(),
            released: released.parse().unwrap(),
            conflicts: conflicts.parse().unwrap(),
            held,
        });
    }
    let elapsed = start.elapsed();

    let mut all = BTreeSet::new();
    for o in &outcomes {
        for ip in &o.held {
            assert!(all.insert(*ip), "{ip} is held by two workers");
        }
    }
    let distinct: BTreeSet<&str> = nodes.iter().copied().collect();
    let stored: BTreeSet<Ipv4Addr> = distinct
        .iter()
        .flat_map(|n| ipam.allocations(n).unwrap())
        .map(|a| a.ip)
        .collect();
    assert_eq!(
        stored, all,
        "the store disagrees with what the workers hold"
    );
    let problems = ipam.check().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");

    let assigned: usize = outcomes.iter().map(|o| o.assigned).sum();
    let released: usize = outcomes.iter().map(|o| o.released).sum();
    let conflicts: u64 = outcomes.iter().map(|o| o.conflicts).sum();
    let usage = ipam.pool_usage().unwrap();
    eprintln!(
        "race {nodes:?}: {assigned} assigned, {released} released, {} held in {} blocks, \
         {conflicts} conflicts retried, {:.2?} ({:.0} ops/s)",
        all.len(),
        usage.blocks_in_use,
        elapsed,
        (assigned + released) as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    assert_eq!(assigned, nodes.len() * per_worker);
    assert!(elapsed < Duration::from_secs(600));
}

#[test]
fn four_processes_four_nodes() {
    run(&["race-a", "race-b", "race-c", "race-d"], 500);
}

#[test]
fn four_processes_two_nodes_share_blocks() {
    // Two workers per node: they allocate from the same blocks, so every write races.
    run(&["race-x", "race-x", "race-y", "race-y"], 500);
}
