//! Taking a block for a node and giving it back.
//!
//! Claiming is two-phase, as in Calico: a `pending` BlockAffinity first, then the block created
//! with the node's affinity (creation is the arbiter: if another node created it first we lose
//! and withdraw), then the affinity confirmed. A crash between the phases leaves a pending
//! affinity that the next claim of the same node completes or withdraws; routes ignore pending
//! affinities, so a half-done claim is never advertised.

use ipnet::Ipv4Net;

use super::{now_secs, Ipam, Step};
use crate::error::IpamError;
use crate::resources::{self, AffinityState, AllocationBlock, BlockAffinity, Versioned};
use crate::store::StoreError;

impl Ipam {
    /// Claims the first free block in `node`'s order; `None` when every block of the pool exists.
    pub(crate) fn claim_free_block(&self, node: &str) -> Result<Option<Ipv4Net>, IpamError> {
        // The names of the blocks are all it takes (a block is named after its CIDR): reading
        // every block of a large pool for each claim would make a claim cost the cluster's size.
        let taken: std::collections::HashSet<String> = self
            .store
            .list_names(crate::store::Kind::IPAMBlock)?
            .into_iter()
            .collect();
        for cidr in super::block_order(&self.pool, node) {
            if taken.contains(&resources::cidr_name(&cidr)) {
                continue;
            }
            if self.claim(node, cidr)? {
                return Ok(Some(cidr));
            }
        }
        Ok(None)
    }

    /// Runs (or completes) the two-phase claim of `cidr` for `node`; false if another node owns
    /// the block.
    pub(crate) fn claim(&self, node: &str, cidr: Ipv4Net) -> Result<bool, IpamError> {
        let name = BlockAffinity::name(node, &cidr);
        // Phase 1: a pending affinity (or one we left behind, set back to pending).
        let confirmed = self.rmw("creating a pending block affinity", || {
            let existing = resources::get::<BlockAffinity>(&*self.store, &name)?;
            match existing {
                None => {
                    let aff = BlockAffinity {
                        state: AffinityState::Pending,
                        node: node.to_string(),
                        cidr,
                        deleted: false,
                    };
                    match resources::create(&*self.store, &name, aff) {
                        Ok(_) => Ok(Step::Done(false)),
                        Err(StoreError::AlreadyExists { .. }) => Ok(Step::Retry),
                        Err(e) => Err(e.into()),
                    }
                }
                Some(v) if v.value.state == AffinityState::Confirmed => Ok(Step::Done(true)),
                Some(v) if v.value.state == AffinityState::Pending => Ok(Step::Done(false)),
                Some(mut v) => {
                    v.value.state = AffinityState::Pending;
                    self.cas(resources::update(&*self.store, v))
                        .map(|s| s.map(|_| false))
                }
            }
        })?;
        // Phase 2: the block. Creation decides who wins.
        let block = AllocationBlock::new(cidr, Some(node), now_secs());
        match resources::create(&*self.store, &resources::cidr_name(&cidr), block) {
            Ok(_) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                let cur =
                    resources::get::<AllocationBlock>(&*self.store, &resources::cidr_name(&cidr))?;
                // Ours already (a claim that crashed after this step, or a sibling process of
                // the same node): go on and confirm. Otherwise withdraw.
                if !cur.as_ref().is_some_and(|b| b.value.is_affine_to(node)) {
                    if !confirmed {
                        self.delete_affinity_if(&name, |a| a.state == AffinityState::Pending)?;
                    }
                    return Ok(false);
                }
            }
            Err(e) => return Err(e.into()),
        }
        // Phase 3: confirm.
        self.rmw("confirming a block affinity", || {
            match resources::get::<BlockAffinity>(&*self.store, &name)? {
                Some(v) if v.value.state == AffinityState::Confirmed => Ok(Step::Done(())),
                Some(mut v) => {
                    v.value.state = AffinityState::Confirmed;
                    self.cas(resources::update(&*self.store, v))
                        .map(|s| s.map(|_| ()))
                }
                // Removed under us (a repair of a stale pending affinity): the block is ours,
                // so write the affinity again.
                None => {
                    let aff = BlockAffinity {
                        state: AffinityState::Confirmed,
                        node: node.to_string(),
                        cidr,
                        deleted: false,
                    };
                    match resources::create(&*self.store, &name, aff) {
                        Ok(_) => Ok(Step::Done(())),
                        Err(StoreError::AlreadyExists { .. }) => Ok(Step::Retry),
                        Err(e) => Err(e.into()),
                    }
                }
            }
        })?;
        tracing::info!(%node, %cidr, "claimed block");
        Ok(true)
    }

    /// Gives a block back (Calico's `releaseBlockAffinity`): mark the affinity pendingDeletion,
    /// delete the block if it is empty or else leave it without affinity (its addresses become
    /// borrowed ones), then delete the affinity. With `only_if_empty` a block that is not empty
    /// is kept and the affinity confirmed again. True if the affinity was released.
    pub(crate) fn release_affinity(
        &self,
        node: &str,
        cidr: Ipv4Net,
        only_if_empty: bool,
    ) -> Result<bool, IpamError> {
        let name = BlockAffinity::name(node, &cidr);
        let marked = self.rmw(
            "marking a block affinity for deletion",
            || match resources::get::<BlockAffinity>(&*self.store, &name)? {
                None => Ok(Step::Done(false)),
                Some(v) if v.value.state == AffinityState::PendingDeletion => Ok(Step::Done(true)),
                Some(mut v) => {
                    v.value.state = AffinityState::PendingDeletion;
                    self.cas(resources::update(&*self.store, v))
                        .map(|s| s.map(|_| true))
                }
            },
        )?;
        if !marked {
            return Ok(false);
        }
        let block_name = resources::cidr_name(&cidr);
        let released = self.rmw("releasing a block", || {
            let Some(mut b) = resources::get::<AllocationBlock>(&*self.store, &block_name)? else {
                return Ok(Step::Done(true));
            };
            if !b.value.is_affine_to(node) {
                return Ok(Step::Done(true));
            }
            if b.value.is_empty() {
                return Ok(self.cas(resources::delete(&*self.store, &b))?.map(|_| true));
            }
            if only_if_empty {
                return Ok(Step::Done(false));
            }
            b.value.affinity = None;
            b.value.sequence_number += 1;
            Ok(self.cas(resources::update(&*self.store, b))?.map(|_| true))
        })?;
        if !released {
            self.rmw(
                "confirming a block affinity again",
                || match resources::get::<BlockAffinity>(&*self.store, &name)? {
                    Some(mut v) if v.value.state == AffinityState::PendingDeletion => {
                        v.value.state = AffinityState::Confirmed;
                        self.cas(resources::update(&*self.store, v).map(|_| ()))
                    }
                    _ => Ok(Step::Done(())),
                },
            )?;
            return Ok(false);
        }
        // Someone may have re-claimed the block meanwhile; only our marked record is deleted.
        let deleted =
            self.delete_affinity_if(&name, |a| a.state == AffinityState::PendingDeletion)?;
        if deleted {
            tracing::info!(%node, %cidr, "released block affinity");
        }
        Ok(deleted)
    }

    /// Deletes an affinity record if `pred` holds for what is stored; true if deleted.
    pub(crate) fn delete_affinity_if(
        &self,
        name: &str,
        pred: impl Fn(&BlockAffinity) -> bool,
    ) -> Result<bool, IpamError> {
        self.rmw("deleting a block affinity", || {
            match resources::get::<BlockAffinity>(&*self.store, name)? {
                Some(v) if pred(&v.value) => self
                    .cas(resources::delete(&*self.store, &v))
                    .map(|s| s.map(|_| true)),
                _ => Ok(Step::Done(false)),
            }
        })
    }

    /// The affinity records of `node`, in every state, sorted by block.
    pub(crate) fn affinities_of(
        &self,
        node: &str,
    ) -> Result<Vec<Versioned<BlockAffinity>>, IpamError> {
        // Affinity names start with the node name, so only this node's records (and those of
        // nodes whose names extend it, dropped below) are read.
        let (affs, _) = resources::list_prefix::<BlockAffinity>(&*self.store, &format!("{node}-"))?;
        let mut mine: Vec<_> = affs.into_iter().filter(|a| a.value.node == node).collect();
        mine.sort_by_key(|a| a.value.cidr);
        Ok(mine)
    }
}
