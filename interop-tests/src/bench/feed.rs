//! The feeder: one eBGP session, built on the bgp crate's codec, that sends the same
//! pre-encoded UPDATEs to every target.
//!
//! The table is `N` distinct IPv4 /24s from 11.0.0.0 up (16 /8s hold a million), with realistic
//! attributes: ORIGIN, an AS path from a set of about 1,100 per million prefixes (2 to 6 hops,
//! starting with the feeder's AS), NEXT_HOP the feeder, MED and two communities. One attribute
//! set per UPDATE, as a full-table router sends them. Encoding happens before the clock starts,
//! so the feeder is never what is measured.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bgp::wire::{
    decode_message, encode_message, encode_updates, frame_length, Afi, AsPath, AsPathSegment,
    Capability, Message, Open, Origin, PathAttributes, PeerType, Safi, SessionContext,
};
use bytes::{Bytes, BytesMut};
use ipnet::Ipv4Net;

/// Prefixes per distinct AS path: about 1,100 paths per million prefixes.
const PREFIXES_PER_PATH: usize = 909;

/// The wire context every target negotiates with the feeder: 4-octet AS, 4096-byte messages.
pub fn context() -> SessionContext {
    SessionContext {
        four_octet_as: true,
        extended_message: false,
        peer_type: PeerType::External,
    }
}

/// The `i`-th prefix of the table: /24s from 11.0.0.0 upwards.
pub fn prefix(i: usize) -> Ipv4Net {
    let base = u32::from(Ipv4Addr::new(11, 0, 0, 0));
    Ipv4Net::new(Ipv4Addr::from(base + ((i as u32) << 8)), 24).expect("a /24 is valid")
}

fn attributes(path_index: usize, feeder_as: u32, next_hop: Ipv4Addr) -> PathAttributes {
    // A deterministic spread of path lengths and transit ASes.
    let len = 2 + path_index % 5;
    let mut asns = vec![feeder_as];
    for hop in 1..len {
        asns.push(64600 + ((path_index * 7 + hop * 13) % 900) as u32);
    }
    PathAttributes {
        origin: Some(if path_index.is_multiple_of(10) {
            Origin::Incomplete
        } else {
            Origin::Igp
        }),
        as_path: Some(AsPath {
            segments: vec![AsPathSegment::Sequence(asns)],
        }),
        next_hop: Some(next_hop),
        med: Some((path_index % 50) as u32),
        communities: vec![
            (feeder_as << 16) | 100,
            (feeder_as << 16) | (path_index % 1000) as u32,
        ],
        ..Default::default()
    }
}

/// The whole table as encoded UPDATE messages, End-of-RIB last.
pub struct Feed {
    pub prefixes: usize,
    pub messages: Vec<Bytes>,
    pub bytes: usize,
}

pub fn build(prefixes: usize, feeder_as: u32, next_hop: Ipv4Addr) -> Result<Feed> {
    let ctx = context();
    let mut messages = Vec::new();
    let mut start = 0;
    let mut path_index = 0;
    while start < prefixes {
        let end = (start + PREFIXES_PER_PATH).min(prefixes);
        let nlri: Vec<Ipv4Net> = (start..end).map(prefix).collect();
        let attrs = attributes(path_index, feeder_as, next_hop);
        messages.extend(encode_updates(&[], &attrs, &nlri, &ctx)?);
        start = end;
        path_index += 1;
    }
    let mut eor = BytesMut::new();
    encode_message(&Message::Update(Default::default()), &ctx, &mut eor)?;
    messages.push(eor.freeze());
    let bytes = messages.iter().map(Bytes::len).sum();
    Ok(Feed {
        prefixes,
        messages,
        bytes,
    })
}

/// What the feeder saw of one run.
#[derive(Debug, Clone)]
pub struct FeedRun {
    /// When the session reached Established (the clock's zero).
    pub established: Instant,
    /// When the last UPDATE was written to the socket.
    pub sent: Instant,
}

/// A live feeder session. Dropping it closes the connection.
pub struct Session {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Session {
    /// Connects from `local` to `target`, exchanges OPENs (AS `feeder_as`, id `router_id`) and
    /// waits for the target's KEEPALIVE: the session is Established when this returns.
    pub fn establish(
        local: Ipv4Addr,
        target: SocketAddr,
        feeder_as: u32,
        router_id: Ipv4Addr,
        timeout: Duration,
    ) -> Result<Session> {
        let deadline = Instant::now() + timeout;
        // The feeder and the target share a /30, so the kernel picks `local` as the source.
        let _ = local;
        let stream = loop {
            match TcpStream::connect_timeout(&target, Duration::from_secs(1)) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!("feeder: connect {target}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => bail!("feeder: cannot connect to {target}: {e}"),
            }
        };
        stream.set_nodelay(true)?;
        let mut s = stream.try_clone()?;
        let open = Open::new(
            feeder_as,
            180,
            router_id,
            vec![
                Capability::Multiprotocol {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                },
                Capability::RouteRefresh,
                Capability::FourOctetAs(feeder_as),
            ],
        );
        write_message(&mut s, &Message::Open(open))?;
        s.set_read_timeout(Some(
            deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(1)),
        ))?;
        let mut buf = BytesMut::new();
        let mut got_open = false;
        loop {
            match read_message(&mut s, &mut buf).context("feeder: waiting for the target's OPEN")? {
                Message::Open(o) => {
                    if o.four_octet_as().is_none() {
                        bail!("feeder: the target did not offer 4-octet AS numbers");
                    }
                    got_open = true;
                    write_message(&mut s, &Message::Keepalive)?;
                }
                Message::Keepalive if got_open => break,
                Message::Notification(n) => bail!("feeder: the target sent {n:?}"),
                _ => {}
            }
        }
        s.set_read_timeout(None)?;
        // Drain whatever the target sends from now on (its UPDATEs, KEEPALIVEs) so its socket
        // never fills, and keep our side of the session alive.
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let mut r = stream.try_clone()?;
            let mut w = stream.try_clone()?;
            let stop = stop.clone();
            std::thread::spawn(move || {
                r.set_read_timeout(Some(Duration::from_secs(1))).ok();
                let mut sink = vec![0u8; 64 * 1024];
                let mut last_keepalive = Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    match r.read(&mut sink) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        Err(_) => return,
                    }
                    if last_keepalive.elapsed() >= Duration::from_secs(30) {
                        // Only when no UPDATE write is under way would this interleave badly;
                        // the feeder's writes are whole messages, and 30 s is long after them.
                        let _ = write_message(&mut w, &Message::Keepalive);
                        last_keepalive = Instant::now();
                    }
                }
            })
        };
        Ok(Session {
            stream,
            stop,
            reader: Some(reader),
        })
    }

    /// Writes every message of `feed`; returns when the last byte is in the socket.
    pub fn send(&mut self, feed: &Feed) -> Result<Instant> {
        // Coalesce into large writes: one syscall per ~256 kB.
        let mut chunk = Vec::with_capacity(256 * 1024);
        for m in &feed.messages {
            chunk.extend_from_slice(m);
            if chunk.len() >= 256 * 1024 {
                self.stream.write_all(&chunk)?;
                chunk.clear();
            }
        }
        self.stream.write_all(&chunk)?;
        Ok(Instant::now())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

fn write_message(w: &mut TcpStream, m: &Message) -> Result<()> {
    let mut buf = BytesMut::new();
    encode_message(m, &context(), &mut buf)?;
    w.write_all(&buf)?;
    Ok(())
}

fn read_message(r: &mut TcpStream, buf: &mut BytesMut) -> Result<Message> {
    let ctx = SessionContext {
        four_octet_as: false,
        extended_message: true,
        peer_type: PeerType::External,
    };
    loop {
        if let Some(len) = frame_length(buf, &ctx).map_err(|e| anyhow::anyhow!("{e}"))? {
            if buf.len() >= len {
                let msg = buf.split_to(len);
                return decode_message(&msg, &ctx).map_err(|e| anyhow::anyhow!("{e}"));
            }
        }
        let mut tmp = [0u8; 4096];
        let n = r.read(&mut tmp)?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_distinct_prefixes_and_about_1100_paths_per_million() {
        let feed = build(100_000, 65001, Ipv4Addr::new(10, 99, 0, 1)).unwrap();
        let ctx = context();
        let mut prefixes = std::collections::HashSet::new();
        let mut paths = std::collections::HashSet::new();
        for m in &feed.messages {
            match decode_message(m, &ctx).unwrap() {
                Message::Update(u) => {
                    for n in &u.nlri {
                        assert!(prefixes.insert(*n), "{n} twice");
                    }
                    if let Some(p) = &u.attributes.as_path {
                        paths.insert(p.clone());
                    }
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(prefixes.len(), 100_000);
        assert!((100..=111).contains(&paths.len()), "{} paths", paths.len());
        assert_eq!(prefix(0).to_string(), "11.0.0.0/24");
        assert_eq!(prefix(65536).to_string(), "12.0.0.0/24");
    }
}
