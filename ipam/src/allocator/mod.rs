//! The allocator: Calico's IPAM algorithm over a [`Store`].
//!
//! Every write is a compare-and-swap on the revision the record was read at; a writer that loses
//! re-reads and tries again, a bounded number of times. That is what lets several agents (and,
//! with the `file` store, several processes) share one datastore without a global lock.
//!
//! The work is split by concept: `order` (which blocks a node tries first), `claim` (taking and
//! giving back a block), `assign`, `release`, `query`, and `check` (finding and repairing
//! inconsistencies).

mod assign;
mod check;
mod claim;
mod order;
mod query;
mod release;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::Ipv4Net;

pub use assign::Assigned;
pub use check::{Problem, Repair, RepairReport};
pub use order::{block_order, fnv32};
pub use query::{Allocation, BlockUsage, PoolUsage};
pub use release::NodeRelease;

use crate::error::IpamError;
use crate::resources::{self, IpPool, IpamConfig, Versioned};
use crate::store::Store;
use crate::store::StoreError;

/// Local settings of the allocator (the cluster-wide policy is the `IPAMConfig` record).
#[derive(Debug, Clone)]
pub struct IpamSettings {
    pub pool_cidr: Ipv4Net,
    pub block_size: u8,
    /// How many conflicting writes an operation tolerates before it gives up.
    pub retries: u32,
    /// How long a block must stay empty before its node gives it back.
    pub empty_block_grace: Duration,
    /// How old an address without a handle record must be before `repair` frees it: younger
    /// ones may belong to an assign still in flight between its two writes.
    pub leak_grace: Duration,
}

impl Default for IpamSettings {
    fn default() -> Self {
        IpamSettings {
            pool_cidr: IpPool::DEFAULT_CIDR,
            block_size: IpPool::DEFAULT_BLOCK_SIZE,
            retries: 100,
            empty_block_grace: Duration::from_secs(300),
            leak_grace: Duration::from_secs(60),
        }
    }
}

/// Who an address is for. `node` is the node that holds it (where the pod runs).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AllocationAttrs {
    pub node: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

impl AllocationAttrs {
    pub fn node(node: &str) -> Self {
        AllocationAttrs {
            node: node.to_string(),
            ..Default::default()
        }
    }

    /// Calico's `secondary` attribute map, stamped with the allocation time.
    fn secondary(&self, now: u64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        m.insert("node".to_string(), self.node.clone());
        if let Some(p) = &self.pod {
            m.insert("pod".to_string(), p.clone());
        }
        if let Some(n) = &self.namespace {
            m.insert("namespace".to_string(), n.clone());
        }
        m.insert("timestamp".to_string(), now.to_string());
        m
    }
}

/// The allocator. Cheap to share (`Arc`); all state lives in the store except the empty-block
/// observations, which only delay a release when lost.
pub struct Ipam {
    store: Arc<dyn Store>,
    pool: IpPool,
    settings: IpamSettings,
    conflicts: AtomicU64,
    /// Block → (sequence number, first time seen empty at that sequence number).
    empty_since: Mutex<HashMap<Ipv4Net, (u64, u64)>>,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a read-modify-write step decided.
pub(crate) enum Step<T> {
    Done(T),
    /// Someone else wrote in between: read again.
    Retry,
}

impl<T> Step<T> {
    pub(crate) fn map<U>(self, f: impl FnOnce(T) -> U) -> Step<U> {
        match self {
            Step::Done(v) => Step::Done(f(v)),
            Step::Retry => Step::Retry,
        }
    }
}

impl Ipam {
    /// Opens the allocator, storing the pool and the default policy if the store has none yet.
    /// A stored pool that differs from `settings` is an error: pools are immutable.
    pub fn open(store: Arc<dyn Store>, settings: IpamSettings) -> Result<Self, IpamError> {
        let pool = IpPool::new(settings.pool_cidr, settings.block_size)?;
        let stored = match resources::create(&*store, IpPool::NAME, pool.clone()) {
            Ok(v) => v.value,
            Err(StoreError::AlreadyExists { .. }) => {
                resources::get::<IpPool>(&*store, IpPool::NAME)?
                    .ok_or_else(|| StoreError::Unavailable("pool vanished while opening".into()))?
                    .value
            }
            Err(e) => return Err(e.into()),
        };
        if stored.cidr != pool.cidr {
            return Err(IpamError::PoolMismatch {
                field: "IPV4POOL_CIDR",
                stored: stored.cidr.to_string(),
                requested: pool.cidr.to_string(),
            });
        }
        if stored.block_size != pool.block_size {
            return Err(IpamError::PoolMismatch {
                field: "IPV4POOL_BLOCK_SIZE",
                stored: stored.block_size.to_string(),
                requested: pool.block_size.to_string(),
            });
        }
        match resources::create(&*store, IpamConfig::NAME, IpamConfig::default()) {
            Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(Ipam {
            store,
            pool,
            settings,
            conflicts: AtomicU64::new(0),
            empty_since: Mutex::new(HashMap::new()),
        })
    }

    pub fn pool(&self) -> &IpPool {
        &self.pool
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// How many writes lost a compare-and-swap and were retried since this allocator opened.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }

    /// The cluster-wide policy.
    pub fn config(&self) -> Result<IpamConfig, IpamError> {
        Ok(
            resources::get::<IpamConfig>(&*self.store, IpamConfig::NAME)?
                .map(|v| v.value)
                .unwrap_or_default(),
        )
    }

    /// Replaces the cluster-wide policy, refusing combinations Calico refuses.
    pub fn set_config(&self, config: IpamConfig) -> Result<(), IpamError> {
        if !config.strict_affinity && !config.auto_allocate_blocks {
            return Err(IpamError::InvalidConfig {
                field: "autoAllocateBlocks",
                value: "false".into(),
                reason:
                    "needs strictAffinity: without blocks or borrowing no address can be assigned"
                        .into(),
            });
        }
        self.rmw("updating the IPAM config", || {
            match resources::get::<IpamConfig>(&*self.store, IpamConfig::NAME)? {
                None => match resources::create(&*self.store, IpamConfig::NAME, config.clone()) {
                    Ok(_) => Ok(Step::Done(())),
                    Err(StoreError::AlreadyExists { .. }) => Ok(Step::Retry),
                    Err(e) => Err(e.into()),
                },
                Some(v) => self
                    .cas(resources::update(
                        &*self.store,
                        Versioned {
                            value: config.clone(),
                            ..v
                        },
                    ))
                    .map(|r| r.map(|_| ())),
            }
        })
    }

    /// Runs a read-modify-write step until it is done, at most `retries` times.
    pub(crate) fn rmw<T>(
        &self,
        operation: &str,
        mut step: impl FnMut() -> Result<Step<T>, IpamError>,
    ) -> Result<T, IpamError> {
        for _ in 0..self.settings.retries.max(1) {
            if let Step::Done(v) = step()? {
                return Ok(v);
            }
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
        Err(IpamError::RetriesExhausted {
            operation: operation.to_string(),
            retries: self.settings.retries,
        })
    }

    /// Turns a write's result into a step: a lost compare-and-swap (or a record deleted under
    /// us) means read again.
    pub(crate) fn cas<T>(&self, res: Result<T, StoreError>) -> Result<Step<T>, IpamError> {
        match res {
            Ok(v) => Ok(Step::Done(v)),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(Step::Retry),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests;
