//! The peer's connection management: RFC 4271 §8.2.2 Idle, Connect and Active, and the
//! ConnectRetry timer, as pure code.
//!
//! A configured peer is in one of these states while it has no connection; once a TCP
//! connection exists it is [`PeerState::Connected`] and that connection's own [`super::Fsm`]
//! takes it through OpenSent, OpenConfirm and Established. When the last connection closes the
//! peer comes back here. The speaker's owner task carries out every [`PeerAction`].
//!
//! Differences from the RFC's single machine, and why:
//! - The ConnectRetry interval is not fixed (120 s suggested in §10): it starts at the
//!   configured value and doubles on every failure with jitter ([`Backoff`]), so a full mesh
//!   restarting together neither waits two minutes nor retries in lock-step.
//! - An outgoing attempt carries its own timeout; its failure is `TcpConnectionFails`, so no
//!   retry timer runs while an attempt is in flight.
//! - A passive peer (§8.1.1 PassiveTcpEstablishment) never connects: it waits in Active.

use super::State;
use crate::session::Backoff;
use std::time::Duration;

/// Where the peer's connection management stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Not started, or waiting for the retry timer after a session ended.
    Idle,
    /// Our outgoing TCP connection attempt is under way.
    Connect,
    /// Waiting for the peer to connect (and, if not passive, for the retry timer).
    Active,
    /// At least one TCP connection exists; its [`super::Fsm`] has the state.
    Connected,
}

impl PeerState {
    /// The RFC 4271 state to report; `None` while connected (ask the connection).
    pub fn as_state(self) -> Option<State> {
        match self {
            PeerState::Idle => Some(State::Idle),
            PeerState::Connect => Some(State::Connect),
            PeerState::Active => Some(State::Active),
            PeerState::Connected => None,
        }
    }
}

/// RFC 4271 §8.1 events that concern connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerEvent {
    /// Events 1 and 4: the peer was configured (passive or not, as configured).
    ManualStart,
    /// Event 2: the peer is being removed or the speaker stops.
    ManualStop,
    /// Event 9.
    ConnectRetryTimerExpires,
    /// Event 16: our attempt connected.
    TcpCrAcked,
    /// Event 17: the peer connected to us.
    TcpConnectionConfirmed,
    /// Event 18 for our attempt: it failed or timed out.
    TcpConnectionFails,
    /// A connection of this peer reached Established.
    SessionEstablished,
    /// The peer's last connection closed; `clean` when it ended without an error of either side
    /// (collision resolution). `idle_hold`: wait this long before connecting again instead of
    /// the backoff (after the peer exceeded its prefix limit, RFC 4486 §4).
    ConnectionsClosed {
        clean: bool,
        idle_hold: Option<Duration>,
    },
}

/// What the owner must do, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAction {
    /// Start an outgoing TCP connection attempt.
    Connect,
    /// Fire `ConnectRetryTimerExpires` after this long (replacing a running timer).
    StartConnectRetryTimer(Duration),
    StopConnectRetryTimer,
}

/// One configured peer's connection management.
#[derive(Debug, Clone)]
pub struct PeerFsm {
    passive: bool,
    state: PeerState,
    /// RFC 4271 §8: failed attempts and sessions since the last Established.
    connect_retry_counter: u32,
    backoff: Backoff,
    /// An outgoing attempt is in flight (its result is still to come).
    attempting: bool,
    /// ManualStop happened: only ManualStart leaves Idle.
    stopped: bool,
}

impl PeerFsm {
    pub fn new(passive: bool, backoff: Backoff) -> Self {
        PeerFsm {
            passive,
            state: PeerState::Idle,
            connect_retry_counter: 0,
            backoff,
            attempting: false,
            stopped: true,
        }
    }

    pub fn state(&self) -> PeerState {
        self.state
    }

    pub fn connect_retry_counter(&self) -> u32 {
        self.connect_retry_counter
    }

    pub fn is_passive(&self) -> bool {
        self.passive
    }

    /// Applies one event and returns what to do.
    pub fn handle(&mut self, event: PeerEvent) -> Vec<PeerAction> {
        use PeerAction::*;
        use PeerEvent::*;
        match (self.state, event) {
            (_, ManualStop) => {
                self.state = PeerState::Idle;
                self.stopped = true;
                self.attempting = false;
                self.connect_retry_counter = 0;
                vec![StopConnectRetryTimer]
            }
            (PeerState::Idle, ManualStart) if self.passive => {
                self.stopped = false;
                self.state = PeerState::Active;
                Vec::new()
            }
            (PeerState::Idle, ManualStart) => {
                self.stopped = false;
                self.connect()
            }
            (PeerState::Idle | PeerState::Active, ConnectRetryTimerExpires)
                if !self.passive && !self.stopped =>
            {
                self.connect()
            }
            (PeerState::Connect, TcpConnectionFails) => {
                self.attempting = false;
                self.connect_retry_counter += 1;
                self.state = PeerState::Active;
                vec![StartConnectRetryTimer(self.backoff.next_delay())]
            }
            // Our attempt ended while a connection of the peer's exists: that one carries on.
            (PeerState::Connected, TcpConnectionFails) => {
                self.attempting = false;
                Vec::new()
            }
            (_, TcpCrAcked) => {
                self.attempting = false;
                self.state = PeerState::Connected;
                vec![StopConnectRetryTimer]
            }
            (_, TcpConnectionConfirmed) => {
                self.state = PeerState::Connected;
                vec![StopConnectRetryTimer]
            }
            (_, SessionEstablished) => {
                self.connect_retry_counter = 0;
                self.backoff.reset();
                Vec::new()
            }
            (PeerState::Connected, ConnectionsClosed { clean, idle_hold }) => {
                if !clean {
                    self.connect_retry_counter += 1;
                }
                if self.attempting {
                    // Our attempt is still out; its result decides what comes next.
                    self.state = PeerState::Connect;
                    return Vec::new();
                }
                if self.passive {
                    self.state = PeerState::Active;
                    return Vec::new();
                }
                // After a session: Idle until the retry timer fires (§8.2.2, automatic restart).
                self.state = PeerState::Idle;
                vec![StartConnectRetryTimer(
                    idle_hold.unwrap_or_else(|| self.backoff.next_delay()),
                )]
            }
            _ => Vec::new(),
        }
    }

    fn connect(&mut self) -> Vec<PeerAction> {
        self.state = PeerState::Connect;
        self.attempting = true;
        vec![PeerAction::StopConnectRetryTimer, PeerAction::Connect]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use PeerAction::*;
    use PeerEvent::*;

    fn fsm(passive: bool) -> PeerFsm {
        PeerFsm::new(passive, Backoff::new(Duration::from_secs(5)))
    }

    fn retry_delay(actions: &[PeerAction]) -> Option<Duration> {
        actions.iter().find_map(|a| match a {
            StartConnectRetryTimer(d) => Some(*d),
            _ => None,
        })
    }

    #[test]
    fn start_connects_at_once() {
        let mut f = fsm(false);
        assert_eq!(f.handle(ManualStart), vec![StopConnectRetryTimer, Connect]);
        assert_eq!(f.state(), PeerState::Connect);
        assert_eq!(f.state().as_state(), Some(State::Connect));
    }

    #[test]
    fn passive_start_waits_in_active_and_never_connects() {
        let mut f = fsm(true);
        assert!(f.handle(ManualStart).is_empty());
        assert_eq!(f.state(), PeerState::Active);
        assert!(f.handle(ConnectRetryTimerExpires).is_empty());
        assert_eq!(f.state(), PeerState::Active);
        assert_eq!(
            f.handle(TcpConnectionConfirmed),
            vec![StopConnectRetryTimer]
        );
        assert_eq!(f.state(), PeerState::Connected);
        assert_eq!(f.state().as_state(), None);
        assert!(f
            .handle(ConnectionsClosed {
                clean: false,
                idle_hold: None
            })
            .is_empty());
        assert_eq!(f.state(), PeerState::Active);
    }

    #[test]
    fn a_failed_attempt_goes_active_and_retries_with_growing_delay() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        let a = f.handle(TcpConnectionFails);
        assert_eq!(f.state(), PeerState::Active);
        let first = retry_delay(&a).unwrap();
        // The first retry of a peer never reached is quick (nodes starting together).
        assert!(first >= Duration::from_millis(375) && first <= Duration::from_millis(500));
        assert_eq!(f.connect_retry_counter(), 1);
        assert_eq!(
            f.handle(ConnectRetryTimerExpires),
            vec![StopConnectRetryTimer, Connect]
        );
        assert_eq!(f.state(), PeerState::Connect);
        let second = retry_delay(&f.handle(TcpConnectionFails)).unwrap();
        assert!(second > first, "{second:?} after {first:?}");
        assert_eq!(f.connect_retry_counter(), 2);
    }

    #[test]
    fn an_incoming_connection_while_waiting_stops_the_timer() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        f.handle(TcpConnectionFails);
        assert_eq!(
            f.handle(TcpConnectionConfirmed),
            vec![StopConnectRetryTimer]
        );
        assert_eq!(f.state(), PeerState::Connected);
    }

    #[test]
    fn our_attempt_failing_beside_a_live_connection_changes_nothing() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        f.handle(TcpConnectionConfirmed);
        assert!(f.handle(TcpConnectionFails).is_empty());
        assert_eq!(f.state(), PeerState::Connected);
    }

    #[test]
    fn after_a_session_idle_then_retry_and_backoff_resets_on_established() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        f.handle(TcpConnectionFails);
        f.handle(ConnectRetryTimerExpires);
        f.handle(TcpConnectionFails);
        f.handle(ConnectRetryTimerExpires);
        f.handle(TcpCrAcked);
        assert_eq!(f.state(), PeerState::Connected);
        f.handle(SessionEstablished);
        assert_eq!(f.connect_retry_counter(), 0);
        let a = f.handle(ConnectionsClosed {
            clean: false,
            idle_hold: None,
        });
        assert_eq!(f.state(), PeerState::Idle);
        // Back to the base interval after Established.
        assert!(retry_delay(&a).unwrap() <= Duration::from_secs(5));
        assert_eq!(f.connect_retry_counter(), 1);
        assert_eq!(
            f.handle(ConnectRetryTimerExpires),
            vec![StopConnectRetryTimer, Connect]
        );
    }

    #[test]
    fn closing_while_our_attempt_is_out_waits_for_its_result() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        f.handle(TcpConnectionConfirmed);
        // Our attempt (started by ManualStart) has not answered yet.
        assert!(f
            .handle(ConnectionsClosed {
                clean: true,
                idle_hold: None
            })
            .is_empty());
        assert_eq!(f.state(), PeerState::Connect);
        assert_eq!(f.connect_retry_counter(), 0);
        f.handle(TcpCrAcked);
        assert_eq!(f.state(), PeerState::Connected);
    }

    #[test]
    fn an_idle_hold_replaces_the_backoff_after_a_limit() {
        let mut f = fsm(false);
        f.handle(ManualStart);
        f.handle(TcpCrAcked);
        let a = f.handle(ConnectionsClosed {
            clean: false,
            idle_hold: Some(Duration::from_secs(60)),
        });
        assert_eq!(a, vec![StartConnectRetryTimer(Duration::from_secs(60))]);
        assert_eq!(f.state(), PeerState::Idle);
    }

    #[test]
    fn manual_stop_from_anywhere_goes_idle() {
        for events in [
            &[][..],
            &[ManualStart][..],
            &[ManualStart, TcpConnectionFails][..],
            &[ManualStart, TcpCrAcked][..],
        ] {
            let mut f = fsm(false);
            for e in events {
                f.handle(*e);
            }
            assert_eq!(f.handle(ManualStop), vec![StopConnectRetryTimer]);
            assert_eq!(f.state(), PeerState::Idle);
            // A timer that fires late does not bring a stopped peer back.
            assert!(f.handle(ConnectRetryTimerExpires).is_empty());
            assert_eq!(f.state(), PeerState::Idle);
        }
    }
}
