//! Adj-RIB-Out: what we advertise to one peer, the export rules, and UPDATE packing.
//!
//! Changes are not sent one prefix at a time: a best-route change only marks the prefix dirty;
//! [`AdjRibOut::take_batch`] later compares what each dirty prefix should look like with what
//! was last sent and groups the announcements by (interned) attribute set, so prefixes sharing
//! attributes travel in the same UPDATE.

use super::decision::DEFAULT_LOCAL_PREF;
use super::intern::AttrInterner;
use super::{PeerInfo, RouteSource};
use crate::wire::{attr_flags, AsPath, AsPathSegment, Origin, PathAttributes, PeerType};
use ipnet::Ipv4Net;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// What one flush has to send to a peer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OutBatch {
    pub withdrawn: Vec<Ipv4Net>,
    /// Announcements grouped by attribute set.
    pub groups: Vec<(Arc<PathAttributes>, Vec<Ipv4Net>)>,
    /// Send End-of-RIB (RFC 4724 §2) after this batch: the initial table dump is complete.
    pub end_of_rib: bool,
}

impl OutBatch {
    pub fn is_empty(&self) -> bool {
        self.withdrawn.is_empty() && self.groups.is_empty() && !self.end_of_rib
    }
}

/// The Adj-RIB-Out of one established peer.
#[derive(Debug)]
pub struct AdjRibOut {
    pub peer: PeerInfo,
    pub local_as: u32,
    /// Our address on the session: NEXT_HOP for eBGP and for our own routes (next-hop-self).
    pub local_addr: Ipv4Addr,
    advertised: HashMap<Ipv4Net, Arc<PathAttributes>>,
    dirty: BTreeSet<Ipv4Net>,
    end_of_rib_pending: bool,
    /// A ROUTE-REFRESH is being answered: what is dirty is sent even if it was sent before.
    resend: bool,
}

impl AdjRibOut {
    pub fn new(peer: PeerInfo, local_as: u32, local_addr: Ipv4Addr) -> Self {
        AdjRibOut {
            peer,
            local_as,
            local_addr,
            advertised: HashMap::new(),
            dirty: BTreeSet::new(),
            end_of_rib_pending: true,
            resend: false,
        }
    }

    pub fn mark_dirty(&mut self, prefix: Ipv4Net) {
        self.dirty.insert(prefix);
    }

    /// The best path of `prefix` changed to `best`: dirty only if this peer may be sent it,
    /// or holds what we sent before. A full table learned from this very peer (which it is
    /// never sent back) costs it nothing.
    pub fn best_changed(
        &mut self,
        prefix: Ipv4Net,
        best: Option<(RouteSource, Option<&PeerInfo>)>,
    ) {
        let eligible = best.is_some_and(|(source, from)| self.eligible(source, from));
        if eligible || self.advertised.contains_key(&prefix) {
            self.dirty.insert(prefix);
        }
    }

    /// The rules of [`AdjRibOut::export`] that depend only on where `best` came from.
    fn eligible(&self, source: RouteSource, from: Option<&PeerInfo>) -> bool {
        if source == RouteSource::Peer(self.peer.address) {
            return false;
        }
        // §9.2: an iBGP-learned route is never sent to another iBGP peer (no route reflection).
        let from_ibgp = matches!(from, Some(p) if p.peer_type == PeerType::Internal);
        !(from_ibgp && self.peer.peer_type == PeerType::Internal)
    }

    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || self.end_of_rib_pending
    }

    pub fn advertised_count(&self) -> usize {
        self.advertised.len()
    }

    /// Re-send what is marked dirty next even where it was sent before (ROUTE-REFRESH, RFC
    /// 2918 §4). What was sent is remembered all the same: a withdrawal already pending must
    /// still go out.
    pub fn reset(&mut self) {
        self.resend = true;
    }

    /// RFC 4271 §9.2 and §5.1: the attributes `best` is advertised with to this peer, or `None`
    /// when it must not be advertised.
    pub fn export(
        &self,
        source: RouteSource,
        attrs: &PathAttributes,
        from: Option<&PeerInfo>,
    ) -> Option<PathAttributes> {
        if !self.eligible(source, from) {
            return None;
        }
        let local = source == RouteSource::Local;
        let src = attrs;
        let mut out = PathAttributes {
            origin: Some(src.origin.unwrap_or(Origin::Igp)),
            as_path: Some(src.as_path.clone().unwrap_or_default()),
            atomic_aggregate: src.atomic_aggregate,
            aggregator: src.aggregator,
            communities: src.communities.clone(),
            ..Default::default()
        };
        // §5: unrecognised optional transitive attributes are passed on with Partial set;
        // non-transitive ones are dropped.
        out.unknown = src
            .unknown
            .iter()
            .filter(|a| a.flags & attr_flags::TRANSITIVE != 0)
            .map(|a| {
                let mut a = a.clone();
                a.flags |= attr_flags::PARTIAL;
                a
            })
            .collect();
        match self.peer.peer_type {
            PeerType::External => {
                // §5.1.2: prepend our AS; §5.1.3: NEXT_HOP is our address on the session;
                // §5.1.5: no LOCAL_PREF to eBGP; §5.1.4: a MED learned from another AS is not
                // passed on.
                let path = out.as_path.get_or_insert_with(AsPath::default);
                prepend(path, self.local_as);
                out.next_hop = Some(self.local_addr);
                out.med = if local { src.med } else { None };
            }
            PeerType::Internal => {
                // §5.1.3: to iBGP a learned NEXT_HOP is kept; our own routes get ours
                // (next-hop-self) unless announced with an explicit next hop.
                out.next_hop = if local {
                    Some(src.next_hop.unwrap_or(self.local_addr))
                } else {
                    src.next_hop
                };
                out.local_pref = Some(if from.is_some() {
                    // An eBGP-learned route: our degree of preference (§9.1.1).
                    DEFAULT_LOCAL_PREF
                } else {
                    src.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
                });
                out.med = src.med;
            }
        }
        Some(out)
    }

    /// Computes the pending changes of up to `max` dirty prefixes (the rest stay dirty, so
    /// changes to them coalesce until the peer can take more). `lookup` gives the current best
    /// path of a prefix and the peer it came from.
    pub fn take_batch<'a>(
        &mut self,
        interner: &mut AttrInterner,
        max: usize,
        lookup: impl Fn(
            &Ipv4Net,
        ) -> Option<(RouteSource, &'a Arc<PathAttributes>, Option<&'a PeerInfo>)>,
    ) -> OutBatch {
        let mut batch = OutBatch::default();
        // Group by the interned pointer: equal attribute sets are the same allocation.
        let mut groups: HashMap<*const PathAttributes, usize> = HashMap::new();
        // Export depends only on the attribute set and where it came from: compute it once per
        // (set, source), not once per prefix.
        let mut exported: HashMap<
            (*const PathAttributes, RouteSource),
            Option<Arc<PathAttributes>>,
        > = HashMap::new();
        let mut taken = 0;
        while taken < max {
            let Some(prefix) = self.dirty.pop_first() else {
                break;
            };
            taken += 1;
            let wanted = lookup(&prefix).and_then(|(source, attrs, from)| {
                exported
                    .entry((Arc::as_ptr(attrs), source))
                    .or_insert_with(|| self.export(source, attrs, from).map(|a| interner.intern(a)))
                    .clone()
            });
            match (wanted, self.advertised.get(&prefix)) {
                (None, None) => {}
                (None, Some(_)) => {
                    self.advertised.remove(&prefix);
                    batch.withdrawn.push(prefix);
                }
                (Some(new), Some(old)) if Arc::ptr_eq(&new, old) && !self.resend => {}
                (Some(new), _) => {
                    let slot = *groups.entry(Arc::as_ptr(&new)).or_insert_with(|| {
                        batch.groups.push((new.clone(), Vec::new()));
                        batch.groups.len() - 1
                    });
                    batch.groups[slot].1.push(prefix);
                    self.advertised.insert(prefix, new);
                }
            }
        }
        if self.dirty.is_empty() {
            self.resend = false;
        }
        // End-of-RIB only once the initial dump is wholly out (RFC 4724 §2).
        if self.dirty.is_empty() {
            batch.end_of_rib = std::mem::take(&mut self.end_of_rib_pending);
        }
        batch
    }
}

fn prepend(path: &mut AsPath, asn: u32) {
    match path.segments.first_mut() {
        // RFC 4271 §5.1.2: prepend into a leading sequence unless it is full (255 ASes).
        Some(AsPathSegment::Sequence(v)) if v.len() < 255 => v.insert(0, asn),
        _ => path.segments.insert(0, AsPathSegment::Sequence(vec![asn])),
    }
}
