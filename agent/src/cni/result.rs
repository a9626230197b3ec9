//! The ADD result (CNI spec 1.0 §"Success"): interfaces, ips, routes, dns. Also the reverse:
//! finding our interface and address in a `prevResult` for CHECK.

use super::config::Version;
use super::error::{code, CniError};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::net::Ipv4Addr;

/// The pod's gateway. Nothing holds this address: the host side of the veth answers ARP for it
/// (proxy ARP), as Calico does, so every pod can use the same one.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    /// Empty for host interfaces; the netns path for the pod's.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Only in 0.3.x/0.4.0 results ("4" or "6"); 1.0 dropped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// `a.b.c.d/32`.
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CniResult {
    #[serde(rename = "cniVersion")]
    pub cni_version: String,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub ips: Vec<IpConfig>,
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Kept as JSON: we add no DNS, and a previous plugin's must pass through unchanged.
    #[serde(default = "empty_object")]
    pub dns: Value,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// What ADD made, in the shape the result needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub host_ifname: String,
    pub host_mac: String,
    pub pod_ifname: String,
    pub pod_mac: String,
    pub netns: String,
    pub ip: Ipv4Addr,
}

impl CniResult {
    /// The result for `attachment`, appended to `prev` when we run after another plugin in a
    /// chain (the spec says a plugin must pass `prevResult` on, not drop it).
    pub fn for_attachment(
        cni_version: &str,
        version: Version,
        attachment: &Attachment,
        prev: Option<&Value>,
    ) -> Result<CniResult, CniError> {
        let mut result = match prev {
            Some(p) => CniResult::from_prev(p, cni_version)?,
            None => CniResult {
                cni_version: cni_version.to_string(),
                interfaces: vec![],
                ips: vec![],
                routes: vec![],
                dns: empty_object(),
            },
        };
        result.cni_version = cni_version.to_string();
        result.interfaces.push(Interface {
            name: attachment.host_ifname.clone(),
            mac: attachment.host_mac.clone(),
            sandbox: String::new(),
        });
        result.interfaces.push(Interface {
            name: attachment.pod_ifname.clone(),
            mac: attachment.pod_mac.clone(),
            sandbox: attachment.netns.clone(),
        });
        let pod_index = result.interfaces.len() - 1;
        result.ips.push(IpConfig {
            version: (version < (1, 0, 0)).then(|| "4".to_string()),
            address: format!("{}/32", attachment.ip),
            gateway: Some(GATEWAY.to_string()),
            interface: Some(pod_index),
        });
        result.routes.push(Route {
            dst: "0.0.0.0/0".into(),
            gw: Some(GATEWAY.to_string()),
        });
        Ok(result)
    }

    pub fn from_prev(prev: &Value, cni_version: &str) -> Result<CniResult, CniError> {
        let mut with_version = prev.clone();
        if let Some(obj) = with_version.as_object_mut() {
            obj.entry("cniVersion")
                .or_insert_with(|| Value::String(cni_version.to_string()));
        }
        serde_json::from_value(with_version)
            .map_err(|e| CniError::new(code::DECODE, "cannot decode prevResult", e.to_string()))
    }

    /// The address CHECK must find on `ifname` in `netns`: the first IPv4 entry of
    /// `prevResult` whose interface is that sandbox interface.
    pub fn pod_address(&self, ifname: &str, netns: &str) -> Result<Ipv4Addr, CniError> {
        let index = self
            .interfaces
            .iter()
            .position(|i| i.name == ifname && i.sandbox == netns)
            .ok_or_else(|| {
                CniError::new(
                    code::CHECK_FAILED,
                    "prevResult has no such interface",
                    format!("no interface {ifname} with sandbox {netns} in prevResult"),
                )
            })?;
        self.ips
            .iter()
            .filter(|ip| ip.interface == Some(index))
            .find_map(|ip| ip.address.strip_suffix("/32")?.parse().ok())
            .ok_or_else(|| {
                CniError::new(
                    code::CHECK_FAILED,
                    "prevResult has no address for the interface",
                    format!("no IPv4 /32 for interface {index} ({ifname}) in prevResult"),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attachment() -> Attachment {
        Attachment {
            host_ifname: "cali0123456789a".into(),
            host_mac: "ee:ee:ee:ee:ee:ee".into(),
            pod_ifname: "eth0".into(),
            pod_mac: "aa:bb:cc:dd:ee:ff".into(),
            netns: "/var/run/netns/p".into(),
            ip: "192.168.10.7".parse().unwrap(),
        }
    }

    #[test]
    fn one_point_oh_shape() {
        let r = CniResult::for_attachment("1.0.0", (1, 0, 0), &attachment(), None).unwrap();
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({
                "cniVersion": "1.0.0",
                "interfaces": [
                    {"name": "cali0123456789a", "mac": "ee:ee:ee:ee:ee:ee"},
                    {"name": "eth0", "mac": "aa:bb:cc:dd:ee:ff", "sandbox": "/var/run/netns/p"}
                ],
                "ips": [{"address": "192.168.10.7/32", "gateway": "169.254.1.1", "interface": 1}],
                "routes": [{"dst": "0.0.0.0/0", "gw": "169.254.1.1"}],
                "dns": {}
            })
        );
        assert_eq!(
            r.pod_address("eth0", "/var/run/netns/p").unwrap(),
            attachment().ip
        );
        assert_eq!(
            r.pod_address("eth1", "/var/run/netns/p").unwrap_err().code,
            code::CHECK_FAILED
        );
    }

    #[test]
    fn old_versions_carry_ip_version_and_chains_append() {
        let prev = serde_json::json!({
            "cniVersion": "0.4.0",
            "interfaces": [{"name": "lo0"}],
            "ips": [{"version": "4", "address": "10.0.0.1/8", "interface": 0}],
            "dns": {"nameservers": ["10.0.0.53"]}
        });
        let r = CniResult::for_attachment("0.4.0", (0, 4, 0), &attachment(), Some(&prev)).unwrap();
        assert_eq!(r.interfaces.len(), 3);
        assert_eq!(r.ips[1].interface, Some(2));
        assert_eq!(r.ips[1].version.as_deref(), Some("4"));
        assert_eq!(r.dns["nameservers"][0], "10.0.0.53");
        assert_eq!(
            CniResult::from_prev(&serde_json::json!({"ips": 3}), "1.0.0")
                .unwrap_err()
                .code,
            code::DECODE
        );
    }
}
