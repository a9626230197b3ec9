//! Assigning an address, by the cheapest path first: a free address in one of the node's own
//! blocks, else a newly claimed block, else (unless strict affinity is on) an address borrowed
//! from another node's block.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::{now_secs, AllocationAttrs, Ipam, Step};
use crate::error::IpamError;
use crate::resources::{self, AffinityState, AllocationBlock, IpamHandle};
use crate::store::StoreError;

/// What trying one block gave.
enum InBlock {
    Assigned(Ipv4Addr, u32),
    Full,
    /// The block is not there, or not (any more) what we were looking for.
    Unusable,
}

/// Which blocks an attempt may use.
#[derive(Clone, Copy)]
enum Want<'a> {
    AffineTo(&'a str),
    NotAffineTo(&'a str),
}

/// What an assignment did besides giving an address: what the node announces may have changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Assigned {
    pub ip: Ipv4Addr,
    /// A block this assignment claimed for the node (the node now routes it).
    pub claimed: Option<Ipv4Net>,
    /// The address is borrowed from another node's block (the node announces it as a /32).
    pub borrowed: bool,
}

impl Ipam {
    /// An address for `handle`. Idempotent: a handle that already holds an address gets it
    /// back, also when an earlier assign wrote the block but not the handle record (a crash, or
    /// a datastore write whose answer was lost). Two *concurrent* assigns of one handle that
    /// pick different blocks are not merged (each may get an address); the CNI runs one ADD per
    /// container at a time, and `release` frees both.
    pub fn assign(&self, handle: &str, attrs: &AllocationAttrs) -> Result<Ipv4Addr, IpamError> {
        Ok(self.assign_reporting(handle, attrs, &mut |_| {})?.ip)
    }

    /// [`Ipam::assign`], saying what changed for the node's routes, and calling `on_claim`
    /// with a block as soon as the node's claim on it is confirmed: before the address and the
    /// handle are written, so that the block can be announced meanwhile.
    pub fn assign_reporting(
        &self,
        handle: &str,
        attrs: &AllocationAttrs,
        on_claim: &mut dyn FnMut(Ipv4Net),
    ) -> Result<Assigned, IpamError> {
        if handle.is_empty() {
            return Err(IpamError::InvalidHandle(handle.to_string()));
        }
        if attrs.node.is_empty() {
            return Err(IpamError::InvalidConfig {
                field: "NODENAME",
                value: String::new(),
                reason: "an address needs the node it is for".into(),
            });
        }
        // Asked again (a retried ADD): the same address, and whether it is borrowed, which
        // the node must still be announcing.
        if let Some((ip, affine)) = self.held_by_on(handle, &attrs.node)? {
            return Ok(Assigned {
                ip,
                claimed: None,
                borrowed: !affine,
            });
        }
        let mut claimed = None;
        let mut on_claim = |cidr| {
            claimed = Some(cidr);
            on_claim(cidr);
        };
        let (ip, cidr, count, borrowed) = self.allocate(handle, attrs, &mut on_claim)?;
        // The handle record is written after the block: a crash in between leaves an address
        // without a handle, which `check` reports and `repair` frees once it is old enough.
        self.set_handle_count(handle, cidr, count)?;
        tracing::debug!(%handle, %ip, node = %attrs.node, "assigned");
        Ok(Assigned {
            ip,
            claimed,
            borrowed,
        })
    }

    /// The address `handle` already holds, and whether its block is `node`'s.
    fn held_by_on(&self, handle: &str, node: &str) -> Result<Option<(Ipv4Addr, bool)>, IpamError> {
        let Some(h) = resources::get::<IpamHandle>(&*self.store, handle)? else {
            return Ok(None);
        };
        for cidr in h.value.block.keys() {
            let Ok(cidr) = cidr.parse::<Ipv4Net>() else {
                continue;
            };
            let b = resources::get::<AllocationBlock>(&*self.store, &resources::cidr_name(&cidr))?;
            if let Some(b) = b {
                if let Some((ip, _)) = b.value.allocated().find(|(_, a)| a.handle_id == handle) {
                    return Ok(Some((ip, b.value.is_affine_to(node))));
                }
            }
        }
        Ok(None)
    }

    fn allocate(
        &self,
        handle: &str,
        attrs: &AllocationAttrs,
        on_claim: &mut dyn FnMut(Ipv4Net),
    ) -> Result<(Ipv4Addr, Ipv4Net, u32, bool), IpamError> {
        let node = attrs.node.as_str();
        let config = self.config()?;
        let limit = config.block_limit();
        // Each round re-reads the affinities: a round only fails over to the next one when a
        // block changed hands under us.
        self.rmw("assigning an address", || {
            let affinities = self.affinities_of(node)?;
            let mut confirmed = 0u32;
            for aff in &affinities {
                let cidr = aff.value.cidr;
                match aff.value.state {
                    AffinityState::Confirmed => confirmed += 1,
                    // A claim of ours that did not finish (a crash, or a sibling process of the
                    // same node mid-claim): finish or withdraw it.
                    AffinityState::Pending => {
                        if !self.claim(node, cidr)? {
                            continue;
                        }
                        on_claim(cidr);
                        confirmed += 1;
                    }
                    AffinityState::PendingDeletion => continue,
                }
                match self.assign_in_block(cidr, handle, attrs, Want::AffineTo(node))? {
                    InBlock::Assigned(ip, n) => return Ok(Step::Done((ip, cidr, n, false))),
                    InBlock::Full => {}
                    InBlock::Unusable => {
                        if self.rebuild_block(node, cidr)? {
                            if let InBlock::Assigned(ip, n) =
                                self.assign_in_block(cidr, handle, attrs, Want::AffineTo(node))?
                            {
                                return Ok(Step::Done((ip, cidr, n, false)));
                            }
                        }
                    }
                }
            }
            let mut limit_hit = false;
            if confirmed >= limit {
                limit_hit = true;
            } else if config.auto_allocate_blocks {
                if let Some(cidr) = self.claim_free_block(node)? {
                    on_claim(cidr);
                    return Ok(
                        match self.assign_in_block(cidr, handle, attrs, Want::AffineTo(node))? {
                            InBlock::Assigned(ip, n) => Step::Done((ip, cidr, n, false)),
                            // Filled or released by others before we could use it: start over.
                            _ => Step::Retry,
                        },
                    );
                }
            }
            if !config.strict_affinity {
                if let Some((ip, cidr, n)) = self.borrow(handle, attrs)? {
                    return Ok(Step::Done((ip, cidr, n, true)));
                }
            }
            Err(if limit_hit {
                IpamError::BlockLimit {
                    node: node.to_string(),
                    limit,
                }
            } else if config.strict_affinity {
                IpamError::StrictAffinity {
                    node: node.to_string(),
                    pool: self.pool.cidr,
                }
            } else {
                IpamError::PoolExhausted {
                    pool: self.pool.cidr,
                }
            })
        })
    }

    /// An address from a block that is not `attrs.node`'s, walking the pool in the node's order.
    fn borrow(
        &self,
        handle: &str,
        attrs: &AllocationAttrs,
    ) -> Result<Option<(Ipv4Addr, Ipv4Net, u32)>, IpamError> {
        let (blocks, _) = resources::list::<AllocationBlock>(&*self.store)?;
        let with_room: std::collections::HashSet<Ipv4Net> = blocks
            .iter()
            .filter(|b| b.value.free() > 0 && !b.value.is_affine_to(&attrs.node))
            .map(|b| b.value.cidr)
            .collect();
        for cidr in super::block_order(&self.pool, &attrs.node) {
            if !with_room.contains(&cidr) {
                continue;
            }
            if let InBlock::Assigned(ip, n) =
                self.assign_in_block(cidr, handle, attrs, Want::NotAffineTo(&attrs.node))?
            {
                tracing::info!(%ip, block = %cidr, node = %attrs.node, "borrowed an address");
                return Ok(Some((ip, cidr, n)));
            }
        }
        Ok(None)
    }

    /// Takes the next free address of one block, compare-and-swapping until it sticks.
    fn assign_in_block(
        &self,
        cidr: Ipv4Net,
        handle: &str,
        attrs: &AllocationAttrs,
        want: Want<'_>,
    ) -> Result<InBlock, IpamError> {
        let name = resources::cidr_name(&cidr);
        self.rmw("writing a block", || {
            let Some(mut b) = resources::get::<AllocationBlock>(&*self.store, &name)? else {
                return Ok(Step::Done(InBlock::Unusable));
            };
            let usable = match want {
                Want::AffineTo(n) => b.value.is_affine_to(n),
                Want::NotAffineTo(n) => !b.value.is_affine_to(n),
            };
            if !usable || b.value.deleted {
                return Ok(Step::Done(InBlock::Unusable));
            }
            // A handle holds one address. If this block already has one for it, an earlier try
            // wrote the block and then failed before the handle record: a crash, or a write
            // whose answer was lost (an etcd leader change) but which did commit. It is ours.
            if let Some((ip, _)) = b.value.allocated().find(|(_, a)| a.handle_id == handle) {
                return Ok(Step::Done(InBlock::Assigned(
                    ip,
                    b.value.count_handle(handle),
                )));
            }
            let Some(ip) = b.value.assign(handle, attrs.secondary(now_secs())) else {
                return Ok(Step::Done(InBlock::Full));
            };
            let count = b.value.count_handle(handle);
            Ok(self
                .cas(resources::update(&*self.store, b))?
                .map(|_| InBlock::Assigned(ip, count)))
        })
    }

    /// A confirmed affinity whose block is missing (a crash between claim phases, or a block
    /// deleted by hand): create the block again so the affinity means something. True if the
    /// block now exists with this node's affinity.
    pub(crate) fn rebuild_block(&self, node: &str, cidr: Ipv4Net) -> Result<bool, IpamError> {
        let name = resources::cidr_name(&cidr);
        if let Some(b) = resources::get::<AllocationBlock>(&*self.store, &name)? {
            // Someone else's block under our affinity: `check` reports it.
            return Ok(b.value.is_affine_to(node));
        }
        match resources::create(
            &*self.store,
            &name,
            AllocationBlock::new(cidr, Some(node), now_secs()),
        ) {
            Ok(_) => {
                tracing::warn!(%node, %cidr, "rebuilt a missing block for its affinity");
                Ok(true)
            }
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Records in the handle how many addresses it holds in `cidr`. It sets the count read from
    /// the block rather than adding one, so running it twice (or racing a repair) is harmless.
    pub(crate) fn set_handle_count(
        &self,
        handle: &str,
        cidr: Ipv4Net,
        count: u32,
    ) -> Result<(), IpamError> {
        let key = cidr.to_string();
        self.rmw("writing a handle", || {
            match resources::get::<IpamHandle>(&*self.store, handle)? {
                None => {
                    let mut h = IpamHandle::new(handle);
                    h.block.insert(key.clone(), count);
                    match resources::create(&*self.store, handle, h) {
                        Ok(_) => Ok(Step::Done(())),
                        Err(StoreError::AlreadyExists { .. }) => Ok(Step::Retry),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(mut h) => {
                    if h.value.block.get(&key) == Some(&count) {
                        return Ok(Step::Done(()));
                    }
                    h.value.block.insert(key.clone(), count);
                    Ok(self.cas(resources::update(&*self.store, h))?.map(|_| ()))
                }
            }
        })
    }
}
