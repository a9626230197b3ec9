//! The node collector: on a datastore where nodes leave by themselves (etcd leases expire,
//! Kubernetes deletes Node objects), a node that left takes its registry record with it, but its
//! blocks, affinities and addresses stay. After a grace period one agent releases them: the
//! holder of the `node-collector` leader lease (a `coordination.k8s.io` Lease on Kubernetes).
//! Every agent keeps the same clocks, so if the leader stops too the next one takes over without
//! starting the grace again. Each address is freed by a compare-and-swap, so even two agents
//! that both believe they lead (for a moment, while the lease changes hands) free each address
//! once.
//!
//! Calico leaves this to kube-controllers with a 15-minute grace; here it is `--node-release-grace`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::{Ipam, Leadership, NodeRegistry};

use super::error::AgentError;

/// The leader lease's record name.
pub const LEASE: &str = "node-collector";

/// What the collector found on one look, and what it does about it.
#[derive(Debug, Default)]
pub struct Gone {
    /// Node name → when it was first seen holding IPAM without being registered.
    since: HashMap<String, Instant>,
}

impl Gone {
    /// Updates the clocks from who holds IPAM and who is registered; returns the nodes this
    /// agent releases now (their grace is over, and it leads).
    pub fn look(
        &mut self,
        holders: &BTreeSet<String>,
        live: &BTreeSet<String>,
        leads: bool,
        grace: Duration,
        now: Instant,
    ) -> Vec<String> {
        self.since
            .retain(|n, _| holders.contains(n) && !live.contains(n));
        for n in holders.difference(live) {
            self.since.entry(n.clone()).or_insert(now);
        }
        if !leads {
            return Vec::new();
        }
        let mut due: Vec<String> = self
            .since
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= grace)
            .map(|(n, _)| n.clone())
            .collect();
        due.sort();
        due
    }

    pub fn forget(&mut self, node: &str) {
        self.since.remove(node);
    }
}

/// Nodes holding IPAM (a block affinity, or an address) and nodes registered now.
fn read(
    ipam: &Ipam,
    registry: &NodeRegistry,
) -> Result<(BTreeSet<String>, BTreeSet<String>), AgentError> {
    let mut holders: BTreeSet<String> = ipam.affinities()?.into_iter().map(|a| a.node).collect();
    holders.extend(ipam.blocks()?.into_iter().filter_map(|b| b.node));
    let live = registry.list()?.into_iter().map(|n| n.name).collect();
    Ok((holders, live))
}

/// Looks every `grace / 4` (between 1 and 30 s) for as long as the agent runs. Datastore
/// errors are logged once per change and retried: they never stop the agent.
pub async fn run(
    ipam: Arc<Ipam>,
    registry: NodeRegistry,
    me: String,
    grace: Duration,
) -> Result<(), AgentError> {
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    // Three looks without a renewal: the leader is gone.
    let lease = (every * 3).max(Duration::from_secs(15));
    // Moved into each blocking look and back.
    let mut leadership = Some(Leadership::new(ipam.store().clone(), LEASE, &me, lease));
    let mut leading = false;
    let mut gone = Gone::default();
    let mut failing = super::FailureLog::new("node collector");
    loop {
        tokio::time::sleep(every).await;
        let (i, r) = (ipam.clone(), registry.clone());
        let read = tokio::task::spawn_blocking(move || read(&i, &r)).await?;
        failing.saw(read.as_ref().err());
        let Ok((holders, live)) = read else {
            continue;
        };
        // Only a registered agent competes: one that is not (just started, or expired) would
        // take the lease from an agent that is doing the work.
        let leads = if live.contains(&me) {
            let mut l = leadership.take().expect("put back after every look");
            let (l, r) = tokio::task::spawn_blocking(move || {
                let r = l.try_lead(super::now_secs(), Instant::now());
                (l, r)
            })
            .await?;
            leadership = Some(l);
            r.unwrap_or_else(|e| {
                failing.saw(Some(&AgentError::from(e)));
                false
            })
        } else {
            false
        };
        if leads != leading {
            tracing::info!(
                "node collector: {} the {LEASE} lease",
                if leads {
                    "this node holds"
                } else {
                    "this node no longer holds"
                }
            );
            leading = leads;
        }
        for node in gone.look(&holders, &live, leads, grace, Instant::now()) {
            let (i, r, n) = (ipam.clone(), registry.clone(), node.clone());
            // Looked at again right before: a node that came back keeps everything.
            let released = tokio::task::spawn_blocking(move || {
                if r.get(&n)?.is_some() {
                    return Ok(None);
                }
                i.release_node(&n).map(Some).map_err(AgentError::from)
            })
            .await?;
            match released {
                Ok(Some(r)) => {
                    tracing::info!(
                        "node collector: node {node} left the mesh over {} s ago; released {} addresses and blocks {:?}",
                        grace.as_secs(),
                        r.addresses.len(),
                        r.blocks
                    );
                    gone.forget(&node);
                }
                Ok(None) => gone.forget(&node),
                Err(e) => tracing::warn!("node collector: releasing node {node}: {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_first_live_node_releases_after_the_grace_only() {
        let grace = Duration::from_secs(60);
        let t0 = Instant::now();
        let (holders, live) = (set(&["a", "b", "c"]), set(&["a", "b"]));
        let mut on_a = Gone::default();
        let mut on_b = Gone::default();
        assert!(on_a.look(&holders, &live, true, grace, t0).is_empty());
        assert!(on_b.look(&holders, &live, false, grace, t0).is_empty());
        let later = t0 + grace;
        assert_eq!(on_a.look(&holders, &live, true, grace, later), ["c"]);
        // b does not lead: it keeps its clock but leaves the work to a.
        assert!(on_b.look(&holders, &live, false, grace, later).is_empty());
        // a stops too: b takes the lease over, its clock already ran.
        let live = set(&["b"]);
        let holders = set(&["a", "b", "c"]);
        let due = on_b.look(&holders, &live, true, grace, later);
        assert_eq!(due, ["c"], "a's own grace starts now");
        assert_eq!(
            on_b.look(&holders, &live, true, grace, later + grace),
            ["a", "c"]
        );
    }

    #[test]
    fn a_node_that_comes_back_starts_over() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut g = Gone::default();
        let holders = set(&["a", "c"]);
        g.look(&holders, &set(&["a"]), true, grace, t0);
        // c is back before its grace is over, then gone again.
        g.look(&holders, &set(&["a", "c"]), true, grace, t0 + grace / 2);
        let again = t0 + grace;
        assert!(g
            .look(&holders, &set(&["a"]), true, grace, again)
            .is_empty());
        assert_eq!(
            g.look(&holders, &set(&["a"]), true, grace, again + grace),
            ["c"]
        );
    }

    #[test]
    fn an_agent_that_does_not_lead_collects_nothing() {
        let t0 = Instant::now();
        let mut g = Gone::default();
        let holders = set(&["a", "z"]);
        let g0 = g.look(&holders, &set(&["a"]), false, Duration::ZERO, t0);
        assert!(g0.is_empty());
    }
}
