use super::*;
use serde_json::json;

fn store() -> (tempfile::TempDir, FileStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = FileStore::open(dir.path()).unwrap();
    (dir, s)
}

#[test]
fn records_live_in_one_file_each() {
    let (dir, s) = store();
    s.create(
        Kind::IPAMBlock,
        "192-168-0-0-26",
        json!({"cidr": "192.168.0.0/26"}),
    )
    .unwrap();
    s.create(Kind::IPAMHandle, "k8s-pod-network.abc/def", json!({}))
        .unwrap();
    let block = dir.path().join("IPAMBlock/192-168-0-0-26.json");
    let text = fs::read_to_string(&block).unwrap();
    assert!(text.contains("\"revision\""), "{text}");
    assert!(dir
        .path()
        .join("IPAMHandle/k8s-pod-network.abc%2Fdef.json")
        .exists());
    // No temporaries are left behind by a completed write.
    let hidden: Vec<_> = fs::read_dir(dir.path().join("IPAMBlock"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(hidden.is_empty());
    // A second handle on the same directory sees the same data (another process would too).
    let s2 = FileStore::open(dir.path()).unwrap();
    assert_eq!(
        s2.get(Kind::IPAMHandle, "k8s-pod-network.abc/def").unwrap(),
        s.get(Kind::IPAMHandle, "k8s-pod-network.abc/def").unwrap()
    );
}

#[test]
fn revisions_compare_and_swap() {
    let (dir, s) = store();
    let s2 = FileStore::open(dir.path()).unwrap();
    let r1 = s.create(Kind::Node, "n1", json!({"a": 1})).unwrap();
    assert!(matches!(
        s2.create(Kind::Node, "n1", json!({})),
        Err(StoreError::AlreadyExists { .. })
    ));
    let r2 = s2
        .update(Kind::Node, "n1", &r1.revision, json!({"a": 2}))
        .unwrap();
    // The first handle's revision is now stale: its write must fail, not overwrite.
    match s.update(Kind::Node, "n1", &r1.revision, json!({"a": 3})) {
        Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected, r1.revision),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        s.delete(Kind::Node, "n1", &r1.revision),
        Err(StoreError::Conflict { .. })
    ));
    assert_eq!(s.get(Kind::Node, "n1").unwrap().data, json!({"a": 2}));
    // The losing write staged a temporary file; it must not be left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("Node"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    s.delete(Kind::Node, "n1", &r2.revision).unwrap();
    assert!(matches!(
        s.update(Kind::Node, "n1", &r2.revision, json!({})),
        Err(StoreError::NotFound { .. })
    ));
    let r3 = s.create(Kind::Node, "n1", json!({})).unwrap();
    assert!(r3.revision != r1.revision && r3.revision != r2.revision);
}

#[test]
fn corrupt_file_is_reported_and_left_untouched() {
    let (dir, s) = store();
    s.create(Kind::Node, "good", json!({})).unwrap();
    let bad = dir.path().join("Node/bad.json");
    fs::write(&bad, b"{ not json").unwrap();
    let listing = s.list(Kind::Node).unwrap();
    assert_eq!(listing.records.len(), 1);
    assert_eq!(listing.errors.len(), 1);
    assert_eq!(listing.errors[0].path, bad.display().to_string());
    match s.get(Kind::Node, "bad") {
        Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, bad.display().to_string()),
        other => panic!("{other:?}"),
    }
    match s.create(Kind::Node, "bad", json!({})) {
        Err(StoreError::Corrupt { path, .. }) => assert_eq!(path, bad.display().to_string()),
        other => panic!("{other:?}"),
    }
    assert_eq!(fs::read(&bad).unwrap(), b"{ not json");
}

#[test]
fn misplaced_record_is_corrupt() {
    let (dir, s) = store();
    s.create(Kind::Node, "a", json!({})).unwrap();
    fs::copy(
        dir.path().join("Node/a.json"),
        dir.path().join("Node/b.json"),
    )
    .unwrap();
    assert!(matches!(
        s.get(Kind::Node, "b"),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(s.list(Kind::Node).unwrap().errors.len(), 1);
}

#[test]
fn stale_temporaries_are_ignored() {
    let (dir, s) = store();
    fs::write(dir.path().join("Node/.x.json.tmp"), b"partial").unwrap();
    let listing = s.list(Kind::Node).unwrap();
    assert!(listing.records.is_empty() && listing.errors.is_empty());
    s.create(Kind::Node, "x", json!(1)).unwrap();
    assert_eq!(s.get(Kind::Node, "x").unwrap().data, json!(1));
}

#[test]
fn concurrent_cas_increments_lose_nothing() {
    let (dir, s) = store();
    s.create(Kind::Node, "counter", json!(0)).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let s = FileStore::open(dir.path()).unwrap();
            std::thread::spawn(move || {
                let mut done = 0;
                while done < 25 {
                    let r = s.get(Kind::Node, "counter").unwrap();
                    let n = r.data.as_u64().unwrap();
                    match s.update(Kind::Node, "counter", &r.revision, json!(n + 1)) {
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
    assert_eq!(s.get(Kind::Node, "counter").unwrap().data, json!(100));
}

#[test]
fn watch_polls_changes() {
    let (dir, s) = store();
    s.create(Kind::Node, "a", json!(1)).unwrap();
    let w = s.watch(Kind::Node).unwrap();
    let t = Duration::from_secs(2);
    assert!(matches!(w.recv_timeout(t), Some(super::super::WatchEvent::Added(r)) if r.name == "a"));
    assert_eq!(w.recv_timeout(t), Some(super::super::WatchEvent::Synced));
    let a = s.get(Kind::Node, "a").unwrap();
    s.update(Kind::Node, "a", &a.revision, json!(2)).unwrap();
    assert!(
        matches!(w.recv_timeout(t), Some(super::super::WatchEvent::Modified(r)) if r.data == json!(2))
    );
    let a = s.get(Kind::Node, "a").unwrap();
    s.delete(Kind::Node, "a", &a.revision).unwrap();
    assert!(matches!(
        w.recv_timeout(t),
        Some(super::super::WatchEvent::Deleted { name, .. }) if name == "a"
    ));
    fs::write(dir.path().join("Node/z.json"), b"junk").unwrap();
    assert!(matches!(
        w.recv_timeout(t),
        Some(super::super::WatchEvent::Error(c)) if c.path.ends_with("z.json")
    ));
}

#[test]
fn a_reader_that_falls_behind_still_sees_the_last_state() {
    use super::super::WatchEvent;
    use std::collections::BTreeMap;
    let (_dir, s) = store();
    // More records than the watch queues: its thread waits for the reader...
    for i in 0..40 {
        s.create(Kind::Node, &format!("n{i}"), json!(0)).unwrap();
    }
    let w = s.watch(Kind::Node).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    // ... while more changes come than its inotify queue holds: they are dropped, and the
    // watch lists the directory again.
    for i in 0..40 {
        let r = s.get(Kind::Node, &format!("n{i}")).unwrap();
        s.update(Kind::Node, &r.name, &r.revision, json!(i))
            .unwrap();
    }
    let mut seen: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let last = |seen: &BTreeMap<String, serde_json::Value>| {
        (0..40).all(|i| seen.get(&format!("n{i}")) == Some(&json!(i)))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !last(&seen) && std::time::Instant::now() < deadline {
        match w.recv_timeout(Duration::from_millis(500)) {
            Some(WatchEvent::Added(r) | WatchEvent::Modified(r)) => {
                seen.insert(r.name, r.data);
            }
            Some(WatchEvent::Deleted { name, .. }) => {
                seen.remove(&name);
            }
            _ => {}
        }
    }
    assert!(last(&seen), "{seen:?}");
}

#[test]
fn watch_sees_a_change_after_a_quiet_spell() {
    // Past the first second the watch only lists when the directory's mtime moves.
    let (_dir, s) = store();
    s.create(Kind::Node, "a", json!(1)).unwrap();
    let w = s.watch(Kind::Node).unwrap();
    let t = Duration::from_secs(2);
    assert!(matches!(
        w.recv_timeout(t),
        Some(super::super::WatchEvent::Added(_))
    ));
    assert_eq!(w.recv_timeout(t), Some(super::super::WatchEvent::Synced));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.try_recv(), None);
    let a = s.get(Kind::Node, "a").unwrap();
    s.update(Kind::Node, "a", &a.revision, json!(2)).unwrap();
    assert!(
        matches!(w.recv_timeout(t), Some(super::super::WatchEvent::Modified(r)) if r.data == json!(2))
    );
}

#[test]
fn old_temporaries_are_swept_on_open() {
    let (dir, _s) = store();
    let old = dir.path().join("Node/.a.json.1-1.tmp");
    fs::write(&old, b"partial").unwrap();
    let past = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(past)
        .unwrap();
    let young = dir.path().join("Node/.b.json.1-2.tmp");
    fs::write(&young, b"in flight").unwrap();
    FileStore::open(dir.path()).unwrap();
    assert!(!old.exists());
    assert!(young.exists(), "a temporary of a write in flight must stay");
}

#[test]
fn list_prefix_reads_only_matching_names() {
    let (dir, s) = store();
    s.create(Kind::BlockAffinity, "node-1-10-0-0-0-26", json!(1))
        .unwrap();
    s.create(Kind::BlockAffinity, "node-1-x-10-0-0-64-26", json!(2))
        .unwrap();
    s.create(Kind::BlockAffinity, "node-2-10-0-0-128-26", json!(3))
        .unwrap();
    s.create(Kind::BlockAffinity, "a/b-1", json!(4)).unwrap();
    // A corrupt record of another node is not even opened.
    fs::write(dir.path().join("BlockAffinity/node-2-junk.json"), b"junk").unwrap();
    let l = s.list_prefix(Kind::BlockAffinity, "node-1-").unwrap();
    let names: Vec<_> = l.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["node-1-10-0-0-0-26", "node-1-x-10-0-0-64-26"]);
    assert!(l.errors.is_empty());
    let l = s.list_prefix(Kind::BlockAffinity, "a/b").unwrap();
    assert_eq!(l.records.len(), 1);
    assert_eq!(
        s.list_prefix(Kind::BlockAffinity, "")
            .unwrap()
            .records
            .len(),
        4
    );
}

#[test]
fn a_record_that_turns_unreadable_is_reported_not_deleted() {
    use super::super::WatchEvent;
    let (dir, s) = store();
    s.create(Kind::Node, "a", json!(1)).unwrap();
    let w = s.watch(Kind::Node).unwrap();
    let t = Duration::from_secs(2);
    assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(_))));
    assert_eq!(w.recv_timeout(t), Some(WatchEvent::Synced));
    let good = fs::read(dir.path().join("Node/a.json")).unwrap();
    // Replaced the way a bad writer would (rename), so the directory's mtime moves.
    fs::write(dir.path().join("Node/.a.tmp"), b"{\"kind\":").unwrap();
    fs::rename(
        dir.path().join("Node/.a.tmp"),
        dir.path().join("Node/a.json"),
    )
    .unwrap();
    match w.recv_timeout(t) {
        Some(WatchEvent::Error(c)) => {
            assert_eq!((c.kind, c.name.as_str()), (Kind::Node, "a"));
            assert!(c.path.ends_with("Node/a.json"), "{}", c.path);
        }
        other => panic!("expected an error for a, got {other:?}"),
    }
    // Reported once, and never as a deletion, however many polls see it.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.try_recv(), None);
    // Put back at the revision it had: readable again is news, once.
    fs::write(dir.path().join("Node/.a.tmp"), &good).unwrap();
    fs::rename(
        dir.path().join("Node/.a.tmp"),
        dir.path().join("Node/a.json"),
    )
    .unwrap();
    assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Modified(r)) if r.data == json!(1)));
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(w.try_recv(), None);
    // A real change after the repair arrives as a change.
    let a = s.get(Kind::Node, "a").unwrap();
    s.update(Kind::Node, "a", &a.revision, json!(2)).unwrap();
    assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Modified(r)) if r.data == json!(2)));
}

#[test]
fn passes_the_store_conformance_suite() {
    let dirs = std::sync::Mutex::new(Vec::new());
    crate::conformance::run_all(&|| {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path()).unwrap();
        dirs.lock().unwrap().push(dir);
        std::sync::Arc::new(s)
    });
}
