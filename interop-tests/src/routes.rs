//! Kernel routes as `ip -j route show` prints them.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use ipnet::Ipv4Net;
use serde::Deserialize;

/// One route of `ip -j route show`. iproute2 leaves out fields at their default (type unicast,
/// scope global) and leaves out `protocol` when the listing was filtered by protocol.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Route {
    /// `"default"` or a prefix; a host route may be printed without `/32`.
    pub dst: String,
    #[serde(rename = "type", default = "unicast")]
    pub kind: String,
    pub gateway: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub protocol: Option<String>,
    #[serde(default = "global")]
    pub scope: String,
    pub prefsrc: Option<Ipv4Addr>,
    pub metric: Option<u32>,
    #[serde(default)]
    pub flags: Vec<String>,
}

fn unicast() -> String {
    "unicast".into()
}

fn global() -> String {
    "global".into()
}

impl Route {
    /// The destination as a prefix (`default` is 0.0.0.0/0, a bare address is a /32).
    pub fn prefix(&self) -> Option<Ipv4Net> {
        if self.dst == "default" {
            return Some(Ipv4Net::default());
        }
        self.dst
            .parse()
            .ok()
            .or_else(|| self.dst.parse::<Ipv4Addr>().ok().map(Ipv4Net::from))
    }

    pub fn is_blackhole(&self) -> bool {
        self.kind == "blackhole"
    }
}

pub fn parse(json: &str) -> Result<Vec<Route>> {
    serde_json::from_str(json).with_context(|| format!("parsing `ip -j route` output: {json}"))
}

/// The route for exactly `prefix`, if any.
pub fn find(routes: &[Route], prefix: Ipv4Net) -> Option<&Route> {
    routes.iter().find(|r| r.prefix() == Some(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from iproute2 6.1 in a namespace.
    const ALL: &str = r#"[{"dst":"default","gateway":"10.9.0.3","dev":"d0","flags":[]},{"dst":"10.9.0.0/24","dev":"d0","protocol":"kernel","scope":"link","prefsrc":"10.9.0.1","flags":[]},{"type":"blackhole","dst":"192.168.1.0/26","protocol":"bird","flags":[]},{"dst":"192.168.2.0/26","gateway":"10.9.0.2","dev":"d0","protocol":"bird","flags":[]},{"dst":"192.168.2.7","dev":"cali0123456789a","scope":"link","flags":[]}]"#;

    #[test]
    fn parses_all_route_shapes() {
        let r = parse(ALL).unwrap();
        assert_eq!(r.len(), 5);
        assert_eq!(r[0].prefix(), Some("0.0.0.0/0".parse().unwrap()));
        assert_eq!(r[0].gateway, Some("10.9.0.3".parse().unwrap()));
        assert_eq!(r[0].scope, "global");
        assert_eq!(r[1].scope, "link");
        assert_eq!(r[1].protocol.as_deref(), Some("kernel"));
        assert!(r[2].is_blackhole());
        assert_eq!(r[2].dev, None);
        assert_eq!(r[3].kind, "unicast");
        assert_eq!(r[3].dev.as_deref(), Some("d0"));
        assert_eq!(r[4].prefix(), Some("192.168.2.7/32".parse().unwrap()));
        let b = find(&r, "192.168.2.0/26".parse().unwrap()).unwrap();
        assert_eq!(b.protocol.as_deref(), Some("bird"));
    }
}
