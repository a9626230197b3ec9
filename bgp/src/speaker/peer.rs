//! What the owner keeps per configured peer and per connection, and the status view of it.

use super::{MessageCounts, PeerConfig, PeerProblem, PeerStatus};
use crate::fsm::{ConnectionOrigin, Negotiated, PeerFsm, State};
use crate::rib::PeerCounts;
use crate::session::{Backoff, ConnId, MessageCounters, SessionControl};
use crate::wire::MessageType;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::task::JoinHandle;

/// One TCP connection of a peer (a peer has two during a collision, RFC 4271 §6.8).
#[derive(Debug)]
pub struct Connection {
    pub peer: IpAddr,
    /// The peer entry this connection belongs to (a re-added peer gets a new generation).
    pub generation: u64,
    pub origin: ConnectionOrigin,
    pub state: State,
    /// Set once the peer's OPEN was accepted.
    pub negotiated: Option<Negotiated>,
    pub control: SessionControl,
    /// A waiter task holds a clone of the UPDATE sender and will bring a permit.
    pub waiting: bool,
    /// A stop was requested: send nothing more.
    pub stopping: bool,
}

#[derive(Debug)]
pub struct Peer {
    pub cfg: PeerConfig,
    pub generation: u64,
    pub counters: Arc<MessageCounters>,
    /// Idle / Connect / Active and the ConnectRetry timer.
    pub fsm: PeerFsm,
    /// Live connections, oldest first.
    pub conns: Vec<ConnId>,
    /// The Established connection whose routes are in the RIB.
    pub session: Option<ConnId>,
    /// The pending connect attempt and retry timer tasks.
    pub connecting: Option<JoinHandle<()>>,
    pub retry_timer: Option<JoinHandle<()>>,
    /// Numbers the timer tasks, so a late expiry of a replaced timer is ignored.
    pub timer_id: u64,
    /// The state last reported, and since when.
    pub shown: State,
    pub since: SystemTime,
    pub established_at: Option<SystemTime>,
    pub problem: Option<PeerProblem>,
    pub last_error: Option<PeerProblem>,
    pub flaps: u64,
    pub negotiated: Option<Negotiated>,
    /// After the prefix limit was exceeded: neither connect nor accept before this.
    pub idle_until: Option<tokio::time::Instant>,
    /// The current session has brought the peer's End-of-RIB.
    pub eor_received: bool,
    /// Graceful restart, helper side: the timer for the peer's restart (waiting for it to come
    /// back) or for its End-of-RIB (its stale routes go when it fires).
    pub gr_timer: Option<JoinHandle<()>>,
}

impl Peer {
    pub fn new(cfg: PeerConfig, generation: u64, connect_retry: Duration) -> Self {
        let fsm = PeerFsm::new(cfg.passive, Backoff::new(connect_retry));
        Peer {
            cfg,
            generation,
            counters: Arc::new(MessageCounters::default()),
            fsm,
            conns: Vec::new(),
            session: None,
            connecting: None,
            retry_timer: None,
            timer_id: 0,
            shown: State::Idle,
            since: SystemTime::now(),
            established_at: None,
            problem: None,
            last_error: None,
            flaps: 0,
            negotiated: None,
            idle_until: None,
            eor_received: false,
            gr_timer: None,
        }
    }

    /// Records a change of the reported state (`since` moves only when it changes).
    pub fn show(&mut self, state: State) {
        if state != self.shown {
            self.shown = state;
            self.since = SystemTime::now();
        }
    }

    pub fn stop_tasks(&mut self) {
        if let Some(t) = self.gr_timer.take() {
            t.abort();
        }
        if let Some(t) = self.connecting.take() {
            t.abort();
        }
        if let Some(t) = self.retry_timer.take() {
            t.abort();
        }
    }

    pub fn status(&self, counts: PeerCounts, stale_routes: u64) -> PeerStatus {
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let neg = self.negotiated.as_ref().filter(|_| self.session.is_some());
        PeerStatus {
            address: self.cfg.address,
            port: self.cfg.port,
            r#as: self.cfg.remote_as,
            kind: self.cfg.kind,
            state: self.shown,
            since_unix: unix(self.since),
            uptime_secs: self
                .established_at
                .map(|t| t.elapsed().map_or(0, |d| d.as_secs())),
            problem: self.problem.clone(),
            hold_time: neg.map(|n| n.hold_time),
            keepalive: neg.map(|n| n.keepalive),
            capabilities: neg.map_or_else(Vec::new, |n| n.capabilities.clone()),
            prefixes_received: counts.received,
            prefixes_accepted: counts.accepted,
            prefixes_advertised: counts.advertised,
            messages_in: counts_of(&self.counters, MessageCounters::received),
            messages_out: counts_of(&self.counters, MessageCounters::sent),
            last_error: self.last_error.clone(),
            flaps: self.flaps,
            graceful_restart: neg
                .and_then(|n| n.graceful_restart.as_ref())
                .map(|g| g.restart_time),
            end_of_rib_received: self.eor_received,
            stale_routes,
        }
    }
}

fn counts_of(c: &MessageCounters, get: fn(&MessageCounters, MessageType) -> u64) -> MessageCounts {
    MessageCounts {
        open: get(c, MessageType::Open),
        update: get(c, MessageType::Update),
        notification: get(c, MessageType::Notification),
        keepalive: get(c, MessageType::Keepalive),
        route_refresh: get(c, MessageType::RouteRefresh),
    }
}
