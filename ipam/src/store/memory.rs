//! An in-process store for tests: a map behind a mutex, with push-based watches.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard};

use super::queue::{self, QueueTx};
use super::StoreError;
use super::{Kind, Listing, Record, Revision, Store, Watch, WatchEvent};

#[derive(Default)]
struct State {
    records: BTreeMap<(Kind, String), Record>,
    /// One global counter, so a deleted and re-created record never repeats a revision.
    next_revision: u64,
    watchers: Vec<(Kind, QueueTx<WatchEvent>, Arc<AtomicBool>)>,
}

impl State {
    fn bump(&mut self) -> Revision {
        self.next_revision += 1;
        Revision(self.next_revision.to_string())
    }

    fn notify(&mut self, kind: Kind, ev: &WatchEvent) {
        self.watchers.retain(|(k, tx, stop)| {
            if stop.load(std::sync::atomic::Ordering::Relaxed) {
                return false;
            }
            *k != kind || tx.send(ev.clone()).is_ok()
        });
    }
}

/// The `memory` backend.
#[derive(Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves the map consistent (every change is
        // one insert or remove), so a poisoned lock is safe to keep using.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if name.is_empty() {
        return Err(StoreError::InvalidName {
            name: name.into(),
            reason: "empty".into(),
        });
    }
    Ok(())
}

impl Store for MemoryStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Record, StoreError> {
        self.lock()
            .records
            .get(&(kind, name.to_string()))
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                kind,
                name: name.into(),
            })
    }

    fn list(&self, kind: Kind) -> Result<Listing, StoreError> {
        let st = self.lock();
        let records = st
            .records
            .range((kind, String::new())..)
            .take_while(|((k, _), _)| *k == kind)
            .map(|(_, r)| r.clone())
            .collect();
        Ok(Listing {
            records,
            errors: vec![],
        })
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        check_name(name)?;
        let mut st = self.lock();
        let key = (kind, name.to_string());
        if st.records.contains_key(&key) {
            return Err(StoreError::AlreadyExists {
                kind,
                name: name.into(),
            });
        }
        let rec = Record {
            kind,
            name: name.into(),
            revision: st.bump(),
            data,
        };
        st.records.insert(key, rec.clone());
        st.notify(kind, &WatchEvent::Added(rec.clone()));
        Ok(rec)
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        revision: &Revision,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let mut st = self.lock();
        let key = (kind, name.to_string());
        match st.records.get(&key) {
            None => {
                return Err(StoreError::NotFound {
                    kind,
                    name: name.into(),
                })
            }
            Some(cur) if &cur.revision != revision => {
                return Err(StoreError::Conflict {
                    kind,
                    name: name.into(),
                    expected: revision.clone(),
                })
            }
            Some(_) => {}
        }
        let rec = Record {
            kind,
            name: name.into(),
            revision: st.bump(),
            data,
        };
        st.records.insert(key, rec.clone());
        st.notify(kind, &WatchEvent::Modified(rec.clone()));
        Ok(rec)
    }

    fn delete(&self, kind: Kind, name: &str, revision: &Revision) -> Result<(), StoreError> {
        let mut st = self.lock();
        let key = (kind, name.to_string());
        match st.records.get(&key) {
            None => Err(StoreError::NotFound {
                kind,
                name: name.into(),
            }),
            Some(cur) if &cur.revision != revision => Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            }),
            Some(_) => {
                st.records.remove(&key);
                st.notify(
                    kind,
                    &WatchEvent::Deleted {
                        kind,
                        name: name.into(),
                    },
                );
                Ok(())
            }
        }
    }

    fn watch(&self, kind: Kind) -> Result<Watch, StoreError> {
        // Unbounded on purpose: the memory store is the tests' backend, never the agent's,
        // and a test that writes before it reads its watch must not deadlock on its own lock.
        let (tx, rx) = queue::unbounded();
        let stop = Arc::new(AtomicBool::new(false));
        let mut st = self.lock();
        // Holding the lock while sending the snapshot means no change can slip in between.
        for ((k, _), rec) in st.records.iter() {
            if *k == kind {
                let _ = tx.send(WatchEvent::Added(rec.clone()));
            }
        }
        let _ = tx.send(WatchEvent::Synced);
        st.watchers.push((kind, tx, stop.clone()));
        Ok(Watch::new(rx, stop))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn crud_and_cas() {
        let s = MemoryStore::new();
        let r = s.create(Kind::Node, "a", json!({"x": 1})).unwrap();
        assert!(matches!(
            s.create(Kind::Node, "a", json!({})),
            Err(StoreError::AlreadyExists { .. })
        ));
        let r2 = s
            .update(Kind::Node, "a", &r.revision, json!({"x": 2}))
            .unwrap();
        assert_ne!(r.revision, r2.revision);
        assert!(matches!(
            s.update(Kind::Node, "a", &r.revision, json!({"x": 3})),
            Err(StoreError::Conflict { .. })
        ));
        assert!(matches!(
            s.delete(Kind::Node, "a", &r.revision),
            Err(StoreError::Conflict { .. })
        ));
        assert_eq!(s.get(Kind::Node, "a").unwrap().data, json!({"x": 2}));
        s.delete(Kind::Node, "a", &r2.revision).unwrap();
        assert!(matches!(
            s.get(Kind::Node, "a"),
            Err(StoreError::NotFound { .. })
        ));
        // A re-created record never reuses an old revision (no ABA on compare-and-swap).
        let r3 = s.create(Kind::Node, "a", json!({})).unwrap();
        assert!(r3.revision != r.revision && r3.revision != r2.revision);
    }

    #[test]
    fn list_is_per_kind_and_sorted() {
        let s = MemoryStore::new();
        s.create(Kind::Node, "b", json!(1)).unwrap();
        s.create(Kind::Node, "a", json!(2)).unwrap();
        s.create(Kind::IPPool, "p", json!(3)).unwrap();
        let names: Vec<_> = s
            .list(Kind::Node)
            .unwrap()
            .records
            .into_iter()
            .map(|r| r.name)
            .collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn watch_snapshot_then_changes() {
        let s = MemoryStore::new();
        s.create(Kind::Node, "a", json!(1)).unwrap();
        let w = s.watch(Kind::Node).unwrap();
        let t = std::time::Duration::from_millis(100);
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(r)) if r.name == "a"));
        assert_eq!(w.recv_timeout(t), Some(WatchEvent::Synced));
        let b = s.create(Kind::Node, "b", json!(2)).unwrap();
        s.create(Kind::IPPool, "other-kind", json!(2)).unwrap();
        s.update(Kind::Node, "b", &b.revision, json!(3)).unwrap();
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(r)) if r.name == "b"));
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Modified(r)) if r.data == json!(3)));
        assert_eq!(w.try_recv(), None);
    }

    #[test]
    fn passes_the_store_conformance_suite() {
        crate::conformance::run_all(&|| Arc::new(MemoryStore::new()));
    }
}
