//! IPPool: the range blocks are carved from. Both fields are immutable once stored.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{InvalidRecord, Resource};
use crate::error::IpamError;
use crate::store::Kind;

/// Block sizes a pool may use (Calico's CRD allows 20–32 for IPv4).
pub const BLOCK_SIZES: std::ops::RangeInclusive<u8> = 20..=32;

/// On Kubernetes, a cluster-scoped `IPPool` custom resource (`gingham.io/v1`) with this as its
/// spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, CustomResource)]
#[kube(
    group = "gingham.io",
    version = "v1",
    kind = "IPPool",
    plural = "ippools",
    root = "IpPoolResource",
    doc = "A pool of pod addresses, cut into blocks (Gingham's IPAM).",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Block size","type":"integer","jsonPath":".spec.blockSize"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct IpPool {
    pub cidr: Ipv4Net,
    pub block_size: u8,
    #[serde(default)]
    pub disabled: bool,
}

impl Resource for IpPool {
    const KIND: Kind = Kind::IPPool;

    fn validate(&self) -> Result<(), InvalidRecord> {
        IpPool::new(self.cidr, self.block_size)?;
        Ok(())
    }
}

impl IpPool {
    pub const NAME: &'static str = "default-ipv4-ippool";
    pub const DEFAULT_CIDR: Ipv4Net = match Ipv4Net::new(Ipv4Addr::new(192, 168, 0, 0), 16) {
        Ok(n) => n,
        Err(_) => panic!("constant"),
    };
    pub const DEFAULT_BLOCK_SIZE: u8 = 26;

    /// A validated pool; errors name the setting (`IPV4POOL_CIDR`, `IPV4POOL_BLOCK_SIZE`).
    pub fn new(cidr: Ipv4Net, block_size: u8) -> Result<Self, IpamError> {
        if !BLOCK_SIZES.contains(&block_size) {
            return Err(IpamError::InvalidConfig {
                field: "IPV4POOL_BLOCK_SIZE",
                value: block_size.to_string(),
                reason: format!(
                    "must be between {} and {}",
                    BLOCK_SIZES.start(),
                    BLOCK_SIZES.end()
                ),
            });
        }
        if cidr != cidr.trunc() {
            return Err(IpamError::InvalidConfig {
                field: "IPV4POOL_CIDR",
                value: cidr.to_string(),
                reason: format!("has host bits set (did you mean {}?)", cidr.trunc()),
            });
        }
        if cidr.prefix_len() > block_size {
            return Err(IpamError::InvalidConfig {
                field: "IPV4POOL_BLOCK_SIZE",
                value: block_size.to_string(),
                reason: format!("a /{block_size} block does not fit in pool {cidr}"),
            });
        }
        Ok(IpPool {
            cidr,
            block_size,
            disabled: false,
        })
    }

    pub fn block_count(&self) -> u64 {
        1u64 << (self.block_size - self.cidr.prefix_len())
    }

    /// The `index`-th block of the pool, or `None` past the end.
    pub fn block(&self, index: u64) -> Option<Ipv4Net> {
        if index >= self.block_count() {
            return None;
        }
        let step = 1u64 << (32 - self.block_size);
        let base = u64::from(u32::from(self.cidr.network()));
        let addr = u32::try_from(base + index * step).ok()?;
        Ipv4Net::new(Ipv4Addr::from(addr), self.block_size).ok()
    }

    /// The block an address of the pool falls in.
    pub fn block_of(&self, ip: Ipv4Addr) -> Option<Ipv4Net> {
        if !self.cidr.contains(&ip) {
            return None;
        }
        Ipv4Net::new(ip, self.block_size).ok().map(|n| n.trunc())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let p = |s: &str| s.parse::<Ipv4Net>().unwrap();
        assert!(IpPool::new(p("192.168.0.0/16"), 26).is_ok());
        assert!(IpPool::new(p("10.0.0.0/24"), 24).is_ok());
        assert!(IpPool::new(p("10.0.0.0/24"), 32).is_ok());
        let e = IpPool::new(p("192.168.0.0/16"), 19)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPV4POOL_BLOCK_SIZE") && e.contains("20"), "{e}");
        let e = IpPool::new(p("192.168.0.0/16"), 33)
            .unwrap_err()
            .to_string();
        assert!(e.contains("IPV4POOL_BLOCK_SIZE"), "{e}");
        let e = IpPool::new(p("10.0.0.0/28"), 26).unwrap_err().to_string();
        assert!(e.contains("does not fit"), "{e}");
        let e = IpPool::new(p("192.168.1.0/16"), 26)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("IPV4POOL_CIDR") && e.contains("192.168.0.0/16"),
            "{e}"
        );
    }

    #[test]
    fn blocks_of_the_pool() {
        let pool = IpPool::new(IpPool::DEFAULT_CIDR, 26).unwrap();
        assert_eq!(pool.block_count(), 1024);
        assert_eq!(pool.block(0).unwrap().to_string(), "192.168.0.0/26");
        assert_eq!(pool.block(1023).unwrap().to_string(), "192.168.255.192/26");
        assert_eq!(pool.block(1024), None);
        assert_eq!(
            pool.block_of(Ipv4Addr::new(192, 168, 3, 77))
                .unwrap()
                .to_string(),
            "192.168.3.64/26"
        );
        assert_eq!(pool.block_of(Ipv4Addr::new(10, 0, 0, 1)), None);
    }
}
