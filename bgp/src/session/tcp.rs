//! TCP setup for BGP connections (RFC 4271 §8.2.1: port 179), with the per-peer protections:
//! TCP MD5 signatures (RFC 2385) and GTSM (RFC 5082).

use crate::speaker::Password;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

pub const DEFAULT_PORT: u16 = 179;
/// GTSM's TTL: a directly connected peer's packets arrive with the TTL they were sent with.
pub const GTSM_TTL: u8 = 255;

/// How a connection with one peer is protected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub password: Option<Password>,
    pub ttl_security: bool,
}

/// Opens a connection to `peer`, from `local` when given, within `timeout`. TCP_NODELAY is set:
/// BGP messages are whole writes and KEEPALIVEs must not wait behind Nagle's algorithm. The MD5
/// key and the TTLs are set before `connect`, so the SYN is signed and sent with TTL 255.
pub async fn connect(
    peer: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
    security: &Security,
) -> io::Result<TcpStream> {
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    if let Some(p) = &security.password {
        sockopt::set_tcp_md5(&socket, peer.ip(), Some(p.key()))?;
    }
    if security.ttl_security && peer.is_ipv4() {
        sockopt::set_ttl(&socket, GTSM_TTL)?;
        sockopt::set_min_ttl(&socket, GTSM_TTL)?;
    }
    let stream = tokio::time::timeout(timeout, socket.connect(peer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    Ok(stream)
}

/// Linux's default IP TTL (`net.ipv4.ip_default_ttl`).
const DEFAULT_TTL: u32 = 64;

/// Socket options for an accepted connection (its MD5 key came with it from the listener).
/// The listener answers with TTL 255 (a GTSM peer's handshake must pass); after that a
/// connection without GTSM goes back to the ordinary TTL.
pub fn prepare_accepted(stream: &TcpStream, security: &Security) -> io::Result<()> {
    stream.set_nodelay(true)?;
    if stream.peer_addr()?.is_ipv4() {
        if security.ttl_security {
            stream.set_ttl(u32::from(GTSM_TTL))?;
            sockopt::set_min_ttl(stream, GTSM_TTL)?;
        } else {
            stream.set_ttl(DEFAULT_TTL)?;
        }
    }
    Ok(())
}
