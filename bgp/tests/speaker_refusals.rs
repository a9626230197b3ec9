//! A speaker against hand-written peers: what it refuses and the NOTIFICATION it sends.

mod common;

use bgp::fsm::FsmConfig;
use bgp::wire::{
    decode_message, encode_message, error_code, frame_length, Message, Notification, Open,
    SessionContext,
};
use bytes::{Buf, BytesMut};
use common::*;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

async fn connect_from(src: Ipv4Addr, dst: &Node) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(src.into(), 0)).unwrap();
    s.connect(SocketAddr::new(dst.ip.into(), dst.port))
        .await
        .unwrap()
}

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
