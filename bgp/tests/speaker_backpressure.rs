//! A peer that stops reading is not given more encoded UPDATEs: its changes wait as dirty
//! prefixes in the Adj-RIB-Out, where they coalesce, and once it reads again it gets the table
//! as it is then.

mod common;

use bgp::fsm::FsmConfig;
use bgp::wire::{decode_message, encode_message, frame_length, Message, Open, SessionContext};
use bytes::{Buf, BytesMut};
use common::*;
use ipnet::Ipv4Net;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

const PREFIXES: u32 = 30_000;

fn prefix(i: u32) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap()
}

fn ctx() -> SessionContext {
    SessionContext {
        four_octet_as: true,
        extended_message: true,
        ..Default::default()
    }
}

async fn write(s: &mut TcpStream, m: Message) {
    let mut b = BytesMut::new();
    encode_message(&m, &SessionContext::default(), &mut b).unwrap();
    s.write_all(&b).await.unwrap();
}

/// Reads one message.
async fn read(s: &mut TcpStream, buf: &mut BytesMut) -> Message {
    loop {
        if let Some(len) = frame_length(buf, &ctx()).unwrap() {
            if buf.len() >= len {
                let m = decode_message(&buf[..len], &ctx()).unwrap();
                buf.advance(len);
                return m;
            }
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed");
    }
}

/// UPDATE messages the speaker's session has taken for this peer, once that stops changing.
async fn settled_updates_sent(n: &Node) -> u64 {
    let mut last = u64::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = n.status().await.peers[0].messages_out.update;
        if now == last {
            return now;
        }
        last = now;
    }
}

#[tokio::test]
async fn a_peer_that_stops_reading_gets_the_coalesced_table_later() {
    let peer_ip: Ipv4Addr = "127.77.41.9".parse().unwrap();
    let n = node("127.77.41.2", 64512, 90).await;
    let mut cfg = bgp::PeerConfig::new(IpAddr::V4(peer_ip), 64512);
    cfg.passive = true;
    n.handle.add_peer(cfg).await.unwrap();

    // A hand-written iBGP peer: OPEN, KEEPALIVE, then it reads nothing for a while.
    let sock = TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(16 * 1024).unwrap();
    sock.bind(SocketAddr::new(peer_ip.into(), 0)).unwrap();
    let mut s = sock
        .connect(SocketAddr::new(n.ip.into(), n.port))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    write(
        &mut s,
        Message::Open(Open::new(
            64512,
            90,
            peer_ip,
            FsmConfig::default_capabilities(64512),
        )),
    )
    .await;
    assert!(matches!(read(&mut s, &mut buf).await, Message::Open(_)));
    write(&mut s, Message::Keepalive).await;
    assert!(matches!(read(&mut s, &mut buf).await, Message::Keepalive));
    n.wait_established_with(peer_ip).await;

    for i in 0..PREFIXES {
        n.handle.announce(prefix(i), None).await.unwrap();
    }
    let flap = || async {
        for i in 0..PREFIXES {
            n.handle.withdraw(prefix(i)).await.unwrap();
        }
        for i in 0..PREFIXES {
            n.handle.announce(prefix(i), None).await.unwrap();
        }
    };
    // Flap until the socket buffers and the session's queues are full (the peer reads
    // nothing), so that from here on only the speaker's own back-pressure is measured.
    let mut before = settled_updates_sent(&n).await;
    loop {
        flap().await;
        let now = settled_updates_sent(&n).await;
        if now == before {
            break;
        }
        before = now;
    }
    // Every prefix flaps five more times while the peer does not read.
    for _ in 0..5 {
        flap().await;
    }
    let after = settled_updates_sent(&n).await;
    eprintln!("UPDATEs taken: {before} once the queues were full, {after} after five more flaps");
    // Without back-pressure each flap would have been encoded and queued (tens of UPDATEs
    // per wave); with it the session took nothing more while its queues were full.
    assert!(
        after - before <= 2,
        "{} more UPDATEs taken for a peer that reads nothing",
        after - before
    );

    // The peer reads again: it ends up with every prefix announced, and what it reads is what
    // had been taken before the stall plus the coalesced changes (none here: every prefix
    // ended as it had last been sent).
    let mut have = HashSet::new();
    let mut updates = 0u64;
    loop {
        let m = if have.len() == PREFIXES as usize {
            // Everything is there: read on until the speaker has nothing more to say.
            match tokio::time::timeout(Duration::from_secs(2), read(&mut s, &mut buf)).await {
                Ok(m) => m,
                Err(_) => break,
            }
        } else {
            read(&mut s, &mut buf).await
        };
        match m {
            Message::Update(u) => {
                updates += 1;
                for w in &u.withdrawn {
                    have.remove(w);
                }
                have.extend(u.nlri.iter().copied());
            }
            Message::Keepalive => {}
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(have.len(), PREFIXES as usize);
    let one_table = (PREFIXES as u64 * 4).div_ceil(4000);
    assert!(
        updates <= after + 2 * one_table,
        "{updates} UPDATEs read; {after} had been taken before five flaps"
    );
    n.handle.shutdown().await.unwrap();
}
