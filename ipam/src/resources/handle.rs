//! IPAMHandle: what one handle (container ID) holds, counted per block so a release goes
//! straight to the right blocks instead of scanning the pool.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Resource;
use crate::store::Kind;

/// On Kubernetes, a cluster-scoped `IPAMHandle` custom resource (`gingham.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "IPAMHandle",
    plural = "ipamhandles",
    root = "IpamHandleResource",
    doc = "What one handle (a pod's container ID) holds, per block (Gingham's IPAM).",
    printcolumn = r#"{"name":"Handle","type":"string","jsonPath":".spec.handleID"}"#
)]
pub struct IpamHandle {
    #[serde(rename = "handleID")]
    pub handle_id: String,
    /// Block CIDR → number of addresses this handle holds in it.
    #[serde(default)]
    pub block: BTreeMap<String, u32>,
    #[serde(default)]
    pub deleted: bool,
}

impl Resource for IpamHandle {
    const KIND: Kind = Kind::IPAMHandle;
}

impl IpamHandle {
    pub fn new(handle: &str) -> Self {
        IpamHandle {
            handle_id: handle.to_string(),
            block: BTreeMap::new(),
            deleted: false,
        }
    }
}
