//! The node collector: on a datastore whose node records expire (etcd leases), a node whose
//! agent stopped leaves the registry by itself, but its blocks, affinities and addresses stay.
//! After a grace period one agent releases them: the live node whose name sorts first. Every
//! agent keeps the same clocks, so if that one stops too the next takes over without starting
//! the grace again. Each address is freed by a compare-and-swap, so two agents that both think
//! they are first (for a moment, while the registry changes) still free each address once.
//!
//! Calico leaves this to kube-controllers with a 15-minute grace; here it is `--node-release-grace`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipam::{Ipam, NodeRegistry};

use super::error::AgentError;

/// What the collector found on one look, and what it does about it.
#[derive(Debug, Default)]
pub struct Gone {
    /// Node name → when it was first seen holding IPAM without being registered.
    since: HashMap<String, Instant>,
}

impl Gone {
    /// Updates the clocks from who holds IPAM and who is registered; returns the nodes this
    /// agent releases now (their grace is over and `me` sorts first among the live nodes).
    pub fn look(
        &mut self,
        holders: &BTreeSet<String>,
        live: &BTreeSet<String>,
        me: &str,
        grace: Duration,
        now: Instant,
    ) -> Vec<String> {
        self.since
            .retain(|n, _| holders.contains(n) && !live.contains(n));
        for n in holders.difference(live) {
            self.since.entry(n.clone()).or_insert(now);
        }
        // An agent that is not registered itself (just started, or expired) does not collect.
        let first = live.iter().next().map(String::as_str);
        if first != Some(me) {
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
        for node in gone.look(&holders, &live, &me, grace, Instant::now()) {
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
        assert!(on_a.look(&holders, &live, "a", grace, t0).is_empty());
        assert!(on_b.look(&holders, &live, "b", grace, t0).is_empty());
        let later = t0 + grace;
        assert_eq!(on_a.look(&holders, &live, "a", grace, later), ["c"]);
        // b is not first: it keeps its clock but leaves the work to a.
        assert!(on_b.look(&holders, &live, "b", grace, later).is_empty());
        // a stops too: b takes over at once, its clock already ran.
        let live = set(&["b"]);
        let holders = set(&["a", "b", "c"]);
        let due = on_b.look(&holders, &live, "b", grace, later);
        assert_eq!(due, ["c"], "a's own grace starts now");
        assert_eq!(
            on_b.look(&holders, &live, "b", grace, later + grace),
            ["a", "c"]
        );
    }

    #[test]
    fn a_node_that_comes_back_starts_over() {
        let grace = Duration::from_secs(10);
        let t0 = Instant::now();
        let mut g = Gone::default();
        let holders = set(&["a", "c"]);
        g.look(&holders, &set(&["a"]), "a", grace, t0);
        // c is back before its grace is over, then gone again.
        g.look(&holders, &set(&["a", "c"]), "a", grace, t0 + grace / 2);
        let again = t0 + grace;
        assert!(g.look(&holders, &set(&["a"]), "a", grace, again).is_empty());
        assert_eq!(
            g.look(&holders, &set(&["a"]), "a", grace, again + grace),
            ["c"]
        );
    }

    #[test]
    fn an_unregistered_agent_collects_nothing() {
        let t0 = Instant::now();
        let mut g = Gone::default();
        let holders = set(&["a", "z"]);
        let g0 = g.look(&holders, &set(&[]), "a", Duration::ZERO, t0);
        assert!(g0.is_empty());
    }
}
