//! Three speakers: an iBGP full mesh, and an iBGP pair with an eBGP neighbour.

mod common;

use bgp::{RouteEvent, RouteSource};
use common::*;
use ipnet::Ipv4Net;
use std::net::IpAddr;

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

#[tokio::test]
async fn ibgp_full_mesh_of_three() {
    let a = node("127.77.11.2", 64512, 90).await;
    let b = node("127.77.11.3", 64512, 90).await;
    let c = node("127.77.11.4", 64512, 90).await;
    let nodes = [&a, &b, &c];
    // The mesh rule: of each pair, the lower address connects, the higher one waits.
    for x in nodes {
        for y in nodes {
            if x.ip != y.ip {
                x.peer_with(y, x.ip > y.ip).await;
            }
        }
    }
    for x in nodes {
        for y in nodes {
            if x.ip != y.ip {
                x.wait_established(y).await;
            }
        }
    }
    let blocks = ["192.168.11.0/26", "192.168.11.64/26", "192.168.11.128/26"];
    for (x, block) in nodes.iter().zip(blocks) {
        x.handle.announce(net(block), None).await.unwrap();
    }
    for x in nodes {
        wait_until(|| async { x.handle.routes().await.unwrap().len() == 3 }).await;
    }
    // Every node learns each block straight from its owner, exactly once: an iBGP-learned
    // route is never passed to another iBGP peer.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    for x in nodes {
        let routes = x.handle.routes().await.unwrap();
        assert_eq!(routes.len(), 3, "{routes:?}");
        for (owner, block) in nodes.iter().zip(blocks) {
            let r = routes.iter().find(|r| r.prefix == net(block)).unwrap();
            if owner.ip == x.ip {
                assert_eq!(r.source, RouteSource::Local);
            } else {
                assert_eq!(r.source, RouteSource::Peer(owner.ip.into()));
                assert_eq!(r.next_hop, owner.ip);
            }
        }
        let st = x.status().await;
        assert!(st
            .peers
            .iter()
            .all(|p| p.prefixes_received == 1 && p.prefixes_advertised == 1));
    }
    for x in nodes {
        x.handle.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn ebgp_routes_cross_into_ibgp_and_back_out() {
    // a and b: iBGP in AS 64512. c: AS 65010, eBGP neighbour of b only.
    let a = node("127.77.12.2", 64512, 90).await;
    let b = node("127.77.12.3", 64512, 90).await;
    let c = node("127.77.12.4", 65010, 90).await;
    a.peer_with(&b, false).await;
    b.peer_with(&a, true).await;
    b.peer_with(&c, false).await;
    c.peer_with(&b, true).await;
    a.wait_established(&b).await;
    c.wait_established(&b).await;
    let mut a_events = a.handle.subscribe().await.unwrap();

    c.handle.announce(net("10.10.0.0/24"), None).await.unwrap();
    a.handle
        .announce(net("192.168.12.0/26"), None)
        .await
        .unwrap();

    // a learns c's route through b with c's next hop kept (RFC 4271 §5.1.3) and c's AS.
    let c_ip: IpAddr = c.ip.into();
    let b_ip: IpAddr = b.ip.into();
    loop {
        match next_event(&mut a_events).await {
            RouteEvent::Best {
                prefix,
                next_hop,
                source,
            } if prefix == net("10.10.0.0/24") => {
                assert_eq!(next_hop, c.ip);
                assert_eq!(source, RouteSource::Peer(b_ip));
                break;
            }
            _ => continue,
        }
    }
    let routes = a.handle.routes().await.unwrap();
    let r = routes
        .iter()
        .find(|r| r.prefix == net("10.10.0.0/24"))
        .unwrap();
    assert_eq!((r.as_path.as_str(), r.local_pref), ("65010", Some(100)));

    // c learns a's route from b (an iBGP-learned route may go to eBGP) with b's AS prepended
    // and b as next hop.
    wait_until(|| async { c.handle.routes().await.unwrap().len() == 2 }).await;
    let routes = c.handle.routes().await.unwrap();
    let r = routes
        .iter()
        .find(|r| r.prefix == net("192.168.12.0/26"))
        .unwrap();
    assert_eq!(r.as_path, "64512");
    assert_eq!(r.next_hop, b.ip);
    assert_eq!(r.source, RouteSource::Peer(b.ip.into()));
    // c's own route is not sent back to c.
    let st = b.status().await;
    let to_c = st.peers.iter().find(|p| p.address == c_ip).unwrap();
    assert_eq!(to_c.prefixes_advertised, 1);

    // c goes away: a loses the route as soon as b's session with c closes.
    c.handle.shutdown().await.unwrap();
    loop {
        if next_event(&mut a_events).await
            == (RouteEvent::Withdrawn {
                prefix: net("10.10.0.0/24"),
            })
        {
            break;
        }
    }
    a.handle.shutdown().await.unwrap();
    b.handle.shutdown().await.unwrap();
}
