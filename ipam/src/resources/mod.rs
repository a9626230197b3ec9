//! Typed records on top of the untyped [`Store`]: Calico's resources with Calico's JSON field
//! names where they exist.

mod affinity;
mod block;
mod config;
mod handle;
mod node;
mod pool;

use std::marker::PhantomData;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use affinity::{AffinityState, BlockAffinity, BlockAffinityResource};
pub use block::{AllocationAttribute, AllocationBlock, IpamBlockResource};
pub use config::{IpamConfig, IpamConfigResource};
pub use handle::{IpamHandle, IpamHandleResource};
pub use node::{LeaderLease, NodeLease, NodeRecord};
pub use pool::{IpPool, IpPoolResource};

use crate::store::StoreError;
use crate::store::{CorruptRecord, Kind, Record, Revision, Store, Watch, WatchEvent};

/// A typed record kind.
pub trait Resource: Serialize + DeserializeOwned + Clone {
    const KIND: Kind;

    /// Checks what the type system cannot (lengths that must agree, indexes in range), so that
    /// code using a decoded record never indexes out of bounds on a hand-edited file.
    fn validate(&self) -> Result<(), InvalidRecord> {
        Ok(())
    }
}

/// Why a record that decoded as JSON is still not a record Gingham can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRecord {
    #[error("empty {0}")]
    Empty(&'static str),
    #[error("block {0} is larger than a /16")]
    BlockTooLarge(Ipv4Net),
    #[error("block {0} is not a network address")]
    NotNetworkAddress(Ipv4Net),
    #[error("{slots} allocation slots for a block of {size}")]
    SlotCount { slots: usize, size: usize },
    #[error("allocation points at missing attribute {0}")]
    MissingAttribute(usize),
    #[error("unallocated list does not match the free slots")]
    FreeListMismatch,
    #[error(transparent)]
    Pool(#[from] crate::IpamError),
    #[error("interface {0} is not a cali device")]
    NotCali(String),
}

/// A typed record with the name and revision it was read at.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub name: String,
    pub revision: Revision,
    pub value: T,
}

/// A CIDR as a record name, the way Calico names its CRDs: `192.168.0.0/26` → `192-168-0-0-26`.
pub fn cidr_name(cidr: &Ipv4Net) -> String {
    cidr.to_string().replace(['.', '/'], "-")
}

fn corrupt_record(kind: Kind, name: &str, reason: String) -> CorruptRecord {
    CorruptRecord {
        kind,
        name: name.to_string(),
        path: format!("{kind}/{name}"),
        reason,
    }
}

pub fn decode<T: Resource>(rec: Record) -> Result<Versioned<T>, CorruptRecord> {
    let value: T = serde_json::from_value(rec.data)
        .map_err(|e| corrupt_record(rec.kind, &rec.name, e.to_string()))?;
    value
        .validate()
        .map_err(|e| corrupt_record(rec.kind, &rec.name, e.to_string()))?;
    Ok(Versioned {
        name: rec.name,
        revision: rec.revision,
        value,
    })
}

fn encode<T: Resource>(name: &str, value: &T) -> Result<serde_json::Value, StoreError> {
    serde_json::to_value(value)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode {} {name}: {e}", T::KIND)))
}

/// The record, or `None` if there is none.
pub fn get<T: Resource>(store: &dyn Store, name: &str) -> Result<Option<Versioned<T>>, StoreError> {
    match store.get(T::KIND, name) {
        Ok(rec) => Ok(Some(decode(rec)?)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every readable record, and the unreadable ones (also logged).
pub fn list<T: Resource>(
    store: &dyn Store,
) -> Result<(Vec<Versioned<T>>, Vec<CorruptRecord>), StoreError> {
    list_prefix(store, "")
}

/// The records whose name starts with `prefix`, and the unreadable ones among them.
pub fn list_prefix<T: Resource>(
    store: &dyn Store,
    prefix: &str,
) -> Result<(Vec<Versioned<T>>, Vec<CorruptRecord>), StoreError> {
    let listing = if prefix.is_empty() {
        store.list(T::KIND)?
    } else {
        store.list_prefix(T::KIND, prefix)?
    };
    let mut errors = listing.errors;
    let mut out = Vec::with_capacity(listing.records.len());
    for rec in listing.records {
        match decode(rec) {
            Ok(v) => out.push(v),
            Err(c) => {
                tracing::warn!(path = %c.path, reason = %c.reason, "skipping undecodable record");
                errors.push(c);
            }
        }
    }
    Ok((out, errors))
}

pub fn create<T: Resource>(
    store: &dyn Store,
    name: &str,
    value: T,
) -> Result<Versioned<T>, StoreError> {
    let rec = store.create(T::KIND, name, encode(name, &value)?)?;
    Ok(Versioned {
        name: rec.name,
        revision: rec.revision,
        value,
    })
}

/// Compare-and-swap of `v.value` over the revision `v` was read at.
pub fn update<T: Resource>(store: &dyn Store, v: Versioned<T>) -> Result<Versioned<T>, StoreError> {
    let rec = store.update(T::KIND, &v.name, &v.revision, encode(&v.name, &v.value)?)?;
    Ok(Versioned {
        name: rec.name,
        revision: rec.revision,
        value: v.value,
    })
}

/// Compare-and-delete at the revision `v` was read at.
pub fn delete<T: Resource>(store: &dyn Store, v: &Versioned<T>) -> Result<(), StoreError> {
    store.delete(T::KIND, &v.name, &v.revision)
}

/// A change to a typed record.
#[derive(Debug, Clone, PartialEq)]
pub enum TypedEvent<T> {
    Added(Versioned<T>),
    Modified(Versioned<T>),
    Deleted(String),
    Synced,
    Error(CorruptRecord),
}

/// A watch that decodes its records.
pub struct TypedWatch<T> {
    inner: Watch,
    _kind: PhantomData<T>,
}

impl<T: Resource> TypedWatch<T> {
    pub fn start(store: &dyn Store) -> Result<Self, StoreError> {
        Ok(TypedWatch {
            inner: store.watch(T::KIND)?,
            _kind: PhantomData,
        })
    }

    pub fn recv_timeout(&self, timeout: Duration) -> Option<TypedEvent<T>> {
        self.inner.recv_timeout(timeout).map(Self::convert)
    }

    fn convert(ev: WatchEvent) -> TypedEvent<T> {
        let decoded = |rec, added: bool| match decode(rec) {
            Ok(v) if added => TypedEvent::Added(v),
            Ok(v) => TypedEvent::Modified(v),
            Err(c) => TypedEvent::Error(c),
        };
        match ev {
            WatchEvent::Added(rec) => decoded(rec, true),
            WatchEvent::Modified(rec) => decoded(rec, false),
            WatchEvent::Deleted { name, .. } => TypedEvent::Deleted(name),
            WatchEvent::Synced => TypedEvent::Synced,
            WatchEvent::Error(c) => TypedEvent::Error(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn cidr_names_follow_calico() {
        assert_eq!(
            cidr_name(&"192.168.0.64/26".parse().unwrap()),
            "192-168-0-64-26"
        );
    }

    #[test]
    fn undecodable_records_are_reported_not_returned() {
        let s = MemoryStore::new();
        s.create(Kind::IPAMHandle, "bad", serde_json::json!({"handleID": 5}))
            .unwrap();
        create(&s, "good", IpamHandle::new("good")).unwrap();
        let (ok, errors) = list::<IpamHandle>(&s).unwrap();
        assert_eq!(ok.len(), 1);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].path, "IPAMHandle/bad");
        assert!(matches!(
            get::<IpamHandle>(&s, "bad"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
