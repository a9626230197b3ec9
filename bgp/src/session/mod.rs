//! The session driver: one tokio task per TCP connection runs the connection's [`Fsm`].
//!
//! ```text
//!  socket read half ──► read_buf ─► frame_length/decode_message ─► Fsm::handle ─┐
//!  hold deadline (select! arm, after reads) ───────────────────────► Fsm::handle ─┤
//!  speaker ──stop (watch: Cease / collision) ──────────────────────► Fsm::handle ─┤
//!  speaker ──encoded UPDATE batches (bounded, permit-based)──► out queue ◄───────┤
//!                                                                               ▼
//!  speaker ◄──(ConnId, SessionEvent) (bounded)── Established / Update / Closed ◄─ actions
//!  socket write half ◄── writer task ◄── (bounded) ◄── out queue ◄──────────────── Send
//!                          └─ sends KEEPALIVE when idle for the keepalive interval
//! ```
//!
//! Writing happens in a separate task so that a peer that is slow to read never stops us from
//! reading (two speakers writing large tables to each other would otherwise deadlock on full
//! socket buffers). The writer also keeps the KeepaliveTimer (RFC 4271 §4.4): while the reader
//! waits for the speaker to take an UPDATE (back-pressure), KEEPALIVEs still leave on time,
//! so a busy speaker never makes its peers' hold timers expire. Every queue is bounded: when
//! the out queue is full the session stops taking UPDATE batches, the speaker's permit wait
//! blocks and its prefixes stay dirty in the Adj-RIB-Out, where later changes coalesce.

mod backoff;
mod counters;
mod tcp;
#[cfg(test)]
mod tests;

pub use backoff::{Backoff, MAX_CONNECT_RETRY};
pub use counters::MessageCounters;
pub use tcp::{connect, prepare_accepted, Security, DEFAULT_PORT, GTSM_TTL};

use crate::fsm::{Action, ConnectionOrigin, DownReason, Event, Fsm, FsmConfig, Negotiated, State};
use crate::wire::{
    decode_message, encode_message, frame_length, DecodeError, Message, MessageType, Notification,
    SessionContext, Update,
};
use bytes::{Buf, Bytes, BytesMut};
use std::collections::VecDeque;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Identifies one connection within the speaker.
pub type ConnId = u64;

/// Defaults of RFC 4271 §10.
pub const DEFAULT_HOLD_TIME: u16 = 90;
pub const DEFAULT_KEEPALIVE: u16 = 30;

/// Messages queued for the writer before UPDATE batches from the speaker are held back.
const OUT_QUEUE_HIGH: usize = 256;
/// Encoded UPDATE batches a session may have waiting from the speaker.
pub const UPDATE_BATCHES: usize = 4;
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

/// Why the speaker stops a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Send this Cease NOTIFICATION (RFC 4486: de-configured, shutdown) and close.
    Cease(Notification),
    /// Collision resolution chose the other connection (RFC 4271 §6.8).
    CollisionDump,
    /// Close without a NOTIFICATION (this speaker restarts gracefully, RFC 4724).
    Graceful,
}

/// The speaker's end of a session's inputs.
#[derive(Debug)]
pub struct SessionControl {
    /// Encoded UPDATE messages (from `encode_updates`), one batch per item. Bounded: take a
    /// permit (`try_reserve`, `reserve_owned`) before encoding a batch.
    pub updates: mpsc::Sender<Vec<Bytes>>,
    /// Never blocks and is never lost: the last stop request wins.
    stop: watch::Sender<Option<Stop>>,
}

impl SessionControl {
    pub fn stop(&self, why: Stop) {
        self.stop.send_replace(Some(why));
    }
}

/// The session's end of its inputs.
#[derive(Debug)]
pub struct SessionInputs {
    updates: mpsc::Receiver<Vec<Bytes>>,
    stop: watch::Receiver<Option<Stop>>,
}

/// A connected pair of [`SessionControl`] and [`SessionInputs`].
pub fn session_channels() -> (SessionControl, SessionInputs) {
    let (utx, urx) = mpsc::channel(UPDATE_BATCHES);
    let (stx, srx) = watch::channel(None);
    (
        SessionControl {
            updates: utx,
            stop: stx,
        },
        SessionInputs {
            updates: urx,
            stop: srx,
        },
    )
}

/// Everything a session task needs besides its socket and channels.
#[derive(Debug, Clone)]
pub struct SessionParams {
    pub conn: ConnId,
    pub fsm: FsmConfig,
    pub origin: ConnectionOrigin,
    pub local_addr: Option<IpAddr>,
    pub counters: Arc<MessageCounters>,
    /// The send hold time's floor (RFC 9687: the larger of this and twice the hold time).
    pub send_hold_min: Duration,
}

/// The read buffer while a table streams in: one maximum-size message (RFC 4271 §4.1) per read
/// (it grows for an RFC 8654 extended message).
const READ_BUF: usize = 4096;

/// The read buffer of a quiet session: a KEEPALIVE is 19 bytes and a mesh's UPDATE of one block
/// about 60. An agent holds one per peer, so 250 peers cost 62 KB this way instead of 1 MB.
const READ_BUF_IDLE: usize = 256;

/// RFC 9687 §3: the suggested send hold time floor.
pub const SEND_HOLD_MIN: Duration = Duration::from_secs(8 * 60);

struct Driver {
    params: SessionParams,
    fsm: Fsm,
    ctx: SessionContext,
    events: mpsc::Sender<(ConnId, SessionEvent)>,
    out: VecDeque<Bytes>,
    hold: Option<Instant>,
    /// The writer's keepalive interval in seconds (0: none).
    keepalive: watch::Sender<u16>,
    closing: bool,
    reason: Option<DownReason>,
}

/// Runs one connection until it closes; returns why it closed (also sent as `Closed`).
pub async fn run_session<S>(
    stream: S,
    params: SessionParams,
    events: mpsc::Sender<(ConnId, SessionEvent)>,
    inputs: SessionInputs,
) -> DownReason
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let SessionInputs {
        mut updates,
        mut stop,
    } = inputs;
    let (mut reader, writer) = tokio::io::split(stream);
    // futures' channel rather than tokio's: tokio's allocates a block of 32 slots with the
    // channel, 1.5 KB here, and a 250-node mesh holds 249 of these mostly idle queues.
    let (mut wtx, wrx) = futures::channel::mpsc::channel::<Bytes>(64);
    let (ktx, krx) = watch::channel(0u16);
    let (stuck_tx, mut stuck_rx) = tokio::sync::oneshot::channel::<()>();
    let writer_task = tokio::spawn(write_loop(
        writer,
        wrx,
        krx,
        params.counters.clone(),
        params.send_hold_min,
        stuck_tx,
    ));
    let mut writer_stuck_open = true;
    let mut d = Driver {
        fsm: Fsm::new(params.fsm.clone()),
        params,
        ctx: SessionContext::default(),
        events,
        out: VecDeque::new(),
        hold: None,
        keepalive: ktx,
        closing: false,
        reason: None,
    };
    // The TCP connection already exists: Tcp_CR_Acked for our own connection,
    // TcpConnectionConfirmed for an accepted one.
    let up = match d.params.origin {
        ConnectionOrigin::Local => Event::TcpCrAcked,
        ConnectionOrigin::Remote => Event::TcpConnectionConfirmed,
    };
    d.feed(up).await;

    let mut rbuf = BytesMut::with_capacity(READ_BUF_IDLE);
    let mut updates_open = true;
    let mut stop_open = true;
    while !d.closing {
        let hold = d.hold;
        let free = rbuf.capacity() - rbuf.len();
        // Biased: bytes that have arrived are read before the hold timer is looked at, so a
        // session that was busy (waiting on the speaker) never mistakes its own delay for a
        // silent peer.
        tokio::select! {
            biased;
            n = reader.read_buf(&mut rbuf) => match n {
                Ok(0) | Err(_) => d.feed(Event::TcpConnectionFails).await,
                Ok(n) => {
                    d.process_input(&mut rbuf).await;
                    size_read_buffer(&mut rbuf, n >= free);
                }
            },
            // Before the writer's channel: a writer that gave up is reported as what it is.
            stuck = &mut stuck_rx, if writer_stuck_open => {
                writer_stuck_open = false;
                if stuck.is_ok() {
                    d.feed(Event::SendHoldTimerExpires).await;
                }
            }

            changed = stop.changed(), if stop_open => match changed {
                Ok(()) => {
                    let why = stop.borrow_and_update().clone();
                    match why {
                        Some(Stop::Cease(n)) => d.feed(Event::Cease(n)).await,
                        Some(Stop::CollisionDump) => d.feed(Event::OpenCollisionDump).await,
                        Some(Stop::Graceful) => d.feed(Event::GracefulStop).await,
                        None => {}
                    }
                }
                // The speaker dropped us: stop as if de-configured.
                Err(_) => {
                    stop_open = false;
                    d.feed(Event::ManualStop).await;
                }
            },
            ready = std::future::poll_fn(|cx| wtx.poll_ready(cx)), if !d.out.is_empty() => {
                let sent = ready.and_then(|()| wtx.start_send(d.out.pop_front().unwrap_or_default()));
                if sent.is_err() {
                    d.feed(Event::TcpConnectionFails).await;
                }
            }
            batch = updates.recv(), if updates_open && d.out.len() < OUT_QUEUE_HIGH => match batch {
                Some(msgs) => d.send_updates(msgs),
                None => updates_open = false,
            },
            _ = sleep_until(hold), if hold.is_some() => d.feed(Event::HoldTimerExpires).await,
        }
    }
    // Report the close first: the speaker withdraws the peer's routes as soon as the
    // connection is gone. Then flush what is queued (typically the NOTIFICATION) and close.
    let reason = d.reason.clone().unwrap_or(DownReason::TcpFailed);
    d.emit(SessionEvent::Closed(reason.clone())).await;
    d.keepalive.send_replace(0);
    let flush = async {
        while let Some(b) = d.out.pop_front() {
            if futures::SinkExt::send(&mut wtx, b).await.is_err() {
                break;
            }
        }
        drop(wtx);
        let _ = writer_task.await;
    };
    let _ = tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, flush).await;
    reason
}

/// Sizes the read buffer for the next read. A read that filled all the free space means the
/// peer sends faster than one read takes (a table streaming in): the next read gets a whole
/// [`READ_BUF`]. Otherwise a buffer that was all used goes back to [`READ_BUF_IDLE`], and the
/// next read starts at its front again (no copy).
fn size_read_buffer(rbuf: &mut BytesMut, filled: bool) {
    if filled {
        rbuf.reserve(READ_BUF);
    } else if rbuf.is_empty() {
        if rbuf.capacity() > READ_BUF_IDLE {
            *rbuf = BytesMut::with_capacity(READ_BUF_IDLE);
        } else {
            rbuf.reserve(READ_BUF_IDLE);
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Writes what the session queues, and a KEEPALIVE whenever nothing was written for the
/// keepalive interval (RFC 4271 §4.4: sending an UPDATE or KEEPALIVE restarts the timer).
///
/// RFC 9687: a write that cannot complete for the send hold time (the larger of
/// `send_hold_min` and twice the hold time; none with a hold time of 0) means the peer stopped
/// reading: `stuck` tells the session, which ends with Send Hold Timer Expired.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: futures::channel::mpsc::Receiver<Bytes>,
    mut keepalive: watch::Receiver<u16>,
    counters: Arc<MessageCounters>,
    send_hold_min: Duration,
    stuck: tokio::sync::oneshot::Sender<()>,
) {
    let mut stuck = Some(stuck);
    // The keepalive interval is a third of the hold time (RFC 4271 §10).
    let send_hold = |interval: u16| {
        (interval > 0).then(|| send_hold_min.max(Duration::from_secs(6 * u64::from(interval))))
    };
    macro_rules! write {
        ($buf:expr, $interval:expr) => {
            match send_hold($interval) {
                Some(limit) => match tokio::time::timeout(limit, writer.write_all($buf)).await {
                    Ok(r) => r,
                    Err(_) => {
                        if let Some(s) = stuck.take() {
                            let _ = s.send(());
                        }
                        return;
                    }
                },
                None => writer.write_all($buf).await,
            }
        };
    }
    let keepalive_msg = {
        let mut b = BytesMut::new();
        // A KEEPALIVE is a bare header; encoding cannot fail.
        let _ = encode_message(&Message::Keepalive, &SessionContext::default(), &mut b);
        b.freeze()
    };
    let mut interval = 0u16;
    let mut last_write = Instant::now();
    let mut keepalive_open = true;
    loop {
        let due = (interval > 0).then(|| last_write + Duration::from_secs(interval.into()));
        tokio::select! {
            biased;
            msg = futures::StreamExt::next(&mut rx) => match msg {
                Some(b) => {
                    if write!(&b, interval).is_err() {
                        return;
                    }
                    last_write = Instant::now();
                }
                None => break,
            },
            changed = keepalive.changed(), if keepalive_open => match changed {
                Ok(()) => interval = *keepalive.borrow_and_update(),
                Err(_) => keepalive_open = false,
            },
            _ = sleep_until(due), if due.is_some() => {
                if write!(&keepalive_msg, interval).is_err() {
                    return;
                }
                counters.count_out(MessageType::Keepalive, 1);
                last_write = Instant::now();
            }
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
                    message_event(msg)
                }
                Err(e) => {
                    tracing::debug!(conn = self.params.conn, "decode error: {e}");
                    decode_error_event(e)
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

    /// Hands an event to the speaker. Boxed: a send future holds the event twice over (about
    /// 1 KB), and inline it would sit in every session task's state for the task's life (one
    /// task per peer); an allocation per event the speaker hears of costs less.
    fn emit(&mut self, ev: SessionEvent) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let conn = self.params.conn;
        Box::pin(async move {
            let _ = self.events.send((conn, ev)).await;
        })
    }

    /// Runs one FSM event and carries out its actions. Boxed, like `emit`: awaited inline,
    /// its state (an FSM event, an action, an event for the speaker) would take 1 KB of every
    /// session task for the task's life.
    fn feed(&mut self, event: Event) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(self.run_event(event))
    }

    async fn run_event(&mut self, event: Event) {
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
                Action::Send(msg) => self.send(&msg),
                Action::CloseConnection => self.closing = true,
                Action::StartHoldTimer(s) => self.hold = deadline(s),
                Action::KeepaliveInterval(s) => {
                    self.keepalive.send_replace(s);
                }
                Action::StopTimers => {
                    self.hold = None;
                    self.keepalive.send_replace(0);
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

/// The FSM event a received message is (RFC 4271 §8.1.4).
pub fn message_event(msg: Message) -> Event {
    match msg {
        Message::Open(o) => Event::BgpOpen(o),
        Message::Update(u) => Event::UpdateMsg(u),
        Message::Notification(n) => Event::NotifMsg(n),
        Message::Keepalive => Event::KeepAliveMsg,
        Message::RouteRefresh(r) => Event::RouteRefreshMsg(r),
    }
}

/// The FSM event a message that does not decode is: the error class picks the event, the
/// error itself the NOTIFICATION the FSM sends.
pub fn decode_error_event(e: DecodeError) -> Event {
    match e {
        DecodeError::Header { .. } | DecodeError::RouteRefresh { .. } => {
            Event::BgpHeaderErr(e.notification())
        }
        DecodeError::Open { .. } => Event::BgpOpenMsgErr(e.notification()),
        DecodeError::Update { .. } => Event::UpdateMsgErr(e.notification()),
    }
}

/// The NOTIFICATION a speaker sends to refuse or stop a session (RFC 4486 Cease subcodes).
pub fn cease(subcode: u8) -> Notification {
    Notification::new(crate::wire::error_code::CEASE, subcode, Vec::new())
}
