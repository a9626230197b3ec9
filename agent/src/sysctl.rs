//! The forwarding sysctls the agent and the CNI plugin set (docs/ARCHITECTURE.md, "Kernel").
//!
//! Paths are under `/proc/sys` of the calling thread's network namespace: `/proc/sys/net` follows
//! the namespace of the task that opens it, so call these inside the namespace you mean.

use std::path::{Path, PathBuf};

const PROC_SYS: &str = "/proc/sys";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SysctlError {
    #[error("invalid interface name '{0}' for a sysctl path")]
    BadInterface(String),
    #[error("cannot write '{value}' to {path}: {message}")]
    Write {
        path: PathBuf,
        value: String,
        message: String,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
}

/// `net.ipv4.ip_forward=1`: the node routes between pods and the underlay.
pub fn enable_ip_forward() -> Result<(), SysctlError> {
    write("net/ipv4/ip_forward", "1")
}

/// The host side of a pod veth: answer ARP for 169.254.1.1 (and everything else) at once, and
/// forward. Calico's values: `proxy_arp=1`, `forwarding=1`, `neigh/<if>/proxy_delay=0`.
pub fn configure_cali_interface(ifname: &str) -> Result<(), SysctlError> {
    check_ifname(ifname)?;
    write(&format!("net/ipv4/conf/{ifname}/proxy_arp"), "1")?;
    write(&format!("net/ipv4/conf/{ifname}/forwarding"), "1")?;
    // Without this the kernel delays proxy ARP replies by up to 0.8 s (proxy_delay default 80
    // jiffies), which stalls a pod's first packet.
    write(&format!("net/ipv4/neigh/{ifname}/proxy_delay"), "0")
}

/// Writes `value` to `/proc/sys/<key>` (`key` with `/` separators, e.g. `net/ipv4/ip_forward`).
pub fn write(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = Path::new(PROC_SYS).join(key);
    std::fs::write(&path, value).map_err(|e| SysctlError::Write {
        path,
        value: value.to_string(),
        message: e.to_string(),
    })
}

/// Reads `/proc/sys/<key>`, trimmed.
pub fn read(key: &str) -> Result<String, SysctlError> {
    let path = Path::new(PROC_SYS).join(key);
    std::fs::read_to_string(&path)
        .map(|s| s.trim().to_string())
        .map_err(|e| SysctlError::Read {
            path,
            message: e.to_string(),
        })
}

/// Interface names become path components: refuse anything that could escape the directory.
fn check_ifname(ifname: &str) -> Result<(), SysctlError> {
    let ok = !ifname.is_empty()
        && ifname.len() < 16
        && ifname != "."
        && ifname != ".."
        && !ifname.contains(['/', '\0'])
        && !ifname.chars().any(char::is_whitespace);
    if ok {
        Ok(())
    } else {
        Err(SysctlError::BadInterface(ifname.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_write() {
        for bad in ["", "..", "a/b", "cali0123456789abc", "a b"] {
            assert!(matches!(
                configure_cali_interface(bad),
                Err(SysctlError::BadInterface(_))
            ));
        }
    }
}
