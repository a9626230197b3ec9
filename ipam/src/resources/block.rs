//! IPAMBlock: one block of a pool, with one slot per address.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{InvalidRecord, Resource};
use crate::store::Kind;

/// Who holds an address: the handle (container ID) and the owner's attributes (`node`, `pod`,
/// `namespace`), Calico's `secondary` map.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AllocationAttribute {
    pub handle_id: String,
    #[serde(default)]
    pub secondary: BTreeMap<String, String>,
}

impl AllocationAttribute {
    /// The node that holds the address.
    pub fn node(&self) -> Option<&str> {
        self.secondary.get("node").map(String::as_str)
    }
}

/// Calico's `AllocationBlock`. `allocations[ordinal]` is `None` when free or an index into
/// `attributes`; `unallocated` is a FIFO of free ordinals (assign pops the head, release pushes
/// the tail) so a freed address is the last to be handed out again, which keeps a stale
/// reference to a dead pod's address from reaching a new pod soon after.
///
/// On Kubernetes, a cluster-scoped `IPAMBlock` custom resource (`gingham.io/v1`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    root = "IpamBlockResource",
    doc = "A block of a pool: who holds each of its addresses (Gingham's IPAM).",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Affinity","type":"string","jsonPath":".spec.affinity"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct AllocationBlock {
    pub cidr: Ipv4Net,
    /// `host:<node>`, or none for a block no node owns (its addresses are all borrowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<String>,
    /// Unix seconds when the affinity was claimed.
    #[serde(default)]
    pub affinity_claim_time: u64,
    pub allocations: Vec<Option<usize>>,
    pub unallocated: VecDeque<u32>,
    pub attributes: Vec<AllocationAttribute>,
    /// Bumped on every write, so a reader can tell the block changed between two looks.
    pub sequence_number: u64,
    #[serde(default)]
    pub deleted: bool,
}

impl Resource for AllocationBlock {
    const KIND: Kind = Kind::IPAMBlock;

    fn validate(&self) -> Result<(), InvalidRecord> {
        if self.cidr.prefix_len() < 16 {
            return Err(InvalidRecord::BlockTooLarge(self.cidr));
        }
        if self.cidr != self.cidr.trunc() {
            return Err(InvalidRecord::NotNetworkAddress(self.cidr));
        }
        let size = self.size();
        if self.allocations.len() != size {
            return Err(InvalidRecord::SlotCount {
                slots: self.allocations.len(),
                size,
            });
        }
        if let Some(i) = self
            .allocations
            .iter()
            .flatten()
            .find(|&&i| i >= self.attributes.len())
        {
            return Err(InvalidRecord::MissingAttribute(*i));
        }
        let free: BTreeSet<u32> = self.unallocated.iter().copied().collect();
        let expected: BTreeSet<u32> = (0..size as u32)
            .filter(|&o| self.allocations[o as usize].is_none())
            .collect();
        if free.len() != self.unallocated.len() || free != expected {
            return Err(InvalidRecord::FreeListMismatch);
        }
        Ok(())
    }
}

pub fn host_affinity(node: &str) -> String {
    format!("host:{node}")
}

impl AllocationBlock {
    pub fn new(cidr: Ipv4Net, node: Option<&str>, now: u64) -> Self {
        let cidr = cidr.trunc();
        let size = 1usize << (32 - cidr.prefix_len());
        AllocationBlock {
            cidr,
            affinity: node.map(host_affinity),
            affinity_claim_time: now,
            allocations: vec![None; size],
            unallocated: (0..size as u32).collect(),
            attributes: Vec::new(),
            sequence_number: 0,
            deleted: false,
        }
    }

    pub fn size(&self) -> usize {
        1usize << (32 - self.cidr.prefix_len())
    }

    /// The node named by the affinity, if it is a host affinity.
    pub fn host_node(&self) -> Option<&str> {
        self.affinity
            .as_deref()
            .and_then(|a| a.strip_prefix("host:"))
    }

    pub fn is_affine_to(&self, node: &str) -> bool {
        self.host_node() == Some(node)
    }

    pub fn addr(&self, ordinal: u32) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.cidr.network()).wrapping_add(ordinal))
    }

    pub fn ordinal(&self, ip: Ipv4Addr) -> Option<u32> {
        self.cidr
            .contains(&ip)
            .then(|| u32::from(ip) - u32::from(self.cidr.network()))
    }

    pub fn free(&self) -> usize {
        self.unallocated.len()
    }

    pub fn in_use(&self) -> usize {
        self.size() - self.free()
    }

    pub fn is_empty(&self) -> bool {
        self.free() == self.size()
    }

    /// Takes the head of the free list for `handle`; `None` when the block is full.
    pub fn assign(
        &mut self,
        handle: &str,
        secondary: BTreeMap<String, String>,
    ) -> Option<Ipv4Addr> {
        let ordinal = self.unallocated.pop_front()?;
        self.attributes.push(AllocationAttribute {
            handle_id: handle.to_string(),
            secondary,
        });
        if let Some(slot) = self.allocations.get_mut(ordinal as usize) {
            *slot = Some(self.attributes.len() - 1);
        }
        self.sequence_number += 1;
        Some(self.addr(ordinal))
    }

    /// Frees every address whose attribute matches, returning them with their attributes.
    pub fn release_where(
        &mut self,
        pred: impl Fn(&AllocationAttribute) -> bool,
    ) -> Vec<(Ipv4Addr, AllocationAttribute)> {
        let mut released = Vec::new();
        for ordinal in 0..self.allocations.len() {
            let Some(idx) = self.allocations[ordinal] else {
                continue;
            };
            let Some(attr) = self.attributes.get(idx) else {
                continue;
            };
            if pred(attr) {
                released.push((self.addr(ordinal as u32), attr.clone()));
                self.allocations[ordinal] = None;
                self.unallocated.push_back(ordinal as u32);
            }
        }
        if !released.is_empty() {
            self.compact_attributes();
            self.sequence_number += 1;
        }
        released
    }

    pub fn release_handle(&mut self, handle: &str) -> Vec<Ipv4Addr> {
        self.release_where(|a| a.handle_id == handle)
            .into_iter()
            .map(|(ip, _)| ip)
            .collect()
    }

    /// Drops attributes no slot points at any more and renumbers the slots.
    fn compact_attributes(&mut self) {
        let mut remap = vec![None; self.attributes.len()];
        let mut kept = Vec::new();
        for slot in self.allocations.iter_mut().flatten() {
            let new = match remap.get(*slot).copied().flatten() {
                Some(n) => n,
                None => {
                    let n = kept.len();
                    kept.push(self.attributes[*slot].clone());
                    remap[*slot] = Some(n);
                    n
                }
            };
            *slot = new;
        }
        self.attributes = kept;
    }

    /// Every held address with its attribute.
    pub fn allocated(&self) -> impl Iterator<Item = (Ipv4Addr, &AllocationAttribute)> + '_ {
        self.allocations
            .iter()
            .enumerate()
            .filter_map(move |(o, slot)| {
                let attr = self.attributes.get((*slot)?)?;
                Some((self.addr(o as u32), attr))
            })
    }

    pub fn attribute_of(&self, ip: Ipv4Addr) -> Option<&AllocationAttribute> {
        let o = self.ordinal(ip)?;
        self.attributes.get((*self.allocations.get(o as usize)?)?)
    }

    pub fn count_handle(&self, handle: &str) -> u32 {
        self.allocated()
            .filter(|(_, a)| a.handle_id == handle)
            .count() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> AllocationBlock {
        AllocationBlock::new("10.0.0.0/30".parse().unwrap(), Some("n1"), 0)
    }

    #[test]
    fn assign_in_order_and_reuse_freed_last() {
        let mut b = block();
        let a = b.assign("h1", BTreeMap::new()).unwrap();
        let c = b.assign("h2", BTreeMap::new()).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 0));
        assert_eq!(c, Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(b.release_handle("h1"), vec![a]);
        // FIFO: .2 and .3 come before the freed .0.
        assert_eq!(
            b.assign("h3", BTreeMap::new()).unwrap(),
            Ipv4Addr::new(10, 0, 0, 2)
        );
        assert_eq!(
            b.assign("h4", BTreeMap::new()).unwrap(),
            Ipv4Addr::new(10, 0, 0, 3)
        );
        assert_eq!(b.assign("h5", BTreeMap::new()).unwrap(), a);
        assert_eq!(b.assign("h6", BTreeMap::new()), None);
        assert!(b.validate().is_ok());
    }

    #[test]
    fn release_compacts_attributes_and_bumps_sequence() {
        let mut b = block();
        b.assign("h1", BTreeMap::new());
        b.assign("h2", BTreeMap::new());
        let seq = b.sequence_number;
        assert_eq!(b.release_handle("h1").len(), 1);
        assert_eq!(b.attributes.len(), 1);
        assert_eq!(
            b.attribute_of(Ipv4Addr::new(10, 0, 0, 1))
                .unwrap()
                .handle_id,
            "h2"
        );
        assert!(b.sequence_number > seq);
        assert!(b.release_handle("nobody").is_empty());
        assert!(b.validate().is_ok());
    }

    #[test]
    fn validate_rejects_inconsistent_blocks() {
        let mut b = block();
        b.allocations[0] = Some(7);
        assert!(b.validate().is_err());
        let mut b = block();
        b.unallocated.push_back(0);
        assert!(b.validate().is_err());
        let mut b = block();
        b.allocations.pop();
        assert!(b.validate().is_err());
    }

    #[test]
    fn json_uses_calico_field_names() {
        let v = serde_json::to_value(block()).unwrap();
        for key in [
            "cidr",
            "affinity",
            "affinityClaimTime",
            "allocations",
            "unallocated",
            "sequenceNumber",
        ] {
            assert!(v.get(key).is_some(), "{key} missing in {v}");
        }
        assert_eq!(v["affinity"], "host:n1");
    }
}
