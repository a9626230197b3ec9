//! Node IP autodetection, Calico's `IP_AUTODETECTION_METHOD`:
//! `first-found`, `interface=<regex>` and `can-reach=<ip>`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};

#[derive(Debug, thiserror::Error)]
pub enum AutodetectError {
    #[error("unknown method '{0}': expected first-found, interface=<regex> or can-reach=<ip>")]
    UnknownMethod(String),
    #[error("bad interface regex '{0}': {1}")]
    BadRegex(String, String),
    #[error("bad can-reach address '{0}'")]
    BadTarget(String),
    #[error("no IPv4 address found on {0}")]
    NotFound(String),
    #[error("reading interface addresses: {0}")]
    Io(#[from] std::io::Error),
}

/// Interfaces `first-found` skips, as Calico does (`autodetection_linux.go`).
const SKIPPED: &[&str] = &[
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

/// (interface, IPv4 address) of every interface that is up, in kernel order.
pub fn interface_addresses() -> Result<Vec<(String, Ipv4Addr)>, AutodetectError> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we free below with freeifaddrs; we only read
    // fields of entries while the list is alive.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        let mut cur = head;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & libc::IFF_UP as u32 != 0;
            if up && !ifa.ifa_addr.is_null() && (*ifa.ifa_addr).sa_family as i32 == libc::AF_INET {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                let name = std::ffi::CStr::from_ptr(ifa.ifa_name)
                    .to_string_lossy()
                    .into_owned();
                out.push((name, ip));
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Ok(out)
}

/// Picks the node IP by `method`.
pub fn detect(method: &str) -> Result<Ipv4Addr, AutodetectError> {
    let method = method.trim();
    if method.is_empty() || method == "first-found" {
        return interface_addresses()?
            .into_iter()
            .find(|(name, ip)| !SKIPPED.iter().any(|p| name.starts_with(p)) && !ip.is_loopback())
            .map(|(_, ip)| ip)
            .ok_or_else(|| AutodetectError::NotFound("any interface (first-found)".into()));
    }
    if let Some(re) = method.strip_prefix("interface=") {
        // Calico accepts a comma-separated list of regexes; each must match the whole name.
        let res = re
            .split(',')
            .map(|r| {
                regex::Regex::new(&format!("^(?:{r})$"))
                    .map_err(|e| AutodetectError::BadRegex(r.to_string(), e.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        return interface_addresses()?
            .into_iter()
            .find(|(name, _)| res.iter().any(|r| r.is_match(name)))
            .map(|(_, ip)| ip)
            .ok_or_else(|| AutodetectError::NotFound(format!("an interface matching {re}")));
    }
    if let Some(target) = method.strip_prefix("can-reach=") {
        let ip: IpAddr = target
            .parse()
            .map_err(|_| AutodetectError::BadTarget(target.to_string()))?;
        // A UDP connect picks the source address the kernel would use; no packet is sent.
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        sock.connect(SocketAddr::new(ip, 53))?;
        return match sock.local_addr()?.ip() {
            IpAddr::V4(v4) if !v4.is_unspecified() => Ok(v4),
            _ => Err(AutodetectError::NotFound(format!("a route to {target}"))),
        };
    }
    Err(AutodetectError::UnknownMethod(method.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_methods_are_named() {
        assert!(matches!(
            detect("nearest"),
            Err(AutodetectError::UnknownMethod(_))
        ));
        assert!(matches!(
            detect("interface=("),
            Err(AutodetectError::BadRegex(..))
        ));
        assert!(matches!(
            detect("can-reach=nowhere"),
            Err(AutodetectError::BadTarget(_))
        ));
    }

    #[test]
    fn can_reach_loopback_picks_loopback() {
        assert_eq!(detect("can-reach=127.0.0.1").unwrap(), Ipv4Addr::LOCALHOST);
    }

    #[test]
    fn interface_lo_matches_whole_name() {
        assert_eq!(detect("interface=lo").unwrap(), Ipv4Addr::LOCALHOST);
        assert!(detect("interface=l").is_err());
    }
}
