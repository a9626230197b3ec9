//! The node registry: who is in the BGP mesh, at which address and AS. It lives in the same
//! store as IPAM so that one datastore flag configures the whole agent (on Kubernetes it maps onto
//! Node objects with annotations).

use std::sync::Arc;

use crate::resources::{self, NodeLease, NodeRecord, TypedWatch, Versioned};
use crate::store::Store;
use crate::store::StoreError;

/// How many times a write is retried when another writer got in between.
const RETRIES: u32 = 100;

#[derive(Clone)]
pub struct NodeRegistry {
    store: Arc<dyn Store>,
}

impl NodeRegistry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        NodeRegistry { store }
    }

    /// Creates the node's record or replaces an existing one (a restarted agent may come back
    /// with a new address).
    pub fn register(&self, node: &NodeRecord) -> Result<(), StoreError> {
        self.modify(&node.name, |_| Some(node.clone()))
    }

    /// Renews the node's lease (its `last_heartbeat`); `NotFound` if the node is not
    /// registered. The lease is a record of its own, so a heartbeat does not touch the Node
    /// record every agent of the mesh watches.
    pub fn heartbeat(&self, name: &str, now_secs: u64) -> Result<(), StoreError> {
        if resources::get::<NodeRecord>(&*self.store, name)?.is_none() {
            return Err(StoreError::NotFound {
                kind: crate::store::Kind::Node,
                name: name.to_string(),
            });
        }
        let lease = NodeLease {
            node: name.to_string(),
            renew_time: now_secs,
        };
        for _ in 0..RETRIES {
            let res = match resources::get::<NodeLease>(&*self.store, name)? {
                None => resources::create(&*self.store, name, lease.clone()).map(|_| ()),
                Some(v) => resources::update(
                    &*self.store,
                    Versioned {
                        value: lease.clone(),
                        ..v
                    },
                )
                .map(|_| ()),
            };
            match res {
                Ok(()) => return Ok(()),
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::AlreadyExists { .. }
                    | StoreError::NotFound { .. },
                ) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "the lease of node {name} kept changing while being renewed"
        )))
    }

    /// The node, with its lease's time as `last_heartbeat`.
    pub fn get(&self, name: &str) -> Result<Option<NodeRecord>, StoreError> {
        let Some(mut rec) = resources::get::<NodeRecord>(&*self.store, name)?.map(|v| v.value)
        else {
            return Ok(None);
        };
        if let Some(l) = resources::get::<NodeLease>(&*self.store, name)? {
            rec.last_heartbeat = rec.last_heartbeat.max(l.value.renew_time);
        }
        Ok(Some(rec))
    }

    /// Every readable node, sorted by name, with its lease's time as `last_heartbeat`
    /// (unreadable records are logged and skipped).
    pub fn list(&self) -> Result<Vec<NodeRecord>, StoreError> {
        let (nodes, _) = resources::list::<NodeRecord>(&*self.store)?;
        let (leases, _) = resources::list::<NodeLease>(&*self.store)?;
        let renewed: std::collections::HashMap<String, u64> = leases
            .into_iter()
            .map(|l| (l.value.node, l.value.renew_time))
            .collect();
        Ok(nodes
            .into_iter()
            .map(|v| {
                let mut rec = v.value;
                if let Some(t) = renewed.get(&rec.name) {
                    rec.last_heartbeat = rec.last_heartbeat.max(*t);
                }
                rec
            })
            .collect())
    }

    /// Removes the node's record; true if there was one. This does not free its addresses:
    /// that is `Ipam::release_node`.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        for _ in 0..RETRIES {
            let Some(cur) = resources::get::<NodeRecord>(&*self.store, name)? else {
                return Ok(false);
            };
            match resources::delete(&*self.store, &cur) {
                Ok(()) => {
                    self.remove_lease(name)?;
                    return Ok(true);
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "node {name} kept changing while being removed"
        )))
    }

    fn remove_lease(&self, name: &str) -> Result<(), StoreError> {
        for _ in 0..RETRIES {
            let Some(cur) = resources::get::<NodeLease>(&*self.store, name)? else {
                return Ok(());
            };
            match resources::delete(&*self.store, &cur) {
                Ok(()) | Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The registered nodes, then every change.
    pub fn watch(&self) -> Result<TypedWatch<NodeRecord>, StoreError> {
        TypedWatch::start(&*self.store)
    }

    /// Read-modify-write with compare-and-swap; `f` returns `None` to leave things as they are.
    fn modify(
        &self,
        name: &str,
        mut f: impl FnMut(Option<&NodeRecord>) -> Option<NodeRecord>,
    ) -> Result<(), StoreError> {
        for _ in 0..RETRIES {
            let cur = resources::get::<NodeRecord>(&*self.store, name)?;
            let Some(new) = f(cur.as_ref().map(|v| &v.value)) else {
                return Ok(());
            };
            let res = match cur {
                None => resources::create(&*self.store, name, new).map(|_| ()),
                Some(v) => {
                    resources::update(&*self.store, Versioned { value: new, ..v }).map(|_| ())
                }
            };
            match res {
                Ok(()) => return Ok(()),
                Err(
                    StoreError::Conflict { .. }
                    | StoreError::AlreadyExists { .. }
                    | StoreError::NotFound { .. },
                ) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "node {name} kept changing while being written"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::TypedEvent;
    use crate::store::MemoryStore;
    use std::time::Duration;

    fn node(name: &str, last: u8) -> NodeRecord {
        NodeRecord {
            name: name.into(),
            address: std::net::Ipv4Addr::new(172, 18, 0, last),
            asn: 64512,
            last_heartbeat: 0,
        }
    }

    #[test]
    fn register_heartbeat_list_remove() {
        let reg = NodeRegistry::new(Arc::new(MemoryStore::new()));
        reg.register(&node("b", 3)).unwrap();
        reg.register(&node("a", 2)).unwrap();
        reg.register(&node("a", 9)).unwrap(); // re-registering replaces
        reg.heartbeat("a", 1234).unwrap();
        let nodes = reg.list().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes[0].address.octets()[3], 9);
        assert_eq!(nodes[0].last_heartbeat, 1234);
        assert_eq!(reg.get("a").unwrap().unwrap().last_heartbeat, 1234);
        // The heartbeat is in the lease, not in the Node record the mesh watches.
        let raw = resources::get::<NodeRecord>(&*reg.store, "a")
            .unwrap()
            .unwrap();
        assert_eq!(raw.value.last_heartbeat, 0);
        assert!(matches!(
            reg.heartbeat("zz", 1),
            Err(StoreError::NotFound { .. })
        ));
        assert!(reg.remove("a").unwrap());
        assert!(!reg.remove("a").unwrap());
        assert_eq!(reg.get("a").unwrap(), None);
        assert_eq!(reg.list().unwrap().len(), 1);
    }

    #[test]
    fn watch_sees_members_and_changes() {
        let reg = NodeRegistry::new(Arc::new(MemoryStore::new()));
        reg.register(&node("a", 2)).unwrap();
        let w = reg.watch().unwrap();
        let t = Duration::from_millis(100);
        assert!(matches!(w.recv_timeout(t), Some(TypedEvent::Added(v)) if v.value.name == "a"));
        assert_eq!(w.recv_timeout(t), Some(TypedEvent::Synced));
        reg.register(&node("b", 3)).unwrap();
        reg.remove("a").unwrap();
        assert!(matches!(w.recv_timeout(t), Some(TypedEvent::Added(v)) if v.value.name == "b"));
        assert_eq!(w.recv_timeout(t), Some(TypedEvent::Deleted("a".into())));
        // A heartbeat renews the lease and leaves the Node record (and its watchers) alone.
        reg.heartbeat("b", 99).unwrap();
        assert_eq!(w.recv_timeout(t), None);
        assert_eq!(reg.get("b").unwrap().unwrap().last_heartbeat, 99);
    }
}
