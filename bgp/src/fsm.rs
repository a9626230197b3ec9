//! The BGP finite state machine of RFC 4271 §8, as pure code, in two parts:
//!
//! - [`PeerFsm`] (`fsm/peer.rs`): the peer's connection management, the Idle, Connect and
//!   Active states and the ConnectRetry timer. The speaker's owner task runs one per configured
//!   peer and carries out its actions (connect, start or stop the retry timer).
//! - [`Fsm`]: one TCP connection from the moment it exists, OpenSent, OpenConfirm and
//!   Established. The session driver (`session/mod.rs`) runs one per connection; a peer has two
//!   during a collision (§6.8), which is why this half is per connection.
//!
//! `handle` maps `(state, event)` to a new state and a list of actions. There is no I/O and no
//! clock here: timers are started and stopped by actions and their expiry comes back as events,
//! so every transition is a unit test. Event names follow RFC 4271 §8.1; unexpected messages are
//! answered with the FSM error subcodes of RFC 6608.

mod collision;
mod negotiate;
mod peer;
#[cfg(test)]
mod tests;

pub use collision::{
    collision_notification, collision_survivor, connections_to_dump, ConnectionOrigin,
    OpenedConnection,
};
pub use negotiate::{negotiate, FsmConfig, Negotiated};
pub use peer::{PeerAction, PeerEvent, PeerFsm, PeerState};

use crate::wire::{error_code, Message, Notification, Open, RouteRefresh, Update};
use std::fmt;

/// RFC 4271 §8.2.2 states.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum State {
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl State {
    pub fn as_str(&self) -> &'static str {
        match self {
            State::Idle => "Idle",
            State::Connect => "Connect",
            State::Active => "Active",
            State::OpenSent => "OpenSent",
            State::OpenConfirm => "OpenConfirm",
            State::Established => "Established",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// RFC 4271 §8.1 events of one connection (the optional ones we do not implement, such as
/// DelayOpen, are absent; the connection-management events are [`PeerEvent`]s).
// Events are moved once into `handle`; boxing the UPDATE would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event 2.
    ManualStop,
    /// Event 10.
    HoldTimerExpires,
    /// RFC 9687: nothing could be written for the send hold time.
    SendHoldTimerExpires,
    /// Event 16: our outgoing connection was established.
    TcpCrAcked,
    /// Event 17: an incoming connection was accepted.
    TcpConnectionConfirmed,
    /// Event 18.
    TcpConnectionFails,
    /// Event 19: a well-formed OPEN (validation against our config happens here).
    BgpOpen(Open),
    /// Event 21: header error; the NOTIFICATION to send.
    BgpHeaderErr(Notification),
    /// Event 22: malformed OPEN; the NOTIFICATION to send.
    BgpOpenMsgErr(Notification),
    /// Event 23: collision resolution chose to close this connection (RFC 4271 §6.8).
    OpenCollisionDump,
    /// Event 24/25: a NOTIFICATION arrived.
    NotifMsg(Notification),
    /// Event 26.
    KeepAliveMsg,
    /// Event 27.
    UpdateMsg(Update),
    /// Event 28: malformed UPDATE; the NOTIFICATION to send.
    UpdateMsgErr(Notification),
    /// A ROUTE-REFRESH (RFC 2918), valid only in Established.
    RouteRefreshMsg(RouteRefresh),
    /// Stop with a specific Cease NOTIFICATION (RFC 4486: de-configured, shutdown, rejected).
    Cease(Notification),
    /// Close without a NOTIFICATION: a graceful restart of this speaker (RFC 4724 §4.1), so a
    /// peer that negotiated it keeps our routes while we are away.
    GracefulStop,
}

/// Why a connection ended, kept for status output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    ManualStop,
    TcpFailed,
    /// We sent this NOTIFICATION.
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION.
    NotificationReceived(Notification),
}

impl DownReason {
    /// This side closed the connection because collision resolution chose the other one
    /// (RFC 4271 §6.8): not an error of the peer.
    pub fn is_collision(&self) -> bool {
        matches!(self, DownReason::NotificationSent(n) if *n == collision_notification())
    }
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::ManualStop => f.write_str("stopped"),
            DownReason::TcpFailed => f.write_str("connection closed"),
            DownReason::NotificationSent(n) => {
                write!(f, "sent NOTIFICATION: {}", notification_text(n))
            }
            DownReason::NotificationReceived(n) => {
                write!(f, "received NOTIFICATION: {}", notification_text(n))
            }
        }
    }
}

/// A readable name for a NOTIFICATION code/subcode (RFC 4271 §4.5, RFC 4486, RFC 6608).
pub fn notification_text(n: &Notification) -> String {
    use error_code::*;
    let code = match n.code {
        MESSAGE_HEADER => "Message Header Error",
        OPEN_MESSAGE => match n.subcode {
            open::UNSUPPORTED_VERSION_NUMBER => "OPEN Message Error / Unsupported Version Number",
            open::BAD_PEER_AS => "OPEN Message Error / Bad Peer AS",
            open::BAD_BGP_IDENTIFIER => "OPEN Message Error / Bad BGP Identifier",
            open::UNACCEPTABLE_HOLD_TIME => "OPEN Message Error / Unacceptable Hold Time",
            open::UNSUPPORTED_CAPABILITY => "OPEN Message Error / Unsupported Capability",
            _ => "OPEN Message Error",
        },
        UPDATE_MESSAGE => "UPDATE Message Error",
        HOLD_TIMER_EXPIRED => "Hold Timer Expired",
        FSM => "Finite State Machine Error",
        CEASE => match n.subcode {
            cease::MAXIMUM_PREFIXES_REACHED => "Cease / Maximum Number of Prefixes Reached",
            cease::ADMINISTRATIVE_SHUTDOWN => "Cease / Administrative Shutdown",
            cease::PEER_DECONFIGURED => "Cease / Peer De-configured",
            cease::ADMINISTRATIVE_RESET => "Cease / Administrative Reset",
            cease::CONNECTION_REJECTED => "Cease / Connection Rejected",
            cease::CONNECTION_COLLISION_RESOLUTION => "Cease / Connection Collision Resolution",
            _ => "Cease",
        },
        ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        SEND_HOLD_TIMER_EXPIRED => "Send Hold Timer Expired",
        _ => "unknown error",
    };
    format!("{code} ({}/{})", n.code, n.subcode)
}

/// What the driver must do, in order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(Message),
    /// Drop the TCP connection (after sending what was queued before this action).
    CloseConnection,
    /// (Re)start the hold timer with this many seconds; 0 stops it.
    StartHoldTimer(u16),
    /// From now on send a KEEPALIVE whenever nothing was sent for this many seconds (RFC 4271
    /// §4.4, the KeepaliveTimer); 0 sends none. The driver's writer keeps this timer, so a
    /// session whose reader is busy still keeps its peer's hold timer fed.
    KeepaliveInterval(u16),
    /// Stop every timer (on the way to Idle).
    StopTimers,
    /// The session is up with these parameters.
    Established(Negotiated),
    /// An UPDATE for the RIB.
    Deliver(Update),
    /// A ROUTE-REFRESH request: re-send the Adj-RIB-Out.
    RefreshRequested(RouteRefresh),
    /// The connection ended (the machine is now Idle).
    Down(DownReason),
}

/// RFC 4271 §8.2.2: the hold timer while waiting for the OPEN, "a large value", 4 minutes.
pub const OPEN_HOLD_TIME: u16 = 240;

/// One connection's state machine. It starts in Idle and leaves it only when its TCP
/// connection is up (event 16 or 17); it never returns from Idle once it got there.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// Set when the connection went from OpenSent on: a closed machine stays closed.
    closed: bool,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        Fsm {
            cfg,
            state: State::Idle,
            negotiated: None,
            closed: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.cfg
    }

    /// The negotiated parameters, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Applies one event and returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match self.state {
            State::Idle => self.idle(event),
            State::OpenSent => self.open_sent(event),
            State::OpenConfirm => self.open_confirm(event),
            State::Established => self.established(event),
            // The connection-level machine never enters the connection-management states.
            State::Connect | State::Active => Vec::new(),
        }
    }

    /// Idle: the connection exists once TCP is up (RFC 4271 §8.2.2 Connect/Active, events 16
    /// and 17: send OPEN, go to OpenSent). Everything else is ignored, as in Idle.
    fn idle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::TcpCrAcked | Event::TcpConnectionConfirmed if !self.closed => self.send_open(),
            _ => Vec::new(),
        }
    }

    fn send_open(&mut self) -> Vec<Action> {
        self.state = State::OpenSent;
        vec![
            Action::Send(Message::Open(self.cfg.open())),
            Action::StartHoldTimer(OPEN_HOLD_TIME),
        ]
    }

    /// OpenSent: our OPEN is out, waiting for theirs.
    fn open_sent(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::TcpConnectionFails => self.go_idle(DownReason::TcpFailed, None),
            Event::BgpOpen(open) => match negotiate(&self.cfg, &open) {
                Ok(neg) => {
                    let actions = vec![
                        Action::Send(Message::Keepalive),
                        Action::KeepaliveInterval(neg.keepalive),
                        Action::StartHoldTimer(neg.hold_time),
                    ];
                    self.negotiated = Some(neg);
                    self.state = State::OpenConfirm;
                    actions
                }
                Err(notification) => self.fail_with(notification),
            },
            event => self.common(event, error_code::fsm::UNEXPECTED_IN_OPENSENT),
        }
    }

    /// OpenConfirm: both OPENs exchanged, waiting for the first KEEPALIVE.
    fn open_confirm(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::KeepAliveMsg => {
                let Some(neg) = self.negotiated.clone() else {
                    return self.fail_fsm(error_code::fsm::UNEXPECTED_IN_OPENCONFIRM);
                };
                self.state = State::Established;
                vec![
                    Action::StartHoldTimer(neg.hold_time),
                    Action::Established(neg),
                ]
            }
            event => self.common(event, error_code::fsm::UNEXPECTED_IN_OPENCONFIRM),
        }
    }

    fn established(&mut self, event: Event) -> Vec<Action> {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        match event {
            // RFC 4271 §8.2.2 Established: KEEPALIVE and UPDATE restart the hold timer.
            Event::KeepAliveMsg => vec![Action::StartHoldTimer(hold)],
            Event::UpdateMsg(update) => vec![Action::StartHoldTimer(hold), Action::Deliver(update)],
            Event::RouteRefreshMsg(rr) => {
                vec![Action::StartHoldTimer(hold), Action::RefreshRequested(rr)]
            }
            event => self.common(event, error_code::fsm::UNEXPECTED_IN_ESTABLISHED),
        }
    }

    /// Events handled alike in OpenSent, OpenConfirm and Established; anything left is a
    /// message or timer that has no business in `state` (RFC 6608 subcode `unexpected`).
    fn common(&mut self, event: Event, unexpected: u8) -> Vec<Action> {
        use error_code::*;
        match event {
            Event::ManualStop => self.fail_with(Notification::new(
                CEASE,
                cease::ADMINISTRATIVE_SHUTDOWN,
                Vec::new(),
            )),
            Event::Cease(n) => self.fail_with(n),
            Event::GracefulStop => self.go_idle(DownReason::ManualStop, None),
            Event::HoldTimerExpires => {
                self.fail_with(Notification::new(HOLD_TIMER_EXPIRED, 0, Vec::new()))
            }
            // RFC 9687 §4: send the NOTIFICATION (it may not get out) and close.
            Event::SendHoldTimerExpires => {
                self.fail_with(Notification::new(SEND_HOLD_TIMER_EXPIRED, 0, Vec::new()))
            }
            Event::TcpConnectionFails => self.go_idle(DownReason::TcpFailed, None),
            Event::BgpHeaderErr(n) => self.fail_with(n),
            // A malformed OPEN is an OPEN error before Established, an unexpected message after
            // (RFC 4271 §8.2.2 Established, "Events 9, 12-13, 20-22").
            Event::BgpOpenMsgErr(n) if self.state != State::Established => self.fail_with(n),
            // A malformed UPDATE only counts as such in Established; before, any UPDATE is
            // unexpected.
            Event::UpdateMsgErr(n) if self.state == State::Established => self.fail_with(n),
            Event::OpenCollisionDump => self.fail_with(collision_notification()),
            Event::NotifMsg(n) => self.go_idle(DownReason::NotificationReceived(n), None),
            _ => self.fail_fsm(unexpected),
        }
    }

    fn fail_fsm(&mut self, subcode: u8) -> Vec<Action> {
        self.fail_with(Notification::new(error_code::FSM, subcode, Vec::new()))
    }

    /// Sends `n`, closes, goes to Idle.
    fn fail_with(&mut self, n: Notification) -> Vec<Action> {
        self.go_idle(DownReason::NotificationSent(n.clone()), Some(n))
    }

    fn go_idle(&mut self, reason: DownReason, notification: Option<Notification>) -> Vec<Action> {
        self.state = State::Idle;
        self.negotiated = None;
        self.closed = true;
        let mut actions = Vec::with_capacity(4);
        if let Some(n) = notification {
            actions.push(Action::Send(Message::Notification(n)));
        }
        actions.extend([
            Action::StopTimers,
            Action::CloseConnection,
            Action::Down(reason),
        ]);
        actions
    }
}
