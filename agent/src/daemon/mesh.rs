//! The node-to-node mesh: every other node in the registry is an iBGP peer, added and removed
//! while the agent runs.
//!
//! One TCP session per pair: the node with the higher IP waits passively (Calico's rule, from
//! projectcalico/node PR #79), so two nodes restarting together do not race two connections.

use super::error::AgentError;
use bgp::{PeerConfig, SpeakerHandle};
use ipam::registry::NodeRegistry;
use ipam::resources::{NodeRecord, TypedEvent};
use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::sync::mpsc;

/// The peer configuration this node uses toward another mesh node: the mesh's password, and
/// GTSM (RFC 5082) when the other node is directly connected (inside our own subnet), so a
/// session cannot be spoofed from further away.
pub fn mesh_peer(cfg: &MeshConfig, other: &NodeRecord) -> PeerConfig {
    PeerConfig {
        address: IpAddr::V4(other.address),
        port: cfg.port,
        remote_as: other.asn,
        passive: cfg.me > other.address,
        local_address: Some(IpAddr::V4(cfg.me)),
        hold_time: Some(cfg.hold_time),
        kind: bgp::PeerKind::Mesh,
        password: cfg.password.clone(),
        ttl_security: cfg.subnet.is_some_and(|s| s.contains(&other.address)),
        max_prefixes: None,
    }
}

/// What the mesh task needs to know about this node.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub node: String,
    pub me: Ipv4Addr,
    /// Our own subnet: mesh peers inside it get GTSM.
    pub subnet: Option<ipnet::Ipv4Net>,
    pub port: u16,
    pub hold_time: u16,
    pub password: Option<bgp::Password>,
    /// `--peer` addresses: they win over mesh entries with the same address.
    pub explicit: Vec<IpAddr>,
}

/// Follows the registry for as long as the agent runs; an error (no watch, the speaker gone)
/// stops the agent, since a node that cannot follow the mesh is cut off from new nodes.
pub async fn run(
    registry: NodeRegistry,
    speaker: SpeakerHandle,
    cfg: MeshConfig,
    unreadable_tx: tokio::sync::watch::Sender<BTreeSet<String>>,
    register: Option<impl std::future::Future<Output = Result<(), AgentError>>>,
) -> Result<(), AgentError> {
    let mut register = register.map(Box::pin);
    let (node, me, explicit) = (cfg.node.clone(), cfg.me, cfg.explicit.clone());
    // The registry watch is blocking (std channel): a thread forwards its events.
    let (tx, mut rx) = mpsc::channel::<TypedEvent<NodeRecord>>(256);
    let watch = tokio::task::spawn_blocking(move || registry.watch()).await??;
    std::thread::Builder::new()
        .name("mesh-watch".into())
        .spawn(move || loop {
            // The timeout only bounds how long the thread outlives a mesh task that ended.
            if let Some(ev) = watch.recv_timeout(Duration::from_secs(5)) {
                if tx.blocking_send(ev).is_err() {
                    return;
                }
            } else if tx.is_closed() {
                return;
            }
        })
        .ok();

    // Record name → the peer address we configured for it.
    let mut peers: HashMap<String, NodeRecord> = HashMap::new();
    // Node records that cannot be read now; published for the metrics.
    let mut unreadable = BTreeSet::new();
    while let Some(ev) = rx.recv().await {
        match &ev {
            TypedEvent::Added(v) | TypedEvent::Modified(v) if unreadable.remove(&v.name) => {
                tracing::info!("node registry: the record of {} reads again", v.name)
            }
            TypedEvent::Deleted(name) => {
                unreadable.remove(name);
            }
            TypedEvent::Error(c) => {
                unreadable.insert(c.name.clone());
            }
            _ => {}
        }
        unreadable_tx.send_if_modified(|set| {
            let changed = *set != unreadable;
            if changed {
                set.clone_from(&unreadable);
            }
            changed
        });
        match ev {
            TypedEvent::Added(v) | TypedEvent::Modified(v) => {
                let rec = v.value;
                if rec.name == node || explicit.contains(&IpAddr::V4(rec.address)) {
                    continue;
                }
                if rec.address == me {
                    tracing::warn!(
                        "node {} claims our address {me}; not peering with it",
                        rec.name
                    );
                    continue;
                }
                if let Some(old) = peers.get(&v.name) {
                    if old.address == rec.address && old.asn == rec.asn {
                        continue; // a heartbeat, nothing to change
                    }
                    match speaker.remove_peer(IpAddr::V4(old.address)).await {
                        Ok(()) | Err(bgp::SpeakerError::NoSuchPeer(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                tracing::info!(
                    "mesh: peering with node {} at {} (AS {})",
                    rec.name,
                    rec.address,
                    rec.asn
                );
                match speaker.add_peer(mesh_peer(&cfg, &rec)).await {
                    Ok(()) => {}
                    Err(bgp::SpeakerError::Stopped) => {
                        return Err(bgp::SpeakerError::Stopped.into())
                    }
                    Err(e) => tracing::warn!("mesh: cannot add peer {}: {e}", rec.address),
                }
                peers.insert(v.name, rec);
            }
            TypedEvent::Deleted(name) => {
                if let Some(old) = peers.remove(&name) {
                    tracing::info!("mesh: node {name} left; removing peer {}", old.address);
                    match speaker.remove_peer(IpAddr::V4(old.address)).await {
                        Ok(()) => {}
                        Err(bgp::SpeakerError::Stopped) => {
                            return Err(bgp::SpeakerError::Stopped.into())
                        }
                        Err(e) => tracing::warn!("mesh: removing peer {}: {e}", old.address),
                    }
                }
            }
            TypedEvent::Synced => {
                tracing::debug!("mesh: registry synced, {} peers", peers.len());
                // Every node already there is a peer now: time to be seen.
                if let Some(r) = register.take() {
                    r.await?;
                }
            }
            // An unreadable Node is not a node that left: its peer stays as we last knew it.
            TypedEvent::Error(c) => match peers.get(&c.name) {
                Some(old) => tracing::warn!(
                    "node registry: {} is unreadable ({}); keeping peer {} as last read",
                    c.path,
                    c.reason,
                    old.address
                ),
                None => tracing::warn!("node registry: {} is unreadable: {}", c.path, c.reason),
            },
        }
    }
    Err(AgentError::TaskEnded {
        task: "node registry watch",
        reason: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(me: &str) -> MeshConfig {
        MeshConfig {
            node: "me".into(),
            me: me.parse().unwrap(),
            subnet: Some("172.18.0.0/16".parse().unwrap()),
            port: 179,
            hold_time: 90,
            password: None,
            explicit: vec![],
        }
    }

    #[test]
    fn higher_address_is_passive() {
        let other = |ip: &str| NodeRecord {
            name: "x".into(),
            address: ip.parse().unwrap(),
            asn: 64512,
            last_heartbeat: 0,
        };
        assert!(mesh_peer(&cfg("172.18.0.3"), &other("172.18.0.2")).passive);
        assert!(!mesh_peer(&cfg("172.18.0.3"), &other("172.18.0.4")).passive);
        // Numeric, not lexical: .10 is higher than .9.
        assert!(mesh_peer(&cfg("172.18.0.10"), &other("172.18.0.9")).passive);
        let p = mesh_peer(&cfg("172.18.0.10"), &other("172.18.0.9"));
        assert_eq!(p.kind, bgp::PeerKind::Mesh);
        assert_eq!(
            p.local_address,
            Some(IpAddr::V4("172.18.0.10".parse().unwrap()))
        );
        // GTSM for a directly connected node, not for one behind a router.
        assert!(p.ttl_security);
        assert!(!mesh_peer(&cfg("172.18.0.10"), &other("10.0.0.9")).ttl_security);
    }
}
