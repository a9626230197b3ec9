use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use proptest::prelude::*;

use super::*;
use crate::registry::NodeRegistry;
use crate::resources::{
    AffinityState, AllocationBlock, BlockAffinity, IpamConfig, IpamHandle, NodeRecord,
};
use crate::store::{Kind, MemoryStore};

fn assert_none<T: std::fmt::Debug>(v: Vec<T>) {
    assert!(v.is_empty(), "expected nothing, got {v:#?}");
}

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// An allocator on a memory store with `nodes` registered.
fn ipam(pool: &str, block_size: u8, nodes: &[&str]) -> Ipam {
    ipam_on(Arc::new(MemoryStore::new()), pool, block_size, nodes)
}

/// An allocator on `store` with `nodes` registered.
fn ipam_on(store: Arc<dyn Store>, pool: &str, block_size: u8, nodes: &[&str]) -> Ipam {
    let reg = NodeRegistry::new(store.clone());
    for (i, n) in nodes.iter().enumerate() {
        reg.register(&NodeRecord {
            name: n.to_string(),
            address: Ipv4Addr::new(172, 18, 0, 2 + i as u8),
            asn: 64512,
            last_heartbeat: 0,
        })
        .unwrap();
    }
    let settings = IpamSettings {
        pool_cidr: net(pool),
        block_size,
        leak_grace: Duration::ZERO,
        ..Default::default()
    };
    Ipam::open(store, settings).unwrap()
}

fn at(node: &str) -> AllocationAttrs {
    AllocationAttrs {
        node: node.into(),
        pod: Some(format!("pod-on-{node}")),
        namespace: Some("default".into()),
    }
}

#[test]
fn ipam_can_be_shared_across_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Ipam>();
}

#[test]
fn assign_is_idempotent_and_recorded() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let ip = ipam.assign("c1", &at("a")).unwrap();
    assert_eq!(ipam.assign("c1", &at("a")).unwrap(), ip);
    let blocks = ipam.node_blocks("a").unwrap();
    assert_eq!(blocks.len(), 1);
    assert!(blocks[0].contains(&ip));
    assert_eq!(blocks[0], block_order(ipam.pool(), "a").next().unwrap());
    let alloc = ipam.lookup(ip).unwrap().unwrap();
    assert_eq!(alloc.handle, "c1");
    assert_eq!(alloc.node.as_deref(), Some("a"));
    assert_eq!(alloc.pod.as_deref(), Some("pod-on-a"));
    assert_eq!(alloc.block_node.as_deref(), Some("a"));
    assert!(!alloc.is_borrowed());
    assert_eq!(ipam.allocations("a").unwrap().len(), 1);
    let usage = ipam.pool_usage().unwrap();
    assert_eq!((usage.blocks_in_use, usage.addresses_in_use), (1, 1));
    assert_eq!(usage.addresses_free, 65535);
    assert_none(ipam.check().unwrap());
    assert!(matches!(
        ipam.lookup(Ipv4Addr::new(10, 0, 0, 1)),
        Err(IpamError::NotInPool { .. })
    ));
    assert!(ipam.assign("", &at("a")).is_err());
}

#[test]
fn affinity_watch_sees_claims() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let w = ipam.watch_affinities().unwrap();
    let t = Duration::from_millis(200);
    assert_eq!(
        w.recv_timeout(t),
        Some(crate::resources::TypedEvent::Synced)
    );
    ipam.assign("c", &at("a")).unwrap();
    let mut states = Vec::new();
    while let Some(ev) = w.recv_timeout(t) {
        match ev {
            crate::resources::TypedEvent::Added(v) | crate::resources::TypedEvent::Modified(v) => {
                states.push(v.value.state)
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(states, [AffinityState::Pending, AffinityState::Confirmed]);
}

#[test]
fn release_returns_what_assign_gave_once() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let ip = ipam.assign("c1", &at("a")).unwrap();
    let other = ipam.assign("c2", &at("a")).unwrap();
    assert_eq!(ipam.release("c1").unwrap(), vec![ip]);
    assert_none(ipam.release("c1").unwrap());
    assert_none(ipam.release("never-assigned").unwrap());
    assert_eq!(ipam.lookup(ip).unwrap(), None);
    assert_eq!(ipam.lookup(other).unwrap().unwrap().handle, "c2");
    assert_none(ipam.check().unwrap());
}

#[test]
fn freed_addresses_are_reused_last() {
    // One /30 block: four addresses.
    let ipam = ipam("10.0.0.0/30", 30, &["a"]);
    let first = ipam.assign("h0", &at("a")).unwrap();
    ipam.assign("h1", &at("a")).unwrap();
    ipam.release("h0").unwrap();
    let next: Vec<_> = (2..5)
        .map(|i| ipam.assign(&format!("h{i}"), &at("a")).unwrap())
        .collect();
    assert!(!next[..2].contains(&first));
    assert_eq!(next[2], first);
}

#[test]
fn nodes_spread_over_the_pool() {
    let ipam = ipam("192.168.0.0/16", 26, &["node-1", "node-2", "node-3"]);
    let mut firsts = BTreeSet::new();
    for n in ["node-1", "node-2", "node-3"] {
        ipam.assign(&format!("{n}-c"), &at(n)).unwrap();
        let b = ipam.node_blocks(n).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0], block_order(ipam.pool(), n).next().unwrap());
        firsts.insert(b[0]);
    }
    assert_eq!(firsts.len(), 3);
    let usage = ipam.blocks().unwrap();
    assert_eq!(usage.len(), 3);
    assert!(usage.iter().all(|u| u.in_use == 1 && u.free == 63));
}

#[test]
fn borrows_when_the_pool_has_no_free_block() {
    // Two /30 blocks in the pool.
    let ipam = ipam("10.0.0.0/29", 30, &["a", "b"]);
    let a0 = ipam.assign("a0", &at("a")).unwrap();
    let b0 = ipam.assign("b0", &at("b")).unwrap();
    for i in 1..4 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    let borrowed = ipam.assign("a4", &at("a")).unwrap();
    let b_block = ipam.node_blocks("b").unwrap()[0];
    assert!(b_block.contains(&borrowed) && b_block.contains(&b0));
    assert!(!b_block.contains(&a0));
    assert_eq!(ipam.borrowed("a").unwrap(), vec![borrowed]);
    assert_none(ipam.borrowed("b").unwrap());
    let alloc = ipam.lookup(borrowed).unwrap().unwrap();
    assert!(alloc.is_borrowed());
    assert_eq!(alloc.block_node.as_deref(), Some("b"));
    ipam.assign("b1", &at("b")).unwrap();
    ipam.assign("b2", &at("b")).unwrap();
    let err = ipam.assign("b3", &at("b")).unwrap_err();
    assert!(matches!(err, IpamError::PoolExhausted { .. }), "{err}");
    assert!(err.to_string().contains("10.0.0.0/29"), "{err}");
    assert_none(ipam.check().unwrap());
}

#[test]
fn strict_affinity_refuses_to_borrow() {
    let ipam = ipam("10.0.0.0/29", 30, &["a", "b"]);
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        ..Default::default()
    })
    .unwrap();
    ipam.assign("b0", &at("b")).unwrap();
    for i in 0..4 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    let err = ipam.assign("a4", &at("a")).unwrap_err();
    assert!(matches!(err, IpamError::StrictAffinity { .. }), "{err}");
    assert!(err.to_string().contains("strict affinity"), "{err}");
    assert!(ipam
        .set_config(IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: false,
            max_blocks_per_host: 0
        })
        .is_err());
}

#[test]
fn block_limit_is_reported_by_name() {
    let ipam = ipam("10.0.0.0/24", 30, &["a"]);
    ipam.set_config(IpamConfig {
        strict_affinity: true,
        max_blocks_per_host: 2,
        ..Default::default()
    })
    .unwrap();
    for i in 0..8 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    let err = ipam.assign("a8", &at("a")).unwrap_err();
    assert_eq!(err.to_string(), "limit of 2 blocks reached for node a");
    // The default limit is 20.
    let ipam = super::tests::ipam("10.0.0.0/24", 30, &["b"]);
    for i in 0..80 {
        ipam.assign(&format!("b{i}"), &at("b")).unwrap();
    }
    assert_eq!(ipam.node_blocks("b").unwrap().len(), 20);
    // With borrowing allowed, a node at its limit borrows; with nothing to borrow the limit
    // is the error.
    let err = ipam.assign("b80", &at("b")).unwrap_err();
    assert_eq!(err.to_string(), "limit of 20 blocks reached for node b");
}

#[test]
fn empty_blocks_are_released_after_grace_but_one_is_kept() {
    let ipam = ipam("10.0.0.0/24", 30, &["a"]);
    for i in 0..10 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    assert_eq!(ipam.node_blocks("a").unwrap().len(), 3);
    for i in 0..10 {
        ipam.release(&format!("a{i}")).unwrap();
    }
    let grace = Duration::from_secs(60);
    // First look: empty now, but not for long enough.
    assert_none(ipam.release_empty_blocks_at("a", 1000, grace).unwrap());
    assert_none(ipam.release_empty_blocks_at("a", 1059, grace).unwrap());
    let released = ipam.release_empty_blocks_at("a", 1060, grace).unwrap();
    assert_eq!(released.len(), 2);
    let left = ipam.node_blocks("a").unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(ipam.blocks().unwrap().len(), 1);
    assert_eq!(ipam.affinities().unwrap().len(), 1);
    assert_none(ipam.release_empty_blocks_at("a", 9999, grace).unwrap());
    assert_none(ipam.check().unwrap());
}

#[test]
fn a_block_used_in_between_is_not_released() {
    let ipam = ipam("10.0.0.0/24", 30, &["a"]);
    for i in 0..5 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    for i in 0..5 {
        ipam.release(&format!("a{i}")).unwrap();
    }
    let grace = Duration::from_secs(60);
    ipam.release_empty_blocks_at("a", 0, grace).unwrap();
    // Both blocks are used and emptied again: their sequence numbers move, the clock restarts.
    for i in 0..5 {
        ipam.assign(&format!("b{i}"), &at("a")).unwrap();
    }
    for i in 0..5 {
        ipam.release(&format!("b{i}")).unwrap();
    }
    assert_none(ipam.release_empty_blocks_at("a", 61, grace).unwrap());
    assert_eq!(
        ipam.release_empty_blocks_at("a", 122, grace).unwrap().len(),
        1
    );
}

#[test]
fn release_node_frees_everything_of_a_gone_node() {
    let ipam = ipam("10.0.0.0/29", 30, &["a", "b"]);
    ipam.assign("a0", &at("a")).unwrap();
    ipam.assign("b0", &at("b")).unwrap();
    for i in 1..4 {
        ipam.assign(&format!("a{i}"), &at("a")).unwrap();
    }
    let a_borrowed = ipam.assign("a4", &at("a")).unwrap(); // in b's block
    ipam.release("a1").unwrap();
    for i in 1..3 {
        ipam.assign(&format!("b{i}"), &at("b")).unwrap();
    }
    let b_borrowed = ipam.assign("b3", &at("b")).unwrap(); // in a's block
    let a_block = ipam.node_blocks("a").unwrap()[0];
    assert!(a_block.contains(&b_borrowed));

    let out = ipam.release_node("a").unwrap();
    assert_eq!(out.addresses.len(), 4);
    assert!(out.addresses.contains(&a_borrowed));
    assert_eq!(out.blocks, vec![a_block]);
    assert!(ipam.allocations("a").unwrap().is_empty());
    assert!(ipam.node_blocks("a").unwrap().is_empty());
    assert!(NodeRegistry::new(ipam.store().clone())
        .get("a")
        .unwrap()
        .is_none());
    // a's block stays, without affinity, because b holds an address in it.
    let usage = ipam.blocks().unwrap();
    let kept = usage.iter().find(|u| u.cidr == a_block).unwrap();
    assert_eq!((kept.node.as_deref(), kept.in_use), (None, 1));
    assert_eq!(ipam.borrowed("b").unwrap(), vec![b_borrowed]);
    assert_none(ipam.check().unwrap());
    // When b releases it, the orphan block goes away.
    ipam.release("b3").unwrap();
    assert_eq!(ipam.blocks().unwrap().len(), 1);
}

fn plant_block(ipam: &Ipam, cidr: Ipv4Net, node: &str) {
    resources::create(
        &**ipam.store(),
        &resources::cidr_name(&cidr),
        AllocationBlock::new(cidr, Some(node), 0),
    )
    .unwrap();
}

fn plant_affinity(ipam: &Ipam, node: &str, cidr: Ipv4Net, state: AffinityState) {
    resources::create(
        &**ipam.store(),
        &BlockAffinity::name(node, &cidr),
        BlockAffinity {
            state,
            node: node.into(),
            cidr,
            deleted: false,
        },
    )
    .unwrap();
}

#[test]
fn check_finds_each_planted_problem_and_repair_fixes_them() {
    let ipam = ipam("10.0.0.0/24", 28, &["a", "b", "c"]);
    let a_ip = ipam.assign("a0", &at("a")).unwrap();
    let a_block = ipam.node_blocks("a").unwrap()[0];
    ipam.assign("ghost0", &at("ghost")).unwrap(); // a node never registered
    let ghost_block = ipam.node_blocks("ghost").unwrap()[0];
    // Affinity without block.
    let free: Vec<_> = (0..16)
        .filter_map(|i| ipam.pool().block(i))
        .filter(|c| *c != a_block && *c != ghost_block)
        .collect();
    plant_affinity(&ipam, "b", free[0], AffinityState::Confirmed);
    // Block without affinity.
    plant_block(&ipam, free[1], "c");
    // Two affinities for one block.
    plant_affinity(&ipam, "c", a_block, AffinityState::Confirmed);
    // Address without handle: an assign that stopped before writing its handle.
    let orphan = ipam.assign("orphan", &at("a")).unwrap();
    let h = resources::get::<IpamHandle>(&**ipam.store(), "orphan")
        .unwrap()
        .unwrap();
    resources::delete(&**ipam.store(), &h).unwrap();
    // Handle without address.
    let mut stale = IpamHandle::new("stale");
    stale.block.insert(a_block.to_string(), 1);
    resources::create(&**ipam.store(), "stale", stale).unwrap();
    // An unreadable record.
    ipam.store()
        .create(Kind::IPAMBlock, "junk", serde_json::json!({"cidr": 7}))
        .unwrap();

    let problems = ipam.check().unwrap();
    let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    let has = |pred: &dyn Fn(&Problem) -> bool| problems.iter().any(pred);
    assert!(
        has(
            &|p| matches!(p, Problem::AffinityWithoutBlock { node, cidr } if node == "b" && *cidr == free[0])
        ),
        "{shown:#?}"
    );
    assert!(
        has(
            &|p| matches!(p, Problem::BlockWithoutAffinity { node, cidr } if node == "c" && *cidr == free[1])
        ),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::DuplicateAffinity { cidr, .. } if *cidr == a_block)),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::AddressWithoutHandle { ip, .. } if *ip == orphan)),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::HandleWithoutAddress { handle } if handle == "stale")),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::AddressOfGoneNode { node, .. } if node == "ghost")),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::BlockOfGoneNode { node, .. } if node == "ghost")),
        "{shown:#?}"
    );
    assert!(
        has(&|p| matches!(p, Problem::Unreadable { path, .. } if path == "IPAMBlock/junk")),
        "{shown:#?}"
    );
    assert!(shown.iter().any(|s| s.contains("leaked")), "{shown:#?}");
    assert!(
        shown.iter().any(|s| s
            == &format!("node c has an affinity for block {a_block}, which is affine to node a")),
        "{shown:#?}"
    );

    let report = ipam.repair().unwrap();
    assert!(report.repaired.len() >= 7, "{report:#?}");
    assert_eq!(report.left.len(), 1, "{report:#?}");
    assert!(matches!(report.left[0], Problem::Unreadable { .. }));
    assert_eq!(ipam.check().unwrap(), report.left);
    // The live address survived; the orphan and the ghost's were freed.
    assert_eq!(ipam.lookup(a_ip).unwrap().unwrap().handle, "a0");
    assert_eq!(ipam.lookup(orphan).unwrap(), None);
    assert!(ipam.allocations("ghost").unwrap().is_empty());
    assert!(ipam.node_blocks("c").unwrap().contains(&free[1]));
    assert!(ipam.node_blocks("b").unwrap().contains(&free[0]));
    assert!(!ipam.node_blocks("c").unwrap().contains(&a_block));
}

/// Replaces a record's data with something no reader accepts (as a bad disk or hand edit
/// would), keeping its place in the store.
fn spoil(ipam: &Ipam, kind: Kind, name: &str) {
    let rec = ipam.store().get(kind, name).unwrap();
    ipam.store()
        .update(
            kind,
            name,
            &rec.revision,
            serde_json::json!({"spoilt": true}),
        )
        .unwrap();
}

#[test]
fn an_unreadable_node_is_one_problem_and_repair_frees_nothing_of_it() {
    let ipam = ipam("10.0.0.0/24", 28, &["a", "b"]);
    let ips: Vec<_> = (0..3)
        .map(|i| ipam.assign(&format!("b{i}"), &at("b")).unwrap())
        .collect();
    let blocks = ipam.node_blocks("b").unwrap();
    spoil(&ipam, Kind::Node, "b");
    let problems = ipam.check().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        matches!(&problems[0], Problem::Unreadable { kind: Kind::Node, name, .. } if name == "b"),
        "{problems:#?}"
    );
    let report = ipam.repair().unwrap();
    assert_none(report.repaired);
    assert_eq!(report.left, problems);
    assert!(report.left[0].why_left().contains("by hand"));
    for (i, ip) in ips.iter().enumerate() {
        assert_eq!(ipam.lookup(*ip).unwrap().unwrap().handle, format!("b{i}"));
    }
    assert_eq!(ipam.node_blocks("b").unwrap(), blocks);
}

#[test]
fn unreadable_handles_blocks_and_affinities_hide_their_follow_on_problems() {
    let ipam = ipam("10.0.0.0/24", 28, &["a"]);
    let ip = ipam.assign("h1", &at("a")).unwrap();
    let block = ipam.node_blocks("a").unwrap()[0];
    // An unreadable handle: its address is not called an orphan.
    spoil(&ipam, Kind::IPAMHandle, "h1");
    let problems = ipam.check().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    let report = ipam.repair().unwrap();
    assert_none(report.repaired);
    assert_eq!(ipam.lookup(ip).unwrap().unwrap().handle, "h1");

    // An unreadable block: its affinity is not "without block", and a handle whose only
    // addresses are in it is not "without address".
    let ipam2 = self::ipam("10.0.0.0/24", 28, &["a"]);
    ipam2.assign("h2", &at("a")).unwrap();
    let block2 = ipam2.node_blocks("a").unwrap()[0];
    spoil(&ipam2, Kind::IPAMBlock, &resources::cidr_name(&block2));
    let problems = ipam2.check().unwrap();
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert_none(ipam2.repair().unwrap().repaired);
    assert!(resources::get::<IpamHandle>(&**ipam2.store(), "h2")
        .unwrap()
        .is_some());

    // An unreadable affinity: its block is not "without affinity".
    spoil(
        &ipam,
        Kind::BlockAffinity,
        &BlockAffinity::name("a", &block),
    );
    let problems = ipam.check().unwrap();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems
        .iter()
        .all(|p| matches!(p, Problem::Unreadable { .. })));
}

#[test]
fn young_orphans_are_left_for_an_assign_in_flight() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    NodeRegistry::new(store.clone())
        .register(&NodeRecord {
            name: "a".into(),
            address: Ipv4Addr::new(172, 18, 0, 2),
            asn: 64512,
            last_heartbeat: 0,
        })
        .unwrap();
    let ipam = Ipam::open(store, IpamSettings::default()).unwrap();
    let ip = ipam.assign("x", &at("a")).unwrap();
    let h = resources::get::<IpamHandle>(&**ipam.store(), "x")
        .unwrap()
        .unwrap();
    resources::delete(&**ipam.store(), &h).unwrap();
    let report = ipam.repair().unwrap();
    assert!(report.repaired.is_empty());
    assert!(matches!(report.left[..], [Problem::AddressWithoutHandle { ip: i, .. }] if i == ip));
    assert!(ipam.lookup(ip).unwrap().is_some());
}

#[test]
fn crash_after_pending_affinity_is_recovered() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let first = block_order(ipam.pool(), "a").next().unwrap();
    plant_affinity(&ipam, "a", first, AffinityState::Pending);
    assert_none(ipam.node_blocks("a").unwrap()); // pending is not advertised
    let ip = ipam.assign("c", &at("a")).unwrap();
    assert!(first.contains(&ip));
    assert_eq!(ipam.node_blocks("a").unwrap(), vec![first]);
    assert_none(ipam.check().unwrap());
}

#[test]
fn an_assign_whose_handle_write_was_lost_is_not_repeated() {
    // The block write committed, the handle record never came (its answer lost in a leader
    // change, or a crash): assigning the handle again gives the same address, not a second.
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let ip = ipam.assign("x", &at("a")).unwrap();
    let h = resources::get::<IpamHandle>(&**ipam.store(), "x")
        .unwrap()
        .unwrap();
    resources::delete(&**ipam.store(), &h).unwrap();
    assert_eq!(ipam.assign("x", &at("a")).unwrap(), ip);
    assert_eq!(ipam.allocations("a").unwrap().len(), 1);
    assert_eq!(ipam.release("x").unwrap(), vec![ip]);
    assert_none(ipam.check().unwrap());
}

#[test]
fn crash_after_block_creation_is_recovered() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let first = block_order(ipam.pool(), "a").next().unwrap();
    plant_affinity(&ipam, "a", first, AffinityState::Pending);
    plant_block(&ipam, first, "a");
    let ip = ipam.assign("c", &at("a")).unwrap();
    assert!(first.contains(&ip));
    assert_eq!(ipam.node_blocks("a").unwrap(), vec![first]);
    assert_eq!(ipam.blocks().unwrap().len(), 1);
    assert_none(ipam.check().unwrap());
}

#[test]
fn affinity_without_block_is_rebuilt_on_assign() {
    let ipam = ipam("192.168.0.0/16", 26, &["a"]);
    let some = ipam.pool().block(7).unwrap();
    plant_affinity(&ipam, "a", some, AffinityState::Confirmed);
    let ip = ipam.assign("c", &at("a")).unwrap();
    assert!(some.contains(&ip));
    assert_eq!(ipam.node_blocks("a").unwrap(), vec![some]);
    assert_none(ipam.check().unwrap());
}

#[test]
fn lost_claim_withdraws_its_pending_affinity() {
    let ipam = ipam("10.0.0.0/29", 30, &["a", "b"]);
    // b owns the block a would try first; a must skip it and leave no affinity behind.
    let first = block_order(ipam.pool(), "a").next().unwrap();
    let ipam2 = super::tests::ipam("10.0.0.0/29", 30, &["a", "b"]);
    plant_block(&ipam2, first, "b");
    plant_affinity(&ipam2, "b", first, AffinityState::Confirmed);
    assert!(!ipam2.claim("a", first).unwrap());
    assert!(ipam2.node_blocks("a").unwrap().is_empty());
    assert_eq!(ipam2.affinities().unwrap().len(), 1);
    let ip = ipam2.assign("c", &at("a")).unwrap();
    assert!(!first.contains(&ip));
    assert_none(ipam2.check().unwrap());
}

#[test]
fn pool_settings_are_validated_and_immutable() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let bad = IpamSettings {
        block_size: 19,
        ..Default::default()
    };
    let err = Ipam::open(store.clone(), bad).err().unwrap().to_string();
    assert!(err.contains("IPV4POOL_BLOCK_SIZE"), "{err}");
    Ipam::open(store.clone(), IpamSettings::default()).unwrap();
    let other = IpamSettings {
        block_size: 24,
        ..Default::default()
    };
    let err = Ipam::open(store, other).err().unwrap().to_string();
    assert!(
        err.contains("IPV4POOL_BLOCK_SIZE") && err.contains("26"),
        "{err}"
    );
}

#[derive(Debug, Clone)]
enum Op {
    Assign(usize, u8),
    Release(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0usize..48, 0u8..3).prop_map(|(h, n)| Op::Assign(h, n)),
        2 => (0usize..48).prop_map(Op::Release),
    ]
}

/// The model check on one store: no address is ever held twice, release gives back exactly
/// what assign gave, assign fails only when the pool is really full, and the store stays
/// consistent.
fn matches_model(store: Arc<dyn Store>, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let nodes = ["n0", "n1", "n2"];
    // 32 addresses in eight /30 blocks: small enough to fill, borrow and exhaust.
    let ipam = ipam_on(store, "10.1.0.0/27", 30, &nodes);
    let mut model: BTreeMap<usize, Ipv4Addr> = BTreeMap::new();
    for op in ops {
        match op {
            Op::Assign(h, n) => {
                let handle = format!("h{h}");
                match ipam.assign(&handle, &at(nodes[n as usize])) {
                    Ok(ip) => {
                        if let Some(prev) = model.get(&h) {
                            prop_assert_eq!(*prev, ip);
                        } else {
                            prop_assert!(!model.values().any(|v| *v == ip), "{} held twice", ip);
                            model.insert(h, ip);
                        }
                    }
                    Err(IpamError::PoolExhausted { .. }) => prop_assert_eq!(model.len(), 32),
                    Err(e) => prop_assert!(false, "unexpected error {}", e),
                }
            }
            Op::Release(h) => {
                let got = ipam.release(&format!("h{h}")).unwrap();
                let want: Vec<_> = model.remove(&h).into_iter().collect();
                prop_assert_eq!(got, want);
            }
        }
    }
    let mut held: Vec<_> = nodes
        .iter()
        .flat_map(|n| ipam.allocations(n).unwrap())
        .map(|a| a.ip)
        .collect();
    held.sort();
    let mut want: Vec<_> = model.values().copied().collect();
    want.sort();
    prop_assert_eq!(held, want);
    let problems = ipam.check().unwrap();
    prop_assert!(problems.is_empty(), "{:?}", problems);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn allocator_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        matches_model(Arc::new(MemoryStore::new()), ops)?;
    }
}

proptest! {
    // Each step is a few requests to an API server in memory: fewer cases, the same model.
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// The same model check on the Kubernetes datastore.
    #[test]
    fn kube_allocator_matches_model(ops in proptest::collection::vec(op(), 1..120)) {
        matches_model(crate::store::kube::in_memory(&["n0", "n1", "n2"]), ops)?;
    }
}

#[test]
fn repair_finishes_or_withdraws_half_done_claims() {
    let ipam = ipam("10.0.0.0/24", 26, &["a", "b"]);
    let blocks: Vec<_> = (0..4).filter_map(|i| ipam.pool().block(i)).collect();
    // a crashed after creating its pending affinity and the block: the claim is a's.
    plant_affinity(&ipam, "a", blocks[0], AffinityState::Pending);
    plant_block(&ipam, blocks[0], "a");
    // a crashed after losing the block to b, before withdrawing its pending affinity.
    plant_block(&ipam, blocks[1], "b");
    plant_affinity(&ipam, "b", blocks[1], AffinityState::Confirmed);
    plant_affinity(&ipam, "a", blocks[1], AffinityState::Pending);
    let problems = ipam.check().unwrap();
    let stale: Vec<_> = problems
        .iter()
        .filter(|p| matches!(p, Problem::StaleAffinity { state, .. } if state == "pending"))
        .collect();
    assert_eq!(stale.len(), 2, "{problems:#?}");
    assert!(
        stale[0].to_string().contains("did not finish"),
        "{}",
        stale[0]
    );
    let report = ipam.repair().unwrap();
    assert_none(report.left);
    assert_eq!(ipam.node_blocks("a").unwrap(), vec![blocks[0]]);
    assert_eq!(ipam.node_blocks("b").unwrap(), vec![blocks[1]]);
    assert_none(ipam.check().unwrap());
}

#[test]
fn an_assignment_says_what_it_changed_and_reports_a_claim_before_writing_the_address() {
    let ipam = ipam("10.2.0.0/28", 30, &["a", "b"]);
    let store = ipam.store().clone();
    let mut claims = Vec::new();
    let first = ipam
        .assign_reporting("h1", &at("a"), &mut |b| {
            // Called once the claim is confirmed, before the address is written.
            let block = resources::get::<AllocationBlock>(&*store, &resources::cidr_name(&b))
                .unwrap()
                .unwrap();
            assert!(block.value.is_affine_to("a"));
            assert_eq!(block.value.allocated().count(), 0);
            claims.push(b);
        })
        .unwrap();
    assert_eq!(first.claimed, Some(claims[0]));
    assert!(!first.borrowed && claims[0].contains(&first.ip));
    // The same block again: nothing changed for the routes.
    let second = ipam
        .assign_reporting("h2", &at("a"), &mut |_| panic!("no claim"))
        .unwrap();
    assert_eq!((second.claimed, second.borrowed), (None, false));
    // b takes every other block, with room left in them; a fills its own, then borrows.
    for i in 0..10 {
        ipam.assign(&format!("b{i}"), &at("b")).unwrap();
    }
    let mut n = 0;
    loop {
        let r = ipam.assign_reporting(&format!("a{n}"), &at("a"), &mut |_| {});
        match r {
            Ok(a) if a.borrowed => {
                assert_eq!(a.claimed, None);
                break;
            }
            Ok(_) => n += 1,
            Err(e) => panic!("{e}"),
        }
    }
}
