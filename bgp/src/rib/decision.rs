//! The BGP decision process, RFC 4271 §9.1.2.2, with the reason the winner won.
//!
//! Candidates are eliminated step by step as the RFC describes (not by pairwise comparison,
//! which is not transitive once MED is only compared within one neighbour AS). The step at
//! which one candidate is left is the [`BestReason`].

use super::{PeerInfo, RouteSource};
use crate::wire::{Origin, PathAttributes, PeerType};
use std::net::{IpAddr, Ipv4Addr};

/// RFC 4271 §5.1.5: the LOCAL_PREF assumed when a route has none (what we also send to iBGP).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// The step of the decision process that chose the best route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum BestReason {
    /// No other route for the prefix.
    OnlyPath,
    /// Locally originated routes beat learned ones.
    LocallyOriginated,
    /// §9.1.2.2 step before a: highest degree of preference (LOCAL_PREF).
    LocalPref,
    /// §9.1.2.2 a: shortest AS_PATH.
    AsPathLength,
    /// §9.1.2.2 b: lowest ORIGIN.
    Origin,
    /// §9.1.2.2 c: lowest MED among routes from the same neighbour AS.
    Med,
    /// §9.1.2.2 d: routes learned by eBGP beat those learned by iBGP.
    ExternalOverInternal,
    /// §9.1.2.2 f: lowest BGP identifier (ORIGINATOR_ID when present, RFC 4456 §9).
    RouterId,
    /// RFC 4456 §9: shortest CLUSTER_LIST.
    ClusterListLength,
    /// §9.1.2.2 g: lowest peer address.
    PeerAddress,
}

impl BestReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            BestReason::OnlyPath => "only path",
            BestReason::LocallyOriginated => "locally originated",
            BestReason::LocalPref => "highest local preference",
            BestReason::AsPathLength => "shortest AS path",
            BestReason::Origin => "lowest origin",
            BestReason::Med => "lowest MED",
            BestReason::ExternalOverInternal => "eBGP over iBGP",
            BestReason::RouterId => "lowest router ID",
            BestReason::ClusterListLength => "shortest cluster list",
            BestReason::PeerAddress => "lowest peer address",
        }
    }
}

/// One route offered to the decision process. `peer` is `None` for a local route.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    pub source: RouteSource,
    pub attrs: &'a PathAttributes,
    pub peer: Option<&'a PeerInfo>,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        match self.peer {
            // §9.1.1: the degree of preference of an iBGP route is its LOCAL_PREF; for eBGP
            // routes it comes from local policy, which here is the default.
            Some(p) if p.peer_type == PeerType::Internal => {
                self.attrs.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
            }
            _ => DEFAULT_LOCAL_PREF,
        }
    }

    fn path_len(&self) -> usize {
        self.attrs.as_path.as_ref().map_or(0, |p| p.path_len())
    }

    fn origin(&self) -> Origin {
        self.attrs.origin.unwrap_or(Origin::Incomplete)
    }

    /// §9.1.2.2 c: the neighbour AS is the first AS of the AS_PATH; a route with an empty
    /// path was originated inside our own AS.
    fn neighbour_as(&self, local_as: u32) -> u32 {
        self.attrs
            .as_path
            .as_ref()
            .and_then(|p| p.first_as())
            .unwrap_or(local_as)
    }

    /// §9.1.2.2 c: "a route that does not carry MULTI_EXIT_DISC [...] is assumed to have the
    /// lowest possible value" (0).
    fn med(&self) -> u32 {
        self.attrs.med.unwrap_or(0)
    }

    fn is_external(&self) -> bool {
        matches!(self.peer, Some(p) if p.peer_type == PeerType::External)
    }

    fn router_id(&self) -> Ipv4Addr {
        self.attrs
            .originator_id
            .or(self.peer.map(|p| p.router_id))
            .unwrap_or(Ipv4Addr::UNSPECIFIED)
    }

    fn peer_address(&self) -> Option<IpAddr> {
        self.peer.map(|p| p.address)
    }
}

/// Keeps the candidates with the best key (`better` = smaller is better after mapping).
fn keep_min<K: Ord>(set: &mut Vec<usize>, key: impl Fn(usize) -> K) {
    if let Some(best) = set.iter().map(|&i| key(i)).min() {
        set.retain(|&i| key(i) == best);
    }
}

/// Chooses the best candidate: its index and why. `None` when there are no candidates.
pub fn select_best(local_as: u32, cands: &[Candidate<'_>]) -> Option<(usize, BestReason)> {
    let mut set: Vec<usize> = (0..cands.len()).collect();
    match set.len() {
        0 => return None,
        1 => return Some((0, BestReason::OnlyPath)),
        _ => {}
    }
    type Step<'s> = (BestReason, &'s dyn Fn(&mut Vec<usize>));
    let c = cands;
    let steps: [Step; 9] = [
        (BestReason::LocallyOriginated, &|s| {
            keep_min(s, |i| c[i].source != RouteSource::Local)
        }),
        (BestReason::LocalPref, &|s| {
            keep_min(s, |i| std::cmp::Reverse(c[i].local_pref()))
        }),
        (BestReason::AsPathLength, &|s| {
            keep_min(s, |i| c[i].path_len())
        }),
        (BestReason::Origin, &|s| keep_min(s, |i| c[i].origin())),
        (BestReason::Med, &|s| {
            // Remove a route when another one from the same neighbour AS has a lower MED.
            let snapshot = s.clone();
            s.retain(|&i| {
                !snapshot.iter().any(|&j| {
                    c[j].neighbour_as(local_as) == c[i].neighbour_as(local_as)
                        && c[j].med() < c[i].med()
                })
            });
        }),
        (BestReason::ExternalOverInternal, &|s| {
            keep_min(s, |i| !c[i].is_external())
        }),
        // §9.1.2.2 e (IGP cost to the NEXT_HOP) is skipped: the underlay is one hop, every
        // next hop costs the same.
        (BestReason::RouterId, &|s| keep_min(s, |i| c[i].router_id())),
        (BestReason::ClusterListLength, &|s| {
            keep_min(s, |i| c[i].attrs.cluster_list.len())
        }),
        (BestReason::PeerAddress, &|s| {
            keep_min(s, |i| c[i].peer_address())
        }),
    ];
    for (reason, step) in steps {
        step(&mut set);
        if set.len() == 1 {
            return Some((set[0], reason));
        }
    }
    // Two routes from the same peer cannot exist; keep the first if it ever happens.
    set.first().map(|&i| (i, BestReason::PeerAddress))
}
