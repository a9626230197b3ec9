//! `gingham-agent`'s configuration: flags with environment fallbacks, Calico's variable names
//! where they exist (the README's flag table lists them).
//!
//! Every value is checked while parsing, so a bad one stops the agent at once with clap's
//! message naming the flag and the value, e.g.
//! `invalid value '0' for '--as <AS>': 0 is not in 1..=4294967295`.
//! [`AgentConfig::validate`] then checks what involves more than one field.
//!
//! Lists in the environment: `PEERS` is separated by `;` (a peer spec contains a comma:
//! `PEERS="172.18.0.3,as=64512;10.0.0.1:1790,as=65001"`), `ADVERTISE` by `,`.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;

use clap::Parser;
use ipnet::Ipv4Net;

use crate::autodetect::AutodetectMethod;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "gingham-agent",
    about = "Gingham node agent: IPAM, BGP full mesh, kernel routes"
)]
pub struct AgentConfig {
    /// This node's name in the cluster [default: the hostname].
    #[arg(long, env = "NODENAME")]
    pub node_name: Option<String>,

    /// The node's BGP address: an IPv4 address, or `autodetect`.
    #[arg(long, env = "IP", default_value = "autodetect")]
    pub ip: IpSetting,

    /// How to find the address when `--ip autodetect`: `first-found`, `interface=<regex>`,
    /// `can-reach=<ip>`.
    #[arg(long, env = "IP_AUTODETECTION_METHOD", default_value = "first-found")]
    pub ip_autodetection_method: AutodetectMethod,

    /// This node's AS number.
    #[arg(long = "as", env = "AS", value_name = "AS", default_value_t = 64512,
          value_parser = clap::value_parser!(u32).range(1..=4_294_967_295))]
    pub asn: u32,

    /// TCP port the BGP speaker listens on and dials.
    #[arg(long, env = "BGP_PORT", default_value_t = 179,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub bgp_port: u16,

    /// BGP router ID [default: the node IP].
    #[arg(long, env = "ROUTER_ID")]
    pub router_id: Option<Ipv4Addr>,

    /// TCP MD5 password for every BGP session (RFC 2385).
    #[arg(long, env = "BGP_PASSWORD", hide_env_values = true)]
    pub bgp_password: Option<String>,

    /// An extra BGP peer, `<ip>[:<port>],as=<n>`; repeatable (env `PEERS`, `;`-separated).
    #[arg(long = "peer", env = "PEERS", value_delimiter = ';')]
    pub peers: Vec<PeerSpec>,

    /// An extra prefix to announce; repeatable (env `ADVERTISE`, `,`-separated).
    #[arg(long = "advertise", env = "ADVERTISE", value_delimiter = ',')]
    pub advertise: Vec<Ipv4Net>,

    /// The local API socket used by routectl and the CNI plugin.
    #[arg(
        long,
        env = "CONTROL_SOCKET",
        default_value = "/var/run/gingham/agent.sock"
    )]
    pub control_socket: PathBuf,

    /// Prometheus metrics and /liveness, /readiness.
    #[arg(long, env = "METRICS_ADDR", default_value = "127.0.0.1:9099")]
    pub metrics_addr: SocketAddr,

    /// Where IPAM state lives: `file:<dir>` or `kubernetes`.
    #[arg(long, env = "DATASTORE", default_value = "file:/var/lib/gingham")]
    pub datastore: Datastore,

    /// Do not peer with every other node (only with `--peer`s).
    #[arg(long)]
    pub no_mesh: bool,

    /// The IPv4 pool pod addresses come from.
    #[arg(long, env = "IPV4POOL_CIDR", default_value = "192.168.0.0/16")]
    pub pool_cidr: Ipv4Net,

    /// Prefix length of the blocks a node claims from the pool.
    #[arg(long, env = "IPV4POOL_BLOCK_SIZE", default_value_t = 26,
          value_parser = clap::value_parser!(u8).range(20..=32))]
    pub block_size: u8,

    /// BGP hold time offered in OPEN, seconds: 0 (no keepalives) or at least 3 (RFC 4271 §4.2).
    #[arg(long, env = "HOLD_TIME", default_value_t = 90, value_parser = parse_hold_time)]
    pub hold_time: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid value '{value}' for '--block-size': blocks of /{value} do not fit in pool {pool} (--pool-cidr)")]
    BlockLargerThanPool { value: u8, pool: Ipv4Net },
    #[error("'--node-name' (env NODENAME) is not set and the hostname cannot be read")]
    NoNodeName,
}

impl AgentConfig {
    /// Checks that involve more than one field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.block_size < self.pool_cidr.prefix_len() {
            return Err(ConfigError::BlockLargerThanPool {
                value: self.block_size,
                pool: self.pool_cidr,
            });
        }
        Ok(())
    }

    /// `--node-name`, else the hostname (as Calico's NODENAME falls back to it).
    pub fn node_name(&self) -> Result<String, ConfigError> {
        match self.node_name.as_deref().map(str::trim) {
            Some(name) if !name.is_empty() => Ok(name.to_string()),
            _ => hostname().ok_or(ConfigError::NoNodeName),
        }
    }
}

fn hostname() -> Option<String> {
    let name = nix::unistd::gethostname().ok()?;
    let name = name.to_string_lossy().trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// `--ip`: a fixed address or autodetection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpSetting {
    Autodetect,
    Address(Ipv4Addr),
}

impl FromStr for IpSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("autodetect") {
            return Ok(IpSetting::Autodetect);
        }
        s.parse()
            .map(IpSetting::Address)
            .map_err(|_| "expected an IPv4 address or 'autodetect'".to_string())
    }
}

/// `--datastore`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Datastore {
    /// A directory on this machine (the embedded default).
    File(PathBuf),
    /// CRDs on the Kubernetes API.
    Kubernetes,
}

impl FromStr for Datastore {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "kubernetes" {
            return Ok(Datastore::Kubernetes);
        }
        match s.strip_prefix("file:") {
            Some(dir) if !dir.is_empty() => Ok(Datastore::File(PathBuf::from(dir))),
            _ => Err("expected 'file:<dir>' or 'kubernetes'".to_string()),
        }
    }
}

fn parse_hold_time(s: &str) -> Result<u16, String> {
    let v: u16 = s
        .parse()
        .map_err(|_| "expected a number of seconds (0 or 3..=65535)".to_string())?;
    if v == 1 || v == 2 {
        return Err("a hold time must be 0 or at least 3 seconds (RFC 4271 §4.2)".to_string());
    }
    Ok(v)
}

/// An explicit BGP peer: `--peer 172.18.0.100:1790,as=65001`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSpec {
    pub address: Ipv4Addr,
    pub port: u16,
    pub asn: u32,
}

impl FromStr for PeerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',').map(str::trim);
        let addr = parts.next().unwrap_or_default();
        let (ip, port) = match addr.split_once(':') {
            Some((ip, port)) => {
                let port: u16 = port
                    .parse()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| format!("bad port '{port}' (expected 1..=65535)"))?;
                (ip, port)
            }
            None => (addr, 179),
        };
        let address: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("bad peer address '{ip}' (expected an IPv4 address)"))?;
        let mut asn = None;
        for part in parts {
            match part.split_once('=') {
                Some(("as", v)) => {
                    let n: u32 =
                        v.parse().ok().filter(|n| *n != 0).ok_or_else(|| {
                            format!("bad AS number '{v}' (expected 1..=4294967295)")
                        })?;
                    asn = Some(n);
                }
                _ => return Err(format!("unknown peer option '{part}' (expected as=<n>)")),
            }
        }
        let asn =
            asn.ok_or_else(|| "missing ',as=<n>' (format: <ip>[:<port>],as=<n>)".to_string())?;
        Ok(PeerSpec { address, port, asn })
    }
}

impl fmt::Display for PeerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 179 {
            write!(f, "{},as={}", self.address, self.asn)
        } else {
            write!(f, "{}:{},as={}", self.address, self.port, self.asn)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs() {
        let p: PeerSpec = "172.18.0.4:1790,as=65001".parse().unwrap();
        assert_eq!(
            (p.address, p.port, p.asn),
            (Ipv4Addr::new(172, 18, 0, 4), 1790, 65001)
        );
        let p: PeerSpec = "172.18.0.3,as=4200000001".parse().unwrap();
        assert_eq!((p.port, p.asn), (179, 4_200_000_001));
        assert_eq!(p.to_string(), "172.18.0.3,as=4200000001");
        for (bad, needle) in [
            ("172.18.0.3", "missing ',as=<n>'"),
            ("172.18.0.300,as=1", "bad peer address '172.18.0.300'"),
            ("172.18.0.3:0,as=1", "bad port '0'"),
            ("172.18.0.3:x,as=1", "bad port 'x'"),
            ("172.18.0.3,as=0", "bad AS number '0'"),
            ("172.18.0.3,as=4294967296", "bad AS number '4294967296'"),
            ("172.18.0.3,as=1,ttl=2", "unknown peer option 'ttl=2'"),
        ] {
            let err = bad.parse::<PeerSpec>().unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn hold_time_values() {
        assert_eq!(parse_hold_time("0"), Ok(0));
        assert_eq!(parse_hold_time("3"), Ok(3));
        assert!(parse_hold_time("1").is_err());
        assert!(parse_hold_time("2").is_err());
        assert!(parse_hold_time("-1").is_err());
    }
}
