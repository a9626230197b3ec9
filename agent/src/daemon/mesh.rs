//! The node-to-node mesh: every other node in the registry is an iBGP peer, added and removed
//! while the agent runs.
//!
//! One TCP session per pair: the node with the higher IP waits passively (Calico's rule, from
//! projectcalico/node PR #79), so two nodes restarting together do not race two connections.

use super::error::AgentError;
use bgp::{PeerConfig, SpeakerHandle};
use ipam::registry::NodeRegistry;
use ipam::resources::{NodeRecord, TypedEvent};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use tokio::sync::mpsc;

/// The peer configuration this node uses toward another mesh node.
pub fn mesh_peer(me: Ipv4Addr, other: &NodeRecord, port: u16, hold_time: u16) -> PeerConfig {
    PeerConfig {
        address: IpAddr::V4(other.address),
        port,
        remote_as: other.asn,
        passive: me > other.address,
        local_address: Some(IpAddr::V4(me)),
        hold_time: Some(hold_time),
        kind: bgp::PeerKind::Mesh,
    }
}

/// What the mesh task needs to know about this node.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    pub node: String,
    pub me: Ipv4Addr,
    pub port: u16,
    pub hold_time: u16,
    /// `--peer` addresses: they win over mesh entries with the same address.
    pub explicit: Vec<IpAddr>,
}

/// Follows the registry for as long as the agent runs; an error (no watch, the speaker gone)
/// stops the agent, since a node that cannot follow the mesh is cut off from new nodes.
pub async fn run(
    registry: NodeRegistry,
    speaker: SpeakerHandle,
    cfg: MeshConfig,
) -> Result<(), AgentError> {
    let MeshConfig {
        node,
        me,
        port,
        hold_time,
        explicit,
    } = cfg;
    // The registry watch is blocking (std channel): a thread forwards its events.
    let (tx, mut rx) = mpsc::channel::<TypedEvent<NodeRecord>>(256);
    let watch = tokio::task::spawn_blocking(move || registry.watch()).await??;
    std::thread::Builder::new()
        .name("mesh-watch".into())
        .spawn(move || loop {
            if let Some(ev) = watch.recv_timeout(Duration::from_millis(500)) {
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
    while let Some(ev) = rx.recv().await {
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
                match speaker.add_peer(mesh_peer(me, &rec, port, hold_time)).await {
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
            TypedEvent::Synced => tracing::debug!("mesh: registry synced, {} peers", peers.len()),
            TypedEvent::Error(c) => {
                tracing::warn!("node registry: unreadable record {}: {}", c.path, c.reason)
            }
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

    #[test]
    fn higher_address_is_passive() {
        let other = |ip: &str| NodeRecord {
            name: "x".into(),
            address: ip.parse().unwrap(),
            asn: 64512,
            last_heartbeat: 0,
        };
        let me: Ipv4Addr = "172.18.0.3".parse().unwrap();
        assert!(mesh_peer(me, &other("172.18.0.2"), 179, 90).passive);
        assert!(!mesh_peer(me, &other("172.18.0.4"), 179, 90).passive);
        // Numeric, not lexical: .10 is higher than .9.
        let me: Ipv4Addr = "172.18.0.10".parse().unwrap();
        assert!(mesh_peer(me, &other("172.18.0.9"), 179, 90).passive);
        let p = mesh_peer(me, &other("172.18.0.9"), 179, 90);
        assert_eq!(p.kind, bgp::PeerKind::Mesh);
        assert_eq!(p.local_address, Some(IpAddr::V4(me)));
    }
}
