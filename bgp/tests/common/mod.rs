//! Helpers for the speaker integration tests: speakers on 127.x.y.z loopback addresses.
#![allow(dead_code)]

use bgp::fsm::State;
use bgp::{
    PeerConfig, PeerKind, RouteEvent, Speaker, SpeakerConfig, SpeakerHandle, SpeakerStatus,
    Subscription,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

/// Generous: the machine is shared and noisy; nothing here measures speed.
pub const WAIT: Duration = Duration::from_secs(30);

/// A free port on `ip` (bound and released; a collision in between is unlikely).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Node {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub asn: u32,
    pub handle: SpeakerHandle,
}

/// A speaker with `cfg`, listening on a free port of `cfg.router_id`.
pub async fn node_with(mut cfg: SpeakerConfig) -> Node {
    let ip = cfg.router_id;
    let port = free_port(ip);
    cfg.listen = Some(SocketAddr::new(ip.into(), port));
    let asn = cfg.local_as;
    let handle = Speaker::start(cfg).await.unwrap();
    Node {
        ip,
        port,
        asn,
        handle,
    }
}

pub async fn node(ip: &str, asn: u32, hold_time: u16) -> Node {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let port = free_port(ip);
    let cfg = SpeakerConfig {
        local_as: asn,
        router_id: ip,
        listen: Some(SocketAddr::new(ip.into(), port)),
        hold_time,
        connect_retry: Duration::from_millis(500),
        ..SpeakerConfig::new(asn, ip)
    };
    let handle = Speaker::start(cfg).await.unwrap();
    Node {
        ip,
        port,
        asn,
        handle,
    }
}

impl Node {
    /// Configures `other` as a peer of `self`.
    pub async fn peer_with(&self, other: &Node, passive: bool) {
        self.handle
            .add_peer(self.peer_config(other, passive))
            .await
            .unwrap();
    }

    pub fn peer_config(&self, other: &Node, passive: bool) -> PeerConfig {
        PeerConfig {
            address: other.ip.into(),
            port: other.port,
            remote_as: other.asn,
            passive,
            local_address: Some(self.ip.into()),
            hold_time: None,
            kind: PeerKind::Mesh,
            ..PeerConfig::new(other.ip.into(), other.asn)
        }
    }

    pub async fn status(&self) -> SpeakerStatus {
        self.handle.status().await.unwrap()
    }

    /// `None` when `other` is not configured.
    pub async fn peer_state(&self, other: &Node) -> Option<State> {
        let addr: IpAddr = other.ip.into();
        self.status()
            .await
            .peers
            .into_iter()
            .find(|p| p.address == addr)
            .map(|p| p.state)
    }

    pub async fn wait_established_with(&self, ip: Ipv4Addr) {
        let addr = IpAddr::V4(ip);
        wait_until(|| async {
            self.status()
                .await
                .peers
                .iter()
                .any(|p| p.address == addr && p.state == State::Established)
        })
        .await;
    }

    pub async fn wait_established(&self, other: &Node) {
        wait_until(|| async { self.peer_state(other).await == Some(State::Established) }).await;
    }
}

/// A TCP connection to `dst` from `src`, as a hand-written peer at `src` would open it.
pub async fn connect_from(src: Ipv4Addr, dst: &Node) -> TcpStream {
    let s = TcpSocket::new_v4().unwrap();
    s.bind(SocketAddr::new(src.into(), 0)).unwrap();
    s.connect(SocketAddr::new(dst.ip.into(), dst.port))
        .await
        .unwrap()
}

/// Polls `cond` until it holds; fails the test after [`WAIT`].
pub async fn wait_until<F, Fut>(mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached in {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next route event, failing the test after [`WAIT`].
pub async fn next_event(rx: &mut Subscription) -> RouteEvent {
    tokio::time::timeout(WAIT, rx.next_event())
        .await
        .expect("no route event")
        .expect("closed")
}
