//! Two speakers in one process over loopback TCP.

mod common;

use bgp::fsm::State;
use bgp::{PeerKind, RouteEvent, RouteSource};
use common::*;
use ipnet::Ipv4Net;
use std::net::IpAddr;
use std::time::Duration;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[tokio::test]
async fn ibgp_pair_exchanges_routes_and_withdrawals() {
    let a = node("127.77.1.2", 64512, 90).await;
    let b = node("127.77.1.3", 64512, 90).await;
    // As in the mesh: the higher address waits for the lower one to connect.
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    a.wait_established(&b).await;
    b.wait_established(&a).await;

    let mut events = b.handle.subscribe().await.unwrap();
    a.handle
        .announce(net("192.168.1.0/26"), None)
        .await
        .unwrap();
    let a_ip: IpAddr = a.ip.into();
    assert_eq!(
        next_event(&mut events).await,
        RouteEvent::Best {
            prefix: net("192.168.1.0/26"),
            next_hop: a.ip,
            source: RouteSource::Peer(a_ip)
        }
    );
    let routes = b.handle.routes().await.unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(routes[0].as_path, "");
    assert_eq!(routes[0].local_pref, Some(100));
    assert!(routes[0].best);
    assert_eq!(routes[0].source, RouteSource::Peer(a.ip.into()));

    let st = b.status().await;
    let p = &st.peers[0];
    assert_eq!((p.hold_time, p.keepalive), (Some(90), Some(30)));
    assert_eq!(p.prefixes_received, 1);
    assert_eq!(p.prefixes_accepted, 1);
    assert!(p.capabilities.contains(&"4-octet-as".to_string()));
    assert_eq!(p.messages_in.open, 1);
    assert!(p.messages_in.update >= 2, "route + End-of-RIB");
    assert_eq!(p.kind, PeerKind::Mesh);
    let a_st = a.status().await;
    assert_eq!(a_st.peers[0].prefixes_advertised, 1);

    // A local route for the same prefix on B wins and is reported as such.
    b.handle
        .announce(net("192.168.1.0/26"), None)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        RouteEvent::Best {
            source: RouteSource::Local,
            ..
        }
    ));
    b.handle.withdraw(net("192.168.1.0/26")).await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        RouteEvent::Best {
            source: RouteSource::Peer(_),
            ..
        }
    ));

    a.handle.withdraw(net("192.168.1.0/26")).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        RouteEvent::Withdrawn {
            prefix: net("192.168.1.0/26")
        }
    );
    // A late subscriber first gets the current table.
    a.handle
        .announce(net("192.168.2.0/26"), None)
        .await
        .unwrap();
    wait_until(|| async { b.handle.routes().await.unwrap().len() == 1 }).await;
    let mut late = b.handle.subscribe().await.unwrap();
    assert!(
        matches!(next_event(&mut late).await, RouteEvent::Best { prefix, .. } if prefix == net("192.168.2.0/26"))
    );
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn routes_are_withdrawn_when_the_connection_closes() {
    let a = node("127.77.2.2", 64512, 90).await;
    let b = node("127.77.2.3", 64512, 90).await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.wait_established(&a).await;
    let mut events = b.handle.subscribe().await.unwrap();
    a.handle
        .announce(net("192.168.3.0/26"), None)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        RouteEvent::Best { .. }
    ));
    // Shutdown closes TCP; B must not wait for its 90 s hold timer.
    a.handle.shutdown().await.unwrap();
    let ev = tokio::time::timeout(Duration::from_secs(10), events.next_event())
        .await
        .unwrap();
    assert_eq!(
        ev,
        Some(RouteEvent::Withdrawn {
            prefix: net("192.168.3.0/26")
        })
    );
    let st = b.status().await;
    assert_ne!(st.peers[0].state, State::Established);
    assert_eq!(st.peers[0].flaps, 1);
    let err = st.peers[0].last_error.clone().unwrap().to_string();
    assert!(err.contains("Administrative Shutdown"), "{err}");
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn removing_a_peer_ceases_and_withdraws() {
    let a = node("127.77.3.2", 64512, 90).await;
    let b = node("127.77.3.3", 64512, 90).await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.wait_established(&a).await;
    let mut events = b.handle.subscribe().await.unwrap();
    a.handle
        .announce(net("192.168.4.0/26"), None)
        .await
        .unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        RouteEvent::Best { .. }
    ));
    b.handle.remove_peer(a.ip.into()).await.unwrap();
    assert_eq!(
        next_event(&mut events).await,
        RouteEvent::Withdrawn {
            prefix: net("192.168.4.0/26")
        }
    );
    assert!(b.status().await.peers.is_empty());
    assert!(b.handle.routes().await.unwrap().is_empty());
    // A hears Cease / Peer De-configured; its reconnects are now refused as unknown.
    wait_until(|| async {
        let st = a.status().await;
        st.peers[0]
            .last_error
            .as_ref()
            .is_some_and(|e| e.to_string().contains("Peer De-configured"))
    })
    .await;
    assert!(b.handle.remove_peer(a.ip.into()).await.is_err());
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn ebgp_with_four_octet_as() {
    let a = node("127.77.4.2", 4_200_000_001, 90).await;
    let b = node("127.77.4.3", 65001, 90).await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, false).await;
    a.wait_established(&b).await;
    b.wait_established(&a).await;
    a.handle
        .announce(net("192.168.5.0/26"), None)
        .await
        .unwrap();
    b.handle.announce(net("10.5.0.0/24"), None).await.unwrap();
    wait_until(|| async { b.handle.routes().await.unwrap().len() == 2 }).await;
    let routes = b.handle.routes().await.unwrap();
    let learned = routes
        .iter()
        .find(|r| r.prefix == net("192.168.5.0/26"))
        .unwrap();
    assert_eq!(learned.as_path, "4200000001");
    assert_eq!(learned.next_hop, a.ip);
    assert_eq!(learned.local_pref, None);
    wait_until(|| async { a.handle.routes().await.unwrap().len() == 2 }).await;
    let routes = a.handle.routes().await.unwrap();
    let learned = routes
        .iter()
        .find(|r| r.prefix == net("10.5.0.0/24"))
        .unwrap();
    assert_eq!(learned.as_path, "65001");
    let st = b.status().await;
    assert_eq!(st.peers[0].r#as, 4_200_000_001);
    assert!(st.peers[0].capabilities.contains(&"4-octet-as".to_string()));
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["peers"][0]["as"], 4_200_000_001u64);
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn hold_time_zero_is_negotiated() {
    let a = node("127.77.5.2", 64512, 0).await;
    let b = node("127.77.5.3", 64512, 90).await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.wait_established(&a).await;
    let st = b.status().await;
    assert_eq!(
        (st.peers[0].hold_time, st.peers[0].keepalive),
        (Some(0), Some(0))
    );
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}

#[tokio::test]
async fn collision_ends_with_one_session() {
    let a = node("127.77.6.2", 64512, 90).await;
    let b = node("127.77.6.3", 64512, 90).await;
    // Both sides connect at once.
    let (ra, rb) = tokio::join!(
        a.handle.add_peer(a.peer_config(&b, false)),
        b.handle.add_peer(b.peer_config(&a, false))
    );
    ra.unwrap();
    rb.unwrap();
    a.wait_established(&b).await;
    b.wait_established(&a).await;
    a.handle
        .announce(net("192.168.6.0/26"), None)
        .await
        .unwrap();
    wait_until(|| async { b.handle.routes().await.unwrap().len() == 1 }).await;
    // Stable: still one Established session a while later, and no flap since.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (sa, sb) = (a.status().await, b.status().await);
    assert_eq!(sa.peers[0].state, State::Established);
    assert_eq!(sb.peers[0].state, State::Established);
    assert_eq!(sa.peers[0].flaps + sb.peers[0].flaps, 0, "{sa:?} {sb:?}");
    // At most one collision NOTIFICATION each way, and the surviving session carries routes.
    // When both OPENs crossed (two connections), each side closed exactly one of them.
    if sa.peers[0].messages_out.open == 2 && sb.peers[0].messages_out.open == 2 {
        assert_eq!(sa.peers[0].messages_out.notification, 1);
        assert_eq!(sb.peers[0].messages_out.notification, 1);
    }
    assert!(sa.peers[0].messages_out.notification <= 1);
    assert!(sb.peers[0].messages_out.notification <= 1);
    assert_eq!(b.handle.routes().await.unwrap().len(), 1);
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}
