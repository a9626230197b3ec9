//! What the agent asks of IPAM: which blocks to advertise and blackhole, which borrowed
//! addresses to advertise as /32, usage figures, and who holds an address.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::Ipam;
use crate::error::IpamError;
use crate::resources::{self, AffinityState, AllocationBlock, BlockAffinity, TypedWatch};

/// One block's usage, for `routectl show blocks`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockUsage {
    pub cidr: Ipv4Net,
    /// The node the block is affine to, if any.
    pub node: Option<String>,
    pub in_use: u32,
    pub free: u32,
}

/// The pool's usage, for `routectl ipam show`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolUsage {
    pub cidr: Ipv4Net,
    pub block_size: u8,
    pub blocks_total: u64,
    pub blocks_in_use: u64,
    pub addresses_total: u64,
    pub addresses_in_use: u64,
    /// Addresses not in use: in existing blocks or in blocks not yet claimed.
    pub addresses_free: u64,
}

/// Who holds an address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    pub ip: Ipv4Addr,
    pub handle: String,
    pub node: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub block: Ipv4Net,
    /// The node the block is affine to; differs from `node` for a borrowed address.
    pub block_node: Option<String>,
}

impl Allocation {
    fn new(ip: Ipv4Addr, b: &AllocationBlock, attr: &resources::AllocationAttribute) -> Self {
        let get = |k: &str| attr.secondary.get(k).cloned();
        Allocation {
            ip,
            handle: attr.handle_id.clone(),
            node: get("node"),
            pod: get("pod"),
            namespace: get("namespace"),
            block: b.cidr,
            block_node: b.host_node().map(str::to_string),
        }
    }

    pub fn is_borrowed(&self) -> bool {
        self.node.is_some() && self.node != self.block_node
    }
}

impl Ipam {
    fn all_blocks(&self) -> Result<Vec<AllocationBlock>, IpamError> {
        let (blocks, _) = resources::list::<AllocationBlock>(&*self.store)?;
        let mut blocks: Vec<_> = blocks.into_iter().map(|b| b.value).collect();
        blocks.sort_by_key(|b| b.cidr);
        Ok(blocks)
    }

    /// The node's blocks with a confirmed affinity: these it advertises and blackholes. Pending
    /// claims are left out so a half-done claim never reaches the routing table.
    pub fn node_blocks(&self, node: &str) -> Result<Vec<Ipv4Net>, IpamError> {
        Ok(self
            .affinities_of(node)?
            .into_iter()
            .filter(|a| a.value.state == AffinityState::Confirmed)
            .map(|a| a.value.cidr)
            .collect())
    }

    /// Addresses `node` holds in blocks that are not its own: it advertises them as /32 so the
    /// block owner's blackhole does not swallow their traffic (Calico issue 3246).
    pub fn borrowed(&self, node: &str) -> Result<Vec<Ipv4Addr>, IpamError> {
        Ok(self
            .allocations(node)?
            .into_iter()
            .filter(Allocation::is_borrowed)
            .map(|a| a.ip)
            .collect())
    }

    pub fn blocks(&self) -> Result<Vec<BlockUsage>, IpamError> {
        Ok(self
            .all_blocks()?
            .iter()
            .map(|b| BlockUsage {
                cidr: b.cidr,
                node: b.host_node().map(str::to_string),
                in_use: b.in_use() as u32,
                free: b.free() as u32,
            })
            .collect())
    }

    pub fn pool_usage(&self) -> Result<PoolUsage, IpamError> {
        let blocks = self.all_blocks()?;
        let in_pool: Vec<_> = blocks
            .iter()
            .filter(|b| self.pool.cidr.contains(&b.cidr))
            .collect();
        let total = 1u64 << (32 - self.pool.cidr.prefix_len());
        let in_use: u64 = in_pool.iter().map(|b| b.in_use() as u64).sum();
        Ok(PoolUsage {
            cidr: self.pool.cidr,
            block_size: self.pool.block_size,
            blocks_total: self.pool.block_count(),
            blocks_in_use: in_pool.len() as u64,
            addresses_total: total,
            addresses_in_use: in_use,
            addresses_free: total - in_use,
        })
    }

    /// Who holds `ip`, or `None` if nobody does.
    pub fn lookup(&self, ip: Ipv4Addr) -> Result<Option<Allocation>, IpamError> {
        let Some(cidr) = self.pool.block_of(ip) else {
            return Err(IpamError::NotInPool {
                addr: ip,
                pool: self.pool.cidr,
            });
        };
        let Some(b) =
            resources::get::<AllocationBlock>(&*self.store, &resources::cidr_name(&cidr))?
        else {
            return Ok(None);
        };
        Ok(b.value
            .attribute_of(ip)
            .map(|attr| Allocation::new(ip, &b.value, attr)))
    }

    /// Every address `node` holds, in its own blocks and borrowed, sorted.
    pub fn allocations(&self, node: &str) -> Result<Vec<Allocation>, IpamError> {
        let mut out = Vec::new();
        for b in self.all_blocks()? {
            for (ip, attr) in b.allocated() {
                if attr.node() == Some(node) {
                    out.push(Allocation::new(ip, &b, attr));
                }
            }
        }
        Ok(out)
    }

    /// Block affinities as they change: what the agent follows to add and remove block routes
    /// (only `Confirmed` ones are routed).
    pub fn watch_affinities(&self) -> Result<TypedWatch<BlockAffinity>, IpamError> {
        Ok(TypedWatch::start(&*self.store)?)
    }

    /// Every affinity record (for `routectl` and `check`).
    pub fn affinities(&self) -> Result<Vec<BlockAffinity>, IpamError> {
        let (affs, _) = resources::list::<BlockAffinity>(&*self.store)?;
        Ok(affs.into_iter().map(|a| a.value).collect())
    }
}
