//! The session driver: one tokio task per TCP connection runs the [`Fsm`] over the socket.
//!
//! ```text
//!  socket read half ──► read_buf ─► frame_length/decode_message ─► Fsm::handle ─┐
//!  hold / keepalive deadlines (select! arms) ──────────────────────► Fsm::handle ─┤
//!  speaker ──SessionCommand (bounded)──► Send(bytes) / Event ───────────────────┤
//!                                                                               ▼
//!  speaker ◄──(ConnId, SessionEvent) (bounded)── Established / Update / Closed ◄─ actions
//!  socket write half ◄── writer task ◄── (bounded) ◄── out queue ◄──────────────── Send
//! ```
//!
//! Writing happens in a separate task so that a peer that is slow to read never stops us from
//! reading (two speakers writing large tables to each other would otherwise deadlock on full
//! socket buffers). The out queue is bounded too: when it is full, commands from the speaker
//! wait in their channel and the speaker keeps its backlog.

mod backoff;
mod counters;
mod tcp;
#[cfg(test)]
mod tests;

pub use backoff::{Backoff, MAX_CONNECT_RETRY};
pub use counters::MessageCounters;
pub use tcp::{connect, prepare_accepted, DEFAULT_PORT};

use crate::fsm::{Action, ConnectionOrigin, DownReason, Event, Fsm, FsmConfig, Negotiated, State};
use crate::wire::{
    decode_message, encode_message, frame_length, DecodeError, Message, MessageType, Notification,
    SessionContext, Update,
};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Identifies one connection within the speaker.
pub type ConnId = u64;

/// Defaults of RFC 4271 §10.
pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_KEEPALIVE: u16 = 30;

/// Messages queued for the writer before commands from the speaker are held back.
const OUT_QUEUE_HIGH: usize = 256;
/// How long a closing session waits for its last messages (the NOTIFICATION) to be written.
const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// What a session reports to the speaker.
#[derive(Debug, Clone)]
pub enum SessionEvent {
    StateChanged(State),
    /// The peer's OPEN was accepted (now OpenConfirm): its identifier is known, so collision
    /// detection (RFC 4271 §6.8) can run.
    OpenReceived(Negotiated),
    /// The session is up. `local_addr` is our address on the connection (for NEXT_HOP).
    Established {
        negotiated: Negotiated,
        local_addr: Option<IpAddr>,
    },
    Update(Update),
    RefreshRequested,
    /// The connection is closed; nothing more comes from this session.
    Closed(DownReason),
}

/// What the speaker asks of a session.
// Commands are rare next to UPDATE traffic; boxing the event would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum SessionCommand {
    /// Already encoded UPDATE messages (from `encode_updates`).
    SendUpdates(Vec<Bytes>),
    /// Feed an FSM event: OpenCollisionDump, Cease(notification), ManualStop.
    Fsm(Event),
}

/// Everything a session task needs besides its socket and channels.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub conn: ConnId,
    pub fsm: FsmConfig,
    pub origin: ConnectionOrigin,
    pub local_addr: Option<IpAddr>,
    pub counters: Arc<MessageCounters>,
}

struct Driver {
    params: SessionParams,
    fsm: Fsm,
    ctx: SessionContext,
    events: mpsc::Sender<(ConnId, SessionEvent)>,
    out: VecDeque<Bytes>,
    hold: Option<Instant>,
    keepalive: Option<Instant>,
    closing: bool,
    reason: Option<DownReason>,
}

/// Runs one connection until it closes; returns why it closed (also sent as `Closed`).
pub async fn run_session<S>(
    stream: S,
    params: SessionParams,
    events: mpsc::Sender<(ConnId, SessionEvent)>,
    mut commands: mpsc::Receiver<SessionCommand>,
) -> DownReason
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (mut reader, writer) = tokio::io::split(stream);
    let (wtx, wrx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(write_loop(writer, wrx));
    let mut d = Driver {
        fsm: Fsm::new(params.fsm.clone()),
        params,
        ctx: SessionContext::default(),
        events,
        out: VecDeque::new(),
        hold: None,
        keepalive: None,
        closing: false,
        reason: None,
    };
    // The TCP connection already exists: start the FSM and report it up (Tcp_CR_Acked for our
    // own connection, TcpConnectionConfirmed for an accepted one).
    let (start, up) = match d.params.origin {
        ConnectionOrigin::Local => (Event::ManualStart, Event::TcpCrAcked),
        ConnectionOrigin::Remote => (Event::ManualStartPassive, Event::TcpConnectionConfirmed),
    };
    d.feed(start).await;
    d.feed(up).await;

    let mut rbuf = BytesMut::with_capacity(8192);
    let mut commands_open = true;
    while !d.closing {
        let hold = d.hold;
        let keepalive = d.keepalive;
        tokio::select! {
            n = reader.read_buf(&mut rbuf) => match n {
                Ok(0) | Err(_) => d.feed(Event::TcpConnectionFails).await,
                Ok(_) => d.process_input(&mut rbuf).await,
            },
            permit = wtx.reserve(), if !d.out.is_empty() => match permit {
                Ok(p) => p.send(d.out.pop_front().unwrap_or_default()),
                Err(_) => d.feed(Event::TcpConnectionFails).await,
            },
            cmd = commands.recv(), if commands_open && d.out.len() < OUT_QUEUE_HIGH => match cmd {
                Some(SessionCommand::SendUpdates(msgs)) => d.send_updates(msgs),
                Some(SessionCommand::Fsm(ev)) => d.feed(ev).await,
                // The speaker dropped us: stop as if de-configured.
                None => {
                    commands_open = false;
                    d.feed(Event::ManualStop).await;
                }
            },
            _ = sleep_until(hold), if hold.is_some() => d.feed(Event::HoldTimerExpires).await,
            _ = sleep_until(keepalive), if keepalive.is_some() => {
                d.feed(Event::KeepaliveTimerExpires).await
            }
        }
    }
    // Report the close first: the speaker withdraws the peer's routes as soon as the
    // connection is gone. Then flush what is queued (typically the NOTIFICATION) and close.
    let reason = d.reason.clone().unwrap_or(DownReason::TcpFailed);
    let _ = d
        .events
        .send((d.params.conn, SessionEvent::Closed(reason.clone())))
        .await;
    let flush = async {
        while let Some(b) = d.out.pop_front() {
            if wtx.send(b).await.is_err() {
                break;
            }
        }
        drop(wtx);
        let _ = writer_task.await;
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await;
    reason
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut writer: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(b) = rx.recv().await {
        if writer.write_all(&b).await.is_err() {
            return;
        }
    }
    let _ = writer.shutdown().await;
}

fn deadline(secs: u16) -> Option<Instant> {
    (secs > 0).then(|| Instant::now() + Duration::from_secs(secs.into()))
}

impl Driver {
    /// Frames and decodes every whole message in `rbuf`.
    async fn process_input(&mut self, rbuf: &mut BytesMut) {
        while !self.closing {
            let len = match frame_length(rbuf, &self.ctx) {
                Ok(Some(len)) if rbuf.len() >= len => len,
                Ok(_) => return,
                Err(e) => {
                    self.feed(Event::BgpHeaderErr(e.notification())).await;
                    return;
                }
            };
            let event = match decode_message(&rbuf[..len], &self.ctx) {
                Ok(msg) => {
                    self.params.counters.count_in(msg.message_type());
                    match msg {
                        Message::Open(o) => Event::BgpOpen(o),
                        Message::Update(u) => Event::UpdateMsg(u),
                        Message::Notification(n) => Event::NotifMsg(n),
                        Message::Keepalive => Event::KeepAliveMsg,
                        Message::RouteRefresh(r) => Event::RouteRefreshMsg(r),
                    }
                }
                Err(e) => {
                    tracing::debug!(conn = self.params.conn, "decode error: {e}");
                    match e {
                        DecodeError::Header { .. } | DecodeError::RouteRefresh { .. } => {
                            Event::BgpHeaderErr(e.notification())
                        }
                        DecodeError::Open { .. } => Event::BgpOpenMsgErr(e.notification()),
                        DecodeError::Update { .. } => Event::UpdateMsgErr(e.notification()),
                    }
                }
            };
            rbuf.advance(len);
            self.feed(event).await;
        }
    }

    fn send_updates(&mut self, msgs: Vec<Bytes>) {
        if self.fsm.state() != State::Established {
            return;
        }
        self.params
            .counters
            .count_out(MessageType::Update, msgs.len() as u64);
        self.out.extend(msgs);
        // RFC 4271 §4.4: an UPDATE also tells the peer we are alive.
        if let Some(n) = self.fsm.negotiated() {
            self.keepalive = deadline(n.keepalive);
        }
    }

    fn send(&mut self, msg: &Message) {
        let mut buf = BytesMut::new();
        match encode_message(msg, &self.ctx, &mut buf) {
            Ok(()) => {
                self.params.counters.count_out(msg.message_type(), 1);
                self.out.push_back(buf.freeze());
            }
            Err(e) => tracing::warn!(conn = self.params.conn, "cannot encode {msg:?}: {e}"),
        }
    }

    async fn emit(&mut self, ev: SessionEvent) {
        let _ = self.events.send((self.params.conn, ev)).await;
    }

    /// Runs one FSM event and carries out its actions.
    async fn feed(&mut self, event: Event) {
        let before = self.fsm.state();
        let actions = self.fsm.handle(event);
        let after = self.fsm.state();
        if after != before {
            self.emit(SessionEvent::StateChanged(after)).await;
            if after == State::OpenConfirm {
                if let Some(n) = self.fsm.negotiated().cloned() {
                    self.ctx = n.context;
                    self.emit(SessionEvent::OpenReceived(n)).await;
                }
            }
        }
        for action in actions {
            match action {
                // The socket exists already; the speaker owns connect retries (see Backoff).
                Action::Connect
                | Action::StartConnectRetryTimer
                | Action::StopConnectRetryTimer => {}
                Action::Send(msg) => self.send(&msg),
                Action::CloseConnection => self.closing = true,
                Action::StartHoldTimer(s) => self.hold = deadline(s),
                Action::StartKeepaliveTimer(s) => self.keepalive = deadline(s),
                Action::StopTimers => {
                    self.hold = None;
                    self.keepalive = None;
                }
                Action::Established(negotiated) => {
                    self.ctx = negotiated.context;
                    let local_addr = self.params.local_addr;
                    self.emit(SessionEvent::Established {
                        negotiated,
                        local_addr,
                    })
                    .await;
                }
                Action::Deliver(u) => self.emit(SessionEvent::Update(u)).await,
                Action::RefreshRequested(_) => self.emit(SessionEvent::RefreshRequested).await,
                Action::Down(reason) => {
                    tracing::info!(conn = self.params.conn, "session down: {reason}");
                    self.reason = Some(reason);
                }
            }
        }
    }
}

/// The NOTIFICATION a speaker sends to refuse or stop a session (RFC 4486 Cease subcodes).
pub fn cease(subcode: u8) -> Notification {
    Notification::new(crate::wire::error_code::CEASE, subcode, Vec::new())
}
