//! The BGP finite state machine of one connection, RFC 4271 §8, as pure code.
//!
//! [`Fsm::handle`] maps `(state, event)` to a new state and a list of [`Action`]s for the
//! driver (`session.rs`) to carry out. There is no I/O and no clock here: timers are started
//! and stopped by actions and their expiry comes back as events, so every transition is a unit
//! test. Event names follow RFC 4271 §8.1; unexpected messages are answered with the FSM error
//! subcodes of RFC 6608.

mod collision;
mod negotiate;
#[cfg(test)]
mod tests;

pub use collision::{
    collision_notification, collision_survivor, connections_to_dump, ConnectionOrigin,
    OpenedConnection,
};
pub use negotiate::{negotiate, FsmConfig, Negotiated};

use crate::wire::{error_code, Message, Notification, Open, RouteRefresh, Update};
use std::fmt;

/// RFC 4271 §8.2.2 states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
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

/// RFC 4271 §8.1 events (the optional ones we do not implement, such as DelayOpen, are absent).
// Events are moved once into `handle`; boxing the UPDATE would only add an allocation.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Event 1.
    ManualStart,
    /// Event 2.
    ManualStop,
    /// Event 4: ManualStart_with_PassiveTcpEstablishment.
    ManualStartPassive,
    /// Event 9.
    ConnectRetryTimerExpires,
    /// Event 10.
    HoldTimerExpires,
    /// Event 11.
    KeepaliveTimerExpires,
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
            cease::ADMINISTRATIVE_SHUTDOWN => "Cease / Administrative Shutdown",
            cease::PEER_DECONFIGURED => "Cease / Peer De-configured",
            cease::ADMINISTRATIVE_RESET => "Cease / Administrative Reset",
            cease::CONNECTION_REJECTED => "Cease / Connection Rejected",
            cease::CONNECTION_COLLISION_RESOLUTION => "Cease / Connection Collision Resolution",
            _ => "Cease",
        },
        ROUTE_REFRESH_MESSAGE => "ROUTE-REFRESH Message Error",
        _ => "unknown error",
    };
    format!("{code} ({}/{})", n.code, n.subcode)
}

/// What the driver must do, in order.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Initiate the outgoing TCP connection.
    Connect,
    Send(Message),
    /// Drop the TCP connection (after sending what was queued before this action).
    CloseConnection,
    StartConnectRetryTimer,
    StopConnectRetryTimer,
    /// (Re)start the hold timer with this many seconds; 0 stops it.
    StartHoldTimer(u16),
    /// (Re)start the keepalive timer with this many seconds; 0 stops it.
    StartKeepaliveTimer(u16),
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

/// One connection's state machine.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: FsmConfig,
    state: State,
    negotiated: Option<Negotiated>,
    /// RFC 4271 §8: ConnectRetryCounter, incremented on every failed attempt.
    connect_retry_counter: u32,
}

impl Fsm {
    pub fn new(cfg: FsmConfig) -> Self {
        Fsm {
            cfg,
            state: State::Idle,
            negotiated: None,
            connect_retry_counter: 0,
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

    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    /// Applies one event and returns what to do.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        match self.state {
            State::Idle => self.idle(event),
            State::Connect => self.connect(event),
            State::Active => self.active(event),
            State::OpenSent => self.open_sent(event),
            State::OpenConfirm => self.open_confirm(event),
            State::Established => self.established(event),
        }
    }

    /// RFC 4271 §8.2.2 Idle: only a start leaves it; everything else is ignored.
    fn idle(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::ManualStart => {
                self.connect_retry_counter = 0;
                self.state = State::Connect;
                vec![Action::StartConnectRetryTimer, Action::Connect]
            }
            Event::ManualStartPassive => {
                self.connect_retry_counter = 0;
                self.state = State::Active;
                vec![Action::StartConnectRetryTimer]
            }
            _ => Vec::new(),
        }
    }

    /// Connect: waiting for our TCP connection to complete.
    fn connect(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::ManualStart | Event::ManualStartPassive => Vec::new(),
            Event::ManualStop | Event::Cease(_) => {
                self.connect_retry_counter = 0;
                self.go_idle(DownReason::ManualStop, None)
            }
            Event::ConnectRetryTimerExpires => {
                // Drop the pending attempt and try again, staying in Connect.
                vec![
                    Action::CloseConnection,
                    Action::StartConnectRetryTimer,
                    Action::Connect,
                ]
            }
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => self.send_open(),
            Event::TcpConnectionFails => {
                self.connect_retry_counter += 1;
                self.state = State::Active;
                vec![Action::StartConnectRetryTimer]
            }
            _ => self.fail_without_notification(),
        }
    }

    /// Active: listening for the peer to connect.
    fn active(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::ManualStart | Event::ManualStartPassive => Vec::new(),
            Event::ManualStop | Event::Cease(_) => {
                self.connect_retry_counter = 0;
                self.go_idle(DownReason::ManualStop, None)
            }
            Event::ConnectRetryTimerExpires => {
                self.state = State::Connect;
                vec![Action::StartConnectRetryTimer, Action::Connect]
            }
            Event::TcpCrAcked | Event::TcpConnectionConfirmed => self.send_open(),
            Event::TcpConnectionFails => {
                self.connect_retry_counter += 1;
                self.state = State::Idle;
                vec![Action::StartConnectRetryTimer]
            }
            _ => self.fail_without_notification(),
        }
    }

    fn send_open(&mut self) -> Vec<Action> {
        self.state = State::OpenSent;
        vec![
            Action::StopConnectRetryTimer,
            Action::Send(Message::Open(self.cfg.open())),
            Action::StartHoldTimer(OPEN_HOLD_TIME),
        ]
    }

    /// OpenSent: our OPEN is out, waiting for theirs.
    fn open_sent(&mut self, event: Event) -> Vec<Action> {
        match event {
            Event::ManualStart | Event::ManualStartPassive => Vec::new(),
            Event::TcpConnectionFails => {
                self.connect_retry_counter += 1;
                self.go_idle(DownReason::TcpFailed, None)
            }
            Event::BgpOpen(open) => match negotiate(&self.cfg, &open) {
                Ok(neg) => {
                    let actions = vec![
                        Action::StopConnectRetryTimer,
                        Action::Send(Message::Keepalive),
                        Action::StartKeepaliveTimer(neg.keepalive),
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
            Event::ManualStart | Event::ManualStartPassive => Vec::new(),
            Event::KeepaliveTimerExpires => self.send_keepalive(),
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
            Event::ManualStart | Event::ManualStartPassive => Vec::new(),
            Event::KeepaliveTimerExpires => self.send_keepalive(),
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
            Event::ManualStop => {
                self.connect_retry_counter = 0;
                self.fail_with(Notification::new(
                    CEASE,
                    cease::ADMINISTRATIVE_SHUTDOWN,
                    Vec::new(),
                ))
            }
            Event::Cease(n) => {
                self.connect_retry_counter = 0;
                self.fail_with(n)
            }
            Event::HoldTimerExpires => {
                self.fail_with(Notification::new(HOLD_TIMER_EXPIRED, 0, Vec::new()))
            }
            Event::TcpConnectionFails => {
                self.connect_retry_counter += 1;
                self.go_idle(DownReason::TcpFailed, None)
            }
            Event::BgpHeaderErr(n) => self.fail_with(n),
            // A malformed OPEN is an OPEN error before Established, an unexpected message after
            // (RFC 4271 §8.2.2 Established, "Events 9, 12-13, 20-22").
            Event::BgpOpenMsgErr(n) if self.state != State::Established => self.fail_with(n),
            // A malformed UPDATE only counts as such in Established; before, any UPDATE is
            // unexpected.
            Event::UpdateMsgErr(n) if self.state == State::Established => self.fail_with(n),
            Event::OpenCollisionDump => self.fail_with(collision_notification()),
            Event::NotifMsg(n) => {
                self.connect_retry_counter += 1;
                self.go_idle(DownReason::NotificationReceived(n), None)
            }
            _ => self.fail_fsm(unexpected),
        }
    }

    fn send_keepalive(&mut self) -> Vec<Action> {
        let keepalive = self.negotiated.as_ref().map_or(0, |n| n.keepalive);
        vec![
            Action::Send(Message::Keepalive),
            Action::StartKeepaliveTimer(keepalive),
        ]
    }

    fn fail_fsm(&mut self, subcode: u8) -> Vec<Action> {
        self.fail_with(Notification::new(error_code::FSM, subcode, Vec::new()))
    }

    /// Sends `n`, closes, goes to Idle.
    fn fail_with(&mut self, n: Notification) -> Vec<Action> {
        if n.code != error_code::CEASE {
            self.connect_retry_counter += 1;
        }
        self.go_idle(DownReason::NotificationSent(n.clone()), Some(n))
    }

    /// Connect/Active "any other event": back to Idle without a NOTIFICATION (no OPEN was
    /// exchanged, so the peer would not expect one).
    fn fail_without_notification(&mut self) -> Vec<Action> {
        self.connect_retry_counter += 1;
        self.go_idle(DownReason::TcpFailed, None)
    }

    fn go_idle(&mut self, reason: DownReason, notification: Option<Notification>) -> Vec<Action> {
        self.state = State::Idle;
        self.negotiated = None;
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
