//! TCP setup for BGP connections (RFC 4271 §8.2.1: port 179).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::net::{TcpSocket, TcpStream};

pub const DEFAULT_PORT: u16 = 179;

/// Opens a connection to `peer`, from `local` when given, within `timeout`. TCP_NODELAY is set:
/// BGP messages are whole writes and KEEPALIVEs must not wait behind Nagle's algorithm.
pub async fn connect(
    peer: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = match peer {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = local {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.set_nodelay(true)?;
    let stream = tokio::time::timeout(timeout, socket.connect(peer))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    Ok(stream)
}

/// Socket options for an accepted connection.
pub fn prepare_accepted(stream: &TcpStream) -> io::Result<()> {
    stream.set_nodelay(true)
}
