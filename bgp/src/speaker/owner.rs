//! The owner task: the only code that touches the RIB, the peers and the connections.

use super::outbox::Outbox;
use super::peer::{Connection, Peer};
use super::{PeerConfig, Request, SpeakerConfig, SpeakerError, SpeakerStatus};
use crate::fsm::{
    collision_survivor, connections_to_dump, ConnectionOrigin, Event, FsmConfig, OpenedConnection,
    State,
};
use crate::rib::{OutBatch, PeerInfo, Rib, RouteEvent};
use crate::session::{self, ConnId, SessionCommand, SessionEvent, SessionParams};
use crate::wire::{encode_message, encode_updates, error_code, Message, PathAttributes, Update};
use bytes::{Bytes, BytesMut};
use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// How often backlogged outboxes are retried.
const RETRY_TICK: Duration = Duration::from_millis(2);
/// Route events a subscriber may have unread before the rest waits in its outbox. Tokio
/// allocates channel slots lazily, so a large bound costs nothing until used.
const SUBSCRIBER_CHANNEL: usize = 16384;
/// Events handled before the Adj-RIB-Outs are flushed (so UPDATEs are packed across events).
const EVENT_BATCH: usize = 256;
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
    socket.bind(addr)?;
    socket.listen(128)
}

/// Results of the listener and of connect attempts.
#[derive(Debug)]
enum Internal {
    Accepted(TcpStream, SocketAddr),
    Connected {
        peer: IpAddr,
        attempt: u64,
        result: io::Result<TcpStream>,
    },
}

pub struct Owner {
    cfg: SpeakerConfig,
    rib: Rib,
    peers: HashMap<IpAddr, Peer>,
    conns: HashMap<ConnId, Connection>,
    subscribers: Vec<Outbox<RouteEvent>>,
    next_conn: ConnId,
    next_generation: u64,
    listener: Option<TcpListener>,
    listener_task: Option<JoinHandle<()>>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: mpsc::Receiver<Internal>,
    session_tx: mpsc::Sender<(ConnId, SessionEvent)>,
    session_rx: mpsc::Receiver<(ConnId, SessionEvent)>,
}

// One value per loop turn, moved straight into its handler: boxing would only allocate.
#[allow(clippy::large_enum_variant)]
enum Input {
    Request(Request),
    Internal(Internal),
    Session(ConnId, SessionEvent),
    Tick,
    Stop,
}

impl Owner {
    pub fn new(cfg: SpeakerConfig, listener: Option<TcpListener>) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(64);
        let (session_tx, session_rx) = mpsc::channel(1024);
        Owner {
            rib: Rib::new(cfg.local_as, cfg.router_id),
            cfg,
            peers: HashMap::new(),
            conns: HashMap::new(),
            subscribers: Vec::new(),
            next_conn: 1,
            next_generation: 1,
            listener,
            listener_task: None,
            internal_tx,
            internal_rx,
            session_tx,
            session_rx,
        }
    }

    pub async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        if let Some(listener) = self.listener.take() {
            let tx = self.internal_tx.clone();
            self.listener_task = Some(tokio::spawn(accept_loop(listener, tx)));
        }
        loop {
            let backlog = self.has_backlog();
            let input = tokio::select! {
                r = requests.recv() => r.map_or(Input::Stop, Input::Request),
                Some(i) = self.internal_rx.recv() => Input::Internal(i),
                Some((c, e)) = self.session_rx.recv() => Input::Session(c, e),
                _ = tokio::time::sleep(RETRY_TICK), if backlog => Input::Tick,
            };
            let mut stop = None;
            match input {
                Input::Stop => break,
                Input::Request(Request::Shutdown(reply)) => stop = Some(reply),
                Input::Request(r) => self.handle_request(r),
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
                Input::Tick => {}
            }
            self.flush_adj_rib_out();
            self.retry_outboxes();
            if let Some(reply) = stop {
                self.shutdown().await;
                let _ = reply.send(());
                return;
            }
        }
        self.shutdown().await;
    }

    fn has_backlog(&self) -> bool {
        self.subscribers.iter().any(|s| s.has_backlog())
            || self.conns.values().any(|c| c.commands.has_backlog())
    }

    fn retry_outboxes(&mut self) {
        for s in &mut self.subscribers {
            s.retry();
        }
        self.subscribers.retain(|s| !s.is_closed());
        for c in self.conns.values_mut() {
            c.commands.retry();
        }
    }

    fn publish(&mut self, events: Vec<RouteEvent>) {
        for e in events {
            for s in &mut self.subscribers {
                s.push(e.clone());
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
                let (tx, rx) = mpsc::channel(SUBSCRIBER_CHANNEL);
                let mut outbox = Outbox::new(tx);
                for e in self.rib.best_routes() {
                    outbox.push(e);
                }
                self.subscribers.push(outbox);
                let _ = reply.send(rx);
            }
            Request::Status(reply) => {
                let mut peers: Vec<_> = self
                    .peers
                    .values()
                    .map(|p| p.status(self.rib.counts(p.cfg.address)))
                    .collect();
                peers.sort_by_key(|p| p.address);
                let _ = reply.send(SpeakerStatus {
                    local_as: self.cfg.local_as,
                    router_id: self.cfg.router_id,
                    peers,
                });
            }
            Request::Routes(reply) => {
                let _ = reply.send(self.rib.routes());
            }
            Request::Shutdown(reply) => {
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
        let generation = self.next_generation;
        self.next_generation += 1;
        let passive = cfg.passive;
        let cfg = PeerConfig { address, ..cfg };
        self.peers
            .insert(address, Peer::new(cfg, generation, self.cfg.connect_retry));
        if !passive {
            self.schedule_connect(address, Duration::ZERO);
        }
        Ok(())
    }

    fn remove_peer(&mut self, address: IpAddr) -> Result<(), SpeakerError> {
        let address = canonical(address);
        let Some(mut peer) = self.peers.remove(&address) else {
            return Err(SpeakerError::NoSuchPeer(address));
        };
        peer.cancel_connect();
        // RFC 4486 §4: Cease / Peer De-configured on every connection of the peer.
        let cease = session::cease(error_code::cease::PEER_DECONFIGURED);
        for id in &peer.conns {
            if let Some(c) = self.conns.get_mut(id) {
                c.commands
                    .push(SessionCommand::Fsm(Event::Cease(cease.clone())));
            }
        }
        let ev = self.rib.peer_down(address);
        self.publish(ev);
        Ok(())
    }

    // ---- Connections ----

    fn schedule_connect(&mut self, address: IpAddr, delay: Duration) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.cancel_connect();
        let attempt = peer.attempt;
        let target = SocketAddr::new(address, peer.cfg.port);
        let local = peer.cfg.local_address;
        let timeout = self.cfg.connect_retry.max(Duration::from_secs(3));
        let tx = self.internal_tx.clone();
        peer.connecting = Some(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let result = session::connect(target, local, timeout).await;
            let _ = tx
                .send(Internal::Connected {
                    peer: address,
                    attempt,
                    result,
                })
                .await;
        }));
        // RFC 4271 §8.2.2: Connect while our attempt is under way; while waiting for the
        // retry the peer stays Active (or Idle after a session ended).
        if delay.is_zero() && peer.session.is_none() && peer.conns.is_empty() {
            peer.set_state(State::Connect, "Connect");
        }
    }

    fn handle_internal(&mut self, i: Internal) {
        match i {
            Internal::Accepted(stream, remote) => {
                let address = canonical(remote.ip());
                if self.peers.contains_key(&address) {
                    self.start_connection(address, stream, ConnectionOrigin::Remote);
                } else {
                    // Only configured peers may connect (RFC 4486 §4, Connection Rejected).
                    tracing::info!("rejecting BGP connection from unconfigured {remote}");
                    tokio::spawn(reject(stream));
                }
            }
            Internal::Connected {
                peer: address,
                attempt,
                result,
            } => {
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if attempt != peer.attempt {
                    return;
                }
                peer.connecting = None;
                match result {
                    Ok(stream) => {
                        if peer.session.is_some() {
                            return; // Established meanwhile through the peer's connection.
                        }
                        self.start_connection(address, stream, ConnectionOrigin::Local);
                    }
                    Err(e) => {
                        let msg = format!("Connect: {e}");
                        peer.last_error = Some(msg.clone());
                        if peer.conns.is_empty() {
                            peer.set_state(State::Active, msg);
                        }
                        let delay = peer.backoff.next_delay();
                        self.schedule_connect(address, delay);
                    }
                }
            }
        }
    }

    fn start_connection(&mut self, address: IpAddr, stream: TcpStream, origin: ConnectionOrigin) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let _ = session::prepare_accepted(&stream);
        let local_addr = stream.local_addr().ok().map(|a| canonical(a.ip()));
        let conn = self.next_conn;
        self.next_conn += 1;
        let hold = peer.cfg.hold_time.unwrap_or(self.cfg.hold_time);
        let params = SessionParams {
            conn,
            fsm: FsmConfig::new(
                self.cfg.local_as,
                peer.cfg.remote_as,
                self.cfg.router_id,
                hold,
            ),
            origin,
            local_addr,
            counters: peer.counters.clone(),
        };
        let (ctx, crx) = mpsc::channel(64);
        tokio::spawn(session::run_session(
            stream,
            params,
            self.session_tx.clone(),
            crx,
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
                commands: Outbox::new(ctx),
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
                self.connection_closed(address, id, reason.to_string());
            }
            return;
        }
        if !live {
            return; // The peer was removed; this connection is being ceased.
        }
        match event {
            SessionEvent::StateChanged(state) => {
                conn.state = state;
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if peer.session.is_none() {
                    peer.set_state(state, state.as_str());
                }
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
                if self.resolve_collision(address).contains(&id) {
                    return;
                }
                let Some(peer) = self.peers.get_mut(&address) else {
                    return;
                };
                if let Some(old) = peer.session.replace(id) {
                    // Cannot normally happen: collision resolution keeps one session.
                    if let Some(c) = self.conns.get_mut(&old) {
                        c.commands
                            .push(SessionCommand::Fsm(Event::OpenCollisionDump));
                    }
                }
                peer.cancel_connect();
                peer.backoff.reset();
                peer.negotiated = Some(negotiated.clone());
                peer.established_at = Some(SystemTime::now());
                peer.set_state(State::Established, "Established");
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
                let ev = self.rib.peer_up(info, next_hop_self);
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
                c.commands
                    .push(SessionCommand::Fsm(Event::OpenCollisionDump));
            }
        }
        dump
    }

    fn connection_closed(&mut self, address: IpAddr, id: ConnId, reason: String) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.conns.retain(|c| *c != id);
        let was_session = peer.session == Some(id);
        if was_session {
            peer.session = None;
            peer.negotiated = None;
            peer.established_at = None;
            peer.flaps += 1;
        }
        let collision = reason.contains("Collision");
        if !collision {
            peer.last_error = Some(reason.clone());
        }
        if peer.session.is_none() {
            if peer.conns.is_empty() {
                let state = if peer.cfg.passive {
                    State::Active
                } else {
                    State::Idle
                };
                peer.set_state(state, format!("{}: {reason}", state.as_str()));
            }
            if !peer.cfg.passive && peer.conns.is_empty() && peer.connecting.is_none() {
                let delay = peer.backoff.next_delay();
                self.schedule_connect(address, delay);
            }
        }
        if was_session {
            // The peer's routes go as soon as its TCP connection closes, not at hold expiry.
            let ev = self.rib.peer_down(address);
            self.publish(ev);
        }
    }

    // ---- Adj-RIB-Out ----

    fn flush_adj_rib_out(&mut self) {
        for address in self.rib.peers_with_work() {
            let Some(id) = self.peers.get(&address).and_then(|p| p.session) else {
                continue;
            };
            let Some(ctx) = self
                .conns
                .get(&id)
                .and_then(|c| c.negotiated.as_ref())
                .map(|n| n.context)
            else {
                continue;
            };
            let batch = self.rib.take_batch(address);
            match encode_batch(&batch, &ctx) {
                Ok(msgs) if !msgs.is_empty() => {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.commands.push(SessionCommand::SendUpdates(msgs));
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::error!(peer = %address, "cannot encode UPDATE: {e}"),
            }
        }
    }

    async fn shutdown(&mut self) {
        if let Some(t) = self.listener_task.take() {
            t.abort();
        }
        let cease = session::cease(error_code::cease::ADMINISTRATIVE_SHUTDOWN);
        for peer in self.peers.values_mut() {
            peer.cancel_connect();
        }
        for c in self.conns.values_mut() {
            c.commands
                .push(SessionCommand::Fsm(Event::Cease(cease.clone())));
        }
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while !self.conns.is_empty() {
            self.retry_outboxes();
            let wait = tokio::time::timeout_at(deadline, self.session_rx.recv());
            match tokio::time::timeout(RETRY_TICK, wait).await {
                Ok(Ok(Some((id, SessionEvent::Closed(_))))) => {
                    self.conns.remove(&id);
                }
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None)) | Ok(Err(_)) => break,
            }
        }
    }
}

/// Encodes a batch: withdrawals, then one run of UPDATEs per attribute set, then End-of-RIB.
pub(super) fn encode_batch(
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

async fn accept_loop(listener: TcpListener, tx: mpsc::Sender<Internal>) {
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
