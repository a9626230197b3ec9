//! BlockAffinity: a node's claim on a block, confirmed in two phases.

use ipnet::Ipv4Net;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{cidr_name, Resource};
use crate::store::Kind;

/// `pending` while the block is being claimed (treated as absent when deciding routes),
/// `confirmed` once the block exists with this node's affinity, `pendingDeletion` while the
/// claim is being released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    Pending,
    Confirmed,
    PendingDeletion,
}

/// On Kubernetes, a cluster-scoped `BlockAffinity` custom resource (`gingham.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    root = "BlockAffinityResource",
    doc = "A node's claim on a block (Gingham's IPAM).",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#
)]
pub struct BlockAffinity {
    pub state: AffinityState,
    pub node: String,
    pub cidr: Ipv4Net,
    #[serde(default)]
    pub deleted: bool,
}

impl Resource for BlockAffinity {
    const KIND: Kind = Kind::BlockAffinity;
}

impl BlockAffinity {
    /// Calico's CRD name: `<node>-<cidr with . and / as ->`.
    pub fn name(node: &str, cidr: &Ipv4Net) -> String {
        format!("{node}-{}", cidr_name(cidr))
    }
}
