//! What the kernel says about a process and a namespace's routing table.

use std::path::Path;

use anyhow::{Context, Result};

/// `VmHWM` (peak resident set) and `VmRSS` of `pid`, in bytes.
pub fn memory(pid: i32) -> Result<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    };
    Ok((field("VmHWM:"), field("VmRSS:")))
}

/// `RssAnon` of `pid` in bytes: the resident memory the process has to itself (its heap and
/// stacks), without the pages of its binary and libraries that every copy shares.
pub fn rss_anon(pid: i32) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(text
        .lines()
        .find(|l| l.starts_with("RssAnon:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024))
}

/// User + system CPU seconds `pid` has used (its own threads, not reaped children).
pub fn cpu_seconds(pid: i32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name may contain spaces; fields after it are space separated.
    let rest = text
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("malformed stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15 (1-based in proc(5)).
    let utime: f64 = fields.get(11).context("no utime")?.parse()?;
    let stime: f64 = fields.get(12).context("no stime")?.parse()?;
    Ok((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux architecture we run on.
    100.0
}

/// Prefixes in the main table of the namespace this thread is in, from
/// `/proc/thread-self/net/fib_triestat` (cheap: no dump of the routes themselves).
pub fn main_table_prefixes() -> Result<u64> {
    let path = Path::new("/proc/thread-self/net/fib_triestat");
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_triestat(&text).context("no Main: Prefixes line in fib_triestat")
}

fn parse_triestat(text: &str) -> Option<u64> {
    let main = text.split("Main:").nth(1)?;
    let line = main
        .lines()
        .find(|l| l.trim_start().starts_with("Prefixes:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Counts `proto bird` IPv4 routes added to and deleted from the main table of the namespace
/// it was created in, from the kernel's route notifications. Reading `fib_triestat` walks the
/// whole trie (about 50 ms at a million routes), so polling it often would load the very CPU
/// the target needs; a notification costs the kernel nothing extra (it builds one per change
/// whether anyone listens or not).
pub struct RouteCounter {
    fd: std::os::fd::OwnedFd,
    buf: Vec<u8>,
    pub count: i64,
    /// Notifications were lost (the receive buffer overflowed): fall back to `fib_triestat`.
    pub overflowed: bool,
}

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTPROT_BIRD: u8 = 12;

impl RouteCounter {
    /// A counter for a million routes arriving at once (a 1 MiB read buffer, a 256 MiB socket
    /// buffer: only what is used is allocated).
    pub fn new() -> Result<RouteCounter> {
        Self::with_sizes(1 << 20, 256 * 1024 * 1024)
    }

    /// A counter for a few hundred routes (one per node of a mesh).
    pub fn small() -> Result<RouteCounter> {
        Self::with_sizes(64 * 1024, 4 * 1024 * 1024)
    }

    fn with_sizes(read_buffer: usize, socket_buffer: usize) -> Result<RouteCounter> {
        use nix::sys::socket::{
            bind, setsockopt, socket, sockopt, AddressFamily, NetlinkAddr, SockFlag, SockProtocol,
            SockType,
        };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkRoute,
        )?;
        bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            &NetlinkAddr::new(0, RTMGRP_IPV4_ROUTE),
        )?;
        // A million notifications of ~100 bytes arrive faster than a poll loop reads them.
        setsockopt(&fd, sockopt::RcvBufForce, &socket_buffer)?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &nix::sys::time::TimeVal::new(0, 20_000),
        )?;
        Ok(RouteCounter {
            fd,
            buf: vec![0; read_buffer],
            count: 0,
            overflowed: false,
        })
    }

    /// Reads what has arrived, without waiting, and updates `count`.
    pub fn drain(&mut self) {
        use nix::sys::socket::{recv, MsgFlags};
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        loop {
            match recv(fd, &mut self.buf, MsgFlags::MSG_DONTWAIT) {
                Ok(n) => self.count += count_messages(&self.buf[..n]),
                Err(nix::errno::Errno::ENOBUFS) => self.overflowed = true,
                Err(_) => return,
            }
        }
    }

    /// Reads what arrives for about 20 ms and updates `count`.
    pub fn poll(&mut self) {
        use nix::sys::socket::{recv, MsgFlags};
        let fd = std::os::fd::AsRawFd::as_raw_fd(&self.fd);
        let until = std::time::Instant::now() + std::time::Duration::from_millis(20);
        while std::time::Instant::now() < until {
            match recv(fd, &mut self.buf, MsgFlags::empty()) {
                Ok(n) => self.count += count_messages(&self.buf[..n]),
                Err(nix::errno::Errno::ENOBUFS) => self.overflowed = true,
                // EAGAIN: nothing for 20 ms.
                Err(_) => return,
            }
        }
    }
}

/// The net change in `proto bird` IPv4 routes of the main table in one datagram.
fn count_messages(mut b: &[u8]) -> i64 {
    let mut delta = 0;
    while b.len() >= 16 + 12 {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < 16 || len > b.len() {
            break;
        }
        // struct rtmsg after the 16-byte header: family, dst_len, src_len, tos, table, protocol.
        let (family, table, protocol) = (b[16], b[20], b[21]);
        if family == 2 && table == 254 && protocol == RTPROT_BIRD {
            match kind {
                RTM_NEWROUTE => delta += 1,
                RTM_DELROUTE => delta -= 1,
                _ => {}
            }
        }
        b = &b[(len + 3) & !3..];
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_main_section() {
        let t = "Basic info: size of leaf: 48 bytes\nMain:\n\tAver depth:     2.42\n\tPrefixes:       1000007\nLocal:\n\tPrefixes:       7\n";
        assert_eq!(parse_triestat(t), Some(1_000_007));
    }

    #[test]
    fn own_process_is_readable() {
        let (hwm, rss) = memory(std::process::id() as i32).unwrap();
        assert!(hwm >= rss && rss > 0);
        assert!(cpu_seconds(std::process::id() as i32).unwrap() >= 0.0);
        assert!(main_table_prefixes().is_ok());
    }
}
