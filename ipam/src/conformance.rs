//! What every backend must do, as one suite: the `memory` and `file` backends run it in their
//! unit tests and the `etcd` backend against a real etcd in `interop-tests`. Each check panics
//! with what went wrong; each wants a fresh, empty store from `fresh`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::store::{Kind, Listing, Store, StoreError, WatchEvent};
use crate::{AllocationAttrs, Ipam, IpamSettings, NodeRecord, NodeRegistry};

/// Nodes the checks register: a backend whose nodes must exist first (Kubernetes Node objects)
/// makes them in `fresh`.
pub const NODES: [&str; 3] = ["a", "b", "c"];

/// Runs every check, each on a store of its own.
pub fn run_all(fresh: &dyn Fn() -> Arc<dyn Store>) {
    crud_and_cas(&*fresh());
    lists_are_per_kind_sorted_and_prefixed(&*fresh());
    watch_sends_the_snapshot_then_changes(&*fresh());
    node_records(fresh());
    concurrent_increments_lose_nothing(fresh());
    allocator_shares_a_pool(fresh());
}

/// Create, read, compare-and-swap update and delete, and no revision used twice.
pub fn crud_and_cas(s: &dyn Store) {
    let r = s.create(Kind::IPAMConfig, "a", json!({"x": 1})).unwrap();
    assert!(
        matches!(
            s.create(Kind::IPAMConfig, "a", json!({})),
            Err(StoreError::AlreadyExists { .. })
        ),
        "create over an existing record"
    );
    assert_eq!(s.get(Kind::IPAMConfig, "a").unwrap(), r);
    let r2 = s
        .update(Kind::IPAMConfig, "a", &r.revision, json!({"x": 2}))
        .unwrap();
    assert_ne!(r.revision, r2.revision);
    assert!(matches!(
        s.update(Kind::IPAMConfig, "a", &r.revision, json!({"x": 3})),
        Err(StoreError::Conflict { .. })
    ));
    assert!(matches!(
        s.delete(Kind::IPAMConfig, "a", &r.revision),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.get(Kind::IPAMConfig, "a").unwrap().data, json!({"x": 2}));
    s.delete(Kind::IPAMConfig, "a", &r2.revision).unwrap();
    assert!(matches!(
        s.get(Kind::IPAMConfig, "a"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.update(Kind::IPAMConfig, "a", &r2.revision, json!({})),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        s.delete(Kind::IPAMConfig, "a", &r2.revision),
        Err(StoreError::NotFound { .. })
    ));
    // A re-created record never reuses an old revision (no ABA on compare-and-swap).
    let r3 = s.create(Kind::IPAMConfig, "a", json!({})).unwrap();
    assert!(r3.revision != r.revision && r3.revision != r2.revision);
    assert!(matches!(
        s.create(Kind::IPAMConfig, "", json!({})),
        Err(StoreError::InvalidName { .. })
    ));
    // Names as the allocator makes them: with `/` and `.` in them.
    let h = "k8s-pod-network.abc/def";
    s.create(Kind::IPAMHandle, h, json!({"n": 1})).unwrap();
    assert_eq!(s.get(Kind::IPAMHandle, h).unwrap().data, json!({"n": 1}));
}

/// Node records through the registry: registered, re-registered with a new address, renewed,
/// listed, watched and removed.
pub fn node_records(s: Arc<dyn Store>) {
    let reg = NodeRegistry::new(s);
    let rec = |name: &str, last: u8| NodeRecord {
        name: name.into(),
        address: std::net::Ipv4Addr::new(172, 18, 0, last),
        asn: 64512,
        last_heartbeat: 0,
    };
    let t = Duration::from_secs(10);
    reg.register(&rec("a", 2)).unwrap();
    let w = reg.watch().unwrap();
    match w.recv_timeout(t) {
        Some(crate::resources::TypedEvent::Added(v)) => assert_eq!(v.value, rec("a", 2)),
        other => panic!("expected Added(a), got {other:?}"),
    }
    assert_eq!(
        w.recv_timeout(t),
        Some(crate::resources::TypedEvent::Synced)
    );
    reg.register(&rec("b", 3)).unwrap();
    reg.register(&rec("a", 9)).unwrap();
    reg.heartbeat("a", 1234).unwrap();
    reg.heartbeat("a", 1235).unwrap();
    let nodes = reg.list().unwrap();
    assert_eq!(nodes.len(), 2);
    assert_eq!(nodes[0].address, rec("a", 9).address);
    assert_eq!(nodes[0].last_heartbeat, 1235);
    assert!(reg.remove("b").unwrap());
    assert!(!reg.remove("b").unwrap());
    let mut events = Vec::new();
    while let Some(ev) = w.recv_timeout(Duration::from_millis(1500)) {
        events.push(ev);
    }
    use crate::resources::TypedEvent::*;
    let added_b = events
        .iter()
        .any(|e| matches!(e, Added(v) if v.value == rec("b", 3)));
    let moved_a = events
        .iter()
        .any(|e| matches!(e, Modified(v) if v.value == rec("a", 9)));
    let gone_b = events.iter().any(|e| *e == Deleted("b".into()));
    assert!(added_b && moved_a && gone_b, "{events:?}");
    // A heartbeat renews the lease only: no event of the mesh's watch says so.
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Modified(v) if v.value.last_heartbeat != 0)),
        "{events:?}"
    );
}

/// A list holds one kind only, sorted by name; a prefix list only the names it starts.
pub fn lists_are_per_kind_sorted_and_prefixed(s: &dyn Store) {
    for name in [
        "b",
        "a",
        "node1-192.168.0.0/26",
        "node1-192.168.0.64/26",
        "node10-x",
    ] {
        s.create(Kind::BlockAffinity, name, json!(name)).unwrap();
    }
    s.create(Kind::IPPool, "p", json!(3)).unwrap();
    let names = |l: Listing| l.records.into_iter().map(|r| r.name).collect::<Vec<_>>();
    assert_eq!(
        names(s.list(Kind::BlockAffinity).unwrap()),
        [
            "a",
            "b",
            "node1-192.168.0.0/26",
            "node1-192.168.0.64/26",
            "node10-x"
        ]
    );
    assert_eq!(
        names(s.list_prefix(Kind::BlockAffinity, "node1-").unwrap()),
        ["node1-192.168.0.0/26", "node1-192.168.0.64/26"]
    );
    assert_eq!(names(s.list(Kind::IPPool).unwrap()), ["p"]);
    assert_eq!(
        s.list_names(Kind::BlockAffinity).unwrap(),
        names(s.list(Kind::BlockAffinity).unwrap()),
        "the names alone, as a listing has them"
    );
    assert!(s.list(Kind::IPAMHandle).unwrap().records.is_empty());
}

/// A watch starts with what exists, says `Synced`, then sends each change of its kind only.
pub fn watch_sends_the_snapshot_then_changes(s: &dyn Store) {
    let t = Duration::from_secs(10);
    s.create(Kind::BlockAffinity, "a", json!(1)).unwrap();
    let w = s.watch(Kind::BlockAffinity).unwrap();
    match w.recv_timeout(t) {
        Some(WatchEvent::Added(r)) => assert_eq!(r.name, "a"),
        other => panic!("expected Added(a), got {other:?}"),
    }
    assert_eq!(w.recv_timeout(t), Some(WatchEvent::Synced));
    let b = s.create(Kind::BlockAffinity, "b", json!(2)).unwrap();
    s.create(Kind::IPPool, "other-kind", json!(2)).unwrap();
    let b2 = s
        .update(Kind::BlockAffinity, "b", &b.revision, json!(3))
        .unwrap();
    s.delete(Kind::BlockAffinity, "b", &b2.revision).unwrap();
    match w.recv_timeout(t) {
        Some(WatchEvent::Added(r)) => assert_eq!((r.name.as_str(), r.data), ("b", json!(2))),
        other => panic!("expected Added(b), got {other:?}"),
    }
    match w.recv_timeout(t) {
        Some(WatchEvent::Modified(r)) => assert_eq!(r.data, json!(3)),
        other => panic!("expected Modified(b), got {other:?}"),
    }
    match w.recv_timeout(t) {
        Some(WatchEvent::Deleted { kind, name }) => {
            assert_eq!((kind, name.as_str()), (Kind::BlockAffinity, "b"))
        }
        other => panic!("expected Deleted(b), got {other:?}"),
    }
    assert_eq!(w.recv_timeout(Duration::from_millis(500)), None);
}

/// Four writers increment one counter by compare-and-swap: every increment counts once.
pub fn concurrent_increments_lose_nothing(s: Arc<dyn Store>) {
    s.create(Kind::IPAMConfig, "counter", json!(0)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 25 {
                    let cur = s.get(Kind::IPAMConfig, "counter").unwrap();
                    let n = cur.data.as_u64().unwrap();
                    match s.update(Kind::IPAMConfig, "counter", &cur.revision, json!(n + 1)) {
                        Ok(_) => done += 1,
                        Err(StoreError::Conflict { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(s.get(Kind::IPAMConfig, "counter").unwrap().data, json!(100));
}

/// Two nodes' allocators on one store, assigning and releasing at once: no address twice, and
/// `check()` finds nothing.
pub fn allocator_shares_a_pool(s: Arc<dyn Store>) {
    let reg = NodeRegistry::new(s.clone());
    for (i, n) in ["a", "b"].iter().enumerate() {
        reg.register(&NodeRecord {
            name: n.to_string(),
            address: std::net::Ipv4Addr::new(172, 18, 0, 2 + i as u8),
            asn: 64512,
            last_heartbeat: 0,
        })
        .unwrap();
    }
    let settings = IpamSettings {
        pool_cidr: "10.244.0.0/24".parse().unwrap(),
        block_size: 28,
        ..Default::default()
    };
    let threads: Vec<_> = ["a", "b"]
        .into_iter()
        .map(|node| {
            let ipam = Ipam::open(s.clone(), settings.clone()).unwrap();
            std::thread::spawn(move || {
                let attrs = AllocationAttrs::node(node);
                let mut held = Vec::new();
                for i in 0..40 {
                    let handle = format!("{node}-{i}");
                    held.push((handle.clone(), ipam.assign(&handle, &attrs).unwrap()));
                    if i % 2 == 1 {
                        let (h, ip) = held.remove(0);
                        assert_eq!(ipam.release(&h).unwrap(), vec![ip]);
                    }
                }
                held
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    for t in threads {
        for (_, ip) in t.join().unwrap() {
            assert!(all.insert(ip), "{ip} held twice");
        }
    }
    assert_eq!(all.len(), 40);
    let ipam = Ipam::open(s, settings).unwrap();
    let problems = ipam.check().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}
