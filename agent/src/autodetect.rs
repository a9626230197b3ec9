//! Finding the node's own IPv4 address (`IP=autodetect`), with Calico's
//! `IP_AUTODETECTION_METHOD`s:
//! - `first-found`: the first UP interface (kernel order) with an IPv4 address, skipping
//!   interfaces that are never the node's underlay (`lo`, `docker*`, `veth*`, `br-*`, `cali*`,
//!   `tunl*`, `kube-ipvs*`, `cni*`, `virbr*`, ...; Calico's `autodetection_linux.go`);
//! - `interface=<regex>[,<regex>...]`: the first UP interface whose whole name matches one of the
//!   regexes. The match is anchored, so `interface=eth.*` does not pick `veth12`;
//! - `can-reach=<ip>`: the source address the kernel would use towards `<ip>`, found by
//!   connecting a UDP socket (no packet is sent) and reading its local address.
//!
//! Addresses come from getifaddrs(3) in the calling thread's network namespace. Link-local
//! (169.254/16) addresses are never picked, loopback only when asked for by name.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::str::FromStr;

use regex::Regex;

/// Interface name prefixes `first-found` skips.
pub const SKIPPED_PREFIXES: &[&str] = &[
    "lo",
    "docker",
    "veth",
    "br-",
    "cali",
    "tunl",
    "kube-ipvs",
    "cni",
    "virbr",
    "vxlan",
    "flannel",
];

/// A parsed `IP_AUTODETECTION_METHOD` (clap parses `--ip-autodetection-method` into this).
#[derive(Debug, Clone)]
pub enum AutodetectMethod {
    FirstFound,
    Interface(Vec<Regex>),
    CanReach(Ipv4Addr),
}

impl PartialEq for AutodetectMethod {
    fn eq(&self, other: &Self) -> bool {
        self.to_string() == other.to_string()
    }
}

impl FromStr for AutodetectMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if s.is_empty() || s == "first-found" {
            return Ok(AutodetectMethod::FirstFound);
        }
        if let Some(list) = s.strip_prefix("interface=") {
            if list.is_empty() {
                return Err("empty interface regex".to_string());
            }
            let regexes = list
                .split(',')
                .map(|r| {
                    Regex::new(&format!("^(?:{r})$"))
                        .map_err(|e| format!("bad interface regex '{r}': {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            return Ok(AutodetectMethod::Interface(regexes));
        }
        if let Some(ip) = s.strip_prefix("can-reach=") {
            return ip
                .parse()
                .map(AutodetectMethod::CanReach)
                .map_err(|_| format!("bad can-reach address '{ip}' (expected an IPv4 address)"));
        }
        Err("expected 'first-found', 'interface=<regex>' or 'can-reach=<ip>'".to_string())
    }
}

impl fmt::Display for AutodetectMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AutodetectMethod::FirstFound => write!(f, "first-found"),
            AutodetectMethod::Interface(res) => {
                let names: Vec<&str> = res
                    .iter()
                    .map(|r| {
                        let s = r.as_str();
                        s.strip_prefix("^(?:")
                            .and_then(|s| s.strip_suffix(")$"))
                            .unwrap_or(s)
                    })
                    .collect();
                write!(f, "interface={}", names.join(","))
            }
            AutodetectMethod::CanReach(ip) => write!(f, "can-reach={ip}"),
        }
    }
}

/// One interface and its IPv4 addresses, in the order the kernel lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub up: bool,
    /// (address, prefix length)
    pub addresses: Vec<(Ipv4Addr, u8)>,
}

/// What autodetection found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Detected {
    pub address: Ipv4Addr,
    pub prefix_len: u8,
    pub ifname: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error("IP_AUTODETECTION_METHOD={0}")]
    BadMethod(String),
    #[error("IP_AUTODETECTION_METHOD={method}: no usable IPv4 address found")]
    NotFound { method: String },
    #[error("IP_AUTODETECTION_METHOD=can-reach={target}: {message}")]
    CanReach { target: Ipv4Addr, message: String },
    #[error("reading interface addresses: {0}")]
    Io(#[from] std::io::Error),
}

fn first_address(iface: &Interface, allow_loopback: bool) -> Option<Detected> {
    iface
        .addresses
        .iter()
        .find(|(a, _)| {
            !a.is_link_local() && !a.is_unspecified() && (allow_loopback || !a.is_loopback())
        })
        .map(|(a, len)| Detected {
            address: *a,
            prefix_len: *len,
            ifname: iface.name.clone(),
        })
}

/// Picks an address from `interfaces` for `first-found` and `interface=`; for `can-reach`,
/// `source` is the local address the kernel chose, and this finds its interface.
pub fn select(
    method: &AutodetectMethod,
    interfaces: &[Interface],
    source: Option<Ipv4Addr>,
) -> Option<Detected> {
    match method {
        AutodetectMethod::FirstFound => interfaces
            .iter()
            .filter(|i| i.up && !SKIPPED_PREFIXES.iter().any(|p| i.name.starts_with(p)))
            .find_map(|i| first_address(i, false)),
        // Named explicitly: even `lo` is honoured.
        AutodetectMethod::Interface(res) => interfaces
            .iter()
            .filter(|i| i.up && res.iter().any(|r| r.is_match(&i.name)))
            .find_map(|i| first_address(i, true)),
        AutodetectMethod::CanReach(_) => {
            let source = source?;
            interfaces.iter().find_map(|i| {
                i.addresses
                    .iter()
                    .find(|(a, _)| *a == source)
                    .map(|(a, len)| Detected {
                        address: *a,
                        prefix_len: *len,
                        ifname: i.name.clone(),
                    })
            })
        }
    }
}

/// Runs `method` in the calling thread's network namespace.
pub fn autodetect(method: &AutodetectMethod) -> Result<Detected, AutodetectError> {
    let source = match method {
        AutodetectMethod::CanReach(target) => Some(source_towards(*target)?),
        _ => None,
    };
    select(method, &interfaces()?, source).ok_or_else(|| AutodetectError::NotFound {
        method: method.to_string(),
    })
}

/// Parses `method` and runs it: the node IP for `IP=autodetect`.
pub fn detect(method: &str) -> Result<Ipv4Addr, AutodetectError> {
    let parsed: AutodetectMethod = method
        .parse()
        .map_err(|e| AutodetectError::BadMethod(format!("{method}: {e}")))?;
    autodetect(&parsed).map(|d| d.address)
}

/// The local address the kernel would send from towards `target`. Connecting a UDP socket
/// only does the route lookup: nothing goes on the wire.
pub fn source_towards(target: Ipv4Addr) -> Result<Ipv4Addr, AutodetectError> {
    let err = |e: std::io::Error| AutodetectError::CanReach {
        target,
        message: e.to_string(),
    };
    let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).map_err(err)?;
    sock.connect(SocketAddr::from((target, 53))).map_err(err)?;
    match sock.local_addr().map_err(err)?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Ok(a),
        other => Err(AutodetectError::CanReach {
            target,
            message: format!("no usable source address (got {other})"),
        }),
    }
}

/// Every interface with an IPv4 address, with those addresses, in kernel order.
pub fn interfaces() -> Result<Vec<Interface>, AutodetectError> {
    let mut out: Vec<Interface> = Vec::new();
    let addrs = nix::ifaddrs::getifaddrs().map_err(std::io::Error::from)?;
    for ifa in addrs {
        let Some(addr) = ifa.address.as_ref().and_then(|a| a.as_sockaddr_in()) else {
            continue;
        };
        let addr = addr.ip();
        let prefix_len = ifa
            .netmask
            .as_ref()
            .and_then(|m| m.as_sockaddr_in())
            .map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
        let up = ifa.flags.contains(nix::net::if_::InterfaceFlags::IFF_UP);
        match out.iter_mut().find(|i| i.name == ifa.interface_name) {
            Some(i) => i.addresses.push((addr, prefix_len)),
            None => out.push(Interface {
                name: ifa.interface_name,
                up,
                addresses: vec![(addr, prefix_len)],
            }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iface(name: &str, up: bool, addrs: &[(&str, u8)]) -> Interface {
        Interface {
            name: name.into(),
            up,
            addresses: addrs
                .iter()
                .map(|(a, l)| (a.parse().unwrap(), *l))
                .collect(),
        }
    }

    fn host() -> Vec<Interface> {
        vec![
            iface("lo", true, &[("127.0.0.1", 8)]),
            iface("docker0", true, &[("172.17.0.1", 16)]),
            iface("eth1", false, &[("10.0.0.5", 24)]),
            iface("veth12", true, &[("10.1.0.5", 24)]),
            iface("eth0", true, &[("169.254.3.3", 16), ("172.18.0.5", 16)]),
            iface("cali2c3211ffbd5", true, &[("192.168.0.1", 32)]),
        ]
    }

    #[test]
    fn first_found_skips_virtual_and_down_interfaces() {
        let d = select(&AutodetectMethod::FirstFound, &host(), None).unwrap();
        assert_eq!(
            (d.address, d.prefix_len, d.ifname.as_str()),
            ("172.18.0.5".parse().unwrap(), 16, "eth0")
        );
    }

    #[test]
    fn interface_regex_is_anchored() {
        let m: AutodetectMethod = "interface=eth.*".parse().unwrap();
        assert_eq!(select(&m, &host(), None).unwrap().ifname, "eth0");
        let m: AutodetectMethod = "interface=veth.*,eth0".parse().unwrap();
        assert_eq!(select(&m, &host(), None).unwrap().ifname, "veth12");
        let m: AutodetectMethod = "interface=th0".parse().unwrap();
        assert_eq!(select(&m, &host(), None), None);
    }

    #[test]
    fn parse_errors_say_what_is_wrong() {
        let err = |s: &str| s.parse::<AutodetectMethod>().unwrap_err();
        assert!(err("interface=(").contains("bad interface regex '('"));
        assert!(err("can-reach=x").contains("bad can-reach address 'x'"));
        assert!(err("cidr=10.0.0.0/8").contains("expected 'first-found'"));
        assert!(matches!(
            detect("nearest"),
            Err(AutodetectError::BadMethod(_))
        ));
        let m: AutodetectMethod = "interface=eth.*".parse().unwrap();
        assert_eq!(m.to_string(), "interface=eth.*");
    }

    #[test]
    fn loopback_by_name_or_reach() {
        assert_eq!(detect("can-reach=127.0.0.1").unwrap(), Ipv4Addr::LOCALHOST);
        assert_eq!(detect("interface=lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert!(detect("interface=l").is_err());
    }
}
