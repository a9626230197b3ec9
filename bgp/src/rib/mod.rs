//! The routing information bases: Adj-RIB-In per peer, the Loc-RIB with the decision process,
//! and Adj-RIB-Out per peer (RFC 4271 §3.2, §9). Pure data structures; the speaker drives them.

mod adj_out;
mod decision;
mod intern;
mod paths;
mod table;
#[cfg(test)]
mod tests;

pub use adj_out::{AdjRibOut, OutBatch};
pub use decision::{select_best, BestReason, Candidate, DEFAULT_LOCAL_PREF};
pub use intern::AttrInterner;
use paths::Paths;
use table::PrefixTable;

use crate::wire::{AsPathSegment, Origin, PathAttributes, PeerType, Update};
use ipnet::{IpNet, Ipv4Net};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// Where a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum RouteSource {
    Local,
    Peer(IpAddr),
}

impl std::fmt::Display for RouteSource {
    /// "local", or the peer's address (as `routectl show routes` prints it).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RouteSource::Local => f.write_str("local"),
            RouteSource::Peer(a) => write!(f, "{a}"),
        }
    }
}

/// A change of the best route of a prefix, for subscribers (the agent's routing owner).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum RouteEvent {
    /// `prefix` is now reached via `next_hop`. For a local route `next_hop` is the configured
    /// next hop or our router ID; the agent drops its kernel route for local sources.
    Best {
        prefix: Ipv4Net,
        next_hop: Ipv4Addr,
        source: RouteSource,
    },
    Withdrawn {
        prefix: Ipv4Net,
    },
}

impl RouteEvent {
    pub fn prefix(&self) -> Ipv4Net {
        match self {
            RouteEvent::Best { prefix, .. } | RouteEvent::Withdrawn { prefix } => *prefix,
        }
    }
}

/// One path of a prefix, for `routes()`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RouteView {
    pub prefix: Ipv4Net,
    pub next_hop: Ipv4Addr,
    pub as_path: String,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    pub source: RouteSource,
    pub best: bool,
    /// Why this path won (only on the best path).
    pub reason: Option<String>,
    /// Kept from a restarting peer's previous session (RFC 4724).
    pub stale: bool,
}

/// What the decision process needs to know about the peer a route came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub router_id: Ipv4Addr,
    pub remote_as: u32,
    pub peer_type: PeerType,
}

/// Where a path came from, in four bytes: 0 is this speaker, `n` the peer at
/// `Rib::sources[n - 1]`. A full table holds one per route, so the 17 bytes of an address
/// would be a fifth of it. Ids are never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Src(pub(crate) u32);

impl Src {
    const LOCAL: Src = Src(0);
}

/// One candidate route for a prefix: 16 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path {
    pub(crate) attrs: Arc<PathAttributes>,
    pub(crate) src: Src,
    /// Kept from a session that ended while its peer restarts (RFC 4724 §4.2): still used, and
    /// removed unless the peer sends it again before its End-of-RIB.
    pub(crate) stale: bool,
    /// On the best path (`paths[0]` after a decision): why it won.
    pub(crate) reason: Option<BestReason>,
}

/// A path as callers see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathView {
    pub source: RouteSource,
    pub attrs: Arc<PathAttributes>,
    pub stale: bool,
}

/// A peer's Adj-RIB-In. Accepted routes live only in the Loc-RIB (as the peer's path of each
/// prefix), so a full table is not stored twice; routes refused by the import checks are kept
/// aside so they can be shown and counted.
#[derive(Debug)]
struct PeerRib {
    info: PeerInfo,
    /// Number of this peer's paths in the Loc-RIB.
    accepted: u64,
    rejected: HashMap<Ipv4Net, Arc<PathAttributes>>,
    /// Present while the session is Established.
    out: Option<AdjRibOut>,
    /// Paths of this peer marked stale (the peer restarts, RFC 4724).
    stale: u64,
}

/// Per-peer prefix counts for status output.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerCounts {
    pub received: u64,
    pub accepted: u64,
    pub advertised: u64,
}

/// Every RIB of the speaker.
#[derive(Debug)]
pub struct Rib {
    local_as: u32,
    router_id: Ipv4Addr,
    /// The Loc-RIB: candidate paths per prefix, the best first (with its reason); 21 bytes a
    /// prefix with one path, in dense sorted leaves.
    loc: PrefixTable<Paths>,
    peers: HashMap<IpAddr, PeerRib>,
    interner: AttrInterner,
    /// Peer addresses by `Src` id (minus one), and back.
    sources: Vec<IpAddr>,
    source_ids: HashMap<IpAddr, Src>,
}

impl Rib {
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        Rib {
            local_as,
            router_id,
            loc: PrefixTable::default(),
            peers: HashMap::new(),
            interner: AttrInterner::default(),
            sources: Vec::new(),
            source_ids: HashMap::new(),
        }
    }

    /// The id of a peer's paths, made the first time it is asked for.
    fn src(&mut self, address: IpAddr) -> Src {
        if let Some(s) = self.source_ids.get(&address) {
            return *s;
        }
        self.sources.push(address);
        let s = Src(self.sources.len() as u32);
        self.source_ids.insert(address, s);
        s
    }

    /// The id of a peer's paths, if it ever had any.
    fn src_of(&self, address: IpAddr) -> Option<Src> {
        self.source_ids.get(&address).copied()
    }

    fn source(&self, src: Src) -> RouteSource {
        match src.0 {
            0 => RouteSource::Local,
            n => RouteSource::Peer(self.sources[n as usize - 1]),
        }
    }

    fn view(&self, p: &Path) -> PathView {
        PathView {
            source: self.source(p.src),
            attrs: p.attrs.clone(),
            stale: p.stale,
        }
    }

    /// A session came up: start its Adj-RIB-In and queue the whole table for it (the initial
    /// dump, followed by End-of-RIB). With `keep_stale` the paths kept from the peer's previous
    /// session (graceful restart, RFC 4724 §4.2) stay, stale, until [`Rib::sweep_stale`];
    /// otherwise they go first.
    pub fn peer_up(
        &mut self,
        info: PeerInfo,
        local_addr: Ipv4Addr,
        keep_stale: bool,
    ) -> Vec<RouteEvent> {
        let kept = self
            .peers
            .get(&info.address)
            .filter(|p| keep_stale && p.stale > 0)
            .map(|p| (p.accepted, p.stale));
        let events = if kept.is_some() {
            Vec::new()
        } else {
            self.peer_down(info.address)
        };
        self.src(info.address);
        let mut out = AdjRibOut::new(info, self.local_as, local_addr);
        for (prefix, paths) in &self.loc {
            if let Some(best) = paths.first() {
                let from = self.peer_info(best.src).copied();
                out.best_changed(*prefix, Some((self.source(best.src), from.as_ref())));
            }
        }
        let (accepted, stale) = kept.unwrap_or_default();
        self.peers.insert(
            info.address,
            PeerRib {
                info,
                accepted,
                rejected: HashMap::new(),
                out: Some(out),
                stale,
            },
        );
        events
    }

    /// The session of a peer that negotiated graceful restart ended without a NOTIFICATION
    /// (RFC 4724 §4.2): its paths stay in the Loc-RIB (and so in the kernel), marked stale, and
    /// nothing is sent to the other peers. Returns how many were kept.
    pub fn peer_down_graceful(&mut self, address: IpAddr) -> u64 {
        let Some(peer) = self.peers.get_mut(&address) else {
            return 0;
        };
        peer.out = None;
        peer.rejected.clear();
        if peer.accepted == 0 {
            return 0;
        }
        let Some(source) = self.src_of(address) else {
            return 0;
        };
        let mut marked = 0;
        for paths in self.loc.values_mut() {
            for p in paths.iter_mut().filter(|p| p.src == source) {
                p.stale = true;
                marked += 1;
            }
        }
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.stale = marked;
        }
        marked
    }

    /// The restarting peer's End-of-RIB arrived (or it took too long): its paths it did not
    /// send again go (RFC 4724 §4.2).
    pub fn sweep_stale(&mut self, address: IpAddr) -> Vec<RouteEvent> {
        let Some(peer) = self.peers.get_mut(&address) else {
            return Vec::new();
        };
        if peer.stale == 0 {
            return Vec::new();
        }
        peer.stale = 0;
        let Some(source) = self.src_of(address) else {
            return Vec::new();
        };
        let prefixes: Vec<Ipv4Net> = self
            .loc
            .iter()
            .filter(|(_, paths)| paths.iter().any(|p| p.src == source && p.stale))
            .map(|(p, _)| *p)
            .collect();
        let mut events = Vec::new();
        for prefix in prefixes {
            if self.remove_path(prefix, source, &mut events) {
                self.adjust_accepted(address, -1);
            }
        }
        self.interner.sweep();
        events
    }

    /// Paths of `address` that are stale now.
    pub fn stale_count(&self, address: IpAddr) -> u64 {
        self.peers.get(&address).map_or(0, |p| p.stale)
    }

    /// The session went down: every route it sent is withdrawn at once.
    pub fn peer_down(&mut self, address: IpAddr) -> Vec<RouteEvent> {
        let Some(peer) = self.peers.remove(&address) else {
            return Vec::new();
        };
        let Some(source) = self.src_of(address) else {
            return Vec::new();
        };
        let mut events = Vec::new();
        // Walk the Loc-RIB in order (a B-tree walk is cache-friendly) and collect the prefixes
        // that hold a path of this peer.
        let prefixes: Vec<Ipv4Net> = if peer.accepted == 0 {
            Vec::new()
        } else {
            self.loc
                .iter()
                .filter(|(_, paths)| paths.iter().any(|p| p.src == source))
                .map(|(p, _)| *p)
                .collect()
        };
        for prefix in prefixes {
            self.remove_path(prefix, source, &mut events);
        }
        self.interner.sweep();
        events
    }

    /// Applies a received UPDATE (RFC 4271 §9.1); returns the best-route changes.
    pub fn apply_update(&mut self, address: IpAddr, update: &Update) -> Vec<RouteEvent> {
        let Some(peer) = self.peers.get(&address) else {
            return Vec::new();
        };
        let info = peer.info;
        let mut withdrawn: Vec<Ipv4Net> = update.withdrawn.clone();
        let mut announced: Vec<(Ipv4Net, Option<Ipv4Addr>)> = Vec::new();
        let mut attrs = update.attributes.clone();
        // IPv4 unicast may also come in MP_REACH/MP_UNREACH (RFC 4760 §3, §4).
        if let Some(mp) = attrs.mp_unreach.take() {
            withdrawn.extend(mp.withdrawn.iter().filter_map(v4));
        }
        if let Some(mp) = attrs.mp_reach.take() {
            let nh = mp.next_hops.iter().find_map(|a| match a {
                IpAddr::V4(a) => Some(*a),
                IpAddr::V6(_) => None,
            });
            announced.extend(mp.nlri.iter().filter_map(v4).map(|p| (p, nh)));
        }
        announced.extend(update.nlri.iter().map(|p| (*p, None)));
        // RFC 7606 §2 treat-as-withdraw: every prefix of the message is withdrawn.
        if update.is_treat_as_withdraw() {
            withdrawn.extend(announced.drain(..).map(|(p, _)| p));
        }

        let mut events = Vec::new();
        let source = self.src(address);
        for prefix in withdrawn {
            let Some(peer) = self.peers.get_mut(&address) else {
                break;
            };
            if peer.rejected.remove(&prefix).is_none()
                && self.remove_path(prefix, source, &mut events)
            {
                self.adjust_accepted(address, -1);
            }
        }
        if announced.is_empty() {
            return events;
        }
        let accepted = self.import_allowed(&info, &attrs);
        let local_addr = self
            .peers
            .get(&address)
            .and_then(|p| p.out.as_ref())
            .map(|o| o.local_addr);
        let shared = self.interner.intern(attrs.clone());
        for (prefix, mp_next_hop) in announced {
            let attrs = match mp_next_hop {
                Some(nh) if shared.next_hop.is_none() => self.interner.intern(PathAttributes {
                    next_hop: Some(nh),
                    ..attrs.clone()
                }),
                _ => shared.clone(),
            };
            let Some(peer) = self.peers.get_mut(&address) else {
                break;
            };
            // RFC 4271 §6.3: a route whose NEXT_HOP is this speaker, or whose prefix is
            // semantically wrong (multicast or reserved space), is ignored, not an error.
            let next_hop = attrs.next_hop;
            let sane = next_hop.is_none_or(|nh| Some(nh) != local_addr && nh != self.router_id)
                && prefix.addr().octets()[0] < 224;
            if accepted && sane {
                peer.rejected.remove(&prefix);
                let path = Path {
                    src: source,
                    attrs,
                    stale: false,
                    reason: None,
                };
                if self.upsert_path(prefix, path, &mut events) {
                    self.adjust_accepted(address, 1);
                }
            } else {
                peer.rejected.insert(prefix, attrs);
                if self.remove_path(prefix, source, &mut events) {
                    self.adjust_accepted(address, -1);
                }
            }
        }
        events
    }

    fn adjust_accepted(&mut self, address: IpAddr, delta: i64) {
        if let Some(p) = self.peers.get_mut(&address) {
            p.accepted = p.accepted.saturating_add_signed(delta);
        }
    }

    /// Import checks (RFC 4271 §9.1.2): a route from eBGP whose AS_PATH already holds our AS is
    /// a loop; from iBGP a route carrying our router ID as ORIGINATOR_ID came back to us
    /// (RFC 4456 §8).
    fn import_allowed(&self, peer: &PeerInfo, attrs: &PathAttributes) -> bool {
        match peer.peer_type {
            PeerType::External => !attrs
                .as_path
                .as_ref()
                .is_some_and(|p| p.contains(self.local_as)),
            PeerType::Internal => attrs.originator_id != Some(self.router_id),
        }
    }

    /// Originates `prefix` (next hop `None` = ourselves, next-hop-self on every session).
    pub fn originate(&mut self, prefix: Ipv4Net, next_hop: Option<Ipv4Addr>) -> Vec<RouteEvent> {
        let attrs = self.interner.intern(PathAttributes {
            origin: Some(Origin::Igp),
            as_path: Some(Default::default()),
            next_hop,
            ..Default::default()
        });
        let mut events = Vec::new();
        self.upsert_path(
            prefix,
            Path {
                src: Src::LOCAL,
                attrs,
                stale: false,
                reason: None,
            },
            &mut events,
        );
        events
    }

    pub fn withdraw_local(&mut self, prefix: Ipv4Net) -> Vec<RouteEvent> {
        let mut events = Vec::new();
        self.remove_path(prefix, Src::LOCAL, &mut events);
        events
    }

    /// One fewer stale path of the peer of `src`.
    fn unstale(&mut self, src: Src) {
        if let RouteSource::Peer(a) = self.source(src) {
            if let Some(peer) = self.peers.get_mut(&a) {
                peer.stale = peer.stale.saturating_sub(1);
            }
        }
    }

    /// Adds or replaces the path of `path.src`; true when it is a new path for the prefix.
    fn upsert_path(&mut self, prefix: Ipv4Net, path: Path, events: &mut Vec<RouteEvent>) -> bool {
        let paths = self.loc.get_or_insert_with(prefix, Paths::default);
        let old = paths.first().cloned();
        let src = path.src;
        let (added, unstale) = match paths.iter_mut().find(|p| p.src == path.src) {
            Some(p) if p.attrs == path.attrs => {
                // Sent again unchanged: no longer stale (graceful restart), nothing else moves.
                let was = p.stale && !path.stale;
                p.stale &= path.stale;
                if was {
                    self.unstale(src);
                }
                return false;
            }
            Some(p) => {
                let was = p.stale;
                let reason = p.reason;
                *p = Path { reason, ..path };
                (false, was)
            }
            None => {
                paths.push(path);
                (true, false)
            }
        };
        if unstale {
            self.unstale(src);
        }
        self.decide(prefix, old, events);
        added
    }

    /// Removes the path of `source`; true when there was one.
    fn remove_path(&mut self, prefix: Ipv4Net, source: Src, events: &mut Vec<RouteEvent>) -> bool {
        let Some(paths) = self.loc.get_mut(&prefix) else {
            return false;
        };
        let old = paths.first().cloned();
        let was_stale = paths.iter().any(|p| p.src == source && p.stale);
        let before = paths.len();
        paths.retain(|p| p.src != source);
        let removed = paths.len() != before;
        if removed {
            if was_stale {
                self.unstale(source);
            }
            self.decide(prefix, old, events);
        }
        removed
    }

    /// Re-runs the decision process for `prefix`; reports a change of the best path to
    /// subscribers (when its source or next hop moved) and to every Adj-RIB-Out.
    fn decide(&mut self, prefix: Ipv4Net, old: Option<Path>, events: &mut Vec<RouteEvent>) {
        let Some(paths) = self.loc.get(&prefix) else {
            return;
        };
        let best = if paths.len() == 1 {
            // The common case needs no candidate list.
            Some((0, BestReason::OnlyPath))
        } else {
            let cands: Vec<Candidate<'_>> = paths
                .iter()
                .map(|p| Candidate {
                    source: self.source(p.src),
                    attrs: &p.attrs,
                    peer: self.peer_info(p.src),
                })
                .collect();
            select_best(self.local_as, &cands)
        };
        let new = best.map(|(i, _)| paths[i].clone());
        let new_event = new.as_ref().map(|p| self.best_event(prefix, p));
        let old_event = old.as_ref().map(|p| self.best_event(prefix, p));
        let changed_path = match (&old, &new) {
            (Some(a), Some(b)) => a.src != b.src || !Arc::ptr_eq(&a.attrs, &b.attrs),
            (None, None) => false,
            _ => true,
        };
        match best {
            None => {
                self.loc.remove(&prefix);
            }
            Some((i, reason)) => {
                if let Some(paths) = self.loc.get_mut(&prefix) {
                    paths.swap(0, i);
                    for (k, p) in paths.iter_mut().enumerate() {
                        p.reason = (k == 0).then_some(reason);
                    }
                }
            }
        }
        if new_event != old_event {
            events.push(new_event.unwrap_or(RouteEvent::Withdrawn { prefix }));
        }
        if changed_path {
            let best = new
                .as_ref()
                .map(|p| (self.source(p.src), self.peer_info(p.src).copied()));
            for peer in self.peers.values_mut() {
                if let Some(out) = peer.out.as_mut() {
                    out.best_changed(prefix, best.as_ref().map(|(s, f)| (*s, f.as_ref())));
                }
            }
        }
    }

    fn peer_info(&self, src: Src) -> Option<&PeerInfo> {
        match self.source(src) {
            RouteSource::Local => None,
            RouteSource::Peer(a) => self.peers.get(&a).map(|p| &p.info),
        }
    }

    /// Where traffic for a path goes: its NEXT_HOP; for a local route without one, ourselves.
    fn next_hop(&self, path: &Path) -> Ipv4Addr {
        match self.source(path.src) {
            RouteSource::Local => path.attrs.next_hop.unwrap_or(self.router_id),
            RouteSource::Peer(addr) => path.attrs.next_hop.unwrap_or(match addr {
                IpAddr::V4(a) => a,
                IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            }),
        }
    }

    /// What a subscriber should now know of `prefix`: its best route, or that it has none.
    pub fn current(&self, prefix: Ipv4Net) -> RouteEvent {
        match self.loc.get(&prefix).and_then(|p| p.first()) {
            Some(best) => self.best_event(prefix, best),
            None => RouteEvent::Withdrawn { prefix },
        }
    }

    /// Whether `prefix` has a best route.
    pub fn has_best(&self, prefix: Ipv4Net) -> bool {
        self.loc.get(&prefix).is_some_and(|p| !p.is_empty())
    }

    /// The last prefix before `prefix` that has a best route.
    pub fn best_before(&self, prefix: Ipv4Net) -> Option<Ipv4Net> {
        self.loc
            .iter_before(prefix)
            .find(|(_, paths)| !paths.is_empty())
            .map(|(p, _)| *p)
    }

    /// The best routes after `after` (from the first when `None`), in prefix order.
    pub fn best_from(&self, after: Option<Ipv4Net>) -> impl Iterator<Item = RouteEvent> + '_ {
        let start = after.unwrap_or_default();
        self.loc
            .iter_from(start)
            .filter(move |(p, _)| after.is_none_or(|a| **p > a))
            .filter_map(|(p, paths)| Some(self.best_event(*p, paths.first()?)))
    }

    /// Every prefix that has a best route, in order.
    pub fn best_prefixes(&self) -> impl Iterator<Item = Ipv4Net> + '_ {
        self.loc
            .iter()
            .filter(|(_, paths)| !paths.is_empty())
            .map(|(p, _)| *p)
    }

    /// How many best routes came from peers (what a subscriber programs as `via` routes).
    pub fn peer_best_count(&self) -> usize {
        self.loc
            .values()
            .filter(|paths| paths.first().is_some_and(|p| p.src != Src::LOCAL))
            .count()
    }

    fn best_event(&self, prefix: Ipv4Net, path: &Path) -> RouteEvent {
        RouteEvent::Best {
            prefix,
            next_hop: self.next_hop(path),
            source: self.source(path.src),
        }
    }

    /// The pending UPDATE content of up to `max` prefixes for an established peer (empty when
    /// nothing changed).
    pub fn take_batch(&mut self, address: IpAddr, max: usize) -> OutBatch {
        let Some(mut out) = self.peers.get_mut(&address).and_then(|p| p.out.take()) else {
            return OutBatch::default();
        };
        let batch = {
            let (loc, peers, sources) = (&self.loc, &self.peers, &self.sources);
            out.take_batch(&mut self.interner, max, |prefix| {
                let path = loc.get(prefix)?.first()?;
                let source = match path.src.0 {
                    0 => RouteSource::Local,
                    n => RouteSource::Peer(sources[n as usize - 1]),
                };
                let from = match source {
                    RouteSource::Local => None,
                    RouteSource::Peer(a) => peers.get(&a).map(|p| &p.info),
                };
                Some((source, &path.attrs, from))
            })
        };
        if let Some(p) = self.peers.get_mut(&address) {
            p.out = Some(out);
        }
        batch
    }

    /// Whether the Adj-RIB-Out of `address` has something to send.
    pub fn has_work(&self, address: IpAddr) -> bool {
        self.peers
            .get(&address)
            .and_then(|p| p.out.as_ref())
            .is_some_and(|o| o.has_work())
    }

    /// Peers whose Adj-RIB-Out has something to send.
    pub fn peers_with_work(&self) -> Vec<IpAddr> {
        self.peers
            .iter()
            .filter(|(_, p)| p.out.as_ref().is_some_and(|o| o.has_work()))
            .map(|(a, _)| *a)
            .collect()
    }

    /// ROUTE-REFRESH (RFC 2918 §4): re-advertise the whole table to `address`.
    pub fn refresh(&mut self, address: IpAddr) {
        let Some(out) = self.peers.get_mut(&address).and_then(|p| p.out.as_mut()) else {
            return;
        };
        out.reset();
        for (prefix, paths) in &self.loc {
            if !paths.is_empty() {
                out.mark_dirty(*prefix);
            }
        }
    }

    /// The Adj-RIB-In of `address`: every received prefix, its attributes and whether it was
    /// accepted by the import checks.
    pub fn received(&self, address: IpAddr) -> Vec<(Ipv4Net, Arc<PathAttributes>, bool)> {
        let Some(peer) = self.peers.get(&address) else {
            return Vec::new();
        };
        let source = self.src_of(address);
        let mut routes: Vec<_> = self
            .loc
            .iter()
            .filter_map(|(n, paths)| {
                paths
                    .iter()
                    .find(|p| Some(p.src) == source)
                    .map(|p| (*n, p.attrs.clone(), true))
            })
            .chain(peer.rejected.iter().map(|(n, a)| (*n, a.clone(), false)))
            .collect();
        routes.sort_by_key(|r| r.0);
        routes
    }

    pub fn counts(&self, address: IpAddr) -> PeerCounts {
        self.peers
            .get(&address)
            .map_or_else(PeerCounts::default, |p| PeerCounts {
                received: p.accepted + p.rejected.len() as u64,
                accepted: p.accepted,
                advertised: p.out.as_ref().map_or(0, |o| o.advertised_count() as u64),
            })
    }

    /// The current best route of every prefix, as `Best` events (a subscriber's first view).
    pub fn best_routes(&self) -> Vec<RouteEvent> {
        self.loc
            .iter()
            .filter_map(|(prefix, paths)| Some(self.best_event(*prefix, paths.first()?)))
            .collect()
    }

    /// The best path of `prefix` and why it won.
    pub fn best(&self, prefix: &Ipv4Net) -> Option<(PathView, BestReason)> {
        let best = self.loc.get(prefix)?.first()?;
        Some((self.view(best), best.reason.unwrap_or(BestReason::OnlyPath)))
    }

    /// Every path of every prefix, best first.
    pub fn routes(&self) -> Vec<RouteView> {
        let mut views = Vec::new();
        for (prefix, paths) in &self.loc {
            for (i, path) in paths.iter().enumerate() {
                let a = &path.attrs;
                views.push(RouteView {
                    prefix: *prefix,
                    next_hop: self.next_hop(path),
                    as_path: as_path_text(a),
                    origin: match a.origin {
                        Some(Origin::Igp) => "IGP",
                        Some(Origin::Egp) => "EGP",
                        Some(Origin::Incomplete) | None => "incomplete",
                    }
                    .to_string(),
                    local_pref: a.local_pref,
                    med: a.med,
                    source: self.source(path.src),
                    best: i == 0,
                    reason: path
                        .reason
                        .filter(|_| i == 0)
                        .map(|r| r.as_str().to_string()),
                    stale: path.stale,
                });
            }
        }
        views
    }

    pub fn prefix_count(&self) -> usize {
        self.loc.len()
    }

    /// Number of distinct attribute sets held (after sharing).
    pub fn attribute_sets(&self) -> usize {
        self.interner.len()
    }
}

fn v4(net: &IpNet) -> Option<Ipv4Net> {
    match net {
        IpNet::V4(n) => Some(*n),
        IpNet::V6(_) => None,
    }
}

/// AS_PATH as operators write it: "65001 65002 {65003 65004}".
fn as_path_text(a: &PathAttributes) -> String {
    let Some(path) = &a.as_path else {
        return String::new();
    };
    let parts: Vec<String> = path
        .segments
        .iter()
        .map(|s| match s {
            AsPathSegment::Sequence(v) => v
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            AsPathSegment::Set(v) => format!(
                "{{{}}}",
                v.iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        })
        .collect();
    parts.join(" ")
}
