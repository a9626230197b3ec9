//! Typed errors of the allocator (the datastore's own are in [`crate::store::StoreError`]).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use thiserror::Error;

use crate::store::StoreError;

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
