//! Socket options for BGP sessions that neither std, tokio, nix nor socket2 set:
//!
//! - `TCP_MD5SIG` (RFC 2385): the key a connection to or from one peer address is signed with.
//!   On a listening socket it is kept per peer address and inherited by accepted connections;
//!   on a connecting socket it must be set before `connect`.
//! - `IP_MINTTL` (RFC 5082, GTSM): segments arriving with a lower TTL are dropped, so a
//!   directly connected peer (which sends TTL 255) cannot be spoofed from further away.
//!
//! `IP_TTL` before `connect` is here too, for the same reason.
//!
//! This is the only crate of the workspace with unsafe code: one `setsockopt` call per option,
//! on a descriptor the caller borrows to us, with a buffer we own.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};

/// The kernel's limit on an MD5 key (`TCP_MD5SIG_MAXKEYLEN`).
pub const MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` is a `struct sockaddr_storage` (128 bytes), flags, prefix length, key
/// length, ifindex, then the key.
const MD5SIG_LEN: usize = 128 + 1 + 1 + 2 + 4 + MAX_KEY_LEN;
const AF_INET: u16 = libc::AF_INET as u16;
const AF_INET6: u16 = libc::AF_INET6 as u16;

/// Sets (`Some`) or removes (`None`) the TCP MD5 key for connections with `peer`.
pub fn set_tcp_md5(socket: &impl AsFd, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or_default();
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a TCP MD5 key is at most {MAX_KEY_LEN} bytes, this one {}",
                key.len()
            ),
        ));
    }
    let mut buf = [0u8; MD5SIG_LEN];
    match peer {
        IpAddr::V4(a) => {
            buf[0..2].copy_from_slice(&AF_INET.to_ne_bytes());
            buf[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            buf[0..2].copy_from_slice(&AF_INET6.to_ne_bytes());
            buf[8..24].copy_from_slice(&a.octets());
        }
    }
    // Flags and prefix length 0: the key is for exactly this address, on any interface.
    buf[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    buf[136..136 + key.len()].copy_from_slice(key);
    setsockopt(socket, libc::IPPROTO_TCP, libc::TCP_MD5SIG, &buf)
}

/// Drops IPv4 segments that arrive with a TTL below `ttl` (255 for GTSM's one hop).
pub fn set_min_ttl(socket: &impl AsFd, ttl: u8) -> io::Result<()> {
    let v = libc::c_int::from(ttl);
    setsockopt(socket, libc::IPPROTO_IP, libc::IP_MINTTL, &v.to_ne_bytes())
}

/// The TTL of the IPv4 packets this socket sends (before `connect`, so the SYN has it too:
/// std and tokio set it only on a connected stream).
pub fn set_ttl(socket: &impl AsFd, ttl: u8) -> io::Result<()> {
    let v = libc::c_int::from(ttl);
    setsockopt(socket, libc::IPPROTO_IP, libc::IP_TTL, &v.to_ne_bytes())
}

fn setsockopt(
    socket: &impl AsFd,
    level: libc::c_int,
    name: libc::c_int,
    value: &[u8],
) -> io::Result<()> {
    let fd = socket.as_fd();
    // SAFETY: `fd` is a descriptor the caller keeps open for the duration of the call (a
    // borrow of it); `value` is a live buffer of exactly `value.len()` bytes, laid out as the
    // kernel expects for `name` (see the callers), and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value.as_ptr().cast(),
            value.len() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpSocket;

    async fn exchange(server_key: Option<&[u8]>, client_key: Option<&[u8]>) -> bool {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let listener = TcpSocket::new_v4().unwrap();
        listener.bind(SocketAddr::new(lo, 0)).unwrap();
        if let Some(k) = server_key {
            set_tcp_md5(&listener, lo, Some(k)).unwrap();
        }
        let addr = listener.local_addr().unwrap();
        let listener = listener.listen(8).unwrap();
        let client = TcpSocket::new_v4().unwrap();
        if let Some(k) = client_key {
            set_tcp_md5(&client, lo, Some(k)).unwrap();
        }
        let talk = async {
            let mut c = client.connect(addr).await?;
            let (mut s, _) = listener.accept().await?;
            c.write_all(b"open").await?;
            let mut b = [0u8; 4];
            s.read_exact(&mut b).await?;
            Ok::<_, io::Error>(&b == b"open")
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), talk).await,
            Ok(Ok(true))
        )
    }

    #[tokio::test]
    async fn the_same_key_connects_and_a_wrong_or_missing_one_does_not() {
        assert!(exchange(Some(b"s3cret"), Some(b"s3cret")).await);
        assert!(!exchange(Some(b"s3cret"), Some(b"other")).await);
        assert!(!exchange(Some(b"s3cret"), None).await);
        assert!(!exchange(None, Some(b"s3cret")).await);
        assert!(exchange(None, None).await);
    }

    #[tokio::test]
    async fn keys_are_bounded_and_can_be_removed() {
        let s = TcpSocket::new_v4().unwrap();
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert!(set_tcp_md5(&s, lo, Some(&[b'x'; 81])).is_err());
        set_tcp_md5(&s, lo, Some(&[b'x'; 80])).unwrap();
        set_tcp_md5(&s, lo, None).unwrap();
    }

    #[tokio::test]
    async fn min_ttl_255_refuses_loopback_traffic_below_it() {
        // Loopback delivers with the sender's TTL: 64 by default, 255 when asked.
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for (sender_ttl, gets_through) in [(64u8, false), (255, true)] {
            let listener = TcpSocket::new_v4().unwrap();
            listener.bind(SocketAddr::new(lo, 0)).unwrap();
            set_min_ttl(&listener, 255).unwrap();
            let addr = listener.local_addr().unwrap();
            let listener = listener.listen(8).unwrap();
            let client = TcpSocket::new_v4().unwrap();
            set_ttl(&client, sender_ttl).unwrap();
            let talk = async {
                let _c = client.connect(addr).await?;
                let (_s, _) = listener.accept().await?;
                Ok::<_, io::Error>(())
            };
            let ok = matches!(
                tokio::time::timeout(Duration::from_millis(1500), talk).await,
                Ok(Ok(()))
            );
            assert_eq!(ok, gets_through, "TTL {sender_ttl}");
        }
    }
}
