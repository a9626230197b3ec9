//! Keeping the kernel and the speaker in step with the RIB and IPAM.
//!
//! - Best routes learned from peers become `<prefix> via <next hop> proto bird` (replaced in place
//!   when the best path changes, deleted when withdrawn).
//! - This node's confirmed blocks are announced and blackholed (no blackhole for /32 blocks: it
//!   would take the place of the pod's host route, Calico #2624); addresses it borrowed from other
//!   nodes' blocks are announced as /32 so the owner's blackhole never swallows them (Calico #3246);
//!   `--advertise` prefixes are announced too.
//! - A full reconcile (add missing, replace different, delete our stale routes) runs once the
//!   sessions have had a chance to re-learn the table, then periodically to repair drift, like
//!   BIRD's kernel scan. Until then nothing of ours is deleted, so forwarding survives a restart.

use super::Agent;
use crate::kernel::{DesiredRoute, RouteOp};
use bgp::Subscription;
use bgp::{RouteEvent, RouteSource};
use ipnet::Ipv4Net;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What this agent believes it has in the kernel and in the speaker.
#[derive(Debug, Default)]
pub struct RouteState {
    /// Peer-learned best routes we installed: prefix → gateway.
    pub via: HashMap<Ipv4Net, Ipv4Addr>,
    /// Blackholes of our blocks that we installed.
    pub blackholes: BTreeSet<Ipv4Net>,
    /// Prefixes we announce.
    pub announced: BTreeSet<Ipv4Net>,
    /// Our confirmed blocks, as last read from IPAM.
    pub blocks: BTreeSet<Ipv4Net>,
    /// The first full reconcile has run (stale routes of a previous run are gone).
    pub swept: bool,
}

impl Agent {
    /// Applies a batch of best-route changes to the kernel in one netlink batch (one request
    /// per change, no waiting for each acknowledgement), so a full table from a peer does not
    /// cost one round trip per route.
    pub async fn apply_route_events(&self, events: Vec<RouteEvent>) {
        let mut st = self.routes.lock().await;
        let mut ops = Vec::with_capacity(events.len());
        for ev in events {
            match ev {
                // A route back to ourselves (a peer reflecting our own prefix) is never installed.
                RouteEvent::Best {
                    prefix,
                    next_hop,
                    source: RouteSource::Peer(_),
                } if next_hop != self.ip => {
                    if st.via.get(&prefix) == Some(&next_hop) {
                        continue;
                    }
                    st.via.insert(prefix, next_hop);
                    // The replace takes the blackhole's place if there was one.
                    st.blackholes.remove(&prefix);
                    ops.push(RouteOp::Replace(DesiredRoute::via(prefix, next_hop)));
                }
                RouteEvent::Best { prefix, .. } | RouteEvent::Withdrawn { prefix } => {
                    let Some(gateway) = st.via.remove(&prefix) else {
                        continue;
                    };
                    if st.blocks.contains(&prefix) && prefix.prefix_len() < 32 {
                        // Our own block again: its blackhole comes back in the route's place.
                        st.blackholes.insert(prefix);
                        ops.push(RouteOp::Replace(DesiredRoute::blackhole(prefix)));
                    } else {
                        ops.push(RouteOp::Delete(DesiredRoute::via(prefix, gateway)));
                    }
                }
            }
        }
        if ops.is_empty() {
            return;
        }
        let mut k = self.kernel.lock().await;
        match k.apply(&ops).await {
            Ok(results) => {
                for (op, err) in ops.iter().zip(results) {
                    match err {
                        // The drift repair retries what the kernel refused.
                        Some(e) => tracing::warn!("kernel: {op:?} failed: {e}"),
                        None => tracing::debug!("kernel: {op:?}"),
                    }
                }
            }
            Err(e) => tracing::warn!("kernel: a batch of {} route changes failed: {e}", ops.len()),
        }
    }

    /// Announces/withdraws and blackholes according to IPAM and `--advertise`.
    pub async fn sync_local(&self) {
        let ipam = self.ipam.clone();
        let node = self.node.clone();
        let read = tokio::task::spawn_blocking(
            move || -> Result<(Vec<Ipv4Net>, Vec<Ipv4Addr>), String> {
                let blocks = ipam.node_blocks(&node).map_err(|e| e.to_string())?;
                let borrowed = ipam.borrowed(&node).map_err(|e| e.to_string())?;
                Ok((blocks, borrowed))
            },
        )
        .await;
        let (blocks, borrowed) = match read {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!("IPAM: cannot read this node's blocks: {e}");
                return;
            }
            Err(e) => {
                tracing::warn!("IPAM read task failed: {e}");
                return;
            }
        };
        let announce: BTreeSet<Ipv4Net> = blocks
            .iter()
            .copied()
            .chain(borrowed.iter().map(|ip| Ipv4Net::from(*ip)))
            .chain(self.advertise.iter().copied())
            .collect();
        let blackholes: BTreeSet<Ipv4Net> = blocks
            .iter()
            .copied()
            .filter(|b| b.prefix_len() < 32)
            .collect();

        let mut st = self.routes.lock().await;
        st.blocks = blocks.iter().copied().collect();
        for p in announce.difference(&st.announced.clone()) {
            match self.speaker.announce(*p, None).await {
                Ok(()) => {
                    tracing::info!("announcing {p}");
                    st.announced.insert(*p);
                }
                Err(e) => tracing::warn!("cannot announce {p}: {e}"),
            }
        }
        for p in st.announced.clone().difference(&announce) {
            match self.speaker.withdraw(*p).await {
                Ok(()) => {
                    tracing::info!("withdrawing {p}");
                    st.announced.remove(p);
                }
                Err(e) => tracing::warn!("cannot withdraw {p}: {e}"),
            }
        }
        let mut k = self.kernel.lock().await;
        for b in blackholes.difference(&st.blackholes.clone()) {
            if st.via.contains_key(b) {
                continue; // another node routes this block (two affinities): keep its route
            }
            match k.add_blackhole(*b).await {
                Ok(()) => {
                    tracing::info!("kernel: blackhole {b} proto bird");
                    st.blackholes.insert(*b);
                }
                Err(e) => tracing::warn!("kernel: cannot blackhole {b}: {e}"),
            }
        }
        for b in st.blackholes.clone().difference(&blackholes) {
            match k.delete(*b).await {
                Ok(()) => {
                    tracing::info!("kernel: removed blackhole {b} (block released)");
                    st.blackholes.remove(b);
                }
                Err(e) => tracing::warn!("kernel: cannot remove blackhole {b}: {e}"),
            }
        }
    }

    /// Brings the kernel exactly to what we believe: our routes, our blackholes, our pods' host
    /// routes. Deletes stale `proto bird` routes of a previous run and repairs drift.
    pub async fn full_reconcile(&self) {
        let endpoints = match self.endpoints_of_this_node().await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("reconcile skipped: cannot list endpoints: {e}");
                return;
            }
        };
        let links = super::endpoints::link_names();
        let mut st = self.routes.lock().await;
        let mut desired: Vec<DesiredRoute> = st
            .via
            .iter()
            .map(|(p, gw)| DesiredRoute::via(*p, *gw))
            .collect();
        desired.extend(
            st.blackholes
                .iter()
                .filter(|b| !st.via.contains_key(b))
                .map(|b| DesiredRoute::blackhole(*b)),
        );
        for ep in &endpoints {
            // A pod whose device is gone (deleted while we were down) gets no route; its record
            // stays until CNI DEL, which kubelet retries.
            if links.contains(&ep.interface) {
                desired.push(DesiredRoute::host(ep.ip, &ep.interface));
            }
        }
        let mut k = self.kernel.lock().await;
        match k.reconcile(&desired).await {
            Ok(r) => {
                if r.added + r.replaced + r.removed > 0 || !r.failed.is_empty() {
                    tracing::info!(
                        "kernel reconcile: {} added, {} replaced, {} removed, {} unchanged, {} failed",
                        r.added,
                        r.replaced,
                        r.removed,
                        r.unchanged,
                        r.failed.len()
                    );
                }
                for (op, e) in &r.failed {
                    tracing::warn!("kernel reconcile: {op:?}: {e}");
                }
                st.swept = true;
            }
            Err(e) => tracing::warn!("kernel reconcile failed: {e}"),
        }
    }
}

/// Follows the speaker's best-route stream into the kernel, taking whatever has queued up as one
/// batch: one event when routes trickle in, thousands when a full table arrives.
pub async fn follow_best_routes(agent: Arc<Agent>, mut rx: Subscription) {
    while let Some(batch) = rx.recv().await {
        agent.apply_route_events(batch.events).await;
    }
    tracing::warn!("the speaker's route stream ended");
}

/// Local announcements on a timer and on demand; the first sweep once sessions are up (or after
/// `sweep_after` at the latest); a drift-repair reconcile every `repair_every`.
pub async fn keep_in_step(agent: Arc<Agent>, sweep_after: Duration, repair_every: Duration) {
    let start = Instant::now();
    let mut last_repair = Instant::now();
    let mut established_since: Option<Instant> = None;
    loop {
        agent.sync_local().await;
        let swept = agent.routes.lock().await.swept;
        if !swept {
            let all_up = match agent.speaker.status().await {
                Ok(s) => {
                    !s.peers.is_empty()
                        && s.peers
                            .iter()
                            .all(|p| p.state == bgp::fsm::State::Established)
                }
                Err(_) => false,
            };
            established_since = if all_up {
                established_since.or(Some(Instant::now()))
            } else {
                None
            };
            // Give peers a moment after Established to send their table before sweeping.
            let settled = established_since.is_some_and(|t| t.elapsed() >= Duration::from_secs(3));
            if settled || start.elapsed() >= sweep_after {
                agent.full_reconcile().await;
                last_repair = Instant::now();
            }
        } else if last_repair.elapsed() >= repair_every {
            agent.full_reconcile().await;
            last_repair = Instant::now();
        }
        tokio::select! {
            _ = agent.wake_local.notified() => {}
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
        }
    }
}
