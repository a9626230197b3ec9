//! The node daemon: wires IPAM, the BGP speaker, the kernel and the control socket together.
//!
//! ```text
//!  registry watch ──► mesh ──add/remove peer──► Speaker ──best routes──► follow_best_routes ──► kernel
//!                                                  ▲                                              ▲
//!  IPAM (blocks, borrowed /32s) ──► keep_in_step ──┘ announce/withdraw       blackholes, sweep ───┘
//!  control socket (routectl, gingham-cni) ──► AgentHandler ──► IPAM, endpoints, kernel host routes
//! ```

pub mod endpoints;
pub mod handler;
pub mod mesh;
pub mod routes;

use crate::kernel::KernelRoutes;
use bgp::{PeerConfig, Speaker, SpeakerConfig, SpeakerHandle};
use ipam::registry::NodeRegistry;
use ipam::resources::NodeRecord;
use ipam::store::Store;
use ipnet::Ipv4Net;
use routes::RouteState;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Mutex, Notify};

/// Everything the daemon needs, resolved (addresses autodetected, flags validated).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub node: String,
    pub ip: Ipv4Addr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub bgp_port: u16,
    pub hold_time: u16,
    pub peers: Vec<(IpAddr, u16, u32)>,
    pub advertise: Vec<Ipv4Net>,
    pub control_socket: PathBuf,
    pub metrics_addr: SocketAddr,
    pub datastore: String,
    pub mesh: bool,
    pub pool: Ipv4Net,
    pub block_size: u8,
}

/// The running agent's shared state.
pub struct Agent {
    pub node: String,
    pub ip: Ipv4Addr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub speaker: SpeakerHandle,
    pub store: Arc<dyn Store>,
    pub ipam: Arc<ipam::Ipam>,
    pub kernel: Mutex<KernelRoutes>,
    pub routes: Mutex<RouteState>,
    pub advertise: Vec<Ipv4Net>,
    /// Wakes the local-announcement loop after an IPAM change.
    pub wake_local: Notify,
    pub started: Instant,
}

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("--datastore {spec}: {reason}")]
    Datastore { spec: String, reason: String },
    #[error("IPAM: {0}")]
    Ipam(String),
    #[error("registering node {node}: {reason}")]
    Register { node: String, reason: String },
    #[error("BGP: {0}")]
    Bgp(String),
    #[error("kernel: {0}")]
    Kernel(String),
    #[error("{0}")]
    Control(String),
    #[error("{0}")]
    Metrics(String),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the agent until SIGTERM or SIGINT. On stop it sends Cease to its peers and leaves its
/// kernel routes in place (like BIRD's `persist`), so forwarding survives a restart.
pub async fn run(cfg: DaemonSettings) -> Result<(), DaemonError> {
    let ds_err = |reason: String| DaemonError::Datastore {
        spec: cfg.datastore.clone(),
        reason,
    };
    let store = ipam::store::open(&cfg.datastore).map_err(|e| ds_err(e.to_string()))?;
    let ipam_cfg = ipam::IpamSettings {
        pool_cidr: cfg.pool,
        block_size: cfg.block_size,
        ..Default::default()
    };
    let ipam = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || ipam::Ipam::open(store, ipam_cfg).map(Arc::new))
            .await
            .map_err(|e| DaemonError::Ipam(e.to_string()))?
            .map_err(|e| DaemonError::Ipam(e.to_string()))?
    };
    let registry = NodeRegistry::new(store.clone());
    let record = NodeRecord {
        name: cfg.node.clone(),
        address: cfg.ip,
        asn: cfg.asn,
        last_heartbeat: now_secs(),
    };
    {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || registry.register(&record))
            .await
            .map_err(|e| DaemonError::Register {
                node: cfg.node.clone(),
                reason: e.to_string(),
            })?
            .map_err(|e| DaemonError::Register {
                node: cfg.node.clone(),
                reason: e.to_string(),
            })?;
    }

    if let Err(e) = crate::sysctl::enable_ip_forward() {
        tracing::warn!("cannot set net.ipv4.ip_forward=1: {e}");
    }
    let kernel = KernelRoutes::new().map_err(|e| DaemonError::Kernel(e.to_string()))?;

    let speaker = Speaker::start(SpeakerConfig {
        local_as: cfg.asn,
        router_id: cfg.router_id,
        listen: Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            cfg.bgp_port,
        )),
        hold_time: cfg.hold_time,
        connect_retry: Duration::from_secs(5),
    })
    .await
    .map_err(|e| {
        DaemonError::Bgp(format!(
            "starting the speaker on port {}: {e}",
            cfg.bgp_port
        ))
    })?;

    let agent = Arc::new(Agent {
        node: cfg.node.clone(),
        ip: cfg.ip,
        asn: cfg.asn,
        router_id: cfg.router_id,
        speaker: speaker.clone(),
        store: store.clone(),
        ipam,
        kernel: Mutex::new(kernel),
        routes: Mutex::new(RouteState::default()),
        advertise: cfg.advertise.clone(),
        wake_local: Notify::new(),
        started: Instant::now(),
    });

    // Kernel first: subscribe before peers come up so no best route is missed.
    let rx = speaker
        .subscribe()
        .await
        .map_err(|e| DaemonError::Bgp(e.to_string()))?;
    tokio::spawn(routes::follow_best_routes(agent.clone(), rx));

    let mut explicit = Vec::new();
    for (address, port, asn) in &cfg.peers {
        explicit.push(*address);
        let p = PeerConfig {
            address: *address,
            port: *port,
            remote_as: *asn,
            passive: false,
            local_address: Some(IpAddr::V4(cfg.ip)),
            hold_time: Some(cfg.hold_time),
            kind: bgp::PeerKind::Explicit,
        };
        speaker
            .add_peer(p)
            .await
            .map_err(|e| DaemonError::Bgp(format!("--peer {address}: {e}")))?;
    }
    if cfg.mesh {
        tokio::spawn(mesh::run(
            registry.clone(),
            speaker.clone(),
            cfg.node.clone(),
            cfg.ip,
            cfg.bgp_port,
            cfg.hold_time,
            explicit,
        ));
    }
    tokio::spawn(routes::keep_in_step(
        agent.clone(),
        Duration::from_secs(20),
        Duration::from_secs(30),
    ));
    tokio::spawn(housekeeping(agent.clone(), registry));

    let handler = Arc::new(handler::AgentHandler(agent.clone()));
    let control = crate::control::serve(&cfg.control_socket, handler.clone())
        .map_err(|e| DaemonError::Control(format!("--control-socket: {e}")))?;
    let listener = crate::metrics::bind(cfg.metrics_addr)
        .await
        .map_err(DaemonError::Metrics)?;
    let metrics = crate::metrics::serve(listener, handler, Duration::from_secs(30));
    tracing::info!(
        "gingham-agent {} up: node {} ip {} AS {} router-id {}, BGP port {}, control socket {}, metrics {}",
        env!("CARGO_PKG_VERSION"),
        cfg.node,
        cfg.ip,
        cfg.asn,
        cfg.router_id,
        cfg.bgp_port,
        cfg.control_socket.display(),
        cfg.metrics_addr
    );

    wait_for_stop().await;
    tracing::info!("stopping: Cease to peers; kernel routes stay in place");
    control.abort();
    metrics.abort();
    if let Err(e) = speaker.shutdown().await {
        tracing::warn!("speaker shutdown: {e}");
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    Ok(())
}

async fn wait_for_stop() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the agent can only be killed; keep running.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Heartbeats in the registry, and release of empty blocks after their grace period.
async fn housekeeping(agent: Arc<Agent>, registry: NodeRegistry) {
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let (reg, node) = (registry.clone(), agent.node.clone());
        if let Ok(Err(e)) =
            tokio::task::spawn_blocking(move || reg.heartbeat(&node, now_secs())).await
        {
            tracing::warn!("heartbeat: {e}");
        }
        let (ipam, node) = (agent.ipam.clone(), agent.node.clone());
        match tokio::task::spawn_blocking(move || ipam.release_empty_blocks(&node)).await {
            Ok(Ok(released)) if !released.is_empty() => {
                tracing::info!("released empty blocks {released:?}");
                agent.wake_local.notify_one();
            }
            Ok(Err(e)) => tracing::warn!("releasing empty blocks: {e}"),
            _ => {}
        }
    }
}
