//! Releasing addresses by handle, giving back empty blocks, and reclaiming a deleted node.

use std::net::Ipv4Addr;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::{now_secs, Ipam, Step};
use crate::error::IpamError;
use crate::registry::NodeRegistry;
use crate::resources::{self, AffinityState, AllocationAttribute, AllocationBlock, IpamHandle};

/// What `release_node` freed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeRelease {
    pub addresses: Vec<Ipv4Addr>,
    pub blocks: Vec<Ipv4Net>,
}

impl Ipam {
    /// Frees what `handle` holds and forgets the handle. Idempotent: returns the addresses it
    /// freed, none the second time. It goes by the handle record, without scanning the pool, so
    /// an address whose assign stopped before writing the record is left to `repair`.
    pub fn release(&self, handle: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        let mut released = Vec::new();
        // Repeats if the handle record changed while we worked (the same handle assigned again).
        self.rmw("releasing a handle", || {
            let Some(h) = resources::get::<IpamHandle>(&*self.store, handle)? else {
                return Ok(Step::Done(()));
            };
            for cidr in h.value.block.keys() {
                let Ok(cidr) = cidr.parse::<Ipv4Net>() else {
                    continue;
                };
                let freed = self.release_in_block(cidr, |a| a.handle_id == handle)?;
                released.extend(freed.into_iter().map(|(ip, _)| ip));
            }
            self.cas(resources::delete(&*self.store, &h))
        })?;
        if !released.is_empty() {
            tracing::debug!(%handle, ?released, "released");
        }
        Ok(released)
    }

    /// Frees the addresses of one block whose attributes match. A block left empty and without
    /// affinity is deleted, as Calico does: nobody would ever give it back otherwise.
    pub(crate) fn release_in_block(
        &self,
        cidr: Ipv4Net,
        pred: impl Fn(&AllocationAttribute) -> bool,
    ) -> Result<Vec<(Ipv4Addr, AllocationAttribute)>, IpamError> {
        let name = resources::cidr_name(&cidr);
        self.rmw("releasing addresses of a block", || {
            let Some(mut b) = resources::get::<AllocationBlock>(&*self.store, &name)? else {
                return Ok(Step::Done(Vec::new()));
            };
            let freed = b.value.release_where(&pred);
            if freed.is_empty() {
                return Ok(Step::Done(freed));
            }
            let res = if b.value.is_empty() && b.value.affinity.is_none() {
                self.cas(resources::delete(&*self.store, &b))?
            } else {
                self.cas(resources::update(&*self.store, b))?.map(|_| ())
            };
            Ok(res.map(|_| freed))
        })
    }

    /// Gives back `node`'s blocks that have stayed empty (at an unchanged sequence number) for
    /// the grace period, keeping at least one block so the next pod does not pay for a claim.
    /// Meant to be called periodically; returns the blocks released.
    pub fn release_empty_blocks(&self, node: &str) -> Result<Vec<Ipv4Net>, IpamError> {
        self.release_empty_blocks_at(node, now_secs(), self.settings.empty_block_grace)
    }

    pub(crate) fn release_empty_blocks_at(
        &self,
        node: &str,
        now: u64,
        grace: Duration,
    ) -> Result<Vec<Ipv4Net>, IpamError> {
        let mut owned = Vec::new();
        for aff in self.affinities_of(node)? {
            if aff.value.state != AffinityState::Confirmed {
                continue;
            }
            let name = resources::cidr_name(&aff.value.cidr);
            if let Some(b) = resources::get::<AllocationBlock>(&*self.store, &name)? {
                if b.value.is_affine_to(node) {
                    owned.push(b.value);
                }
            }
        }
        let mut candidates = Vec::new();
        {
            let mut seen = self.empty_since.lock().unwrap_or_else(|p| p.into_inner());
            for b in &owned {
                if !b.is_empty() {
                    seen.remove(&b.cidr);
                    continue;
                }
                let entry = seen.entry(b.cidr).or_insert((b.sequence_number, now));
                if entry.0 != b.sequence_number {
                    *entry = (b.sequence_number, now);
                }
                if now.saturating_sub(entry.1) >= grace.as_secs() {
                    candidates.push(b.cidr);
                }
            }
        }
        // Keep one block: if every block is a candidate, spare the first.
        if !owned.is_empty() && candidates.len() == owned.len() {
            candidates.remove(0);
        }
        let mut released = Vec::new();
        for cidr in candidates {
            if self.release_affinity(node, cidr, true)? {
                self.empty_since
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(&cidr);
                released.push(cidr);
            }
        }
        Ok(released)
    }

    /// Frees everything of a node that is gone: the addresses it holds (in any block), its
    /// handles, its blocks (deleted if empty, else left without affinity because other nodes
    /// borrowed from them) and its registry entry.
    pub fn release_node(&self, node: &str) -> Result<NodeRelease, IpamError> {
        let mut out = NodeRelease::default();
        let (blocks, _) = resources::list::<AllocationBlock>(&*self.store)?;
        let mut handles = std::collections::BTreeSet::new();
        for b in blocks {
            if !b.value.allocated().any(|(_, a)| a.node() == Some(node)) {
                continue;
            }
            for (ip, attr) in self.release_in_block(b.value.cidr, |a| a.node() == Some(node))? {
                out.addresses.push(ip);
                handles.insert(attr.handle_id);
            }
        }
        for handle in handles {
            self.rmw("deleting a handle", || {
                match resources::get::<IpamHandle>(&*self.store, &handle)? {
                    None => Ok(Step::Done(())),
                    Some(h) => self.cas(resources::delete(&*self.store, &h)),
                }
            })?;
        }
        for aff in self.affinities_of(node)? {
            if self.release_affinity(node, aff.value.cidr, false)? {
                out.blocks.push(aff.value.cidr);
            }
        }
        NodeRegistry::new(self.store.clone()).remove(node)?;
        out.addresses.sort();
        tracing::info!(%node, addresses = out.addresses.len(), blocks = out.blocks.len(), "released node");
        Ok(out)
    }
}
