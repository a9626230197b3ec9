//! What a datastore operation can fail with. It lives with the store so that the store needs
//! nothing from the layers above it.

use thiserror::Error;

use super::{Kind, Revision};

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
    /// The datastore will not take this write, and trying again will not change that: a
    /// Kubernetes API that says 403 Forbidden or 422 Invalid, a Node object that does not exist.
    #[error("{kind} {name:?}: {reason}")]
    Refused {
        kind: Kind,
        name: String,
        reason: String,
    },
    /// The datastore cannot be used as configured (no Kubernetes API configuration, say).
    #[error("datastore misconfigured: {0}")]
    Misconfigured(String),
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
