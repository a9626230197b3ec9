//! Real BGP daemons from Debian's packages, each started inside a given namespace with its
//! config, sockets, pid and logs in a per-instance directory (never the default paths, so they
//! cannot collide with each other or with a system daemon).
//!
//! Every peer answers from its own CLI: when a test says "BIRD received the route", it is BIRD
//! that says so.

use std::net::Ipv4Addr;

use anyhow::Result;
use ipnet::Ipv4Net;

pub mod bird;
pub mod exabgp;
pub mod frr;
pub mod gobgp;

pub use bird::Bird;
pub use exabgp::ExaBgp;
pub use frr::Frr;
pub use gobgp::GoBgp;

/// The BGP speaker configuration shared by all peers.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// 2- or 4-octet (e.g. 4200000001).
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// The address sessions are made from (and listened on).
    pub local_ip: Ipv4Addr,
    /// Our own listening port.
    pub listen_port: u16,
    /// Hold time proposed in OPEN; keepalive is a third of it.
    pub hold_time: u16,
    pub neighbors: Vec<Neighbor>,
    /// Advertise graceful restart (RFC 4724). Off by default: a GR-aware neighbor keeps a dead
    /// peer's routes as stale, and most tests want them gone when the peer stops.
    pub graceful_restart: bool,
    /// The Restart Time it advertises with graceful restart, seconds.
    pub graceful_restart_time: u16,
}

impl PeerConfig {
    /// Router id = local address, port 179, hold time 9 s (short, so dead sessions show fast).
    pub fn new(local_as: u32, local_ip: Ipv4Addr) -> PeerConfig {
        PeerConfig {
            local_as,
            router_id: local_ip,
            local_ip,
            listen_port: 179,
            hold_time: 9,
            neighbors: Vec::new(),
            graceful_restart: false,
            graceful_restart_time: 120,
        }
    }

    pub fn neighbor(mut self, n: Neighbor) -> PeerConfig {
        self.neighbors.push(n);
        self
    }

    pub(crate) fn find(&self, addr: Ipv4Addr) -> Option<(usize, &Neighbor)> {
        self.neighbors
            .iter()
            .enumerate()
            .find(|(_, n)| n.addr == addr)
    }
}

#[derive(Debug, Clone)]
pub struct Neighbor {
    pub addr: Ipv4Addr,
    pub remote_as: u32,
    /// Only accept the neighbor's connection, never connect.
    pub passive: bool,
    /// The neighbor's port.
    pub port: u16,
    /// TCP MD5 password (RFC 2385) for the session.
    pub password: Option<String>,
    /// GTSM (RFC 5082): send TTL 255, accept only TTL 255.
    pub ttl_security: bool,
}

impl Neighbor {
    pub fn new(addr: Ipv4Addr, remote_as: u32) -> Neighbor {
        Neighbor {
            addr,
            remote_as,
            passive: false,
            port: 179,
            password: None,
            ttl_security: false,
        }
    }

    pub fn password(mut self, password: &str) -> Neighbor {
        self.password = Some(password.to_string());
        self
    }

    pub fn ttl_security(mut self) -> Neighbor {
        self.ttl_security = true;
        self
    }

    pub fn passive(mut self) -> Neighbor {
        self.passive = true;
        self
    }

    pub fn port(mut self, port: u16) -> Neighbor {
        self.port = port;
        self
    }
}

/// A route a peer learned from BGP, as its CLI shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReceivedRoute {
    pub prefix: Ipv4Net,
    pub next_hop: Ipv4Addr,
}

/// What every peer launcher offers.
pub trait BgpPeer {
    /// "bird", "gobgp", "frr", "exabgp".
    fn kind(&self) -> &'static str;
    /// Whether the session with `peer` is Established, from the daemon's own CLI.
    fn established(&self, peer: Ipv4Addr) -> Result<bool>;
    /// Routes learned from BGP neighbors (not our own announcements).
    fn received_routes(&self) -> Result<Vec<ReceivedRoute>>;
    /// Starts announcing `prefix` to all neighbors, with ourselves as next hop.
    fn announce(&mut self, prefix: Ipv4Net) -> Result<()>;
    fn withdraw(&mut self, prefix: Ipv4Net) -> Result<()>;
    /// Kills the daemon: its sessions drop and its routes must vanish on the other side.
    fn stop(&mut self) -> Result<()>;
}

/// Whether `routes` holds `prefix` (with any next hop).
pub fn has_prefix(routes: &[ReceivedRoute], prefix: Ipv4Net) -> bool {
    routes.iter().any(|r| r.prefix == prefix)
}
