//! Node: a member of the BGP mesh, its address and AS.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use super::{InvalidRecord, Resource};
use crate::store::Kind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRecord {
    pub name: String,
    pub address: Ipv4Addr,
    pub asn: u32,
    /// Unix seconds of the last heartbeat: what the node's lease says when read through the
    /// registry (records written before leases existed carry it themselves).
    #[serde(default)]
    pub last_heartbeat: u64,
}

impl Resource for NodeRecord {
    const KIND: Kind = Kind::Node;

    fn validate(&self) -> Result<(), InvalidRecord> {
        if self.name.is_empty() {
            return Err(InvalidRecord::Empty("node name"));
        }
        Ok(())
    }
}

/// A node's heartbeat: renewed by its agent, read by `routectl node list` and by whoever
/// decides that a node stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeLease {
    pub node: String,
    /// Unix seconds of the last renewal.
    pub renew_time: u64,
}

impl Resource for NodeLease {
    const KIND: Kind = Kind::NodeLease;

    fn validate(&self) -> Result<(), InvalidRecord> {
        if self.node.is_empty() {
            return Err(InvalidRecord::Empty("node name"));
        }
        Ok(())
    }
}

/// Who leads a cluster-wide job, and since when: taken over when its holder has not renewed it
/// for `duration_secs` (a Kubernetes Lease's holderIdentity, renewTime and
/// leaseDurationSeconds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderLease {
    pub holder: String,
    /// Unix seconds of the last renewal.
    pub renew_time: u64,
    pub duration_secs: u64,
}

impl Resource for LeaderLease {
    const KIND: Kind = Kind::LeaderLease;

    fn validate(&self) -> Result<(), InvalidRecord> {
        if self.holder.is_empty() {
            return Err(InvalidRecord::Empty("lease holder"));
        }
        Ok(())
    }
}
