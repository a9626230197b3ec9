#![no_main]
//! A whole session: a connection FSM and a RIB as the speaker wires them, fed a byte stream
//! from the peer. The first byte picks the setting (iBGP or eBGP, graceful restart offered,
//! hold time 0, whether a valid OPEN and KEEPALIVE come first so the rest lands in
//! Established); the rest arrives as the session reads it: framed, decoded, turned into FSM
//! events by the session's own functions. Checked on the way: everything we send encodes and
//! decodes back to itself, every Adj-RIB-Out batch encodes, and when the session ends without
//! graceful restart the peer leaves nothing in the RIB.

use std::net::{IpAddr, Ipv4Addr};

use bgp::fsm::{Action, DownReason, Event, Fsm, FsmConfig, State};
use bgp::rib::{PeerInfo, Rib};
use bgp::session::{decode_error_event, message_event};
use bgp::speaker::encode_batch;
use bgp::wire::*;
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

const LOCAL_AS: u32 = 64512;
const PEER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 18, 0, 3));
const OTHER: IpAddr = IpAddr::V4(Ipv4Addr::new(172, 18, 0, 4));
const LOCAL: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);

struct Session {
    fsm: Fsm,
    rib: Rib,
    ctx: SessionContext,
    up: bool,
    graceful: bool,
    closed: bool,
}

impl Session {
    fn feed(&mut self, ev: Event) {
        let before = self.fsm.state();
        let actions = self.fsm.handle(ev);
        if before != State::OpenConfirm && self.fsm.state() == State::OpenConfirm {
            self.ctx = self.fsm.negotiated().expect("OpenConfirm has parameters").context;
        }
        for a in actions {
            match a {
                Action::Send(m) => {
                    let mut out = BytesMut::new();
                    encode_message(&m, &self.ctx, &mut out).expect("what we send encodes");
                    let back = decode_message(&out, &self.ctx).expect("what we send decodes");
                    assert_eq!(back, m);
                }
                Action::CloseConnection => self.closed = true,
                Action::Established(n) => {
                    self.ctx = n.context;
                    self.graceful = n.graceful_restart.is_some();
                    let info = PeerInfo {
                        address: PEER,
                        router_id: n.remote_id,
                        remote_as: n.remote_as,
                        peer_type: n.context.peer_type,
                    };
                    self.rib.peer_up(info, LOCAL, false);
                    self.up = true;
                    self.flush();
                }
                Action::Deliver(u) => {
                    self.rib.apply_update(PEER, &u);
                    self.flush();
                }
                Action::RefreshRequested(_) => {
                    self.rib.refresh(PEER);
                    self.flush();
                }
                Action::Down(reason) => {
                    if self.up {
                        self.down(&reason);
                    }
                    self.up = false;
                }
                Action::StartHoldTimer(_)
                | Action::KeepaliveInterval(_)
                | Action::StopTimers => {}
            }
        }
    }

    /// Sends every pending batch to both peers, as the owner does after each change.
    fn flush(&mut self) {
        let other_ctx = SessionContext {
            four_octet_as: true,
            extended_message: false,
            peer_type: PeerType::Internal,
        };
        for (peer, ctx) in [(PEER, self.ctx), (OTHER, other_ctx)] {
            loop {
                let batch = self.rib.take_batch(peer, 64);
                if batch.is_empty() {
                    break;
                }
                for m in encode_batch(&batch, &ctx).expect("an Adj-RIB-Out batch encodes") {
                    decode_message(&m, &ctx).expect("an UPDATE we send decodes");
                }
            }
        }
    }

    fn down(&mut self, reason: &DownReason) {
        let clean = matches!(reason, DownReason::TcpFailed);
        if self.graceful && clean {
            self.rib.peer_down_graceful(PEER);
            self.rib.sweep_stale(PEER);
        } else {
            self.rib.peer_down(PEER);
        }
        assert!(self.rib.received(PEER).is_empty(), "a gone peer left paths");
        self.flush();
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, stream)) = data.split_first() else { return };
    let remote_as = if flags & 1 != 0 { 65001 } else { LOCAL_AS };
    let hold = if flags & 8 != 0 { 0 } else { 90 };
    let mut cfg = FsmConfig::new(LOCAL_AS, remote_as, Ipv4Addr::new(172, 18, 0, 2), hold);
    let gr = Capability::GracefulRestart(GracefulRestart {
        restart_state: false,
        notification: false,
        restart_time: 120,
        families: vec![GracefulRestartFamily {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            forwarding_preserved: false,
        }],
    });
    if flags & 2 != 0 {
        cfg.capabilities.push(gr.clone());
    }
    let mut rib = Rib::new(LOCAL_AS, Ipv4Addr::new(172, 18, 0, 2));
    // A second established peer and a local block, so exports and best-path changes run.
    rib.peer_up(
        PeerInfo {
            address: OTHER,
            router_id: Ipv4Addr::new(172, 18, 0, 4),
            remote_as: LOCAL_AS,
            peer_type: PeerType::Internal,
        },
        LOCAL,
        false,
    );
    rib.originate("192.168.0.0/26".parse().unwrap(), None);

    let mut input = Vec::new();
    if flags & 4 != 0 {
        let mut caps = FsmConfig::default_capabilities(remote_as);
        if flags & 16 != 0 {
            caps.push(gr);
        }
        let open = Message::Open(Open::new(remote_as, 90, Ipv4Addr::new(172, 18, 0, 3), caps));
        let mut b = BytesMut::new();
        encode_message(&open, &SessionContext::default(), &mut b).unwrap();
        encode_message(&Message::Keepalive, &SessionContext::default(), &mut b).unwrap();
        input.extend_from_slice(&b);
    }
    input.extend_from_slice(stream);

    let mut s = Session {
        fsm: Fsm::new(cfg),
        rib,
        ctx: SessionContext::default(),
        up: false,
        graceful: false,
        closed: false,
    };
    s.feed(Event::TcpConnectionConfirmed);
    let mut rest = &input[..];
    while !s.closed {
        match frame_length(rest, &s.ctx) {
            Ok(Some(len)) if len <= rest.len() => {
                let (msg, tail) = rest.split_at(len);
                rest = tail;
                let ev = match decode_message(msg, &s.ctx) {
                    Ok(m) => message_event(m),
                    Err(e) => decode_error_event(e),
                };
                s.feed(ev);
            }
            Ok(_) => break,
            Err(e) => {
                // A stream that cannot be framed cannot be read on: the FSM closes it.
                s.feed(Event::BgpHeaderErr(e.notification()));
                assert!(s.closed, "a framing error must close the connection");
            }
        }
    }
    // The stream ended: the connection drops as a TCP failure would.
    if !s.closed {
        s.feed(Event::TcpConnectionFails);
    }
    assert_eq!(s.fsm.state(), State::Idle);
    assert!(!s.up, "the session ended but the RIB was never told");
});
