//! The speaker: the one owner of all BGP state, and the API the agent uses.
//!
//! ```text
//!                      SpeakerHandle (Clone)
//!   agent ──Request + oneshot reply (bounded 64)──────────────┐
//!                                                             ▼
//!   listener task ──Internal::Accepted (bounded 64)──► ┌─────────────┐ ──RouteBatch (bounded 2,
//!   connect / retry-timer tasks ──Internal (64)──────► │ owner task  │   permit)──► subscribers
//!                                                      │ Rib, peers  │
//!   session task ×N ──(ConnId, SessionEvent) (1024)──► │ (PeerFsm),  │
//!        ▲                                             │ connections │
//!        │                                             └─────────────┘
//!        ├──encoded UPDATE batches (bounded 4, permit)───────┘ │
//!        └──stop (watch: Cease / collision)────────────────────┘
//!        │
//!        └── writer task ×N ──► TCP (KEEPALIVEs on its own timer)
//! ```
//!
//! Nothing but the owner touches the RIB or the peer table, so there are no locks. The owner
//! never waits on a session or a subscriber: before it hands one a batch it takes a permit
//! (`try_reserve`); when there is none, the work stays where it coalesces (dirty prefixes of
//! the Adj-RIB-Out, or of the subscriber) and a waiter task wakes the owner with a permit once
//! the consumer has made room. No timer polls, and a slow consumer costs memory only for the
//! set of prefixes it has yet to see.

mod owner;
mod peer;
mod subscriber;
#[cfg(test)]
mod tests;

pub use crate::rib::{RouteEvent, RouteSource, RouteView};
pub use crate::session::MessageCounters;
pub use crate::session::Security;
pub use owner::encode_batch;
pub use subscriber::{RouteBatch, Subscription};

use crate::fsm::{DownReason, State};

use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// How long a peer that exceeded its prefix limit is left alone (BIRD's error wait is 60 s).
pub const LIMIT_IDLE_HOLD: Duration = Duration::from_secs(60);

/// Speaker-wide settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Where to accept connections; `None` = no listener (every peer must be active).
    pub listen: Option<SocketAddr>,
    /// Proposed hold time (RFC 4271 §10 suggests 90 s).
    pub hold_time: u16,
    /// First connect-retry interval; doubled on each failure up to 60 s, with jitter.
    pub connect_retry: Duration,
    /// RFC 9687: a session that cannot send for the larger of this and twice its hold time
    /// is closed (the peer stopped reading).
    pub send_hold_min: Duration,
    /// After a peer exceeded its maximum prefix count: how long before it is connected to,
    /// or accepted from, again.
    pub limit_idle_hold: Duration,
    /// Graceful restart (RFC 4724), offered to every peer; `None` offers nothing.
    pub graceful_restart: Option<GracefulRestartConfig>,
}

/// What this speaker offers of graceful restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartConfig {
    /// The Restart Time we advertise: how long peers keep our routes while we are away (RFC 4724
    /// §3; 12 bits, at most 4095 s).
    pub restart_time: u16,
    /// This start follows a restart that kept our forwarding state (the kernel still holds our
    /// routes): the Restart State and Forwarding State bits are set until
    /// [`SpeakerHandle::restart_complete`].
    pub restarting: bool,
}

/// After a restarting peer is back: how long its stale routes wait for its End-of-RIB
/// (FRR's stalepath-time).
pub const STALE_PATH_TIME: Duration = Duration::from_secs(360);

impl SpeakerConfig {
    pub fn new(local_as: u32, router_id: Ipv4Addr) -> Self {
        SpeakerConfig {
            local_as,
            router_id,
            listen: None,
            hold_time: crate::session::DEFAULT_HOLD_TIME,
            connect_retry: Duration::from_secs(5),
            send_hold_min: crate::session::SEND_HOLD_MIN,
            limit_idle_hold: LIMIT_IDLE_HOLD,
            graceful_restart: None,
        }
    }
}

/// One configured neighbour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub address: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    /// Only accept connections from the peer, never connect to it.
    pub passive: bool,
    /// Source address for our connections.
    pub local_address: Option<IpAddr>,
    /// Overrides the speaker's hold time for this peer.
    pub hold_time: Option<u16>,
    /// How the peer came to be configured, shown in status.
    pub kind: PeerKind,
    /// TCP MD5 signature key (RFC 2385) for every connection with this peer.
    pub password: Option<Password>,
    /// GTSM (RFC 5082): send with TTL 255 and accept only TTL 255 (a directly connected peer).
    pub ttl_security: bool,
    /// Most prefixes the peer may send; one more ends the session with Cease / Maximum Number
    /// of Prefixes Reached (RFC 4486) and an idle hold before reconnecting.
    pub max_prefixes: Option<u32>,
}

/// A TCP MD5 key: never printed, never serialised.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(std::sync::Arc<[u8]>);

impl Password {
    /// At most 80 bytes (the kernel's `TCP_MD5SIG_MAXKEYLEN`).
    pub fn new(key: &[u8]) -> Result<Password, SpeakerError> {
        if key.is_empty() || key.len() > sockopt::MAX_KEY_LEN {
            return Err(SpeakerError::InvalidConfig(format!(
                "a TCP MD5 password is 1 to {} bytes, not {}",
                sockopt::MAX_KEY_LEN,
                key.len()
            )));
        }
        Ok(Password(key.into()))
    }

    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// How a peer came to be configured: a member of the node-to-node mesh, or a neighbour the
/// operator named (a ToR, a route server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerKind {
    Mesh,
    Explicit,
}

impl PeerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PeerKind::Mesh => "mesh",
            PeerKind::Explicit => "explicit",
        }
    }
}

impl std::fmt::Display for PeerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a peer is not Established, or why its last session ended.
#[derive(Debug, Clone)]
pub enum PeerProblem {
    /// Our TCP connection attempt failed or timed out.
    Connect(std::sync::Arc<std::io::Error>),
    /// A connection ended (a NOTIFICATION either way, or TCP closed).
    Down(DownReason),
}

impl std::fmt::Display for PeerProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerProblem::Connect(e) => write!(f, "Connect: {e}"),
            PeerProblem::Down(r) => write!(f, "{r}"),
        }
    }
}

impl serde::Serialize for PeerProblem {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl PeerConfig {
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerConfig {
            address,
            port: crate::session::DEFAULT_PORT,
            remote_as,
            passive: false,
            local_address: None,
            hold_time: None,
            kind: PeerKind::Explicit,
            password: None,
            ttl_security: false,
            max_prefixes: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("peer {0} is already configured")]
    PeerExists(IpAddr),
    #[error("peer {0} is not configured")]
    NoSuchPeer(IpAddr),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("the speaker has stopped")]
    Stopped,
}

/// Messages by type, RFC 4271 §4 and RFC 2918.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct PeerStatus {
    pub address: IpAddr,
    pub port: u16,
    #[serde(rename = "as")]
    pub r#as: u32,
    pub kind: PeerKind,
    pub state: State,
    /// Last state change, seconds since the Unix epoch.
    pub since_unix: u64,
    pub uptime_secs: Option<u64>,
    /// Why the peer is in `state` when it got there by a failure (`None` on the way up).
    pub problem: Option<PeerProblem>,
    pub hold_time: Option<u16>,
    pub keepalive: Option<u16>,
    pub capabilities: Vec<String>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub messages_in: MessageCounts,
    pub messages_out: MessageCounts,
    pub last_error: Option<PeerProblem>,
    /// How many times an Established session went down.
    pub flaps: u64,
    /// The peer's Restart Time when both sides negotiated graceful restart.
    pub graceful_restart: Option<u16>,
    /// The current session has brought the peer's End-of-RIB (RFC 4724 §2).
    pub end_of_rib_received: bool,
    /// Routes kept from the peer's previous session while it restarts.
    pub stale_routes: u64,
}

impl PeerStatus {
    /// One line for an operator: "Established", "Active: Connect: Connection refused",
    /// "Idle: received NOTIFICATION: Cease / Administrative Shutdown (6/2)".
    pub fn info(&self) -> String {
        match (&self.problem, self.state) {
            (_, State::Established) | (None, _) => self.state.to_string(),
            (Some(p), state) => format!("{state}: {p}"),
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SpeakerStatus {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub peers: Vec<PeerStatus>,
    /// Prefixes whose best route came from a peer.
    pub peer_best_routes: u64,
    /// Connections closed at once because they came from neither a configured peer nor a mesh
    /// node (or from a peer held off after its prefix limit).
    pub rejected_connections: u64,
}

/// What the handle asks the owner task.
#[derive(Debug)]
enum Request {
    AddPeer(PeerConfig, oneshot::Sender<Result<(), SpeakerError>>),
    RemovePeer(IpAddr, oneshot::Sender<Result<(), SpeakerError>>),
    Announce(Ipv4Net, Option<Ipv4Addr>, oneshot::Sender<()>),
    Withdraw(Ipv4Net, oneshot::Sender<()>),
    Subscribe(oneshot::Sender<Subscription>),
    /// Send the subscriber every current best route again, then a batch marked `synced`.
    Resync(u64, oneshot::Sender<u64>),
    Status(oneshot::Sender<SpeakerStatus>),
    Routes(oneshot::Sender<Vec<RouteView>>),
    /// Stop the speaker; `graceful`: close sessions that negotiated graceful restart without a
    /// NOTIFICATION, so their peers keep our routes.
    Shutdown(bool, oneshot::Sender<()>),
    /// The restart is over: OPENs from now on carry no Restart State bit.
    RestartComplete(oneshot::Sender<()>),
}

/// Starts speakers.
pub struct Speaker;

impl Speaker {
    /// Binds the listener (if any) and starts the owner task.
    pub async fn start(cfg: SpeakerConfig) -> Result<SpeakerHandle, SpeakerError> {
        if cfg.hold_time == 1 || cfg.hold_time == 2 {
            // RFC 4271 §4.2: the hold time is 0 or at least 3 seconds.
            return Err(SpeakerError::InvalidConfig(format!(
                "hold time {} (must be 0 or >= 3)",
                cfg.hold_time
            )));
        }
        let listener = match cfg.listen {
            Some(addr) => {
                Some(owner::bind(addr).map_err(|source| SpeakerError::Listen { addr, source })?)
            }
            None => None,
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(owner::Owner::new(cfg, listener).run(rx));
        Ok(SpeakerHandle { tx })
    }
}

/// The agent's handle on a running speaker.
#[derive(Debug, Clone)]
pub struct SpeakerHandle {
    tx: mpsc::Sender<Request>,
}

impl SpeakerHandle {
    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, SpeakerError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| SpeakerError::Stopped)?;
        rx.await.map_err(|_| SpeakerError::Stopped)
    }

    pub async fn add_peer(&self, p: PeerConfig) -> Result<(), SpeakerError> {
        self.ask(|r| Request::AddPeer(p, r)).await?
    }

    /// Sends Cease/Peer De-configured and withdraws the peer's routes.
    pub async fn remove_peer(&self, address: IpAddr) -> Result<(), SpeakerError> {
        self.ask(|r| Request::RemovePeer(address, r)).await?
    }

    /// Originates `prefix`; `next_hop` `None` means ourselves (next-hop-self on each session).
    pub async fn announce(
        &self,
        prefix: Ipv4Net,
        next_hop: Option<Ipv4Addr>,
    ) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Announce(prefix, next_hop, r)).await
    }

    pub async fn withdraw(&self, prefix: Ipv4Net) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Withdraw(prefix, r)).await
    }

    /// Current best routes first (as Best events; the batch that completes them is marked
    /// `synced`), then every change. Changes the subscriber has not taken yet coalesce: it
    /// always sees the current best route of a prefix, possibly skipping intermediate ones.
    pub async fn subscribe(&self) -> Result<Subscription, SpeakerError> {
        self.ask(Request::Subscribe).await
    }

    /// Re-sends every current best route to `subscription` (to check the kernel against
    /// them); the batch that completes them is marked `synced` with the returned number.
    pub async fn resync(&self, subscription: &Subscription) -> Result<u64, SpeakerError> {
        let id = subscription.id();
        self.ask(|r| Request::Resync(id, r)).await
    }

    /// Resolves when the speaker's owner task has ended (for a supervisor).
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    pub async fn status(&self) -> Result<SpeakerStatus, SpeakerError> {
        self.ask(Request::Status).await
    }

    /// Every path per prefix, best marked.
    pub async fn routes(&self) -> Result<Vec<RouteView>, SpeakerError> {
        self.ask(Request::Routes).await
    }

    /// Cease/Administrative Shutdown to all peers, then the speaker stops.
    pub async fn shutdown(&self) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Shutdown(false, r)).await
    }

    /// Stops for a restart (RFC 4724 §4.1): peers that negotiated graceful restart see the
    /// connection close without a NOTIFICATION and keep our routes for our Restart Time; the
    /// others get Cease/Administrative Shutdown.
    pub async fn shutdown_graceful(&self) -> Result<(), SpeakerError> {
        self.ask(|r| Request::Shutdown(true, r)).await
    }

    /// The restart is over (the agent has re-learned and swept): new OPENs carry the Restart
    /// State bit no more.
    pub async fn restart_complete(&self) -> Result<(), SpeakerError> {
        self.ask(Request::RestartComplete).await
    }
}
