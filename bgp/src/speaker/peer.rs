//! What the owner keeps per configured peer and per connection, and the status view of it.

use super::outbox::Outbox;
use super::{MessageCounts, PeerConfig, PeerStatus};
use crate::fsm::{ConnectionOrigin, Negotiated, State};
use crate::rib::PeerCounts;
use crate::session::{Backoff, ConnId, MessageCounters, SessionCommand};
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
    pub commands: Outbox<SessionCommand>,
}

#[derive(Debug)]
pub struct Peer {
    pub cfg: PeerConfig,
    pub generation: u64,
    pub counters: Arc<MessageCounters>,
    /// Live connections, oldest first.
    pub conns: Vec<ConnId>,
    /// The Established connection whose routes are in the RIB.
    pub session: Option<ConnId>,
    pub backoff: Backoff,
    /// The pending sleep-then-connect task.
    pub connecting: Option<JoinHandle<()>>,
    /// Attempt number, to ignore results of cancelled attempts.
    pub attempt: u64,
    pub state: State,
    pub since: SystemTime,
    pub established_at: Option<SystemTime>,
    pub info: String,
    pub last_error: Option<String>,
    pub flaps: u64,
    pub negotiated: Option<Negotiated>,
}

impl Peer {
    pub fn new(cfg: PeerConfig, generation: u64, connect_retry: Duration) -> Self {
        let state = if cfg.passive {
            State::Active
        } else {
            State::Connect
        };
        Peer {
            cfg,
            generation,
            counters: Arc::new(MessageCounters::default()),
            conns: Vec::new(),
            session: None,
            backoff: Backoff::new(connect_retry),
            connecting: None,
            attempt: 0,
            state,
            since: SystemTime::now(),
            established_at: None,
            info: state.as_str().to_string(),
            last_error: None,
            flaps: 0,
            negotiated: None,
        }
    }

    pub fn set_state(&mut self, state: State, info: impl Into<String>) {
        if state != self.state {
            self.state = state;
            self.since = SystemTime::now();
        }
        self.info = info.into();
    }

    pub fn cancel_connect(&mut self) {
        if let Some(t) = self.connecting.take() {
            t.abort();
        }
        self.attempt += 1;
    }

    pub fn status(&self, counts: PeerCounts) -> PeerStatus {
        let unix = |t: SystemTime| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        };
        let neg = self.negotiated.as_ref().filter(|_| self.session.is_some());
        PeerStatus {
            address: self.cfg.address,
            port: self.cfg.port,
            r#as: self.cfg.remote_as,
            label: self.cfg.label.clone(),
            state: self.state.as_str().to_string(),
            since_unix: unix(self.since),
            uptime_secs: self
                .established_at
                .map(|t| t.elapsed().map_or(0, |d| d.as_secs())),
            info: self.info.clone(),
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
