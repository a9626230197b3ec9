//! The datastore: untyped records with revisions, and the backends that keep them.
//!
//! The trait is shaped after the Kubernetes API so that a `kube` backend (CRDs) maps onto it
//! directly: `create` fails on an existing name (POST → 409), `update` and `delete` carry the
//! revision read earlier (resourceVersion compare-and-swap, DELETE preconditions), and `watch`
//! starts with the current state and then streams changes (list + watch; a backend whose watch
//! cannot resume re-lists and diffs, which the consumer cannot tell apart).

mod error;
mod etcd;
mod file;
mod file_lock;
mod file_watch;
pub mod kube;
mod memory;
mod names;
mod queue;
mod runtime;
mod watch_state;

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use error::StoreError;
pub use etcd::{EtcdConfig, EtcdStore, DEFAULT_PREFIX as DEFAULT_ETCD_PREFIX};
pub use file::FileStore;
pub use kube::{KubeConfig, KubeStore};
pub use memory::MemoryStore;

/// The kinds of record; their names are Calico's CRD kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    IPPool,
    IPAMBlock,
    BlockAffinity,
    IPAMHandle,
    IPAMConfig,
    Node,
    /// A pod on a node, recorded by that node's agent (Calico's WorkloadEndpoint).
    WorkloadEndpoint,
    /// A node's heartbeat, apart from its Node record (as Kubernetes keeps node Leases apart
    /// from Nodes): renewing it every few seconds must not wake every watcher of the mesh.
    NodeLease,
    /// Who leads a job that exactly one agent of the cluster may do (releasing the IPAM of
    /// departed nodes). A `coordination.k8s.io` Lease on Kubernetes.
    LeaderLease,
}

impl Kind {
    pub const ALL: [Kind; 9] = [
        Kind::IPPool,
        Kind::IPAMBlock,
        Kind::BlockAffinity,
        Kind::IPAMHandle,
        Kind::IPAMConfig,
        Kind::Node,
        Kind::WorkloadEndpoint,
        Kind::NodeLease,
        Kind::LeaderLease,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::IPPool => "IPPool",
            Kind::IPAMBlock => "IPAMBlock",
            Kind::BlockAffinity => "BlockAffinity",
            Kind::IPAMHandle => "IPAMHandle",
            Kind::IPAMConfig => "IPAMConfig",
            Kind::Node => "Node",
            Kind::WorkloadEndpoint => "WorkloadEndpoint",
            Kind::NodeLease => "NodeLease",
            Kind::LeaderLease => "LeaderLease",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An opaque version of one record, like a Kubernetes resourceVersion: only compared for
/// equality, never ordered or parsed by callers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Revision(pub String);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub kind: Kind,
    pub name: String,
    pub revision: Revision,
    pub data: serde_json::Value,
}

/// A record that could not be read, reported instead of silently dropped. `kind` and `name`
/// say which record it is meant to be, so a reader keeps what it last knew of that record
/// (an unreadable Node is not a deleted Node); `path` is where an operator finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    pub kind: Kind,
    pub name: String,
    pub path: String,
    pub reason: String,
}

impl From<CorruptRecord> for StoreError {
    fn from(c: CorruptRecord) -> Self {
        StoreError::Corrupt {
            path: c.path,
            reason: c.reason,
        }
    }
}

/// The result of a list: the readable records, sorted by name, and the unreadable ones.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub records: Vec<Record>,
    pub errors: Vec<CorruptRecord>,
}

/// A change seen by a watch.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchEvent {
    Added(Record),
    Modified(Record),
    Deleted {
        kind: Kind,
        name: String,
    },
    /// Every record that existed when the watch started has been sent as `Added`.
    Synced,
    /// A record could not be read; the watch goes on.
    Error(CorruptRecord),
}

/// Events a watch queues for a reader that has not taken them yet. A watch whose reader falls
/// this far behind waits for it (the file store's watch thread, the etcd watch task), so a
/// stuck reader costs a bounded amount of memory, never an unbounded one.
pub(crate) const WATCH_QUEUE: usize = if cfg!(test) { 16 } else { 4096 };

/// The receiving end of a watch. Dropping it stops the watch.
pub struct Watch {
    rx: queue::QueueRx<WatchEvent>,
    stop: Arc<AtomicBool>,
}

impl Watch {
    pub(crate) fn new(rx: queue::QueueRx<WatchEvent>, stop: Arc<AtomicBool>) -> Self {
        Watch { rx, stop }
    }

    /// The next event, or `None` when the timeout passed or the backend went away.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<WatchEvent> {
        // Timeout and a vanished backend both mean "nothing now"; the caller decides.
        self.rx.recv_timeout(timeout).ok()
    }

    /// The next event if one is waiting.
    pub fn try_recv(&self) -> Option<WatchEvent> {
        self.rx.try_recv()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A datastore of records, shared by every agent of a cluster.
pub trait Store: Send + Sync {
    fn get(&self, kind: Kind, name: &str) -> Result<Record, StoreError>;
    /// Every readable record of `kind`, sorted by name, and every unreadable one.
    fn list(&self, kind: Kind) -> Result<Listing, StoreError>;
    /// The records of `kind` whose name starts with `prefix` (a node's affinities are named
    /// `<node>-<cidr>`). Backends that can select without reading everything (a file-name filter,
    /// a Kubernetes label selector) override this.
    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Listing, StoreError> {
        let mut listing = self.list(kind)?;
        listing.records.retain(|r| r.name.starts_with(prefix));
        Ok(listing)
    }
    /// The names of the records of `kind`, sorted, without reading the records (which names
    /// are taken is all a block claim needs to know). Backends that can (a directory listing,
    /// a keys-only range) override this.
    fn list_names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let listing = self.list(kind)?;
        let mut names: Vec<String> = listing
            .records
            .into_iter()
            .map(|r| r.name)
            .chain(listing.errors.into_iter().map(|c| c.name))
            .collect();
        names.sort();
        Ok(names)
    }
    /// Fails with `AlreadyExists` if the name is taken (and with `Corrupt` if an unreadable
    /// record holds it).
    fn create(&self, kind: Kind, name: &str, data: serde_json::Value)
        -> Result<Record, StoreError>;
    /// Compare-and-swap: fails with `Conflict` unless the stored revision is `revision`.
    fn update(
        &self,
        kind: Kind,
        name: &str,
        revision: &Revision,
        data: serde_json::Value,
    ) -> Result<Record, StoreError>;
    /// Compare-and-delete: fails with `Conflict` unless the stored revision is `revision`.
    fn delete(&self, kind: Kind, name: &str, revision: &Revision) -> Result<(), StoreError>;
    /// The current records of `kind` as `Added`, then `Synced`, then every change.
    fn watch(&self, kind: Kind) -> Result<Watch, StoreError>;
    /// `Some(ttl)` if this backend removes a node's `Node` and `NodeLease` records by itself
    /// once its heartbeats have stopped for `ttl` (etcd leases): the agent then registers again
    /// when its record is gone, and releases the IPAM of nodes that left. `None` (memory, file):
    /// a node's records stay until someone removes it.
    fn node_ttl(&self) -> Option<Duration> {
        None
    }
    /// Whether nodes leave the registry without their agents' doing: their records expire
    /// (etcd), or the cluster deletes them (Kubernetes Node objects). Then the agents release
    /// the IPAM of nodes that left, after a grace, under a [`Kind::LeaderLease`]. On the file
    /// store a node leaves only when an operator removes it, and that frees its IPAM at once.
    fn nodes_depart(&self) -> bool {
        self.node_ttl().is_some()
    }
}

/// A datastore as the agent's flags select it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Memory,
    File(std::path::PathBuf),
    Etcd(EtcdConfig),
    Kubernetes(KubeConfig),
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Memory => f.write_str("memory"),
            Backend::File(dir) => write!(f, "file:{}", dir.display()),
            Backend::Etcd(cfg) => write!(f, "etcd {} ({})", cfg.endpoints.join(","), cfg.prefix),
            Backend::Kubernetes(_) => f.write_str("kubernetes"),
        }
    }
}

impl Backend {
    pub fn open(&self) -> Result<Arc<dyn Store>, StoreError> {
        Ok(match self {
            Backend::Memory => Arc::new(MemoryStore::new()),
            Backend::File(dir) => Arc::new(FileStore::open(dir)?),
            Backend::Etcd(cfg) => Arc::new(EtcdStore::connect(cfg)?),
            Backend::Kubernetes(cfg) => Arc::new(KubeStore::connect(cfg)?),
        })
    }
}

/// Opens a datastore from its flag value: `memory` or `file:<dir>`.
pub fn open(spec: &str) -> Result<Arc<dyn Store>, StoreError> {
    if spec == "memory" {
        return Ok(Arc::new(MemoryStore::new()));
    }
    match spec.strip_prefix("file:") {
        Some(dir) if !dir.is_empty() => Ok(Arc::new(FileStore::open(dir)?)),
        _ => Err(StoreError::UnknownScheme(spec.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_parses_schemes() {
        assert!(open("memory").is_ok());
        let dir = tempfile::tempdir().unwrap();
        assert!(open(&format!("file:{}", dir.path().display())).is_ok());
        for bad in ["", "file:", "etcd://x", "kubernetes:x", "/var/lib/gingham"] {
            match open(bad) {
                Err(StoreError::UnknownScheme(s)) => assert_eq!(s, bad),
                Err(e) => panic!("{bad}: wrong error {e}"),
                Ok(_) => panic!("{bad}: accepted"),
            }
        }
        let msg = open("etcd://x").err().unwrap().to_string();
        assert!(msg.contains("file:<dir>"), "{msg}");
    }
}
