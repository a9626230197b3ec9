//! One test per transition of the connection's part of RFC 4271 §8.2.2 (the peer's Idle,
//! Connect and Active are tested in `peer.rs`), plus OPEN validation and negotiation.

use super::*;
use crate::wire::{error_code, Afi, Capability, Message, Notification, Open, Safi, Update};
use std::net::Ipv4Addr;

const OUR_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);

fn cfg(local_as: u32, remote_as: u32, hold: u16) -> FsmConfig {
    FsmConfig::new(local_as, remote_as, OUR_ID, hold)
}

fn peer_open(asn: u32, hold: u16, id: Ipv4Addr) -> Open {
    Open::new(asn, hold, id, FsmConfig::default_capabilities(asn))
}

fn fsm_in(state: State) -> Fsm {
    let mut fsm = Fsm::new(cfg(65000, 65000, 90));
    let path: &[Event] = match state {
        State::Idle => &[],
        State::Connect | State::Active => unreachable!("not states of a connection"),
        State::OpenSent => &[Event::TcpCrAcked],
        State::OpenConfirm => &[
            Event::TcpCrAcked,
            Event::BgpOpen(peer_open(65000, 90, PEER_ID)),
        ],
        State::Established => &[
            Event::TcpCrAcked,
            Event::BgpOpen(peer_open(65000, 90, PEER_ID)),
            Event::KeepAliveMsg,
        ],
    };
    for e in path {
        fsm.handle(e.clone());
    }
    assert_eq!(fsm.state(), state);
    fsm
}

fn sent_notification(actions: &[Action]) -> Option<(u8, u8)> {
    actions.iter().find_map(|a| match a {
        Action::Send(Message::Notification(n)) => Some((n.code, n.subcode)),
        _ => None,
    })
}

fn closes(actions: &[Action]) -> bool {
    actions.contains(&Action::CloseConnection)
        && actions.iter().any(|a| matches!(a, Action::Down(_)))
}

fn fsm_error(subcode: u8) -> Option<(u8, u8)> {
    Some((error_code::FSM, subcode))
}

// ---- Idle: the connection's TCP is up (RFC 4271 §8.2.2 Connect/Active, events 16/17) ----

#[test]
fn tcp_up_sends_open() {
    for e in [Event::TcpCrAcked, Event::TcpConnectionConfirmed] {
        let mut f = fsm_in(State::Idle);
        let a = f.handle(e);
        assert_eq!(f.state(), State::OpenSent);
        assert!(
            matches!(&a[0], Action::Send(Message::Open(o)) if o.hold_time == 90 && o.bgp_id == OUR_ID)
        );
        assert_eq!(a[1], Action::StartHoldTimer(OPEN_HOLD_TIME));
    }
}

#[test]
fn idle_ignores_everything_else() {
    for e in [
        Event::ManualStop,
        Event::HoldTimerExpires,
        Event::KeepAliveMsg,
        Event::TcpConnectionFails,
        Event::UpdateMsg(Update::default()),
    ] {
        let mut f = fsm_in(State::Idle);
        assert!(f.handle(e).is_empty());
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn a_closed_connection_stays_closed() {
    let mut f = fsm_in(State::OpenSent);
    f.handle(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Idle);
    assert!(f.handle(Event::TcpCrAcked).is_empty());
    assert_eq!(f.state(), State::Idle);
}

// ---- OpenSent ----

#[test]
fn open_sent_valid_open_goes_open_confirm() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::BgpOpen(peer_open(65000, 60, PEER_ID)));
    assert_eq!(f.state(), State::OpenConfirm);
    assert_eq!(
        a,
        vec![
            Action::Send(Message::Keepalive),
            Action::KeepaliveInterval(20),
            Action::StartHoldTimer(60),
        ]
    );
    let n = f.negotiated().unwrap();
    assert_eq!((n.hold_time, n.keepalive, n.remote_id), (60, 20, PEER_ID));
}

#[test]
fn open_sent_bad_peer_as() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::BgpOpen(peer_open(65001, 90, PEER_ID)));
    assert_eq!(f.state(), State::Idle);
    assert!(closes(&a));
    let Some(Action::Send(Message::Notification(n))) = a.first() else {
        panic!("{a:?}")
    };
    assert_eq!((n.code, n.subcode), (2, error_code::open::BAD_PEER_AS));
    assert_eq!(&n.data[..], &65001u16.to_be_bytes());
}

#[test]
fn open_sent_ibgp_same_identifier_is_bad_identifier() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::BgpOpen(peer_open(65000, 90, OUR_ID)));
    assert_eq!(
        sent_notification(&a),
        Some((2, error_code::open::BAD_BGP_IDENTIFIER))
    );
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn open_sent_zero_identifier_is_bad_identifier() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::BgpOpen(peer_open(65000, 90, Ipv4Addr::UNSPECIFIED)));
    assert_eq!(
        sent_notification(&a),
        Some((2, error_code::open::BAD_BGP_IDENTIFIER))
    );
}

#[test]
fn open_sent_hold_time_one_or_two_is_unacceptable() {
    for hold in [1, 2] {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(Event::BgpOpen(peer_open(65000, hold, PEER_ID)));
        assert_eq!(
            sent_notification(&a),
            Some((2, error_code::open::UNACCEPTABLE_HOLD_TIME))
        );
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn open_sent_hold_time_zero_disables_timers() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::BgpOpen(peer_open(65000, 0, PEER_ID)));
    assert!(a.contains(&Action::KeepaliveInterval(0)));
    assert!(a.contains(&Action::StartHoldTimer(0)));
    assert_eq!(f.negotiated().unwrap().hold_time, 0);
}

#[test]
fn open_sent_hold_timer_expiry_sends_hold_timer_expired() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::HoldTimerExpires);
    assert_eq!(
        sent_notification(&a),
        Some((error_code::HOLD_TIMER_EXPIRED, 0))
    );
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn open_sent_manual_stop_sends_cease() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::ManualStop);
    assert_eq!(
        sent_notification(&a),
        Some((6, error_code::cease::ADMINISTRATIVE_SHUTDOWN))
    );
}

#[test]
fn open_sent_tcp_fails_goes_idle() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::TcpConnectionFails);
    assert_eq!(f.state(), State::Idle);
    assert!(a.contains(&Action::Down(DownReason::TcpFailed)));
}

#[test]
fn open_sent_errors_send_their_notification() {
    let hdr = Notification::new(1, 2, vec![0, 5]);
    let open = Notification::new(2, 4, Vec::new());
    for (e, want) in [
        (Event::BgpHeaderErr(hdr.clone()), (1, 2)),
        (Event::BgpOpenMsgErr(open.clone()), (2, 4)),
    ] {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(e);
        assert_eq!(sent_notification(&a), Some(want));
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn open_sent_unexpected_messages_are_fsm_errors() {
    for e in [
        Event::KeepAliveMsg,
        Event::UpdateMsg(Update::default()),
        Event::UpdateMsgErr(Notification::new(3, 1, Vec::new())),
    ] {
        let mut f = fsm_in(State::OpenSent);
        let a = f.handle(e);
        assert_eq!(
            sent_notification(&a),
            fsm_error(error_code::fsm::UNEXPECTED_IN_OPENSENT)
        );
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn open_sent_notification_received_goes_idle_silently() {
    let mut f = fsm_in(State::OpenSent);
    let n = Notification::new(6, 5, Vec::new());
    let a = f.handle(Event::NotifMsg(n.clone()));
    assert_eq!(sent_notification(&a), None);
    assert!(a.contains(&Action::Down(DownReason::NotificationReceived(n))));
}

#[test]
fn open_sent_collision_dump_sends_cease_collision() {
    let mut f = fsm_in(State::OpenSent);
    let a = f.handle(Event::OpenCollisionDump);
    assert_eq!(sent_notification(&a), Some((6, 7)));
}

// ---- OpenConfirm ----

#[test]
fn open_confirm_keepalive_establishes() {
    let mut f = fsm_in(State::OpenConfirm);
    let a = f.handle(Event::KeepAliveMsg);
    assert_eq!(f.state(), State::Established);
    assert_eq!(a[0], Action::StartHoldTimer(90));
    assert!(matches!(&a[1], Action::Established(n) if n.remote_as == 65000));
}

#[test]
fn open_confirm_second_open_and_update_are_fsm_errors() {
    for e in [
        Event::BgpOpen(peer_open(65000, 90, PEER_ID)),
        Event::UpdateMsg(Update::default()),
    ] {
        let mut f = fsm_in(State::OpenConfirm);
        let a = f.handle(e);
        assert_eq!(
            sent_notification(&a),
            fsm_error(error_code::fsm::UNEXPECTED_IN_OPENCONFIRM)
        );
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn open_confirm_hold_expiry_stop_collision_notification() {
    let cases = [
        (Event::HoldTimerExpires, Some((4, 0))),
        (Event::ManualStop, Some((6, 2))),
        (Event::OpenCollisionDump, Some((6, 7))),
        (
            Event::BgpHeaderErr(Notification::new(1, 1, Vec::new())),
            Some((1, 1)),
        ),
        (Event::NotifMsg(Notification::new(6, 2, Vec::new())), None),
        (Event::TcpConnectionFails, None),
    ];
    for (e, want) in cases {
        let mut f = fsm_in(State::OpenConfirm);
        let a = f.handle(e);
        assert_eq!(sent_notification(&a), want);
        assert_eq!(f.state(), State::Idle);
        assert!(f.negotiated().is_none());
    }
}

// ---- Established ----

#[test]
fn established_update_is_delivered_and_restarts_hold() {
    let mut f = fsm_in(State::Established);
    let u = Update {
        nlri: vec!["10.1.0.0/24".parse().unwrap()],
        ..Default::default()
    };
    let a = f.handle(Event::UpdateMsg(u.clone()));
    assert_eq!(a, vec![Action::StartHoldTimer(90), Action::Deliver(u)]);
    assert_eq!(f.state(), State::Established);
}

#[test]
fn established_keepalive_restarts_hold() {
    let mut f = fsm_in(State::Established);
    assert_eq!(
        f.handle(Event::KeepAliveMsg),
        vec![Action::StartHoldTimer(90)]
    );
}

#[test]
fn established_route_refresh_requested() {
    let mut f = fsm_in(State::Established);
    let rr = crate::wire::RouteRefresh {
        afi: Afi::IPV4,
        subtype: 0,
        safi: Safi::UNICAST,
    };
    let a = f.handle(Event::RouteRefreshMsg(rr));
    assert!(a.contains(&Action::RefreshRequested(rr)));
}

#[test]
fn established_update_error_sends_its_notification() {
    let mut f = fsm_in(State::Established);
    let a = f.handle(Event::UpdateMsgErr(Notification::new(3, 11, Vec::new())));
    assert_eq!(sent_notification(&a), Some((3, 11)));
    assert_eq!(f.state(), State::Idle);
}

#[test]
fn established_open_is_fsm_error() {
    for e in [
        Event::BgpOpen(peer_open(65000, 90, PEER_ID)),
        Event::BgpOpenMsgErr(Notification::new(2, 2, Vec::new())),
    ] {
        let mut f = fsm_in(State::Established);
        let a = f.handle(e);
        assert_eq!(
            sent_notification(&a),
            fsm_error(error_code::fsm::UNEXPECTED_IN_ESTABLISHED)
        );
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn established_down_paths() {
    let cases = [
        (Event::HoldTimerExpires, Some((4, 0))),
        (Event::ManualStop, Some((6, 2))),
        (
            Event::Cease(Notification::new(6, 3, Vec::new())),
            Some((6, 3)),
        ),
        (Event::OpenCollisionDump, Some((6, 7))),
        (Event::NotifMsg(Notification::new(6, 2, Vec::new())), None),
        (Event::TcpConnectionFails, None),
    ];
    for (e, want) in cases {
        let mut f = fsm_in(State::Established);
        let a = f.handle(e);
        assert_eq!(sent_notification(&a), want);
        assert!(closes(&a));
        assert_eq!(f.state(), State::Idle);
    }
}

#[test]
fn a_graceful_stop_closes_without_a_notification() {
    for state in [State::OpenConfirm, State::Established] {
        let mut f = fsm_in(state);
        let a = f.handle(Event::GracefulStop);
        assert_eq!(sent_notification(&a), None);
        assert!(closes(&a));
        assert_eq!(f.state(), State::Idle);
    }
}

// ---- Negotiation ----

#[test]
fn capability_used_only_when_both_sent_it() {
    let mut ours = cfg(65000, 65000, 90);
    ours.capabilities
        .retain(|c| !matches!(c, Capability::ExtendedMessage));
    let theirs = Open::new(
        65000,
        90,
        PEER_ID,
        vec![Capability::FourOctetAs(65000), Capability::ExtendedMessage],
    );
    let n = negotiate(&ours, &theirs).unwrap();
    assert!(n.context.four_octet_as);
    assert!(!n.context.extended_message);
    assert!(!n.route_refresh);
    // They sent no Multiprotocol capability: IPv4 unicast stays implied (RFC 4760 §8).
    assert!(n.ipv4_unicast);
    assert_eq!(n.capabilities, vec!["ipv4-unicast", "4-octet-as"]);
}

#[test]
fn four_octet_as_comes_from_the_capability() {
    let ours = cfg(65000, 4_200_000_001, 90);
    let theirs = peer_open(4_200_000_001, 90, PEER_ID);
    assert_eq!(theirs.my_as, crate::wire::AS_TRANS);
    let n = negotiate(&ours, &theirs).unwrap();
    assert_eq!(n.remote_as, 4_200_000_001);
    assert_eq!(n.context.peer_type, crate::wire::PeerType::External);
    assert!(n.context.four_octet_as && n.context.extended_message && n.route_refresh);
}

#[test]
fn hold_time_is_the_minimum() {
    let n = negotiate(&cfg(1, 1, 30), &peer_open(1, 90, PEER_ID)).unwrap();
    assert_eq!((n.hold_time, n.keepalive), (30, 10));
    let n = negotiate(&cfg(1, 1, 0), &peer_open(1, 90, PEER_ID)).unwrap();
    assert_eq!((n.hold_time, n.keepalive), (0, 0));
}

#[test]
fn ebgp_peer_may_share_our_identifier() {
    assert!(negotiate(&cfg(1, 2, 90), &peer_open(2, 90, OUR_ID)).is_ok());
}

#[test]
fn graceful_restart_needs_both_sides() {
    let mut theirs = peer_open(1, 90, PEER_ID);
    theirs
        .capabilities
        .push(Capability::GracefulRestart(Default::default()));
    assert!(negotiate(&cfg(1, 1, 90), &theirs)
        .unwrap()
        .graceful_restart
        .is_none());
    let mut ours = cfg(1, 1, 90);
    ours.capabilities
        .push(Capability::GracefulRestart(Default::default()));
    assert!(negotiate(&ours, &theirs)
        .unwrap()
        .graceful_restart
        .is_some());
}
