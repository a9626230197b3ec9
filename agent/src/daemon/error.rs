//! [`AgentError`]: everything the agent can fail with, typed. It becomes text only at the edges:
//! the control socket's response, the exit message, the log.

use crate::control::api::ErrorKind;
use crate::control::ServerError;
use crate::kernel::KernelError;
use bgp::SpeakerError;
use ipam::{IpamError, StoreError};
use std::net::{Ipv4Addr, SocketAddr};

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("--datastore {spec}: {source}")]
    Datastore {
        spec: String,
        #[source]
        source: StoreError,
    },
    #[error("IPAM: {0}")]
    Ipam(#[from] IpamError),
    #[error("datastore: {0}")]
    Store(#[from] StoreError),
    #[error("registering node {node}: {source}")]
    Register {
        node: String,
        #[source]
        source: StoreError,
    },
    #[error("BGP: {0}")]
    Speaker(#[from] SpeakerError),
    #[error("starting the BGP speaker on port {port}: {source}")]
    Listen {
        port: u16,
        #[source]
        source: SpeakerError,
    },
    #[error("--peer {address}: {source}")]
    Peer {
        address: std::net::IpAddr,
        #[source]
        source: SpeakerError,
    },
    #[error("kernel: {0}")]
    Kernel(#[from] KernelError),
    #[error(transparent)]
    Control(#[from] ServerError),
    #[error("--metrics-addr {addr}: {source}")]
    Metrics {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// A supervised task returned: the agent cannot go on without it.
    #[error("the {task} task stopped{}", .reason.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    TaskEnded {
        task: &'static str,
        #[source]
        reason: Option<Box<AgentError>>,
    },
    #[error("the {task} task panicked: {message}")]
    TaskPanicked { task: &'static str, message: String },
    /// The routing owner is gone (the agent is stopping).
    #[error("the routing owner has stopped")]
    OwnerStopped,
    #[error("a blocking datastore task failed: {0}")]
    Blocking(#[from] tokio::task::JoinError),

    // What a request can be refused for.
    #[error("interface {0} is not a cali device")]
    NotCali(String),
    #[error("{ip} is held by {holder}, not by {handle}")]
    HeldByOther {
        ip: Ipv4Addr,
        holder: String,
        handle: String,
    },
    #[error("{ip} is not assigned to {handle}")]
    NotAssigned { ip: Ipv4Addr, handle: String },
    #[error("{ip} is no longer assigned to container {container_id}")]
    NoLongerAssigned { ip: Ipv4Addr, container_id: String },
    #[error("no endpoint recorded for container {0}")]
    NoEndpoint(String),
    #[error("host route {0} is missing")]
    HostRouteMissing(String),
    #[error("recording endpoint: {0}")]
    RecordEndpoint(#[source] StoreError),
    #[error("{0} is this node: remove it from another node, after stopping its agent")]
    RemoveSelf(String),
    #[error("no node named {0} in the registry")]
    NoSuchNode(String),
    /// Removing a live node would cut it off: every other agent drops its routes.
    #[error("node {name}'s agent still runs ({why}): stop it first, or pass --force to remove the node anyway (every agent drops its routes and its addresses are freed)")]
    NodeAlive { name: String, why: String },
}

impl AgentError {
    /// What kind of failure this is, for clients that act on it (the CNI plugin retries
    /// `Unavailable` later, as its spec's code 11 asks).
    pub fn kind(&self) -> ErrorKind {
        match self {
            AgentError::Store(StoreError::Unavailable(_))
            | AgentError::Ipam(IpamError::Store(StoreError::Unavailable(_)))
            | AgentError::Register {
                source: StoreError::Unavailable(_),
                ..
            }
            | AgentError::RecordEndpoint(StoreError::Unavailable(_))
            | AgentError::OwnerStopped
            | AgentError::Blocking(_) => ErrorKind::Unavailable,
            AgentError::NotCali(_)
            | AgentError::HeldByOther { .. }
            | AgentError::NotAssigned { .. }
            | AgentError::RemoveSelf(_)
            | AgentError::Ipam(IpamError::InvalidHandle(_) | IpamError::NotInPool { .. }) => {
                ErrorKind::Invalid
            }
            AgentError::NodeAlive { .. } => ErrorKind::Invalid,
            AgentError::NoEndpoint(_)
            | AgentError::NoSuchNode(_)
            | AgentError::NoLongerAssigned { .. }
            | AgentError::HostRouteMissing(_) => ErrorKind::NotFound,
            _ => ErrorKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_messages() {
        let e = AgentError::Ipam(IpamError::Store(StoreError::Unavailable(
            "etcd down".into(),
        )));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.to_string(), "IPAM: datastore unavailable: etcd down");
        let e = AgentError::TaskEnded {
            task: "mesh",
            reason: Some(Box::new(AgentError::OwnerStopped)),
        };
        assert_eq!(
            e.to_string(),
            "the mesh task stopped: the routing owner has stopped"
        );
        let e = AgentError::TaskEnded {
            task: "mesh",
            reason: None,
        };
        assert_eq!(e.to_string(), "the mesh task stopped");
        assert_eq!(
            AgentError::NotCali("eth0".into()).kind(),
            ErrorKind::Invalid
        );
    }
}
