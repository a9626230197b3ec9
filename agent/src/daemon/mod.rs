//! The node daemon: wires IPAM, the BGP speaker, the kernel and the control socket together.
//!
//! The tasks and the channels between them are drawn at the top of [`routing`], the one owner
//! of the node's routing state. Every task runs under the [`supervisor`]: the first to end stops
//! the agent with a non-zero exit (routes stay in the kernel; the DaemonSet restarts it).
//! Shared by the tasks is only [`Agent`]: immutable settings and handles (channels to their
//! owners), no locks.

pub mod collector;
pub mod endpoints;
pub mod error;
pub mod handler;
pub mod local;
pub mod mesh;
pub mod routing;
pub mod supervisor;

pub use error::AgentError;

use crate::kernel::KernelRoutes;
use bgp::{PeerConfig, PeerKind, Speaker, SpeakerConfig, SpeakerHandle};
use ipam::registry::NodeRegistry;
use ipam::resources::NodeRecord;
use ipam::store::{Store, StoreError};
use ipnet::Ipv4Net;
use routing::{RoutingConfig, RoutingHandle, RoutingOwner};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use supervisor::Supervisor;

/// Everything the daemon needs, resolved (addresses autodetected, flags validated).
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    pub node: String,
    pub ip: Ipv4Addr,
    /// The subnet of `ip` on this node: mesh peers inside it are directly connected (GTSM).
    pub subnet: Option<Ipv4Net>,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub bgp_port: u16,
    pub hold_time: u16,
    /// TCP MD5 for the mesh (and for `--peer`s without a password of their own).
    pub password: Option<bgp::Password>,
    /// RFC 4724 Restart Time; 0 = no graceful restart.
    pub graceful_restart_time: u16,
    pub peers: Vec<PeerSettings>,
    pub advertise: Vec<Ipv4Net>,
    pub control_socket: PathBuf,
    pub metrics_addr: SocketAddr,
    pub datastore: ipam::store::Backend,
    /// How long a node that left the mesh keeps its IPAM, on a datastore whose node records
    /// expire (etcd).
    pub node_release_grace: Duration,
    pub mesh: bool,
    pub pool: Ipv4Net,
    pub block_size: u8,
}

/// One `--peer`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    pub address: IpAddr,
    pub port: u16,
    pub asn: u32,
    pub password: Option<bgp::Password>,
    pub ttl_security: bool,
    pub max_prefixes: Option<u32>,
}

/// What the request handlers share: settings and handles, nothing mutable.
pub struct Agent {
    pub node: String,
    pub ip: Ipv4Addr,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub speaker: SpeakerHandle,
    pub store: Arc<dyn Store>,
    pub ipam: Arc<ipam::Ipam>,
    pub routing: RoutingHandle,
    pub local: local::LocalHandle,
    pub started: Instant,
    /// The Node records the mesh task cannot read right now (it owns the set).
    pub unreadable_nodes: tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>,
}

/// How often an agent writes its heartbeat into the registry.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// Empty blocks are looked for every this many heartbeats.
const RELEASE_EVERY_BEATS: u32 = 6;
/// A node whose heartbeat is older than this is taken for stopped (three missed beats).
pub const HEARTBEAT_STALE: Duration = Duration::from_secs(30);

/// A repeating step's failures, logged once per change of state: one line when it starts
/// failing (or fails differently), one when it works again. "The datastore cannot be reached"
/// is one state however its last error reads: etcd names a different cause on most tries.
pub(crate) struct FailureLog {
    what: &'static str,
    state: Option<String>,
}

impl FailureLog {
    pub fn new(what: &'static str) -> Self {
        FailureLog { what, state: None }
    }

    /// The outcome of one try: `Some` error, or `None` for success. True when it was logged.
    pub fn saw(&mut self, error: Option<&AgentError>) -> bool {
        let state = error.map(|e| match e.kind() {
            crate::control::api::ErrorKind::Unavailable => "unavailable".to_string(),
            _ => e.to_string(),
        });
        if state == self.state {
            return false;
        }
        match error {
            Some(e) => tracing::warn!("{}: {e}", self.what),
            None => tracing::info!("{}: works again", self.what),
        }
        self.state = state;
        true
    }
}

/// How often an agent waiting for its datastore at start says it still is.
const WAITING_REMINDER: Duration = Duration::from_secs(5);

/// Runs a blocking datastore step of the start-up again while the datastore cannot be reached
/// (etcd not up yet, or without quorum): an agent must wait for it, not exit and restart in a
/// loop. Logs when it starts waiting and when it is through, not every attempt.
async fn until_reachable<T: Send + 'static>(
    what: &'static str,
    f: impl Fn() -> Result<T, AgentError> + Send + Sync + 'static,
) -> Result<T, AgentError> {
    let f = Arc::new(f);
    let mut pause = Duration::from_millis(200);
    let started = Instant::now();
    // When it started waiting, and when it last said so.
    let mut waiting: Option<Instant> = None;
    loop {
        let step = f.clone();
        match tokio::task::spawn_blocking(move || step()).await? {
            Err(e) if e.kind() == crate::control::api::ErrorKind::Unavailable => {
                // Said when it starts, then every 5 s: someone reading the log of an agent
                // that is not ready wants to see it is waiting, and for what.
                match waiting {
                    None => tracing::warn!("{what}: {e}; waiting for the datastore"),
                    Some(said) if said.elapsed() >= WAITING_REMINDER => tracing::warn!(
                        "{what}: still waiting for the datastore ({} s): {e}",
                        started.elapsed().as_secs()
                    ),
                    Some(_) => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(Duration::from_secs(5));
                        continue;
                    }
                }
                waiting = Some(Instant::now());
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            r => {
                if waiting.is_some() && r.is_ok() {
                    tracing::info!(
                        "{what}: the datastore answers after {} s",
                        started.elapsed().as_secs()
                    );
                }
                return r;
            }
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the agent until SIGTERM or SIGINT (`Ok`), or until one of its tasks ends (`Err`, naming
/// it). On stop it sends Cease to its peers and leaves its kernel routes in place (like BIRD's
/// `persist`), so forwarding survives a restart.
pub async fn run(cfg: DaemonSettings) -> Result<(), AgentError> {
    let store = cfg
        .datastore
        .open()
        .map_err(|source| AgentError::Datastore {
            spec: cfg.datastore.to_string(),
            source,
        })?;
    let ipam_cfg = ipam::IpamSettings {
        pool_cidr: cfg.pool,
        block_size: cfg.block_size,
        ..Default::default()
    };
    let ipam = {
        let store = store.clone();
        until_reachable("opening IPAM", move || {
            Ok(ipam::Ipam::open(store.clone(), ipam_cfg.clone()).map(Arc::new)?)
        })
        .await?
    };
    let registry = NodeRegistry::new(store.clone());
    let record = NodeRecord {
        name: cfg.node.clone(),
        address: cfg.ip,
        asn: cfg.asn,
        last_heartbeat: now_secs(),
    };
    // The pods recorded on this node: the routing owner keeps their host routes.
    let endpoints = {
        let (store, node) = (store.clone(), cfg.node.clone());
        until_reachable("reading this node's pods", move || {
            endpoints::endpoints_of(store.as_ref(), &node)
        })
        .await?
    };

    if let Err(e) = crate::sysctl::enable_ip_forward() {
        tracing::warn!("cannot set net.ipv4.ip_forward=1: {e}");
    }
    let mut kernel = KernelRoutes::new()?;
    // Routes of ours already in the kernel: a previous run left them (SIGTERM keeps them), so
    // this start is a graceful restart that kept the forwarding state (RFC 4724 §4.1).
    let restarting = match kernel.owned_table().await {
        Ok(t) => !t.bird.is_empty(),
        Err(e) => {
            tracing::warn!("cannot read the routing table: {e}");
            false
        }
    };
    let graceful_restart = (cfg.graceful_restart_time > 0).then_some(bgp::GracefulRestartConfig {
        restart_time: cfg.graceful_restart_time,
        restarting,
    });
    if restarting && graceful_restart.is_some() {
        tracing::info!("restarting with this node's routes in the kernel: graceful restart (the peers keep ours; ours stay until the peers' End-of-RIB)");
    }
    // This node's blocks, read before any peer is configured (see announce_initial).
    let (blocks, borrowed) = {
        let (ipam, node) = (ipam.clone(), cfg.node.clone());
        tokio::task::spawn_blocking(move || {
            Ok::<_, ipam::IpamError>((ipam.node_blocks(&node)?, ipam.borrowed(&node)?))
        })
        .await??
    };

    let speaker = Speaker::start(SpeakerConfig {
        local_as: cfg.asn,
        router_id: cfg.router_id,
        listen: Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            cfg.bgp_port,
        )),
        hold_time: cfg.hold_time,
        graceful_restart,
        ..SpeakerConfig::new(cfg.asn, cfg.router_id)
    })
    .await
    .map_err(|source| AgentError::Listen {
        port: cfg.bgp_port,
        source,
    })?;

    // The kernel's subscription first, before any peer comes up, so no best route is missed.
    let routes = speaker.subscribe().await?;
    let (routing_tx, routing_rx) = tokio::sync::mpsc::channel(routing::INBOX);
    let routing = RoutingHandle::new(routing_tx);
    let mut owner = RoutingOwner::new(
        RoutingConfig::new(cfg.ip, cfg.advertise.clone()),
        kernel,
        speaker.clone(),
        endpoints.iter().map(|e| (e.ip, e.interface.clone())),
    );
    owner.announce_initial(blocks, borrowed).await?;
    let (local, local_rx) = local::channel();

    let mut explicit = Vec::new();
    for p in &cfg.peers {
        explicit.push(p.address);
        let pc = PeerConfig {
            address: p.address,
            port: p.port,
            remote_as: p.asn,
            passive: false,
            local_address: Some(IpAddr::V4(cfg.ip)),
            hold_time: Some(cfg.hold_time),
            kind: PeerKind::Explicit,
            password: p.password.clone(),
            ttl_security: p.ttl_security,
            max_prefixes: p.max_prefixes,
        };
        speaker
            .add_peer(pc)
            .await
            .map_err(|source| AgentError::Peer {
                address: p.address,
                source,
            })?;
    }

    let (unreadable_tx, unreadable_nodes) = tokio::sync::watch::channel(Default::default());
    let agent = Arc::new(Agent {
        node: cfg.node.clone(),
        ip: cfg.ip,
        asn: cfg.asn,
        router_id: cfg.router_id,
        speaker: speaker.clone(),
        store: store.clone(),
        ipam: ipam.clone(),
        routing: routing.clone(),
        local: local.clone(),
        started: Instant::now(),
        unreadable_nodes,
    });
    let handler = Arc::new(handler::AgentHandler(agent.clone()));
    let control = crate::control::Server::bind(&cfg.control_socket)?;
    let metrics = crate::metrics::bind(cfg.metrics_addr)
        .await
        .map_err(|source| AgentError::Metrics {
            addr: cfg.metrics_addr,
            source,
        })?;

    let mut tasks = Supervisor::new();
    tasks.spawn("routing owner", owner.run(routes, routing_rx));
    tasks.spawn(
        "local",
        local::run(
            ipam.clone(),
            cfg.node.clone(),
            routing,
            local_rx,
            local::POLL_EVERY,
        ),
    );
    if !cfg.mesh {
        registration(registry.clone(), record.clone()).await?;
    }
    if cfg.mesh {
        // The mesh task registers this node once it knows (and so accepts) every node already
        // there: a node that saw us earlier would connect, be refused as unknown, and wait a
        // whole connect retry.
        tasks.spawn(
            "mesh",
            mesh::run(
                registry.clone(),
                speaker.clone(),
                mesh::MeshConfig {
                    node: cfg.node.clone(),
                    me: cfg.ip,
                    subnet: cfg.subnet,
                    port: cfg.bgp_port,
                    hold_time: cfg.hold_time,
                    password: cfg.password.clone(),
                    explicit,
                },
                unreadable_tx,
                Some(registration(registry.clone(), record.clone())),
            ),
        );
    }
    if store.nodes_depart() {
        tasks.spawn(
            "node collector",
            collector::run(
                agent.ipam.clone(),
                registry.clone(),
                cfg.node.clone(),
                cfg.node_release_grace,
            ),
        );
    }
    tasks.spawn(
        "housekeeping",
        housekeeping(agent.clone(), registry, record),
    );
    tasks.spawn("link watch", link_watch(agent.routing.clone()));
    {
        let speaker = speaker.clone();
        tasks.spawn("speaker", async move {
            speaker.closed().await;
            Ok(())
        });
    }
    {
        let handler = handler.clone();
        tasks.spawn("control socket", async move {
            control.serve(handler).await?;
            Ok(())
        });
    }
    tasks.spawn("metrics", async move {
        crate::metrics::serve(metrics, handler, Duration::from_secs(30)).await;
        Ok(())
    });
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

    let outcome = tokio::select! {
        _ = wait_for_stop() => Ok(()),
        Some(e) = tasks.first_exit() => Err(e),
    };
    match &outcome {
        Ok(()) => tracing::info!("stopping: Cease to peers; kernel routes stay in place"),
        Err(e) => tracing::error!("stopping: {e}; kernel routes stay in place"),
    }
    tasks.stop_all().await;
    // With graceful restart the peers keep our routes while we are away (a rollout); without,
    // Cease tells them to drop them now.
    let stopped = if cfg.graceful_restart_time > 0 {
        speaker.shutdown_graceful().await
    } else {
        speaker.shutdown().await
    };
    if let Err(e) = stopped {
        tracing::debug!("speaker shutdown: {e}");
    }
    let _ = std::fs::remove_file(&cfg.control_socket);
    outcome
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

/// The kernel's TCP MD5 counters of this network namespace (`TcpExt` in /proc/net/netstat):
/// segments that came without the signature we expect, with one we do not, or with a wrong one.
/// A wrong or missing password shows only here: the kernel drops such segments silently.
pub fn md5_counters() -> Option<[u64; 3]> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let mut out = [0u64; 3];
    let mut found = 0;
    for (name, value) in names.split_whitespace().zip(values.split_whitespace()) {
        let slot = match name {
            "TCPMD5NotFound" => 0,
            "TCPMD5Unexpected" => 1,
            "TCPMD5Failure" => 2,
            _ => continue,
        };
        out[slot] = value.parse().ok()?;
        found += 1;
    }
    (found == 3).then_some(out)
}

/// Says once per change what the MD5 counters grew by.
fn report_md5(last: &mut Option<[u64; 3]>) {
    let Some(now) = md5_counters() else { return };
    if let Some(before) = *last {
        let d: Vec<u64> = now
            .iter()
            .zip(before)
            .map(|(a, b)| a.saturating_sub(b))
            .collect();
        if d.iter().any(|n| *n > 0) {
            tracing::warn!(
                "TCP MD5: the kernel dropped segments from BGP peers: {} without a signature, {} signed when none was expected, {} with a wrong one (TCPMD5NotFound/Unexpected/Failure): check that both sides use the same password",
                d[0],
                d[1],
                d[2]
            );
        }
    }
    *last = Some(now);
}

/// Writes this node's record into the registry; a future, so the caller runs it when it is
/// ready to be seen.
async fn registration(registry: NodeRegistry, record: NodeRecord) -> Result<(), AgentError> {
    let node = record.name.clone();
    until_reachable("registering this node", move || {
        registry.register(&record).map_err(|source| match source {
            StoreError::Unavailable(_) => AgentError::Store(source),
            _ => AgentError::Register {
                node: node.clone(),
                source,
            },
        })
    })
    .await
}

/// Forwards "this interface came up" to the routing owner. Without the netlink group the
/// periodic repair still puts routes back, later: a warning, not a reason to stop.
async fn link_watch(routing: RoutingHandle) -> Result<(), AgentError> {
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    if let Err(e) = crate::kernel::watch_links_up(tx) {
        tracing::warn!(
            "not watching links ({e}): routes lost to a link flap come back at the next repair"
        );
        return std::future::pending().await;
    }
    while let Some(ifname) = rx.recv().await {
        routing.link_up(ifname).await?;
    }
    std::future::pending().await
}

/// Heartbeats in the registry, and release of empty blocks after their grace period. Datastore
/// errors are logged and retried: they must not stop the node's forwarding.
async fn housekeeping(
    agent: Arc<Agent>,
    registry: NodeRegistry,
    record: NodeRecord,
) -> Result<(), AgentError> {
    // On a datastore where node records leave without the agent's doing (an etcd lease that
    // expired while we were cut off, annotations someone removed from our Kubernetes Node), a
    // heartbeat that finds our record gone registers the node again: a node left out of every
    // mesh would soon have its blocks released under its running pods.
    let expires = agent.store.nodes_depart();
    let mut md5 = md5_counters();
    // Logged when it changes, not every beat: a bad record is one line, and so is its repair.
    let mut heartbeat = FailureLog::new("heartbeat");
    let mut empty_blocks = FailureLog::new("releasing empty blocks");
    let mut beats = 0u32;
    loop {
        tokio::time::sleep(HEARTBEAT_EVERY).await;
        beats = beats.wrapping_add(1);
        report_md5(&mut md5);
        let (reg, node) = (registry.clone(), agent.node.clone());
        let rec = record.clone();
        let beat = tokio::task::spawn_blocking(move || match reg.heartbeat(&node, now_secs()) {
            Err(StoreError::NotFound { .. }) if expires => {
                tracing::warn!("this node's registry record expired; registering it again");
                reg.register(&rec)
                    .and_then(|()| reg.heartbeat(&node, now_secs()))
            }
            r => r,
        })
        .await?;
        heartbeat.saw(beat.map_err(AgentError::from).as_ref().err());
        // Empty blocks wait minutes before they go: looking once a minute is soon enough, and
        // it spares a listing of the affinities on every beat.
        if !beats.is_multiple_of(RELEASE_EVERY_BEATS) {
            continue;
        }
        let (ipam, node) = (agent.ipam.clone(), agent.node.clone());
        let released = tokio::task::spawn_blocking(move || ipam.release_empty_blocks(&node))
            .await?
            .map_err(AgentError::from);
        empty_blocks.saw(released.as_ref().err());
        if let Ok(released) = released {
            if !released.is_empty() {
                tracing::info!("released empty blocks {released:?}");
                agent.local.nudge();
            }
        }
    }
}

#[cfg(test)]
mod failure_log_tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_per_state_not_per_try() {
        let mut log = FailureLog::new("heartbeat");
        let down = |why: &str| AgentError::Store(StoreError::Unavailable(why.into()));
        assert!(!log.saw(None), "working from the start: nothing to say");
        assert!(log.saw(Some(&down("no leader"))));
        assert!(
            !log.saw(Some(&down("a member cannot be reached"))),
            "still unavailable, whatever the cause reads"
        );
        let corrupt = AgentError::Store(StoreError::Corrupt {
            path: "Node/x".into(),
            reason: "bad".into(),
        });
        assert!(log.saw(Some(&corrupt)), "another failure is another state");
        assert!(!log.saw(Some(&corrupt)));
        assert!(log.saw(None), "and working again is said once");
        assert!(!log.saw(None));
    }
}
