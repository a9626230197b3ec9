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

fn open(dir: &str, pool: &str) -> Ipam {
    let store: Arc<dyn Store> = Arc::new(FileStore::open(dir).expect("open store"));
    let settings = IpamSettings {
        pool_cidr: pool.parse().expect("pool"),
        ..Default::default()
    };
    Ipam::open(store, settings).expect("open ipam")
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
    let mut part = || parts.next().unwrap().to_string();
    let (dir, pool, node, id, count) = (part(), part(), part(), part(), part());
    let count: usize = count.parse().unwrap();
    let ipam = open(&dir, &pool);
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

/// What one worker did.
struct Outcome {
    assigned: usize,
    released: usize,
    conflicts: u64,
    held: Vec<Ipv4Addr>,
}

/// Where the store lives. By default on tmpfs (`/dev/shm`) when there is one: this test is about
/// compare-and-swap between processes, and without the disk's fsync latency the processes
/// interleave far more often. `GINGHAM_RACE_DIR=/some/disk/dir` runs it on a real disk to measure
/// the file store's speed there.
fn race_dir() -> tempfile::TempDir {
    let base = std::env::var("GINGHAM_RACE_DIR").unwrap_or_else(|_| "/dev/shm".into());
    tempfile::tempdir_in(&base)
        .or_else(|_| tempfile::tempdir())
        .unwrap()
}

/// What the whole race did.
struct Summary {
    conflicts: u64,
    borrowed: usize,
}

/// Runs one worker process per `(node, assigns)` entry on a fresh store and checks the result.
fn run(pool: &str, workers: &[(&str, usize)]) -> Summary {
    let nodes: Vec<&str> = workers.iter().map(|w| w.0).collect();
    let dir = race_dir();
    let path = dir.path().to_str().unwrap().to_string();
    let ipam = open(&path, pool);
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
    let children: Vec<_> = workers
        .iter()
        .enumerate()
        .map(|(id, (node, per_worker))| {
            Command::new(&exe)
                .args(["worker", "--exact", "--nocapture", "--test-threads=1"])
                .env(ROLE, format!("{path},{pool},{node},{id},{per_worker}"))
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
    let borrowed: usize = distinct
        .iter()
        .map(|n| ipam.borrowed(n).unwrap().len())
        .sum();
    eprintln!(
        "race in {path} {pool} {nodes:?}: {assigned} assigned, {released} released, {} held in {} blocks \
         ({borrowed} borrowed), {conflicts} conflicts retried, {:.2?} ({:.0} ops/s)",
        all.len(),
        usage.blocks_in_use,
        elapsed,
        (assigned + released) as f64 / elapsed.as_secs_f64().max(1e-9)
    );
    assert_eq!(assigned, workers.iter().map(|w| w.1).sum::<usize>());
    assert!(elapsed < Duration::from_secs(600));
    Summary {
        conflicts,
        borrowed,
    }
}

const POOL: &str = "192.168.0.0/16";

#[test]
fn four_processes_four_nodes() {
    run(
        POOL,
        &[
            ("race-a", 500),
            ("race-b", 500),
            ("race-c", 500),
            ("race-d", 500),
        ],
    );
}

#[test]
fn four_processes_two_nodes_share_blocks() {
    // Two workers per node: they allocate from the same blocks, so every write races.
    let out = run(
        POOL,
        &[
            ("race-x", 500),
            ("race-x", 500),
            ("race-y", 500),
            ("race-y", 500),
        ],
    );
    assert!(
        out.conflicts > 0,
        "workers of one node never raced: the test proves nothing"
    );
}

#[test]
fn four_processes_borrow_from_a_small_pool() {
    // Four /26 blocks (256 addresses). race-p ends up holding 150 addresses (three blocks'
    // worth) and the others 30 each (one block each): six blocks' worth of demand for four
    // blocks, so whoever comes late borrows. At most 240 are held at once, so a free address
    // always exists and no assign may fail.
    let out = run(
        "10.9.0.0/24",
        &[
            ("race-p", 300),
            ("race-q", 60),
            ("race-r", 60),
            ("race-s", 60),
        ],
    );
    assert!(
        out.borrowed > 0,
        "no node borrowed: the pool was not tight enough"
    );
}
