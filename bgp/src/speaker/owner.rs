//! The owner task: the only code that touches the RIB, the peers and the connections.

use super::peer::{Connection, Peer};
use super::subscriber::{self, Subscriber, Subscription};
use super::{PeerConfig, PeerProblem, Request, SpeakerConfig, SpeakerError, SpeakerStatus};
use crate::fsm::{
    collision_survivor, connections_to_dump, ConnectionOrigin, OpenedConnection, PeerAction,
    PeerEvent, State,
};
use crate::rib::{OutBatch, PeerInfo, Rib, RouteEvent};
use crate::session::{self, session_channels, ConnId, SessionEvent, SessionParams, Stop};
use crate::wire::{encode_message, encode_updates, error_code, Message, PathAttributes, Update};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{self, error::TrySendError, OwnedPermit};
use tokio::task::JoinSet;

/// Events handled before the Adj-RIB-Outs are flushed (so UPDATEs are packed across events).
const EVENT_BATCH: usize = 256;
/// Prefixes encoded into one batch of UPDATEs for a session: small enough that a slow peer
/// leaves most of a table dirty (where changes coalesce), large enough to pack well.
const SESSION_BATCH: usize = 4096;
/// How long shutdown waits for sessions to write their Cease.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds the BGP listener (SO_REUSEADDR so a restarted agent can bind while old connections
/// linger in TIME_WAIT).
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    // The SYN-ACK of an accepted connection leaves with the listener's TTL, before we know the
    // peer: 255, so a GTSM peer (RFC 5082) that only accepts TTL 255 completes the handshake.
    // A TTL of 255 does no harm to the others.
    if addr.is_ipv4() {
        sockopt::set_ttl(&socket, session::GTSM_TTL)?;
    }
    socket.bind(addr)?;
    socket.listen(128)
}

/// Results of the listener, of connect attempts and of retry timers.
#[derive(Debug)]
enum Internal {
    Accepted(TcpStream, SocketAddr),
    Connected {
        peer: IpAddr,
        generation: u64,
        result: io::Result<TcpStream>,
    },
    RetryTimer {
        peer: IpAddr,
        generation: u64,
        timer: u64,
    },
    /// Graceful restart, helper side: the peer did not come back, or did not finish, in time.
    GrTimer {
        peer: IpAddr,
        generation: u64,
    },
}

/// A consumer made room: the permit to send it one batch.
enum Wake {
    Session(ConnId, Option<OwnedPermit<Vec<Bytes>>>),
    Subscriber(u64, Option<OwnedPermit<subscriber::RouteBatch>>),
}

pub struct Owner {
    cfg: SpeakerConfig,
    rib: Rib,
    /// Boxed: a map's table holds up to twice as many slots as entries, and a `Peer` is about
    /// 450 bytes, so 249 of them inline cost 236 KB; boxed, 124 KB.
    peers: HashMap<IpAddr, Box<Peer>>,
    conns: HashMap<ConnId, Connection>,
    subscribers: HashMap<u64, Subscriber>,
    next_subscriber: u64,
    next_conn: ConnId,
    next_generation: u64,
    /// Shared with the accept task: the owner keeps the per-peer MD5 keys on it.
    listener: Option<Arc<TcpListener>>,
    listener_task: Option<tokio::task::JoinHandle<()>>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    session_tx: mpsc::Sender<(ConnId, SessionEvent)>,
    session_rx: mpsc::Receiver<(ConnId, SessionEvent)>,
    /// Tasks waiting for room in a session's or a subscriber's channel.
    waits: JoinSet<Wake>,
    /// We restarted with our forwarding state kept: OPENs carry R and F (RFC 4724 §3).
    restarting: bool,
    rejected: u64,
}

// One value per loop turn, moved straight into its handler: boxing would only allocate.
#[allow(clippy::large_enum_variant)]
enum Input {
    Request(Request),
    Internal(Internal),
    Session(ConnId, SessionEvent),
    Wake(Wake),
    Stop,
}

impl Owner {
    pub fn new(cfg: SpeakerConfig, listener: Option<TcpListener>) -> Self {
        let restarting = cfg.graceful_restart.is_some_and(|g| g.restarting);
        let (internal_tx, internal_rx) = mpsc::channel(64);
        let (session_tx, session_rx) = mpsc::channel(1024);
        Owner {
            rib: Rib::new(cfg.local_as, cfg.router_id),
            cfg,
            peers: HashMap::new(),
            conns: HashMap::new(),
            subscribers: HashMap::new(),
            next_subscriber: 1,
            next_conn: 1,
            next_generation: 1,
            listener: listener.map(Arc::new),
            listener_task: None,
            internal_tx,
            internal_rx,
            session_tx,
            session_rx,
            waits: JoinSet::new(),
            restarting,
            rejected: 0,
        }
    }

    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        if let Some(listener) = self.listener.clone() {
            let tx = self.internal_tx.clone();
            self.listener_task = Some(tokio::spawn(accept_loop(listener, tx)));
        }
        loop {
            let input = tokio::select! {
                r = requests.recv() => r.map_or(Input::Stop, Input::Request),
                Some(i) = self.internal_rx.recv() => Input::Internal(i),
                Some((c, e)) = self.session_rx.recv() => Input::Session(c, e),
                Some(Ok(w)) = self.waits.join_next(), if !self.waits.is_empty() => Input::Wake(w),
            };
            let mut stop = None;
            match input {
                Input::Stop => break,
                Input::Request(Request::Shutdown(graceful, reply)) => {
                    stop = Some((graceful, reply))
                }
                Input::Request(r) => {
                    self.handle_request(r);
                    // Take what else is queued before flushing, so a burst of announcements
                    // is packed into few UPDATEs.
                    for _ in 0..EVENT_BATCH {
                        match requests.try_recv() {
                            Ok(Request::Shutdown(graceful, reply)) => {
                                stop = Some((graceful, reply));
                                break;
                            }
                            Ok(r) => self.handle_request(r),
                            Err(_) => break,
                        }
                    }
                }
                Input::Internal(i) => self.handle_internal(i),
                Input::Session(c, e) => {
                    self.handle_session(c, e);
                    // Drain what is already queued so UPDATEs get packed across events.
                    for _ in 0..EVENT_BATCH {
                        match self.session_rx.try_recv() {
                            Ok((c, e)) => self.handle_session(c, e),
                            Err(_) => break,
                        }
                    }
                }
                Input::Wake(w) => self.handle_wake(w),
            }
            self.flush_adj_rib_out();
            self.flush_subscribers();
            if let Some((graceful, reply)) = stop {
                self.shutdown(graceful).await;
                let _ = reply.send(());
                return;
            }
        }
        self.shutdown(false).await;
    }

    /// Marks the prefixes of `events` dirty for every subscriber.
    fn publish(&mut self, events: Vec<RouteEvent>) {
        for e in &events {
            for s in self.subscribers.values_mut() {
                s.mark(e.prefix(), &self.rib);
            }
        }
    }

    // ---- Requests from the handle ----

    fn handle_request(&mut self, r: Request) {
        match r {
            Request::AddPeer(cfg, reply) => {
                let _ = reply.send(self.add_peer(cfg));
            }
            Request::RemovePeer(addr, reply) => {
                let _ = reply.send(self.remove_peer(addr));
            }
            Request::Announce(prefix, nh, reply) => {
                let ev = self.rib.originate(prefix, nh);
                self.publish(ev);
                let _ = reply.send(());
            }
            Request::Withdraw(prefix, reply) => {
                let ev = self.rib.withdraw_local(prefix);
                self.publish(ev);
                let _ = reply.send(());
            }
            Request::Subscribe(reply) => {
                let (tx, rx) = mpsc::channel(subscriber::CHANNEL);
                let id = self.next_subscriber;
                self.next_subscriber += 1;
                self.subscribers.insert(id, Subscriber::new(tx, &self.rib));
                let _ = reply.send(Subscription::new(id, rx));
            }
            Request::Resync(id, reply) => {
                if let Some(s) = self.subscribers.get_mut(&id) {
                    let _ = reply.send(s.resync(&self.rib));
                }
            }
            Request::Status(reply) => {
                let mut peers: Vec<_> = self
                    .peers
                    .values()
                    .map(|p| {
                        p.status(
                            self.rib.counts(p.cfg.address),
                            self.rib.stale_count(p.cfg.address),
                        )
                    })
                    .collect();
                peers.sort_by_key(|p| p.address);
                let _ = reply.send(SpeakerStatus {
                    local_as: self.cfg.local_as,
                    router_id: self.cfg.router_id,
                    peers,
                    peer_best_routes: self.rib.peer_best_count() as u64,
                    rejected_connections: self.rejected,
                });
            }
            Request::Routes(reply) => {
                let _ = reply.send(self.rib.routes());
            }
            Request::Shutdown(_, reply) => {
                let _ = reply.send(());
            }
            Request::RestartComplete(reply) => {
                if self.restarting {
                    tracing::info!(
                        "graceful restart complete: OPENs no longer set the Restart State bit"
                    );
                }
                self.restarting = false;
                let _ = reply.send(());
            }
        }
    }

    fn add_peer(&mut self, cfg: PeerConfig) -> Result<(), SpeakerError> {
        let address = canonical(cfg.address);
        if self.peers.contains_key(&address) {
            return Err(SpeakerError::PeerExists(address));
        }
        if matches!(cfg.hold_time, Some(1 | 2)) {
            return Err(SpeakerError::InvalidConfig(format!(
                "peer {address}: hold time {:?} (must be 0 or >= 3)",
                cfg.hold_time
            )));
        }
        // The listener signs and checks this peer's segments from now on (RFC 2385): a SYN
        // without the right signature is dropped by the kernel before we ever see it.
        if let (Some(l), Some(p)) = (&self.listener, &cfg.password) {
            sockopt::set_tcp_md5(&**l, address, Some(p.key())).map_err(|e| {
                SpeakerError::InvalidConfig(format!("TCP MD5 for peer {address}: {e}"))
            })?;
        }
        let generation = self.next_generation;
        self.next_generation += 1;
        let cfg = PeerConfig { address, ..cfg };
        self.peers.insert(
            address,
            Box::new(Peer::new(cfg, generation, self.cfg.connect_retry)),
        );
        self.peer_event(address, PeerEvent::ManualStart);
        Ok(())
    }

    fn remove_peer(&mut self, address: IpAddr) -> Result<(), SpeakerError> {
        let address = canonical(address);
        let Some(mut peer) = self.peers.remove(&address) else {
            return Err(SpeakerError::NoSuchPeer(address));
        };
        peer.fsm.handle(PeerEvent::ManualStop);
        peer.stop_tasks();
        if let (Some(l), Some(_)) = (&self.listener, &peer.cfg.password) {
            let _ = sockopt::set_tcp_md5(&**l, address, None);
        }
        // RFC 4486 §4: Cease / Peer De-configured on every connection of the peer.
        let cease = session::cease(error_code::cease::PEER_DECONFIGURED);
        for id in &peer.conns {
            if let Some(c) = self.conns.get_mut(id) {
                c.stopping = true;
                c.control.stop(Stop::Cease(cease.clone()));
            }
        }
        let ev = self.rib.peer_down(address);
        self.publish(ev);
        Ok(())
    }

    // ---- The peer's connection management (PeerFsm) ----

    /// Feeds the peer's [`crate::fsm::PeerFsm`] and carries out what it asks.
    fn peer_event(&mut self, address: IpAddr, event: PeerEvent) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        for action in peer.fsm.handle(event) {
            match action {
                PeerAction::Connect => {
                    let target = SocketAddr::new(address, peer.cfg.port);
                    let local = peer.cfg.local_address;
                    let timeout = self.cfg.connect_retry.max(Duration::from_secs(3));
                    let (tx, generation) = (self.internal_tx.clone(), peer.generation);
                    let security = security_of(&peer.cfg);
                    peer.connecting = Some(tokio::spawn(async move {
                        let result = session::connect(target, local, timeout, &security).await;
                        let _ = tx
                            .send(Internal::Connected {
                                peer: address,
                                generation,
                                result,
                            })
                            .await;
                    }));
                }
                PeerAction::StartConnectRetryTimer(delay) => {
                    if let Some(t) = peer.retry_timer.take() {
                        t.abort();
                    }
                    peer.timer_id += 1;
                    let (tx, generation, timer) =
                        (self.internal_tx.clone(), peer.generation, peer.timer_id);
                    peer.retry_timer = Some(tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        let _ = tx
                            .send(Internal::RetryTimer {
                                peer: address,
                                generation,
                                timer,
                            })
                            .await;
                    }));
                }
                PeerAction::StopConnectRetryTimer => {
                    if let Some(t) = peer.retry_timer.take() {
                        t.abort();
                    }
                    peer.timer_id += 1;
                }
            }
        }
        self.refresh_shown(address);
    }

    /// The state to report: Established with a session, else the most advanced connection,
    /// else the peer machine's Idle / Connect / Active.
    fn refresh_shown(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let shown = if peer.session.is_some() {
            State::Established
        } else {
            let conn_state = peer
                .conns
                .iter()
                .filter_map(|id| self.conns.get(id))
                .map(|c| c.state)
                .filter(|s| *s != State::Idle)
                .max();
            conn_state
                .or(peer.fsm.state().as_state())
                .unwrap_or(State::Idle)
        };
        if shown == State::Established {
            peer.problem = None;
        }
        peer.show(shown);
    }

    fn handle_internal(&mut self, i: Internal) {
        match i {
            Internal::Accepted(stream, remote) => {
                let address = canonical(remote.ip());
                let idle = self.peers.get(&address).and_then(|p| p.idle_until);
                if idle.is_some_and(|t| tokio::time::Instant::now() < t) {
                    // Held off after exceeding its prefix limit (RFC 4486 §4).
                    tracing::info!(
                        "rejecting BGP connection from {remote}: idle hold after its prefix limit"
                    );
                    self.rejected += 1;
                    tokio::spawn(reject(stream));
                } else if self.peers.contains_key(&address) {
                    self.start_connection(address, stream, ConnectionOrigin::Remote);
                    self.peer_event(address, PeerEvent::TcpConnectionConfirmed);
                } else {
                    // Only configured peers may connect (RFC 4486 §4, Connection Rejected).
                    tracing::info!("rejecting BGP connection from unconfigured {remote}");
                    self.rejected += 1;
                    tokio::spawn(reject(stream));
                }
            }
            Internal::Connected {
                peer: address,
                generation,
                result,
            } => {
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if peer.generation != generation {
                    return;
                }
                peer.connecting = None;
                match result {
                    Ok(stream) => {
                        // Established meanwhile through the peer's connection: not needed.
                        if peer.session.is_none() {
                            self.start_connection(address, stream, ConnectionOrigin::Local);
                        }
                        self.peer_event(address, PeerEvent::TcpCrAcked);
                    }
                    Err(e) => {
                        if peer.cfg.password.is_some() && e.kind() == io::ErrorKind::TimedOut {
                            tracing::warn!(peer = %address, "connect timed out with TCP MD5 on: a wrong or missing password on either side looks exactly like this (the kernel drops unsigned or badly signed segments; see TCPMD5* in /proc/net/netstat)");
                        }
                        let problem = PeerProblem::Connect(Arc::new(e));
                        peer.last_error = Some(problem.clone());
                        if peer.conns.is_empty() {
                            peer.problem = Some(problem);
                        }
                        self.peer_event(address, PeerEvent::TcpConnectionFails);
                    }
                }
            }
            Internal::GrTimer {
                peer: address,
                generation,
            } => {
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if peer.generation != generation {
                    return;
                }
                peer.gr_timer = None;
                let stale = self.rib.stale_count(address);
                if stale == 0 {
                    return;
                }
                let ev = if peer.session.is_some() {
                    tracing::warn!(peer = %address, "no End-of-RIB in time: {stale} stale routes go");
                    self.rib.sweep_stale(address)
                } else {
                    tracing::warn!(peer = %address, "the peer did not come back within its restart time: its {stale} routes go");
                    self.rib.peer_down(address)
                };
                self.publish(ev);
            }
            Internal::RetryTimer {
                peer: address,
                generation,
                timer,
            } => {
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if peer.generation != generation || peer.timer_id != timer {
                    return;
                }
                peer.retry_timer = None;
                self.peer_event(address, PeerEvent::ConnectRetryTimerExpires);
            }
        }
    }

    fn start_connection(&mut self, address: IpAddr, stream: TcpStream, origin: ConnectionOrigin) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if let Err(e) = session::prepare_accepted(&stream, &security_of(&peer.cfg)) {
            tracing::warn!(peer = %address, "cannot set the connection's socket options: {e}");
            return;
        }
        let local_addr = stream.local_addr().ok().map(|a| canonical(a.ip()));
        let conn = self.next_conn;
        self.next_conn += 1;
        let hold = peer.cfg.hold_time.unwrap_or(self.cfg.hold_time);
        let mut fsm = crate::fsm::FsmConfig::new(
            self.cfg.local_as,
            peer.cfg.remote_as,
            self.cfg.router_id,
            hold,
        );
        if let Some(gr) = self.cfg.graceful_restart {
            fsm.capabilities
                .push(gr_capability(gr.restart_time, self.restarting));
        }
        let params = SessionParams {
            conn,
            fsm,
            origin,
            local_addr,
            counters: peer.counters.clone(),
            send_hold_min: self.cfg.send_hold_min,
        };
        let (control, inputs) = session_channels();
        tokio::spawn(session::run_session(
            stream,
            params,
            self.session_tx.clone(),
            inputs,
        ));
        peer.conns.push(conn);
        self.conns.insert(
            conn,
            Connection {
                peer: address,
                generation: peer.generation,
                origin,
                state: State::Idle,
                negotiated: None,
                control,
                waiting: false,
                stopping: false,
            },
        );
    }

    // ---- Session events ----

    fn handle_session(&mut self, id: ConnId, event: SessionEvent) {
        let Some(conn) = self.conns.get_mut(&id) else {
            return;
        };
        let address = conn.peer;
        let live = self
            .peers
            .get(&address)
            .is_some_and(|p| p.generation == conn.generation);
        if let SessionEvent::Closed(reason) = event {
            self.conns.remove(&id);
            if live {
                self.connection_closed(address, id, reason);
            }
            return;
        }
        if !live {
            return; // The peer was removed; this connection is being ceased.
        }
        match event {
            SessionEvent::StateChanged(state) => {
                conn.state = state;
                self.refresh_shown(address);
            }
            SessionEvent::OpenReceived(negotiated) => {
                conn.negotiated = Some(negotiated);
                self.resolve_collision(address);
            }
            SessionEvent::Established {
                negotiated,
                local_addr,
            } => {
                conn.negotiated = Some(negotiated.clone());
                conn.state = State::Established;
                if self.resolve_collision(address).contains(&id) {
                    return;
                }
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if let Some(old) = peer.session.replace(id) {
                    // Cannot normally happen: collision resolution keeps one session.
                    if let Some(c) = self.conns.get_mut(&old) {
                        c.stopping = true;
                        c.control.stop(Stop::CollisionDump);
                    }
                }
                peer.negotiated = Some(negotiated.clone());
                peer.established_at = Some(SystemTime::now());
                let info = PeerInfo {
                    address,
                    router_id: negotiated.remote_id,
                    remote_as: negotiated.remote_as,
                    peer_type: negotiated.context.peer_type,
                };
                let next_hop_self = match local_addr {
                    Some(IpAddr::V4(a)) => a,
                    _ => self.cfg.router_id,
                };
                // RFC 4724 §4.2: the stale routes of a restarting peer stay until its End-of-RIB
                // if it kept its forwarding state (the F bit for IPv4 unicast); else they go now.
                let keep_stale = ipv4_gr(&negotiated).is_some_and(|f| f.forwarding_preserved);
                let stale = self.rib.stale_count(address);
                if let Some(t) = peer.gr_timer.take() {
                    t.abort();
                }
                peer.eor_received = false;
                if stale > 0 {
                    if keep_stale {
                        tracing::info!(peer = %address, "the peer is back from its restart: its {stale} stale routes wait for its End-of-RIB");
                        let (tx, generation) = (self.internal_tx.clone(), peer.generation);
                        peer.gr_timer = Some(tokio::spawn(async move {
                            tokio::time::sleep(super::STALE_PATH_TIME).await;
                            let _ = tx
                                .send(Internal::GrTimer {
                                    peer: address,
                                    generation,
                                })
                                .await;
                        }));
                    } else {
                        tracing::info!(peer = %address, "the peer is back without its forwarding state: its {stale} stale routes go");
                    }
                }
                self.peer_event(address, PeerEvent::SessionEstablished);
                let ev = self.rib.peer_up(info, next_hop_self, keep_stale);
                self.publish(ev);
            }
            SessionEvent::Update(update) => {
                if self
                    .peers
                    .get(&address)
                    .is_some_and(|p| p.session == Some(id))
                {
                    let ev = self.rib.apply_update(address, &update);
                    self.publish(ev);
                    self.enforce_prefix_limit(address, id);
                    if update.is_end_of_rib() {
                        self.end_of_rib(address);
                    }
                }
            }
            SessionEvent::RefreshRequested => {
                if self
                    .peers
                    .get(&address)
                    .is_some_and(|p| p.session == Some(id))
                {
                    self.rib.refresh(address);
                }
            }
            SessionEvent::Closed(_) => {}
        }
    }

    /// The peer's End-of-RIB (RFC 4724 §2): its initial table is complete; what it kept stale
    /// from its previous session and did not send again goes.
    fn end_of_rib(&mut self, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.eor_received = true;
        if let Some(t) = peer.gr_timer.take() {
            t.abort();
        }
        let stale = self.rib.stale_count(address);
        if stale > 0 {
            tracing::info!(peer = %address, "End-of-RIB: {stale} routes not refreshed since its restart go");
            let ev = self.rib.sweep_stale(address);
            self.publish(ev);
        }
    }

    /// One prefix over the peer's limit ends the session with Cease / Maximum Number of
    /// Prefixes Reached, whose data is AFI, SAFI and the limit (RFC 4486 §4), and holds the
    /// peer off for a while.
    fn enforce_prefix_limit(&mut self, address: IpAddr, id: ConnId) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(max) = peer.cfg.max_prefixes else {
            return;
        };
        let received = self.rib.counts(address).received;
        let holding = peer
            .idle_until
            .is_some_and(|t| t > tokio::time::Instant::now());
        if received <= u64::from(max) || holding {
            return;
        }
        tracing::warn!(peer = %address, "{received} prefixes received, more than its limit of {max}: closing the session");
        let mut data = Vec::with_capacity(7);
        data.extend_from_slice(&crate::wire::Afi::IPV4.0.to_be_bytes());
        data.push(crate::wire::Safi::UNICAST.0);
        data.extend_from_slice(&max.to_be_bytes());
        let n = crate::wire::Notification::new(
            error_code::CEASE,
            error_code::cease::MAXIMUM_PREFIXES_REACHED,
            data,
        );
        peer.idle_until = Some(tokio::time::Instant::now() + self.cfg.limit_idle_hold);
        if let Some(c) = self.conns.get_mut(&id) {
            c.stopping = true;
            c.control.stop(Stop::Cease(n));
        }
    }

    /// RFC 4271 §6.8 among the peer's connections that received an OPEN; returns the
    /// connections told to close.
    fn resolve_collision(&mut self, address: IpAddr) -> Vec<ConnId> {
        let Some(peer) = self.peers.get(&address) else {
            return Vec::new();
        };
        let opened: Vec<OpenedConnection<ConnId>> = peer
            .conns
            .iter()
            .filter_map(|id| self.conns.get(id).map(|c| (id, c)))
            .filter(|(_, c)| c.negotiated.is_some())
            .map(|(id, c)| OpenedConnection {
                key: *id,
                origin: c.origin,
            })
            .collect();
        let Some(remote) = opened
            .last()
            .and_then(|c| self.conns.get(&c.key))
            .and_then(|c| c.negotiated.as_ref())
        else {
            return Vec::new();
        };
        let (remote_id, remote_as) = (remote.remote_id, remote.remote_as);
        let dump = connections_to_dump(
            self.cfg.router_id,
            remote_id,
            self.cfg.local_as,
            remote_as,
            &opened,
        );
        if !dump.is_empty() {
            let keep =
                collision_survivor(self.cfg.router_id, remote_id, self.cfg.local_as, remote_as);
            tracing::info!(peer = %address, "connection collision: keeping the {keep:?}ly opened one");
        }
        for id in &dump {
            if let Some(c) = self.conns.get_mut(id) {
                // Forget its OPEN so it is not considered again while it closes.
                c.negotiated = None;
                c.stopping = true;
                c.control.stop(Stop::CollisionDump);
            }
        }
        dump
    }

    fn connection_closed(&mut self, address: IpAddr, id: ConnId, reason: crate::fsm::DownReason) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.conns.retain(|c| *c != id);
        let was_session = peer.session == Some(id);
        // RFC 4724 §4.2: a session that negotiated graceful restart and ended without a
        // NOTIFICATION (the peer restarts, or died) leaves its routes, stale, for the peer's
        // Restart Time.
        let restart_time = peer
            .negotiated
            .as_ref()
            .and_then(ipv4_gr_restart_time)
            .filter(|t| *t > 0 && reason == crate::fsm::DownReason::TcpFailed);
        if was_session {
            peer.session = None;
            peer.negotiated = None;
            peer.established_at = None;
            peer.eor_received = false;
            peer.flaps += 1;
        }
        // A connection closed by collision resolution is not the peer's fault.
        let clean = reason.is_collision();
        if !clean {
            let problem = PeerProblem::Down(reason);
            peer.last_error = Some(problem.clone());
            if peer.session.is_none() && peer.conns.is_empty() {
                peer.problem = Some(problem);
            }
        }
        if peer.conns.is_empty() {
            let now = tokio::time::Instant::now();
            let idle_hold = peer.idle_until.filter(|t| *t > now).map(|t| t - now);
            self.peer_event(address, PeerEvent::ConnectionsClosed { clean, idle_hold });
        } else {
            self.refresh_shown(address);
        }
        if was_session {
            match restart_time {
                Some(secs) => {
                    let kept = self.rib.peer_down_graceful(address);
                    tracing::info!(peer = %address, "the session ended without a NOTIFICATION: its {kept} routes stay, stale, for its restart time of {secs} s (RFC 4724)");
                    if let Some(peer) = self.peers.get_mut(&address) {
                        if let Some(t) = peer.gr_timer.take() {
                            t.abort();
                        }
                        let (tx, generation) = (self.internal_tx.clone(), peer.generation);
                        peer.gr_timer = Some(tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_secs(secs.into())).await;
                            let _ = tx
                                .send(Internal::GrTimer {
                                    peer: address,
                                    generation,
                                })
                                .await;
                        }));
                    }
                }
                None => {
                    // The peer's routes go as soon as its TCP connection closes, not at hold
                    // expiry.
                    let ev = self.rib.peer_down(address);
                    self.publish(ev);
                }
            }
        }
    }

    // ---- Handing out work, with back-pressure ----

    /// Gives every Established session with pending changes one batch of UPDATEs, if it has
    /// room; otherwise a waiter brings a permit once it has.
    fn flush_adj_rib_out(&mut self) {
        for address in self.rib.peers_with_work() {
            let Some(id) = self.peers.get(&address).and_then(|p| p.session) else {
                continue;
            };
            let Some(conn) = self.conns.get_mut(&id) else {
                continue;
            };
            if conn.waiting || conn.stopping {
                continue;
            }
            let tx = conn.control.updates.clone();
            self.feed_session(id, address, tx);
        }
    }

    /// Sends batches to the session while it has room and the peer has changes.
    fn feed_session(&mut self, id: ConnId, address: IpAddr, tx: mpsc::Sender<Vec<Bytes>>) {
        while self.rib.has_work(address) {
            match tx.clone().try_reserve_owned() {
                Ok(permit) => self.send_session_batch(id, permit),
                Err(TrySendError::Full(tx)) => {
                    if let Some(conn) = self.conns.get_mut(&id) {
                        conn.waiting = true;
                    }
                    self.waits
                        .spawn(async move { Wake::Session(id, tx.reserve_owned().await.ok()) });
                    return;
                }
                Err(TrySendError::Closed(_)) => return,
            }
        }
    }

    /// Encodes up to [`SESSION_BATCH`] of the peer's pending changes into `permit`.
    fn send_session_batch(&mut self, id: ConnId, permit: OwnedPermit<Vec<Bytes>>) {
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        let Some(ctx) = conn.negotiated.as_ref().map(|n| n.context) else {
            return;
        };
        let address = conn.peer;
        let batch = self.rib.take_batch(address, SESSION_BATCH);
        match encode_batch(&batch, &ctx) {
            Ok(msgs) if !msgs.is_empty() => {
                permit.send(msgs);
            }
            Ok(_) => {}
            Err(e) => tracing::error!(peer = %address, "cannot encode UPDATE: {e}"),
        }
    }

    /// Gives every subscriber with dirty prefixes one batch if it has room; otherwise a waiter
    /// brings a permit once it has.
    fn flush_subscribers(&mut self) {
        let mut closed = Vec::new();
        for (id, s) in &mut self.subscribers {
            while !s.waiting && s.has_work() {
                match s.tx.clone().try_reserve_owned() {
                    Ok(permit) => {
                        permit.send(s.take_batch(&self.rib));
                    }
                    Err(TrySendError::Full(tx)) => {
                        s.waiting = true;
                        let id = *id;
                        self.waits.spawn(async move {
                            Wake::Subscriber(id, tx.reserve_owned().await.ok())
                        });
                    }
                    Err(TrySendError::Closed(_)) => {
                        closed.push(*id);
                        break;
                    }
                }
            }
        }
        for id in closed {
            self.subscribers.remove(&id);
        }
    }

    fn handle_wake(&mut self, w: Wake) {
        match w {
            Wake::Session(id, permit) => {
                let Some(conn) = self.conns.get_mut(&id) else {
                    return;
                };
                conn.waiting = false;
                if let (Some(permit), false) = (permit, conn.stopping) {
                    self.send_session_batch(id, permit);
                }
            }
            Wake::Subscriber(id, permit) => {
                let Some(s) = self.subscribers.get_mut(&id) else {
                    return;
                };
                s.waiting = false;
                match permit {
                    Some(permit) => {
                        permit.send(s.take_batch(&self.rib));
                    }
                    None => {
                        self.subscribers.remove(&id);
                    }
                }
            }
        }
    }

    /// `graceful`: sessions that negotiated graceful restart close without a NOTIFICATION
    /// (RFC 4724 §4.1), so their peers keep our routes; the others get Cease.
    async fn shutdown(&mut self, graceful: bool) {
        if let Some(t) = self.listener_task.take() {
            t.abort();
        }
        self.waits.abort_all();
        let cease = session::cease(error_code::cease::ADMINISTRATIVE_SHUTDOWN);
        for peer in self.peers.values_mut() {
            peer.fsm.handle(PeerEvent::ManualStop);
            peer.stop_tasks();
        }
        for c in self.conns.values_mut() {
            let gr = c
                .negotiated
                .as_ref()
                .and_then(ipv4_gr_restart_time)
                .is_some();
            if graceful && gr && c.state == State::Established {
                c.control.stop(Stop::Graceful);
            } else {
                c.control.stop(Stop::Cease(cease.clone()));
            }
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.conns.is_empty() {
            match tokio::time::timeout_at(deadline, self.session_rx.recv()).await {
                Ok(Some((id, SessionEvent::Closed(_)))) => {
                    self.conns.remove(&id);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Encodes a batch: withdrawals, then one run of UPDATEs per attribute set, then End-of-RIB.
pub fn encode_batch(
    batch: &OutBatch,
    ctx: &crate::wire::SessionContext,
) -> Result<Vec<Bytes>, crate::wire::EncodeError> {
    let mut msgs = Vec::new();
    if !batch.withdrawn.is_empty() {
        msgs.extend(encode_updates(
            &batch.withdrawn,
            &PathAttributes::default(),
            &[],
            ctx,
        )?);
    }
    for (attrs, nlri) in &batch.groups {
        msgs.extend(encode_updates(&[], attrs, nlri, ctx)?);
    }
    if batch.end_of_rib {
        // RFC 4724 §2: End-of-RIB for IPv4 unicast is an UPDATE with nothing in it.
        let mut buf = BytesMut::new();
        encode_message(&Message::Update(Update::default()), ctx, &mut buf)?;
        msgs.push(buf.freeze());
    }
    Ok(msgs)
}

/// Our Graceful Restart capability (RFC 4724 §3): IPv4 unicast, the Restart State and the
/// Forwarding State bits set while we come back from a restart that kept our routes.
fn gr_capability(restart_time: u16, restarting: bool) -> crate::wire::Capability {
    use crate::wire::{Afi, GracefulRestart, GracefulRestartFamily, Safi};
    crate::wire::Capability::GracefulRestart(GracefulRestart {
        restart_state: restarting,
        notification: false,
        restart_time: restart_time.min(4095),
        families: vec![GracefulRestartFamily {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            forwarding_preserved: restarting,
        }],
    })
}

/// The peer's graceful restart entry for IPv4 unicast, when both sides negotiated it.
fn ipv4_gr(n: &crate::fsm::Negotiated) -> Option<crate::wire::GracefulRestartFamily> {
    n.graceful_restart.as_ref().and_then(|g| {
        g.families
            .iter()
            .find(|f| f.afi == crate::wire::Afi::IPV4 && f.safi == crate::wire::Safi::UNICAST)
            .copied()
    })
}

/// The peer's Restart Time, when it negotiated graceful restart for IPv4 unicast.
fn ipv4_gr_restart_time(n: &crate::fsm::Negotiated) -> Option<u16> {
    ipv4_gr(n).and(n.graceful_restart.as_ref().map(|g| g.restart_time))
}

fn security_of(cfg: &PeerConfig) -> session::Security {
    session::Security {
        password: cfg.password.clone(),
        ttl_security: cfg.ttl_security,
    }
}

async fn accept_loop(listener: Arc<TcpListener>, tx: mpsc::Sender<Internal>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                if tx.send(Internal::Accepted(stream, remote)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Closes a connection from an unknown address with Cease / Connection Rejected.
async fn reject(stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    let mut stream = stream;
    let n = session::cease(error_code::cease::CONNECTION_REJECTED);
    let mut buf = BytesMut::new();
    if encode_message(&Message::Notification(n), &Default::default(), &mut buf).is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(&buf)).await;
    }
    let _ = stream.shutdown().await;
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) compare as IPv4.
pub(super) fn canonical(a: IpAddr) -> IpAddr {
    match a {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
        v4 => v4,
    }
}
