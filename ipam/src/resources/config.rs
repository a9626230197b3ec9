//! IPAMConfig: the cluster-wide allocation policy, one record named `default`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Resource;
use crate::store::Kind;

/// On Kubernetes, a cluster-scoped `IPAMConfig` custom resource (`gingham.io/v1`) named
/// `default`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "IPAMConfig",
    plural = "ipamconfigs",
    root = "IpamConfigResource",
    doc = "The cluster-wide IPAM policy, one object named default (Gingham's IPAM).",
    printcolumn = r#"{"name":"Strict affinity","type":"boolean","jsonPath":".spec.strict_affinity"}"#
)]
pub struct IpamConfig {
    /// When set, a node never borrows from another node's block.
    #[serde(default)]
    pub strict_affinity: bool,
    #[serde(default = "yes")]
    pub auto_allocate_blocks: bool,
    /// 0 means the default of 20.
    #[serde(rename = "maxBlocksPerHost", default)]
    pub max_blocks_per_host: u32,
}

fn yes() -> bool {
    true
}

impl Default for IpamConfig {
    fn default() -> Self {
        IpamConfig {
            strict_affinity: false,
            auto_allocate_blocks: true,
            max_blocks_per_host: 0,
        }
    }
}

impl Resource for IpamConfig {
    const KIND: Kind = Kind::IPAMConfig;
}

impl IpamConfig {
    pub const NAME: &'static str = "default";
    pub const DEFAULT_MAX_BLOCKS: u32 = 20;

    pub fn block_limit(&self) -> u32 {
        if self.max_blocks_per_host == 0 {
            Self::DEFAULT_MAX_BLOCKS
        } else {
            self.max_blocks_per_host
        }
    }
}
