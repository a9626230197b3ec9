//! Building route messages for our three kinds of route, and reading kernel routes back into
//! [`InstalledRoute`]s.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::AddressFamily;

use super::{is_cali, DesiredRoute, InstalledRoute, KernelError, RouteTarget, RTPROT_BIRD};

fn base(prefix: Ipv4Net) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = AddressFamily::Inet;
    msg.header.table = RouteHeader::RT_TABLE_MAIN;
    msg.header.destination_prefix_length = prefix.prefix_len();
    msg.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(
            prefix.network(),
        )));
    msg
}

/// The message that installs `route`. `ifindex` resolves the device of a host route.
pub(crate) fn new_route(
    route: &DesiredRoute,
    ifindex: &HashMap<String, u32>,
) -> Result<RouteMessage, KernelError> {
    let mut msg = base(route.prefix);
    match &route.target {
        RouteTarget::Via(gw) => {
            msg.header.protocol = RouteProtocol::Bird;
            msg.header.scope = RouteScope::Universe;
            msg.header.kind = RouteType::Unicast;
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(*gw)));
        }
        RouteTarget::Blackhole => {
            msg.header.protocol = RouteProtocol::Bird;
            msg.header.scope = RouteScope::Universe;
            msg.header.kind = RouteType::BlackHole;
        }
        RouteTarget::Device(name) => {
            let index = *ifindex
                .get(name)
                .ok_or_else(|| KernelError::NoSuchInterface(name.clone()))?;
            msg.header.protocol = RouteProtocol::Boot;
            msg.header.scope = RouteScope::Link;
            msg.header.kind = RouteType::Unicast;
            msg.attributes.push(RouteAttribute::Oif(index));
        }
    }
    Ok(msg)
}

/// The message that deletes exactly `route`: protocol and type are matched by the kernel, and
/// the device for a host route, so a same-prefix route of someone else survives. Scope
/// "nowhere" means "any scope" to `fib_table_delete`.
pub(crate) fn del_route(
    route: &DesiredRoute,
    ifindex: &HashMap<String, u32>,
) -> Result<RouteMessage, KernelError> {
    let mut msg = base(route.prefix);
    msg.header.scope = RouteScope::NoWhere;
    match &route.target {
        RouteTarget::Via(gw) => {
            msg.header.protocol = RouteProtocol::Bird;
            msg.header.kind = RouteType::Unicast;
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::Inet(*gw)));
        }
        RouteTarget::Blackhole => {
            msg.header.protocol = RouteProtocol::Bird;
            msg.header.kind = RouteType::BlackHole;
        }
        RouteTarget::Device(name) => {
            msg.header.protocol = RouteProtocol::Boot;
            msg.header.kind = RouteType::Unicast;
            // A device that is gone took its routes with it: nothing to match on.
            let index = *ifindex
                .get(name)
                .ok_or_else(|| KernelError::NoSuchInterface(name.clone()))?;
            msg.attributes.push(RouteAttribute::Oif(index));
        }
    }
    Ok(msg)
}

/// Deletes whatever `proto bird` route sits at `prefix` (via or blackhole).
pub(crate) fn del_bird_prefix(prefix: Ipv4Net) -> RouteMessage {
    let mut msg = base(prefix);
    msg.header.scope = RouteScope::NoWhere;
    msg.header.protocol = RouteProtocol::Bird;
    msg.header.kind = RouteType::Unspec;
    msg
}

/// The fields of an IPv4 main-table route that matter to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRoute {
    pub prefix: Ipv4Net,
    pub protocol: u8,
    pub kind: RouteType,
    pub gateway: Option<Ipv4Addr>,
    pub oif: Option<u32>,
    pub multipath: bool,
    pub metric: u32,
}

impl ParsedRoute {
    /// The route as `ip route` would name it, for errors.
    pub(crate) fn describe(&self, names: &HashMap<u32, String>) -> String {
        let mut s = match self.kind {
            RouteType::Unicast => self.prefix.to_string(),
            kind => format!("{} {}", format!("{kind:?}").to_lowercase(), self.prefix),
        };
        if let Some(gw) = self.gateway {
            s.push_str(&format!(" via {gw}"));
        }
        if let Some(dev) = self.oif.and_then(|i| names.get(&i)) {
            s.push_str(&format!(" dev {dev}"));
        }
        s.push_str(&format!(" proto {}", protocol_name(self.protocol)));
        s
    }
}

/// `ip route`'s names for the common protocol numbers (rt_protos).
fn protocol_name(p: u8) -> String {
    match p {
        2 => "kernel".into(),
        3 => "boot".into(),
        4 => "static".into(),
        12 => "bird".into(),
        186 => "bgp".into(),
        n => n.to_string(),
    }
}

/// Reads a dumped route; `None` for other families, other tables and malformed entries.
pub(crate) fn parse(msg: &RouteMessage) -> Option<ParsedRoute> {
    if msg.header.address_family != AddressFamily::Inet {
        return None;
    }
    let mut table = u32::from(msg.header.table);
    let mut dst = Ipv4Addr::UNSPECIFIED;
    let mut gateway = None;
    let mut oif = None;
    let mut multipath = false;
    let mut metric = 0;
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Table(t) => table = *t,
            RouteAttribute::Destination(RouteAddress::Inet(a)) => dst = *a,
            RouteAttribute::Gateway(RouteAddress::Inet(a)) => gateway = Some(*a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::MultiPath(_) => multipath = true,
            RouteAttribute::Priority(p) => metric = *p,
            _ => {}
        }
    }
    if table != u32::from(RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let prefix = Ipv4Net::new(dst, msg.header.destination_prefix_length).ok()?;
    Some(ParsedRoute {
        prefix,
        protocol: u8::from(msg.header.protocol),
        kind: msg.header.kind,
        gateway,
        oif,
        multipath,
        metric,
    })
}

/// Classifies a route as ours or not: `proto bird` unicast-via or blackhole, or a
/// link-scope host route on a cali device. `names` maps ifindex to name.
pub(crate) fn owned(route: &ParsedRoute, names: &HashMap<u32, String>) -> Option<InstalledRoute> {
    if route.metric != 0 {
        return None;
    }
    let ifname = route.oif.and_then(|i| names.get(&i).cloned());
    let target = match route.kind {
        RouteType::BlackHole if route.protocol == RTPROT_BIRD => RouteTarget::Blackhole,
        RouteType::Unicast if route.protocol == RTPROT_BIRD && !route.multipath => {
            RouteTarget::Via(route.gateway?)
        }
        RouteType::Unicast if route.gateway.is_none() && !route.multipath => {
            let name = ifname.clone()?;
            if !is_cali(&name) {
                return None;
            }
            RouteTarget::Device(name)
        }
        _ => return None,
    };
    Some(InstalledRoute {
        prefix: route.prefix,
        target,
        ifindex: route.oif,
        ifname,
        protocol: route.protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> HashMap<u32, String> {
        HashMap::from([(2, "eth0".to_string()), (7, "cali2c3211ffbd5".to_string())])
    }

    fn parsed(protocol: u8, kind: RouteType, gw: Option<&str>, oif: Option<u32>) -> ParsedRoute {
        ParsedRoute {
            prefix: "192.168.1.0/26".parse().unwrap(),
            protocol,
            kind,
            gateway: gw.map(|g| g.parse().unwrap()),
            oif,
            multipath: false,
            metric: 0,
        }
    }

    #[test]
    fn bird_via_and_blackhole_are_ours() {
        let r = owned(
            &parsed(12, RouteType::Unicast, Some("172.18.0.8"), Some(2)),
            &names(),
        )
        .unwrap();
        assert_eq!(r.target, RouteTarget::Via("172.18.0.8".parse().unwrap()));
        assert_eq!(r.ifname.as_deref(), Some("eth0"));
        let r = owned(&parsed(12, RouteType::BlackHole, None, None), &names()).unwrap();
        assert_eq!(r.target, RouteTarget::Blackhole);
    }

    #[test]
    fn other_protocols_and_devices_are_not_ours() {
        // proto static via: someone else's.
        assert!(owned(
            &parsed(4, RouteType::Unicast, Some("172.18.0.1"), Some(2)),
            &names()
        )
        .is_none());
        // proto kernel on eth0: the connected subnet.
        assert!(owned(&parsed(2, RouteType::Unicast, None, Some(2)), &names()).is_none());
        // A static blackhole.
        assert!(owned(&parsed(4, RouteType::BlackHole, None, None), &names()).is_none());
        // A host route on a cali device is ours whatever its protocol.
        let r = owned(&parsed(3, RouteType::Unicast, None, Some(7)), &names()).unwrap();
        assert_eq!(r.target, RouteTarget::Device("cali2c3211ffbd5".into()));
    }

    #[test]
    fn host_route_on_a_missing_device_fails_cleanly() {
        let r = DesiredRoute::host("192.168.252.7".parse().unwrap(), "cali0");
        let err = new_route(&r, &HashMap::new()).unwrap_err();
        assert_eq!(err, KernelError::NoSuchInterface("cali0".into()));
    }
}
