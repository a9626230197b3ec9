//! Kernel route programming over rtnetlink.
//!
//! What the agent owns (docs/ARCHITECTURE.md, "Kernel"):
//! - `<block> via <node IP> dev <underlay> proto bird`: a remote block (protocol 12, RTPROT_BIRD,
//!   as BIRD writes them in Calico, so operators and tools read them the same way);
//! - `blackhole <block> proto bird`: a local block, so traffic to unallocated addresses of our own
//!   blocks is dropped here instead of following the default route. The caller skips /32 blocks:
//!   a /32 blackhole would collide with the pod's host route (Calico #2624 / #3635);
//! - `<pod IP> dev cali<11 hex> scope link`: a pod's host route, protocol boot like Felix's, so
//!   `ip route` prints no `proto`.
//!
//! Everything else in the table (other protocols, routes on non-cali devices) is never touched.
//! Only the main table and metric 0 are used.
//!
//! Writes go out in batches: up to [`BATCH_SIZE`] route messages are packed into one netlink
//! datagram without `NLM_F_ACK`, followed by one cheap request that is answered. The kernel
//! handles the messages of a datagram in order, so once that answer arrives every error of the
//! batch has been queued before it; errors are matched back to their route by sequence number.
//! One `sendto` and one wake-up per batch instead of one round trip per route.

mod links;
mod message;
mod routes;

pub use links::watch_links_up;

pub use message::ParsedRoute;

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

pub use routes::KernelRoutes;

/// RTPROT_BIRD: `ip route` shows it as `proto bird`.
pub const RTPROT_BIRD: u8 = 12;
/// RTPROT_BOOT: the protocol of pod host routes (no `proto` in `ip route`).
pub const RTPROT_BOOT: u8 = 3;
/// The prefix of the host side of every pod veth.
pub const CALI_PREFIX: &str = "cali";
/// Route messages per netlink datagram. About 60 bytes each, so a batch stays well under the
/// default socket send buffer (212 kB), and the errors of a fully failing batch (each echoes its
/// request) fit in the enlarged receive buffer.
pub const BATCH_SIZE: usize = 512;

/// Where a route sends its packets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteTarget {
    /// `via <gateway> proto bird`; the kernel picks the device from the gateway.
    Via(Ipv4Addr),
    /// `blackhole proto bird`.
    Blackhole,
    /// `dev <ifname> scope link` on a cali device (a pod's host route).
    Device(String),
}

/// A route the agent wants in the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DesiredRoute {
    pub prefix: Ipv4Net,
    pub target: RouteTarget,
}

impl DesiredRoute {
    pub fn via(prefix: Ipv4Net, gateway: Ipv4Addr) -> Self {
        DesiredRoute {
            prefix,
            target: RouteTarget::Via(gateway),
        }
    }
    pub fn blackhole(prefix: Ipv4Net) -> Self {
        DesiredRoute {
            prefix,
            target: RouteTarget::Blackhole,
        }
    }
    pub fn host(ip: Ipv4Addr, ifname: &str) -> Self {
        DesiredRoute {
            prefix: Ipv4Net::from(ip),
            target: RouteTarget::Device(ifname.to_string()),
        }
    }
}

impl fmt::Display for DesiredRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.target {
            RouteTarget::Via(gw) => write!(f, "{} via {gw} proto bird", self.prefix),
            RouteTarget::Blackhole => write!(f, "blackhole {} proto bird", self.prefix),
            RouteTarget::Device(dev) => write!(f, "{} dev {dev} scope link", self.prefix),
        }
    }
}

/// A route of ours as read back from the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledRoute {
    pub prefix: Ipv4Net,
    pub target: RouteTarget,
    /// The output device (`dev eth0` of a via route, the cali device of a host route).
    pub ifindex: Option<u32>,
    pub ifname: Option<String>,
    /// The kernel protocol number (12 for ours, 3 for host routes).
    pub protocol: u8,
}

/// The route the kernel uses for an address (see [`KernelRoutes::lookup`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// As the kernel has it, whoever made it.
    pub route: message::ParsedRoute,
    /// The output device's name.
    pub device: Option<String>,
    /// The route read as one of ours, when it is.
    pub ours: Option<InstalledRoute>,
}

impl fmt::Display for KernelRoute {
    /// Like `ip route`: `192.168.1.0/26 via 172.18.0.3 dev eth0 proto bird`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.route;
        match r.kind {
            netlink_packet_route::route::RouteType::BlackHole => {
                write!(f, "blackhole {}", r.prefix)?
            }
            netlink_packet_route::route::RouteType::Unreachable => {
                write!(f, "unreachable {}", r.prefix)?
            }
            _ => {
                if r.prefix.prefix_len() == 0 {
                    f.write_str("default")?;
                } else {
                    write!(f, "{}", r.prefix)?;
                }
            }
        }
        if let Some(gw) = r.gateway {
            write!(f, " via {gw}")?;
        }
        if let Some(dev) = &self.device {
            write!(f, " dev {dev}")?;
        }
        match r.protocol {
            RTPROT_BIRD => f.write_str(" proto bird")?,
            RTPROT_BOOT if r.gateway.is_none() && self.device.is_some() => {
                f.write_str(" scope link")?
            }
            2 => f.write_str(" proto kernel")?,
            3 | 0 => {}
            4 => f.write_str(" proto static")?,
            p => write!(f, " proto {p}")?,
        }
        if r.metric != 0 {
            write!(f, " metric {}", r.metric)?;
        }
        Ok(())
    }
}

impl InstalledRoute {
    pub fn desired(&self) -> DesiredRoute {
        DesiredRoute {
            prefix: self.prefix,
            target: self.target.clone(),
        }
    }
}

/// One change in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteOp {
    /// Create; fails with EEXIST if any route holds the prefix (so a foreign route is never
    /// overwritten).
    Add(DesiredRoute),
    /// Create or replace in place (NLM_F_CREATE | NLM_F_REPLACE).
    Replace(DesiredRoute),
    /// Delete exactly this route (protocol, type and device must match); already gone is success.
    Delete(DesiredRoute),
    /// Delete whatever `proto bird` route (via or blackhole) holds the prefix; none is success.
    Remove(Ipv4Net),
}

impl RouteOp {
    pub fn prefix(&self) -> Ipv4Net {
        match self {
            RouteOp::Add(r) | RouteOp::Replace(r) | RouteOp::Delete(r) => r.prefix,
            RouteOp::Remove(p) => *p,
        }
    }
}

/// A `proto bird` route as the reconcile compares it: 16 bytes, so a kernel holding a million
/// routes costs 16 MB while it is checked, not a copy of every route's full description.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum BirdTarget {
    Via(Ipv4Addr),
    Blackhole,
}

/// What of ours the kernel holds: `proto bird` routes sorted by prefix, and pod host routes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnedTable {
    pub bird: Vec<(Ipv4Net, BirdTarget)>,
    pub hosts: Vec<(Ipv4Addr, String)>,
}

impl OwnedTable {
    /// Where `prefix` is in `bird`, if it is there.
    pub fn find(&self, prefix: &Ipv4Net) -> Option<usize> {
        self.bird.binary_search_by(|(p, _)| p.cmp(prefix)).ok()
    }
}

/// What the routing owner needs of the kernel: the real one is [`KernelRoutes`], the tests use
/// a fake that records operations.
pub trait Kernel: Send + 'static {
    /// Applies `ops` in order; one result per op, `None` for success.
    fn apply(
        &mut self,
        ops: &[RouteOp],
    ) -> impl std::future::Future<Output = Result<Vec<Option<KernelError>>, KernelError>> + Send;
    /// Our routes as they are now.
    fn owned_table(
        &mut self,
    ) -> impl std::future::Future<Output = Result<OwnedTable, KernelError>> + Send;
    /// A pod's host route (see [`KernelRoutes::add_host_route`]).
    fn add_host_route(
        &mut self,
        ip: Ipv4Addr,
        ifname: &str,
    ) -> impl std::future::Future<Output = Result<(), KernelError>> + Send;
    fn delete_host_route(
        &mut self,
        ip: Ipv4Addr,
        ifname: &str,
    ) -> impl std::future::Future<Output = Result<(), KernelError>> + Send;
    /// Names of the interfaces in the namespace.
    fn interface_names(
        &mut self,
    ) -> impl std::future::Future<Output = Result<std::collections::HashSet<String>, KernelError>> + Send;
}

/// What [`KernelRoutes::reconcile`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub added: usize,
    pub replaced: usize,
    pub removed: usize,
    pub unchanged: usize,
    /// Changes the kernel refused (the others were applied).
    pub failed: Vec<(RouteOp, KernelError)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(String),
    #[error("the netlink connection is closed")]
    ConnectionClosed,
    #[error("{op}: {message} (errno {errno})")]
    Netlink {
        op: String,
        errno: i32,
        message: String,
    },
    #[error(
        "route {prefix} already exists for an interface other than '{wanted}' (it uses '{other}')"
    )]
    RouteExists {
        prefix: Ipv4Net,
        wanted: String,
        other: String,
    },
    /// A replace found a route at the prefix that the agent did not make: it is left alone.
    #[error("{prefix} is held by a route the agent did not make ({holder}); not replacing it with {wanted}")]
    NotOurs {
        prefix: Ipv4Net,
        wanted: String,
        holder: String,
    },
    #[error("no interface named '{0}'")]
    NoSuchInterface(String),
    #[error("the netlink receive buffer overflowed: some replies were lost; re-read the table")]
    Overrun,
    #[error("unexpected netlink reply: {0}")]
    Unexpected(String),
}

impl KernelError {
    pub(crate) fn netlink(op: impl fmt::Display, errno: i32) -> Self {
        KernelError::Netlink {
            op: op.to_string(),
            errno,
            message: std::io::Error::from_raw_os_error(errno).to_string(),
        }
    }

    /// The errno of a refused netlink request, if that is what this is.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Netlink { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

/// True for the names of pod host-side interfaces.
pub fn is_cali(ifname: &str) -> bool {
    ifname.starts_with(CALI_PREFIX)
}
