//! Graceful restart (RFC 4724) between two speakers on loopback: the helper keeps a restarting
//! peer's routes, stale, until its End-of-RIB (then sweeps what was not sent again), or until
//! its Restart Time runs out; a Cease is no restart.

mod common;

use bgp::{GracefulRestartConfig, RouteEvent, SpeakerConfig};
use common::*;
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

async fn gr_node(ip: &str, port: u16, restarting: bool) -> Node {
    let ip: Ipv4Addr = ip.parse().unwrap();
    let mut cfg = SpeakerConfig::new(64512, ip);
    cfg.listen = Some(SocketAddr::new(ip.into(), port));
    cfg.connect_retry = Duration::from_millis(300);
    cfg.graceful_restart = Some(GracefulRestartConfig {
        restart_time: 3,
        restarting,
    });
    let handle = bgp::Speaker::start(cfg).await.unwrap();
    Node {
        ip,
        port,
        asn: 64512,
        handle,
    }
}

/// No event at all for `d`.
async fn quiet_for(events: &mut bgp::Subscription, d: Duration) {
    if let Ok(Some(e)) = tokio::time::timeout(d, events.next_event()).await {
        panic!("expected no route change, got {e:?}");
    }
}

#[tokio::test]
async fn a_restarting_peer_keeps_its_routes_until_its_end_of_rib() {
    let ip_a = "127.77.31.2";
    let port_a = free_port(ip_a.parse().unwrap());
    let a = gr_node(ip_a, port_a, false).await;
    let b = gr_node(
        "127.77.31.3",
        free_port("127.77.31.3".parse().unwrap()),
        false,
    )
    .await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.wait_established(&a).await;
    let mut events = b.handle.subscribe().await.unwrap();
    for p in ["192.168.1.0/26", "192.168.2.0/26", "192.168.3.0/26"] {
        a.handle.announce(net(p), None).await.unwrap();
    }
    for _ in 0..3 {
        assert!(matches!(
            next_event(&mut events).await,
            RouteEvent::Best { .. }
        ));
    }
    let st = b.status().await;
    assert_eq!(st.peers[0].graceful_restart, Some(3), "negotiated");

    // A restarts: its sessions close without a NOTIFICATION; B keeps its routes.
    a.handle.shutdown_graceful().await.unwrap();
    quiet_for(&mut events, Duration::from_secs(1)).await;
    let st = b.status().await;
    assert_ne!(st.peers[0].state, bgp::fsm::State::Established);
    assert_eq!(st.peers[0].stale_routes, 3);
    assert!(b.handle.routes().await.unwrap().iter().all(|r| r.stale));

    // A is back (same address and port) with two of the three: End-of-RIB sweeps the third.
    let a2 = gr_node(ip_a, port_a, true).await;
    a2.handle
        .announce(net("192.168.1.0/26"), None)
        .await
        .unwrap();
    a2.handle
        .announce(net("192.168.2.0/26"), None)
        .await
        .unwrap();
    a2.peer_with(&b, false).await;
    assert_eq!(
        next_event(&mut events).await,
        RouteEvent::Withdrawn {
            prefix: net("192.168.3.0/26")
        }
    );
    quiet_for(&mut events, Duration::from_millis(500)).await;
    let st = b.status().await;
    assert_eq!(st.peers[0].stale_routes, 0);
    assert!(st.peers[0].end_of_rib_received);
    assert!(b.handle.routes().await.unwrap().iter().all(|r| !r.stale));

    // A Cease is not a restart: the routes go at once.
    a2.handle.shutdown().await.unwrap();
    let mut gone = 0;
    while gone < 2 {
        if let RouteEvent::Withdrawn { .. } = next_event(&mut events).await {
            gone += 1;
        }
    }
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_peer_that_does_not_come_back_loses_its_routes_after_its_restart_time() {
    let a = gr_node(
        "127.77.32.2",
        free_port("127.77.32.2".parse().unwrap()),
        false,
    )
    .await;
    let b = gr_node(
        "127.77.32.3",
        free_port("127.77.32.3".parse().unwrap()),
        false,
    )
    .await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.wait_established(&a).await;
    let mut events = b.handle.subscribe().await.unwrap();
    a.handle
        .announce(net("192.168.9.0/26"), None)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        RouteEvent::Best { .. }
    ));
    a.handle.shutdown_graceful().await.unwrap();
    // Kept for a while (the restart time is 3 s) ...
    quiet_for(&mut events, Duration::from_secs(2)).await;
    // ... then withdrawn.
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next_event())
        .await
        .expect("withdrawn after the restart time");
    assert_eq!(
        ev,
        Some(RouteEvent::Withdrawn {
            prefix: net("192.168.9.0/26")
        })
    );
    let st = b.status().await;
    assert_eq!(st.peers[0].stale_routes, 0);
    assert_eq!(st.peers[0].address, IpAddr::V4(a.ip));
    b.handle.shutdown().await.unwrap();
}
