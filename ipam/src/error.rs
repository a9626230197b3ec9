//! Typed errors of the datastore and of the allocator.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::store::{Kind, Revision};

/// What a [`crate::store::Store`] operation can fail with. The variants are the ones a
/// Kubernetes API server also gives (404, 409 on create, 409 on a stale resourceVersion, 5xx), so a
/// `kube` backend maps onto them one to one.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StoreError {
    #[error("{kind} {name:?} not found")]
    NotFound { kind: Kind, name: String },
    #[error("{kind} {name:?} already exists")]
    AlreadyExists { kind: Kind, name: String },
    /// The record changed since it was read: re-read and retry.
    #[error("{kind} {name:?} changed concurrently (expected revision {expected})")]
    Conflict {
        kind: Kind,
        name: String,
        expected: Revision,
    },
    #[error("datastore unavailable: {0}")]
    Unavailable(String),
    /// A record that cannot be read or decoded. It is reported, never overwritten.
    #[error("corrupt record {path}: {reason}")]
    Corrupt { path: String, reason: String },
    #[error("invalid record name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("unknown datastore {0:?}: expected \"file:<dir>\" or \"memory\"")]
    UnknownScheme(String),
}

impl StoreError {
    pub(crate) fn io(what: &str, path: &std::path::Path, err: std::io::Error) -> Self {
        StoreError::Unavailable(format!("{what} {}: {err}", path.display()))
    }
}

/// What an IPAM operation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum IpamError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A configuration value that cannot work; `field` is the name the operator set it by.
    #[error("invalid {field} {value:?}: {reason}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        reason: String,
    },
    /// The stored pool differs from the one this agent was configured with; pools are immutable.
    #[error(
        "{field} is {requested} here but the datastore's pool has {stored}; pools cannot change"
    )]
    PoolMismatch {
        field: &'static str,
        stored: String,
        requested: String,
    },
    #[error("limit of {limit} blocks reached for node {node}")]
    BlockLimit { node: String, limit: u32 },
    #[error("no free address for node {node}: its blocks are full, pool {pool} has no free block, and strict affinity forbids borrowing")]
    StrictAffinity { node: String, pool: Ipv4Net },
    #[error("pool {pool} is full: no free address left")]
    PoolExhausted { pool: Ipv4Net },
    #[error("gave up {operation} after {retries} conflicting writes")]
    RetriesExhausted { operation: String, retries: u32 },
    #[error("{addr} is not in pool {pool}")]
    NotInPool { addr: Ipv4Addr, pool: Ipv4Net },
    #[error("invalid handle {0:?}: handles must be non-empty")]
    InvalidHandle(String),
}
