//! Links between namespaces: a bridge underlay like kind's Docker network, and plain veth pairs.
//!
//! Veths are created with both ends directly in their target namespaces, so no interface ever
//! appears in the host namespace (and names only need to be unique inside a namespace).

use std::net::Ipv4Addr;

use anyhow::{bail, Context, Result};
use ipnet::Ipv4Net;

use crate::netns::Netns;

/// Creates a veth pair `a_if` in `a` and `b_if` in `b`, addresses them (when given) and sets
/// both ends up.
pub fn veth_pair(
    a: &Netns,
    a_if: &str,
    a_addr: Option<Ipv4Net>,
    b: &Netns,
    b_if: &str,
    b_addr: Option<Ipv4Net>,
) -> Result<()> {
    a.ip(&[
        "link",
        "add",
        a_if,
        "type",
        "veth",
        "peer",
        "name",
        b_if,
        "netns",
        b.name(),
    ])
    .with_context(|| format!("veth {a_if}@{} <-> {b_if}@{}", a.name(), b.name()))?;
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        if let Some(addr) = addr {
            ns.ip(&["addr", "add", &addr.to_string(), "dev", ifname])?;
        }
        ns.ip(&["link", "set", ifname, "up"])?;
    }
    Ok(())
}

/// A Linux bridge `br0` living in a namespace of its own (no address: it only switches).
pub struct Bridge {
    ns: Netns,
    ports: u32,
}

impl Bridge {
    pub fn new(ns: Netns) -> Result<Bridge> {
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        Ok(Bridge { ns, ports: 0 })
    }

    pub fn netns(&self) -> &Netns {
        &self.ns
    }

    /// Plugs `node` into the bridge through a veth whose node end is `ifname` with `addr`.
    pub fn attach(&mut self, node: &Netns, ifname: &str, addr: Ipv4Net) -> Result<()> {
        let port = format!("p{}", self.ports);
        self.ports += 1;
        veth_pair(node, ifname, Some(addr), &self.ns, &port, None)?;
        self.ns.ip(&["link", "set", &port, "master", "br0"])?;
        Ok(())
    }
}

/// One node of an underlay: its namespace and its `eth0` address.
pub struct Node {
    pub ns: Netns,
    pub ip: Ipv4Addr,
}

/// A bridge plus N node namespaces, each with `eth0` addressed from `subnet` starting at `.2`
/// (`.1` is the gateway in kind's network and stays free).
pub struct Underlay {
    // Nodes first: dropping them removes their veths before the bridge namespace goes.
    pub nodes: Vec<Node>,
    pub bridge: Bridge,
    pub subnet: Ipv4Net,
}

impl Underlay {
    /// `n` nodes named `<prefix>-<pid>-<counter>`.
    pub fn new(prefix: &str, subnet: Ipv4Net, n: usize) -> Result<Underlay> {
        let mut u = Underlay::empty(Netns::new(&format!("{prefix}br"))?, subnet)?;
        for _ in 0..n {
            u.add_node(Netns::new(prefix)?)?;
        }
        Ok(u)
    }

    /// An underlay with no nodes yet, around a caller-made bridge namespace.
    pub fn empty(bridge_ns: Netns, subnet: Ipv4Net) -> Result<Underlay> {
        Ok(Underlay {
            nodes: Vec::new(),
            bridge: Bridge::new(bridge_ns)?,
            subnet,
        })
    }

    /// Attaches `ns` with the next free address; returns that address.
    pub fn add_node(&mut self, ns: Netns) -> Result<Ipv4Addr> {
        let ip = self.address(self.nodes.len())?;
        let addr = Ipv4Net::new(ip, self.subnet.prefix_len())?;
        self.bridge.attach(&ns, "eth0", addr)?;
        self.nodes.push(Node { ns, ip });
        Ok(ip)
    }

    /// The address of node `index` (0-based): subnet base + 2 + index.
    pub fn address(&self, index: usize) -> Result<Ipv4Addr> {
        let ip = u32::from(self.subnet.network()) + 2 + index as u32;
        let ip = Ipv4Addr::from(ip);
        if !self.subnet.contains(&ip) || ip == self.subnet.broadcast() {
            bail!("subnet {} has no room for node {index}", self.subnet);
        }
        Ok(ip)
    }

    pub fn node(&self, i: usize) -> &Node {
        &self.nodes[i]
    }
}
