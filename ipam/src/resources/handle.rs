//! IPAMHandle: what one handle (container ID) holds, counted per block so a release goes
//! straight to the right blocks instead of scanning the pool.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Resource;
use crate::store::Kind;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
