//! `gingham-agent`: the node daemon.

use agent::daemon::{run, DaemonSettings};
use anyhow::{bail, Context, Result};
use clap::Parser;
use ipnet::Ipv4Net;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "gingham-agent",
    version,
    about = "Gingham node agent: IPAM, BGP full mesh, kernel routes"
)]
struct Flags {
    /// This node's name (registry and IPAM).
    #[arg(long, env = "NODENAME")]
    node_name: Option<String>,
    /// The node's BGP address, or `autodetect`.
    #[arg(long, env = "IP", default_value = "autodetect")]
    ip: String,
    /// `first-found`, `interface=<regex>` or `can-reach=<ip>`.
    #[arg(long, env = "IP_AUTODETECTION_METHOD", default_value = "first-found")]
    ip_autodetection_method: String,
    /// Local AS number (1..=4294967295).
    #[arg(long = "as", env = "AS", default_value_t = 64512, value_parser = clap::value_parser!(u32).range(1..))]
    asn: u32,
    #[arg(long, env = "BGP_PORT", default_value_t = 179, value_parser = clap::value_parser!(u16).range(1..))]
    bgp_port: u16,
    /// BGP identifier (default: the node IP).
    #[arg(long, env = "ROUTER_ID")]
    router_id: Option<Ipv4Addr>,
    /// Proposed hold time in seconds: 0 (none) or 3..=65535 (RFC 4271 §4.2).
    #[arg(long, env = "HOLD_TIME", default_value_t = 90, value_parser = parse_hold_time)]
    hold_time: u16,
    /// Explicit peer `<ip>[:<port>],as=<n>` (repeatable; PEERS separates entries with `;`).
    #[arg(long = "peer", env = "PEERS", value_delimiter = ';', value_parser = parse_peer)]
    peers: Vec<(IpAddr, u16, u32)>,
    /// Extra prefix to announce (repeatable).
    #[arg(long = "advertise", env = "ADVERTISE", value_delimiter = ',')]
    advertise: Vec<Ipv4Net>,
    #[arg(
        long,
        env = "CONTROL_SOCKET",
        default_value = "/var/run/gingham/agent.sock"
    )]
    control_socket: PathBuf,
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9099")]
    metrics_addr: SocketAddr,
    /// `file:<dir>` (the embedded default) or `memory`.
    #[arg(long, env = "DATASTORE", default_value = "file:/var/lib/gingham")]
    datastore: String,
    /// Peer with explicit peers only (no node-to-node mesh).
    #[arg(long)]
    no_mesh: bool,
    #[arg(long, env = "IPV4POOL_CIDR", default_value = "192.168.0.0/16")]
    pool_cidr: Ipv4Net,
    #[arg(long, env = "IPV4POOL_BLOCK_SIZE", default_value_t = 26, value_parser = clap::value_parser!(u8).range(20..=32))]
    block_size: u8,
}

fn parse_hold_time(s: &str) -> Result<u16, String> {
    let v: u16 = s.parse().map_err(|e| format!("{e}"))?;
    if v == 1 || v == 2 {
        return Err("must be 0 or at least 3 seconds (RFC 4271 §4.2)".into());
    }
    Ok(v)
}

/// `<ip>[:<port>],as=<n>`.
fn parse_peer(s: &str) -> Result<(IpAddr, u16, u32), String> {
    let (addr, rest) = s.split_once(',').ok_or("expected <ip>[:<port>],as=<n>")?;
    let asn = rest
        .trim()
        .strip_prefix("as=")
        .ok_or("expected as=<n> after the comma")?
        .parse::<u32>()
        .map_err(|e| format!("bad AS number: {e}"))?;
    if asn == 0 {
        return Err("AS 0 is reserved".into());
    }
    let addr = addr.trim();
    let (ip, port) = if let Ok(sa) = addr.parse::<SocketAddr>() {
        (sa.ip(), sa.port())
    } else {
        (
            addr.parse::<IpAddr>()
                .map_err(|e| format!("bad address {addr}: {e}"))?,
            179,
        )
    };
    Ok((ip, port, asn))
}

fn resolve(flags: Flags) -> Result<DaemonSettings> {
    let node = match flags.node_name {
        Some(n) if !n.is_empty() => n,
        _ => hostname().context("--node-name not given and the hostname cannot be read")?,
    };
    let ip: Ipv4Addr = if flags.ip == "autodetect" {
        agent::autodetect::detect(&flags.ip_autodetection_method).with_context(|| {
            format!(
                "--ip autodetect with IP_AUTODETECTION_METHOD={}",
                flags.ip_autodetection_method
            )
        })?
    } else {
        flags.ip.parse().with_context(|| {
            format!(
                "invalid value '{}' for '--ip': an IPv4 address or autodetect",
                flags.ip
            )
        })?
    };
    if flags.pool_cidr.prefix_len() > flags.block_size {
        bail!(
            "invalid value '{}' for '--block-size': the block must fit in the pool {}",
            flags.block_size,
            flags.pool_cidr
        );
    }
    Ok(DaemonSettings {
        router_id: flags.router_id.unwrap_or(ip),
        node,
        ip,
        asn: flags.asn,
        bgp_port: flags.bgp_port,
        hold_time: flags.hold_time,
        peers: flags.peers,
        advertise: flags.advertise,
        control_socket: flags.control_socket,
        metrics_addr: flags.metrics_addr,
        datastore: flags.datastore,
        mesh: !flags.no_mesh,
        pool: flags.pool_cidr,
        block_size: flags.block_size,
    })
}

fn hostname() -> Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    Ok(h.trim().to_string())
}

fn main() {
    let flags = Flags::parse();
    let filter = std::env::var("RUST_LOG")
        .or_else(|_| std::env::var("LOG_LEVEL").map(|l| l.to_lowercase()))
        .unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, not in log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let settings = match resolve(flags) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("gingham-agent: {e:#}");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gingham-agent: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run(settings)) {
        eprintln!("gingham-agent: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_with_and_without_port() {
        assert_eq!(
            parse_peer("10.0.0.1,as=64513").unwrap(),
            ("10.0.0.1".parse().unwrap(), 179, 64513)
        );
        assert_eq!(
            parse_peer("10.0.0.1:1790,as=4200000001").unwrap(),
            ("10.0.0.1".parse().unwrap(), 1790, 4200000001)
        );
        assert!(parse_peer("10.0.0.1").unwrap_err().contains("as="));
        assert!(parse_peer("10.0.0.1,as=0").is_err());
        assert!(parse_peer("nope,as=1").unwrap_err().contains("bad address"));
    }

    #[test]
    fn bad_values_name_the_flag() {
        let e = Flags::try_parse_from(["gingham-agent", "--as", "x"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--as"), "{e}");
        let e = Flags::try_parse_from(["gingham-agent", "--hold-time", "2"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--hold-time") && e.contains("RFC 4271"), "{e}");
        let e = Flags::try_parse_from(["gingham-agent", "--peer", "1.2.3.4"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--peer"), "{e}");
        let e = Flags::try_parse_from(["gingham-agent", "--block-size", "33"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--block-size"), "{e}");
        let f = Flags::try_parse_from(["gingham-agent", "--ip", "300.1.1.1", "--node-name", "n"])
            .unwrap();
        let e = format!("{:#}", resolve(f).unwrap_err());
        assert!(e.contains("'--ip'") && e.contains("300.1.1.1"), "{e}");
    }
}
