//! A speaker against hand-written peers: what it refuses and the NOTIFICATION it sends.

mod common;

use bgp::fsm::FsmConfig;
use bgp::wire::{
    decode_message, encode_message, error_code, frame_length, Message, Notification, Open,
    SessionContext,
};
use bgp::RouteEvent;
use bytes::{Buf, BytesMut};
use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn send(stream: &mut TcpStream, msg: Message) {
    let mut b = BytesMut::new();
    encode_message(&msg, &SessionContext::default(), &mut b).unwrap();
    stream.write_all(&b).await.unwrap();
}

/// Reads messages until a NOTIFICATION; then the connection must close.
async fn notification(stream: &mut TcpStream) -> Notification {
    let ctx = SessionContext {
        four_octet_as: true,
        ..Default::default()
    };
    let mut buf = BytesMut::new();
    loop {
        while let Some(len) = frame_length(&buf, &ctx).unwrap() {
            if buf.len() < len {
                break;
            }
            let m = decode_message(&buf[..len], &ctx).unwrap();
            buf.advance(len);
            if let Message::Notification(n) = m {
                let mut rest = Vec::new();
                let closed = tokio::time::timeout(WAIT, stream.read_to_end(&mut rest)).await;
                assert!(
                    closed.is_ok(),
                    "connection not closed after the NOTIFICATION"
                );
                return n;
            }
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed without a NOTIFICATION");
    }
}

async fn passive_node_expecting(ip: &str, peer: Ipv4Addr, peer_as: u32) -> Node {
    let n = node(ip, 64512, 90).await;
    let mut cfg = bgp::PeerConfig::new(IpAddr::V4(peer), peer_as);
    cfg.passive = true;
    n.handle.add_peer(cfg).await.unwrap();
    n
}

#[tokio::test]
async fn hold_time_one_is_refused() {
    let peer_ip: Ipv4Addr = "127.77.21.9".parse().unwrap();
    let n = passive_node_expecting("127.77.21.2", peer_ip, 64512).await;
    let mut s = connect_from(peer_ip, &n).await;
    let open = Open::new(64512, 1, peer_ip, FsmConfig::default_capabilities(64512));
    send(&mut s, Message::Open(open)).await;
    let notif = notification(&mut s).await;
    assert_eq!(
        (notif.code, notif.subcode),
        (
            error_code::OPEN_MESSAGE,
            error_code::open::UNACCEPTABLE_HOLD_TIME
        )
    );
    let st = n.status().await;
    assert!(st.peers[0]
        .last_error
        .as_ref()
        .unwrap()
        .to_string()
        .contains("Unacceptable Hold Time"));
    n.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn wrong_peer_as_is_refused_with_the_as_in_data() {
    let peer_ip: Ipv4Addr = "127.77.22.9".parse().unwrap();
    let n = passive_node_expecting("127.77.22.2", peer_ip, 64512).await;
    let mut s = connect_from(peer_ip, &n).await;
    send(&mut s, Message::Open(Open::new(64999, 90, peer_ip, vec![]))).await;
    let notif = notification(&mut s).await;
    assert_eq!(
        (notif.code, notif.subcode),
        (2, error_code::open::BAD_PEER_AS)
    );
    assert_eq!(&notif.data[..], &64999u16.to_be_bytes());
    n.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn unconfigured_source_is_rejected() {
    let n = passive_node_expecting("127.77.23.2", "127.77.23.9".parse().unwrap(), 64512).await;
    let mut s = connect_from("127.77.23.50".parse().unwrap(), &n).await;
    let notif = notification(&mut s).await;
    assert_eq!(
        (notif.code, notif.subcode),
        (error_code::CEASE, error_code::cease::CONNECTION_REJECTED)
    );
    n.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn invalid_hold_time_in_config_is_refused() {
    let mut cfg = bgp::SpeakerConfig::new(64512, Ipv4Addr::new(127, 77, 24, 2));
    cfg.hold_time = 2;
    assert!(matches!(
        bgp::Speaker::start(cfg).await,
        Err(bgp::SpeakerError::InvalidConfig(_))
    ));
}

/// Completes OPEN/KEEPALIVE as `peer_ip` (AS 64512) with `n`; returns the stream, Established.
async fn establish(peer_ip: Ipv4Addr, n: &Node, hold: u16) -> TcpStream {
    let mut s = connect_from(peer_ip, n).await;
    send(
        &mut s,
        Message::Open(Open::new(
            64512,
            hold,
            peer_ip,
            FsmConfig::default_capabilities(64512),
        )),
    )
    .await;
    send(&mut s, Message::Keepalive).await;
    n.wait_established_with(peer_ip).await;
    s
}

fn update_with(prefixes: u32) -> Message {
    Message::Update(bgp::wire::Update {
        attributes: bgp::wire::PathAttributes {
            origin: Some(bgp::wire::Origin::Igp),
            as_path: Some(Default::default()),
            next_hop: Some("127.77.25.9".parse().unwrap()),
            local_pref: Some(100),
            ..Default::default()
        },
        nlri: (0..prefixes)
            .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap())
            .collect(),
        ..Default::default()
    })
}

#[tokio::test]
async fn one_prefix_over_the_limit_ends_the_session_with_the_rfc_4486_data_and_holds_off() {
    let peer_ip: Ipv4Addr = "127.77.25.9".parse().unwrap();
    let mut cfg = bgp::SpeakerConfig::new(64512, Ipv4Addr::new(127, 77, 25, 2));
    cfg.limit_idle_hold = std::time::Duration::from_secs(30);
    let n = node_with(cfg).await;
    let mut p = bgp::PeerConfig::new(IpAddr::V4(peer_ip), 64512);
    p.passive = true;
    p.max_prefixes = Some(10);
    n.handle.add_peer(p).await.unwrap();

    let mut s = establish(peer_ip, &n, 90).await;
    // Ten are fine.
    send(&mut s, update_with(10)).await;
    wait_until(|| async { n.status().await.peers[0].prefixes_received == 10 }).await;
    // Eleven are not.
    send(&mut s, update_with(11)).await;
    let notif = notification(&mut s).await;
    assert_eq!(
        (notif.code, notif.subcode),
        (
            error_code::CEASE,
            error_code::cease::MAXIMUM_PREFIXES_REACHED
        )
    );
    // AFI 1 (IPv4), SAFI 1 (unicast), the limit as 4 octets.
    assert_eq!(&notif.data[..], &[0, 1, 1, 0, 0, 0, 10]);
    // Its routes went with the session, and it is held off: a new connection is rejected.
    wait_until(|| async { n.handle.routes().await.unwrap().is_empty() }).await;
    let mut again = connect_from(peer_ip, &n).await;
    let notif = notification(&mut again).await;
    assert_eq!(
        (notif.code, notif.subcode),
        (error_code::CEASE, error_code::cease::CONNECTION_REJECTED)
    );
    let st = n.status().await;
    assert!(
        st.peers[0]
            .last_error
            .as_ref()
            .unwrap()
            .to_string()
            .contains("Maximum Number of Prefixes Reached"),
        "{:?}",
        st.peers[0].last_error
    );
    n.handle.shutdown().await.unwrap();
}

/// RFC 9687: a peer that stops reading is dropped after the send hold time, and the other
/// peers of the speaker carry on meanwhile.
#[tokio::test]
async fn a_peer_that_stops_reading_is_dropped_without_stalling_the_others() {
    let stuck_ip: Ipv4Addr = "127.77.26.9".parse().unwrap();
    let mut cfg = bgp::SpeakerConfig::new(64512, Ipv4Addr::new(127, 77, 26, 2));
    cfg.send_hold_min = std::time::Duration::from_secs(2);
    cfg.hold_time = 3;
    let n = node_with(cfg).await;
    let mut p = bgp::PeerConfig::new(IpAddr::V4(stuck_ip), 64512);
    p.passive = true;
    n.handle.add_peer(p).await.unwrap();
    let other = node("127.77.26.3", 64512, 90).await;
    other.peer_with(&n, false).await;
    n.peer_with(&other, true).await;
    n.wait_established(&other).await;

    // The stuck peer: a tiny receive buffer, and it never reads. It keeps sending KEEPALIVEs,
    // so only our sending can be the problem.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.bind(SocketAddr::new(stuck_ip.into(), 0)).unwrap();
    let mut s = sock
        .connect(SocketAddr::new(n.ip.into(), n.port))
        .await
        .unwrap();
    send(
        &mut s,
        Message::Open(Open::new(
            64512,
            3,
            stuck_ip,
            FsmConfig::default_capabilities(64512),
        )),
    )
    .await;
    send(&mut s, Message::Keepalive).await;
    n.wait_established_with(stuck_ip).await;
    let (_read_half, mut write_half) = s.into_split();
    let keepalives = tokio::spawn(async move {
        let mut b = BytesMut::new();
        encode_message(&Message::Keepalive, &SessionContext::default(), &mut b).unwrap();
        loop {
            if write_half.write_all(&b).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        }
    });
    // A table far larger than the socket buffers.
    let mut events = other.handle.subscribe().await.unwrap();
    for i in 0..60_000u32 {
        let prefix = ipnet::Ipv4Net::new(Ipv4Addr::from(0x0c00_0000 + (i << 8)), 24).unwrap();
        n.handle.announce(prefix, None).await.unwrap();
    }
    // The other peer has everything while the stuck one is still connected.
    let mut got = std::collections::HashSet::new();
    while got.len() < 60_000 {
        if let RouteEvent::Best { prefix, .. } = next_event(&mut events).await {
            got.insert(prefix);
        }
    }
    // After the send hold time (6 s: twice the 3 s hold time) the stuck session is gone.
    wait_until(|| async {
        let st = n.status().await;
        st.peers
            .iter()
            .find(|p| p.address == IpAddr::V4(stuck_ip))
            .and_then(|p| p.last_error.as_ref())
            .is_some_and(|e| e.to_string().contains("Send Hold Timer Expired"))
    })
    .await;
    assert_eq!(
        other.peer_state(&n).await,
        Some(bgp::fsm::State::Established)
    );
    keepalives.abort();
    n.handle.shutdown().await.unwrap();
    other.handle.shutdown().await.unwrap();
}
