//! Finding inconsistencies between blocks, affinities, handles and the node registry, and
//! repairing the ones that can be repaired without risking an address in use.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::Serialize;

use super::{now_secs, Ipam, Step};
use crate::error::IpamError;
use crate::registry::NodeRegistry;
use crate::resources::{
    self, AffinityState, AllocationBlock, BlockAffinity, IpamHandle, NodeRecord,
};
use crate::store::{CorruptRecord, Kind};

/// One inconsistency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "camelCase")]
pub enum Problem {
    /// A record that cannot be read (left alone: a person must look at it). Records that
    /// refer to it are not judged until it reads again, so one bad Node is one problem, not
    /// a leak report for each of its addresses.
    Unreadable {
        kind: Kind,
        name: String,
        path: String,
        reason: String,
    },
    /// A confirmed affinity whose block does not exist.
    AffinityWithoutBlock { node: String, cidr: Ipv4Net },
    /// An affinity whose block belongs to another node (or to none), or a pending one left by a
    /// claim that never finished.
    StaleAffinity {
        node: String,
        cidr: Ipv4Net,
        state: String,
        /// The node the block is affine to, if the block exists and has one.
        block_node: Option<String>,
    },
    /// More than one node has an affinity for the same block.
    DuplicateAffinity { cidr: Ipv4Net, nodes: Vec<String> },
    /// A block affine to a node that has no confirmed affinity record for it.
    BlockWithoutAffinity { cidr: Ipv4Net, node: String },
    /// A block affine to a node that is gone from the registry.
    BlockOfGoneNode { cidr: Ipv4Net, node: String },
    /// An address held for a node that is gone from the registry.
    AddressOfGoneNode {
        ip: Ipv4Addr,
        node: String,
        handle: String,
    },
    /// An address whose handle has no record of it (an assign that stopped half-way).
    AddressWithoutHandle {
        ip: Ipv4Addr,
        handle: String,
        /// Unix seconds of the allocation, if recorded.
        since: Option<u64>,
    },
    /// A handle record that holds no address any more.
    HandleWithoutAddress { handle: String },
    /// A handle whose per-block count disagrees with the block.
    HandleCountMismatch {
        handle: String,
        cidr: String,
        recorded: u32,
        actual: u32,
    },
    /// A block outside the pool.
    BlockOutsidePool { cidr: Ipv4Net },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Unreadable { kind, name, path, reason } => {
                write!(f, "{kind} {name} ({path}) is unreadable: {reason}")
            }
            Problem::AffinityWithoutBlock { node, cidr } => {
                write!(f, "node {node} has an affinity for block {cidr}, which does not exist")
            }
            Problem::StaleAffinity {
                node,
                cidr,
                state,
                block_node,
            } => {
                if state != "confirmed" {
                    write!(
                        f,
                        "node {node}'s {state} affinity for block {cidr} was left by a claim or release that did not finish"
                    )
                } else {
                    let owner = block_node.as_deref().map_or("no node".to_string(), |n| format!("node {n}"));
                    write!(f, "node {node} has an affinity for block {cidr}, which is affine to {owner}")
                }
            }
            Problem::DuplicateAffinity { cidr, nodes } => {
                write!(f, "block {cidr} has affinities for several nodes: {}", nodes.join(", "))
            }
            Problem::BlockWithoutAffinity { cidr, node } => write!(
                f,
                "block {cidr} is affine to node {node}, which has no confirmed affinity for it"
            ),
            Problem::BlockOfGoneNode { cidr, node } => {
                write!(f, "block {cidr} is affine to node {node}, which is not registered")
            }
            Problem::AddressOfGoneNode { ip, node, handle } => write!(
                f,
                "{ip} leaked: held by handle {handle} for node {node}, which is not registered"
            ),
            Problem::AddressWithoutHandle { ip, handle, .. } => {
                write!(f, "{ip} is held by handle {handle}, which has no record of it")
            }
            Problem::HandleWithoutAddress { handle } => {
                write!(f, "handle {handle} holds no address")
            }
            Problem::HandleCountMismatch {
                handle,
                cidr,
                recorded,
                actual,
            } => write!(
                f,
                "handle {handle} records {recorded} addresses in block {cidr}, the block has {actual}"
            ),
            Problem::BlockOutsidePool { cidr } => write!(f, "block {cidr} is outside the pool"),
        }
    }
}

impl Problem {
    /// Why `repair` leaves this problem, when it does: said to the operator with what is left.
    pub fn why_left(&self) -> &'static str {
        match self {
            Problem::Unreadable { .. } => {
                "repair never rewrites a record it cannot read; fix or remove the file by hand"
            }
            Problem::BlockOutsidePool { .. } => {
                "its addresses may be in use; release them or widen the pool"
            }
            Problem::AddressWithoutHandle { .. } => {
                "younger than the leak grace period: an assignment may still be finishing"
            }
            Problem::DuplicateAffinity { .. } => {
                "the block itself names no owner, so no affinity can be told to be the right one"
            }
            _ => "the records changed while repairing; run repair again",
        }
    }
}

/// What `repair` did about one problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub problem: Problem,
    pub action: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RepairReport {
    pub repaired: Vec<Repair>,
    /// What a check still finds afterwards: problems that could not be fixed without risking
    /// an address in use, or records a person must look at.
    pub left: Vec<Problem>,
}

impl Ipam {
    /// Lists every inconsistency, in a stable order.
    pub fn check(&self) -> Result<Vec<Problem>, IpamError> {
        let store = &*self.store;
        let (blocks, mut unreadable) = resources::list::<AllocationBlock>(store)?;
        let (affs, e) = resources::list::<BlockAffinity>(store)?;
        unreadable.extend(e);
        let (handles, e) = resources::list::<IpamHandle>(store)?;
        unreadable.extend(e);
        let (nodes, e) = resources::list::<NodeRecord>(store)?;
        unreadable.extend(e);
        let bad = Unreadable::new(&unreadable);
        // An unreadable Node may well be a live node: it counts as registered.
        let nodes: BTreeSet<String> = nodes
            .into_iter()
            .map(|n| n.value.name)
            .chain(bad.names(Kind::Node).cloned())
            .collect();
        let mut problems: Vec<Problem> = unreadable
            .into_iter()
            .map(|c| Problem::Unreadable {
                kind: c.kind,
                name: c.name,
                path: c.path,
                reason: c.reason,
            })
            .collect();

        let blocks: BTreeMap<Ipv4Net, AllocationBlock> = blocks
            .into_iter()
            .map(|b| (b.value.cidr, b.value))
            .collect();
        let mut by_cidr: BTreeMap<Ipv4Net, Vec<&BlockAffinity>> = BTreeMap::new();
        for a in &affs {
            by_cidr.entry(a.value.cidr).or_default().push(&a.value);
        }
        for (cidr, list) in &by_cidr {
            if list.len() > 1 {
                problems.push(Problem::DuplicateAffinity {
                    cidr: *cidr,
                    nodes: list.iter().map(|a| a.node.clone()).collect(),
                });
            }
            for a in list {
                let block = blocks.get(cidr);
                match (a.state, block) {
                    // The block may be there, unreadable.
                    (_, None) if bad.has(Kind::IPAMBlock, &resources::cidr_name(cidr)) => {}
                    (AffinityState::Confirmed, None) => {
                        problems.push(Problem::AffinityWithoutBlock {
                            node: a.node.clone(),
                            cidr: *cidr,
                        })
                    }
                    (AffinityState::Confirmed, Some(b)) if b.is_affine_to(&a.node) => {}
                    (state, block) => problems.push(Problem::StaleAffinity {
                        node: a.node.clone(),
                        cidr: *cidr,
                        state: match state {
                            AffinityState::Pending => "pending",
                            AffinityState::Confirmed => "confirmed",
                            AffinityState::PendingDeletion => "pendingDeletion",
                        }
                        .to_string(),
                        block_node: block.and_then(|b| b.host_node()).map(str::to_string),
                    }),
                }
            }
        }

        let mut held: BTreeMap<&str, BTreeMap<String, u32>> = BTreeMap::new();
        let handle_map: BTreeMap<&str, &IpamHandle> = handles
            .iter()
            .map(|h| (h.name.as_str(), &h.value))
            .collect();
        for (cidr, b) in &blocks {
            if !self.pool.cidr.contains(cidr) {
                problems.push(Problem::BlockOutsidePool { cidr: *cidr });
            }
            if let Some(node) = b.host_node() {
                if !nodes.contains(node) {
                    problems.push(Problem::BlockOfGoneNode {
                        cidr: *cidr,
                        node: node.to_string(),
                    });
                } else if !by_cidr.get(cidr).is_some_and(|l| {
                    l.iter()
                        .any(|a| a.node == node && a.state == AffinityState::Confirmed)
                }) && !bad.has(Kind::BlockAffinity, &BlockAffinity::name(node, cidr))
                {
                    problems.push(Problem::BlockWithoutAffinity {
                        cidr: *cidr,
                        node: node.to_string(),
                    });
                }
            }
            for (ip, attr) in b.allocated() {
                *held
                    .entry(attr.handle_id.as_str())
                    .or_default()
                    .entry(cidr.to_string())
                    .or_default() += 1;
                let node = attr.node().unwrap_or("");
                if !nodes.contains(node) {
                    problems.push(Problem::AddressOfGoneNode {
                        ip,
                        node: node.to_string(),
                        handle: attr.handle_id.clone(),
                    });
                } else if !handle_map
                    .get(attr.handle_id.as_str())
                    .is_some_and(|h| h.block.contains_key(&cidr.to_string()))
                    && !bad.has(Kind::IPAMHandle, &attr.handle_id)
                {
                    problems.push(Problem::AddressWithoutHandle {
                        ip,
                        handle: attr.handle_id.clone(),
                        since: attr.secondary.get("timestamp").and_then(|t| t.parse().ok()),
                    });
                }
            }
        }
        for (name, h) in &handle_map {
            // A handle's addresses in an unreadable block cannot be counted.
            let unknown = |cidr: &String| {
                cidr.parse::<Ipv4Net>()
                    .is_ok_and(|c| bad.has(Kind::IPAMBlock, &resources::cidr_name(&c)))
            };
            let actual = held.get(name);
            if actual.is_none() {
                if !h.block.keys().any(unknown) {
                    problems.push(Problem::HandleWithoutAddress {
                        handle: name.to_string(),
                    });
                }
                continue;
            }
            for (cidr, &recorded) in h.block.iter().filter(|(c, _)| !unknown(c)) {
                let n = actual.and_then(|m| m.get(cidr)).copied().unwrap_or(0);
                if n != recorded {
                    problems.push(Problem::HandleCountMismatch {
                        handle: name.to_string(),
                        cidr: cidr.clone(),
                        recorded,
                        actual: n,
                    });
                }
            }
        }
        Ok(problems)
    }

    /// Fixes what can be fixed safely and says what it did. Never touches an unreadable record,
    /// and never frees an address whose node is registered unless it is an orphan older than the
    /// leak grace period.
    pub fn repair(&self) -> Result<RepairReport, IpamError> {
        let mut report = RepairReport::default();
        let registry = NodeRegistry::new(self.store.clone());
        let now = now_secs();
        for problem in self.check()? {
            let action = match &problem {
                Problem::Unreadable { .. } | Problem::BlockOutsidePool { .. } => None,
                Problem::AffinityWithoutBlock { node, cidr } => {
                    if registry.get(node)?.is_some() {
                        self.rebuild_block(node, *cidr)?
                            .then(|| format!("created block {cidr} again for node {node}"))
                    } else {
                        self.delete_affinity_if(&BlockAffinity::name(node, cidr), |_| true)?
                            .then(|| format!("deleted the affinity of gone node {node}"))
                    }
                }
                Problem::StaleAffinity { node, cidr, .. } => {
                    let name = BlockAffinity::name(node, cidr);
                    let block = resources::get::<AllocationBlock>(
                        &*self.store,
                        &resources::cidr_name(cidr),
                    )?;
                    if block.is_some_and(|b| b.value.is_affine_to(node)) {
                        // A pending claim whose block exists: finish it.
                        self.claim(node, *cidr)?
                            .then(|| format!("confirmed node {node}'s claim on {cidr}"))
                    } else {
                        self.delete_affinity_if(&name, |_| true)?
                            .then(|| format!("deleted node {node}'s affinity for {cidr}"))
                    }
                }
                Problem::DuplicateAffinity { cidr, nodes } => {
                    let owner = resources::get::<AllocationBlock>(
                        &*self.store,
                        &resources::cidr_name(cidr),
                    )?
                    .and_then(|b| b.value.host_node().map(str::to_string));
                    let mut dropped = Vec::new();
                    for n in nodes.iter().filter(|n| Some(*n) != owner.as_ref()) {
                        if owner.is_some()
                            && self.delete_affinity_if(&BlockAffinity::name(n, cidr), |_| true)?
                        {
                            dropped.push(n.clone());
                        }
                    }
                    (!dropped.is_empty()).then(|| {
                        format!(
                            "deleted the affinities of {} for {cidr}",
                            dropped.join(", ")
                        )
                    })
                }
                Problem::BlockWithoutAffinity { cidr, node } => self
                    .claim(node, *cidr)?
                    .then(|| format!("wrote a confirmed affinity of node {node} for {cidr}")),
                Problem::BlockOfGoneNode { cidr, node } => self
                    .release_affinity(node, *cidr, false)
                    .map(|_| ())
                    .and_then(|_| self.clear_block_affinity(*cidr, node))?
                    .then(|| format!("released block {cidr} of gone node {node}")),
                Problem::AddressOfGoneNode { ip, handle, .. } => self
                    .free_address(*ip, handle)?
                    .then(|| format!("freed {ip} of handle {handle}")),
                Problem::AddressWithoutHandle { ip, handle, since } => {
                    let old = since.is_none_or(|t| {
                        now.saturating_sub(t) >= self.settings.leak_grace.as_secs()
                    });
                    if old {
                        self.free_address(*ip, handle)?
                            .then(|| format!("freed orphaned {ip} of handle {handle}"))
                    } else {
                        None
                    }
                }
                Problem::HandleWithoutAddress { handle } => self
                    .rmw("deleting a handle", || {
                        match resources::get::<IpamHandle>(&*self.store, handle)? {
                            None => Ok(Step::Done(false)),
                            Some(h) => {
                                Ok(self.cas(resources::delete(&*self.store, &h))?.map(|_| true))
                            }
                        }
                    })?
                    .then(|| format!("deleted handle {handle}")),
                Problem::HandleCountMismatch {
                    handle,
                    cidr,
                    actual,
                    ..
                } => self
                    .fix_handle_count(handle, cidr, *actual)?
                    .then(|| format!("set handle {handle}'s count in {cidr} to {actual}")),
            };
            if let Some(action) = action {
                tracing::warn!(%problem, %action, "repaired");
                report.repaired.push(Repair { problem, action });
            }
        }
        // One repair often fixes several reports (a duplicate affinity is also a stale one), so
        // what is left is what a fresh check still finds.
        report.left = self.check()?;
        Ok(report)
    }

    /// A block left with a gone node's affinity and no affinity record: drop the affinity (and
    /// the block if it is empty). True if the block no longer names the node.
    fn clear_block_affinity(&self, cidr: Ipv4Net, node: &str) -> Result<bool, IpamError> {
        let name = resources::cidr_name(&cidr);
        self.rmw("clearing a block's affinity", || {
            let Some(mut b) = resources::get::<AllocationBlock>(&*self.store, &name)? else {
                return Ok(Step::Done(true));
            };
            if !b.value.is_affine_to(node) {
                return Ok(Step::Done(true));
            }
            if b.value.is_empty() {
                return Ok(self.cas(resources::delete(&*self.store, &b))?.map(|_| true));
            }
            b.value.affinity = None;
            b.value.sequence_number += 1;
            Ok(self.cas(resources::update(&*self.store, b))?.map(|_| true))
        })
    }

    /// Frees one address if `handle` still holds it, and drops the handle's record of that
    /// block.
    fn free_address(&self, ip: Ipv4Addr, handle: &str) -> Result<bool, IpamError> {
        let Some(cidr) = self.pool.block_of(ip).or_else(|| Ipv4Net::new(ip, 32).ok()) else {
            return Ok(false);
        };
        let freed = self.release_in_block(cidr, |a| a.handle_id == handle)?;
        let remaining =
            resources::get::<AllocationBlock>(&*self.store, &resources::cidr_name(&cidr))?
                .map(|b| b.value.count_handle(handle))
                .unwrap_or(0);
        self.fix_handle_count(handle, &cidr.to_string(), remaining)?;
        Ok(freed.iter().any(|(a, _)| *a == ip))
    }

    /// Sets a handle's count for one block (dropping the entry at zero, and the handle when it
    /// has no entry left). True if something changed.
    fn fix_handle_count(&self, handle: &str, cidr: &str, actual: u32) -> Result<bool, IpamError> {
        self.rmw("fixing a handle", || {
            let Some(mut h) = resources::get::<IpamHandle>(&*self.store, handle)? else {
                return Ok(Step::Done(false));
            };
            if h.value.block.get(cidr).copied().unwrap_or(0) == actual {
                return Ok(Step::Done(false));
            }
            if actual == 0 {
                h.value.block.remove(cidr);
            } else {
                h.value.block.insert(cidr.to_string(), actual);
            }
            if h.value.block.is_empty() {
                return Ok(self.cas(resources::delete(&*self.store, &h))?.map(|_| true));
            }
            Ok(self.cas(resources::update(&*self.store, h))?.map(|_| true))
        })
    }
}

/// The names of the unreadable records of one check, by kind.
struct Unreadable(BTreeSet<(Kind, String)>);

impl Unreadable {
    fn new(records: &[CorruptRecord]) -> Self {
        Unreadable(records.iter().map(|c| (c.kind, c.name.clone())).collect())
    }

    fn has(&self, kind: Kind, name: &str) -> bool {
        self.0.contains(&(kind, name.to_string()))
    }

    fn names(&self, kind: Kind) -> impl Iterator<Item = &String> {
        self.0
            .iter()
            .filter(move |(k, _)| *k == kind)
            .map(|(_, n)| n)
    }
}
