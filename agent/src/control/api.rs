//! The control socket's JSON API, version 1.
//!
//! One request per connection: the client writes one JSON object and a newline, the agent answers
//! with one JSON object and a newline, then closes. Every request and response carries
//! `"version": 1`; an agent refuses a version it does not speak, so an old `routectl` against a
//! new agent fails with a clear message instead of misreading fields.
//!
//! Field names here are an interface (scripts read `routectl -o json`): rename nothing.

use bgp::fsm::State;
use bgp::PeerKind;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr};

pub const API_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub command: Command,
}

impl Request {
    pub fn new(command: Command) -> Self {
        Request {
            version: API_VERSION,
            command,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// `routectl show`: node, AS, router ID and the peer table.
    Summary,
    /// `routectl show peers`.
    Peers,
    /// `routectl show routes`: the Loc-RIB.
    Routes,
    /// `routectl show blocks`: pool usage and blocks.
    Blocks,
    /// `routectl show endpoints`: pods on this node.
    Endpoints,
    /// `routectl ipam check`.
    IpamCheck,
    /// `routectl ipam repair`.
    IpamRepair,
    /// `routectl ipam configure`: the cluster-wide policy (Calico's IPAMConfig). Fields left
    /// out keep their value; the answer is the policy in force.
    IpamConfigure {
        #[serde(default)]
        strict_affinity: Option<bool>,
        #[serde(default)]
        max_blocks_per_node: Option<u32>,
    },
    /// `routectl ipam show --ip <ip>`.
    IpamShow { ip: Ipv4Addr },
    /// `routectl ipam assign --handle <id>`: an address outside pods (a VM, a tunnel end, a test).
    IpamAssign {
        handle: String,
        #[serde(default)]
        note: Option<String>,
    },
    /// `routectl ipam release --handle <id>`.
    IpamRelease { handle: String },
    /// `routectl trace <ip>`.
    Trace { ip: Ipv4Addr },
    /// `routectl node remove <name>`: a node gone for good (like `calicoctl delete node`): its
    /// registry record goes (every agent drops the peer and its routes) and its addresses and
    /// blocks are freed.
    NodeRemove {
        name: String,
        /// Remove it even though its agent still seems to run.
        #[serde(default)]
        force: bool,
    },
    /// `routectl node list`: the nodes in the registry.
    NodeList,
    /// CNI ADD, step 1: an address for a container (idempotent per container ID).
    EndpointAssign {
        container_id: String,
        #[serde(default)]
        pod: Option<String>,
        #[serde(default)]
        namespace: Option<String>,
    },
    /// CNI ADD, step 2: the veth exists; install the host route and record the endpoint.
    EndpointAttach(EndpointRecord),
    /// CNI DEL: remove the host route and the record, release the address. Idempotent.
    EndpointRelease { container_id: String },
    /// CNI CHECK: is this container's endpoint as recorded (address held, route present)?
    EndpointCheck { container_id: String },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What kind of error `error` is, so a client can act on it without reading the text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ErrorKind>,
    /// The result as JSON text: serialized straight from the handler's types, because a
    /// `serde_json::Value` tree of `show` in a 250-node mesh took 0.75 MB for a moment, and
    /// glibc kept those pages after it was freed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<serde_json::value::RawValue>>,
}

/// Kinds of error an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Try again later: the datastore or a part of the agent is not available now.
    Unavailable,
    /// The request cannot succeed as it is.
    Invalid,
    /// What the request names does not exist.
    NotFound,
    Internal,
}

impl Response {
    pub fn ok<T: Serialize>(value: &T) -> Self {
        match serde_json::value::to_raw_value(value) {
            Ok(v) => Response {
                version: API_VERSION,
                ok: true,
                error: None,
                kind: None,
                result: Some(v),
            },
            Err(e) => Response::err(format!("cannot encode result: {e}")),
        }
    }

    pub fn err(message: impl Into<String>) -> Self {
        Response {
            version: API_VERSION,
            ok: false,
            error: Some(message.into()),
            kind: None,
            result: None,
        }
    }

    pub fn err_kind(message: impl Into<String>, kind: ErrorKind) -> Self {
        Response {
            kind: Some(kind),
            ..Response::err(message)
        }
    }
}

/// `routectl show`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub node: String,
    pub ip: Ipv4Addr,
    #[serde(rename = "as")]
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub peers: Vec<PeerInfo>,
}

/// One BGP peer. `address`, `as`, `state`, `prefixes_received`, `prefixes_advertised` are the
/// documented minimum; the rest is for `routectl show peers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerInfo {
    pub address: IpAddr,
    pub port: u16,
    #[serde(rename = "as")]
    pub asn: u32,
    /// `mesh` (node-to-node mesh) or `explicit` (a `--peer`).
    #[serde(rename = "type")]
    pub peer_type: PeerKind,
    /// `Idle`, `Connect`, `Active`, `OpenSent`, `OpenConfirm` or `Established`.
    pub state: State,
    /// Unix time of the last state change.
    pub since: u64,
    pub uptime_secs: Option<u64>,
    pub info: String,
    pub hold_time: Option<u16>,
    pub keepalive: Option<u16>,
    pub capabilities: Vec<String>,
    pub prefixes_received: u64,
    pub prefixes_accepted: u64,
    pub prefixes_advertised: u64,
    pub messages_in: MessageCounts,
    pub messages_out: MessageCounts,
    pub last_error: Option<String>,
    pub flaps: u64,
    /// The peer's Restart Time when graceful restart (RFC 4724) was negotiated.
    #[serde(default)]
    pub graceful_restart: Option<u16>,
    /// Its End-of-RIB arrived on this session.
    #[serde(default)]
    pub end_of_rib_received: bool,
    /// Routes kept, stale, from its previous session while it restarts.
    #[serde(default)]
    pub stale_routes: u64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCounts {
    pub open: u64,
    pub update: u64,
    pub notification: u64,
    pub keepalive: u64,
    pub route_refresh: u64,
}

/// One path in the Loc-RIB.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteInfo {
    pub prefix: Ipv4Net,
    pub next_hop: Ipv4Addr,
    pub as_path: String,
    pub origin: String,
    pub local_pref: Option<u32>,
    pub med: Option<u32>,
    /// The peer address, or `local` for a route this node originates.
    pub source: String,
    pub best: bool,
    /// For a best path learned from a peer: the kernel holds `<prefix> via <next_hop> proto bird`.
    /// For a local block: the kernel holds its blackhole.
    pub in_kernel: bool,
    /// Why the best path won, when there was a contest.
    pub reason: Option<String>,
    /// Kept from a restarting peer's previous session (graceful restart, RFC 4724).
    #[serde(default)]
    pub stale: bool,
}

/// `routectl show blocks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlocksReport {
    pub pool: Ipv4Net,
    pub block_size: u8,
    pub total: u64,
    pub in_use: u64,
    pub free: u64,
    pub blocks: Vec<BlockInfo>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    pub block: Ipv4Net,
    /// The node the block is affine to, if any.
    pub node: Option<String>,
    pub in_use: u64,
    pub free: u64,
}

/// `routectl ipam show --ip`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpInfo {
    pub ip: Ipv4Addr,
    pub assigned: bool,
    pub handle: Option<String>,
    pub block: Option<Ipv4Net>,
    pub block_owner: Option<String>,
    pub node: Option<String>,
    pub pod: Option<String>,
    pub namespace: Option<String>,
}

/// `routectl ipam check` / `repair`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IpamReport {
    pub problems: Vec<String>,
    /// What `repair` did (empty for `check`).
    pub fixed: Vec<String>,
    /// What `repair` could not fix, each with why (empty for `check`).
    #[serde(default)]
    pub left: Vec<String>,
}

/// `routectl ipam configure`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpamPolicy {
    /// A node never borrows from another node's block.
    pub strict_affinity: bool,
    /// Blocks a node may claim.
    pub max_blocks_per_node: u32,
}

/// `routectl ipam assign` / `release` and the CNI's assign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    pub handle: String,
    pub ip: Option<Ipv4Addr>,
}

/// A pod on this node, as recorded by the agent (so it can reconcile host routes after restart).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct EndpointRecord {
    pub container_id: String,
    pub pod: Option<String>,
    pub namespace: Option<String>,
    /// Host-side interface (`cali` + 11 hex).
    pub interface: String,
    pub ip: Ipv4Addr,
    /// The pod's network namespace path as the runtime gave it.
    pub netns: String,
    /// Interface name inside the pod (`CNI_IFNAME`).
    pub pod_interface: String,
}

/// One node of the registry, for `routectl node list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub ip: Ipv4Addr,
    #[serde(rename = "as")]
    pub asn: u32,
    /// Blocks affine to the node.
    pub blocks: Vec<Ipv4Net>,
    /// Unix time of its agent's last heartbeat.
    pub last_heartbeat: u64,
    /// Seconds since then, as this agent sees it.
    pub heartbeat_age_secs: u64,
    /// The node is this agent's own.
    pub this_node: bool,
}

/// `routectl node remove`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRemoved {
    pub name: String,
    /// The node was in the registry.
    pub registered: bool,
    pub addresses: Vec<Ipv4Addr>,
    pub blocks: Vec<Ipv4Net>,
}

/// `routectl trace <ip>`: the path to an address from this node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    pub ip: Ipv4Addr,
    pub in_pool: bool,
    pub block: Option<Ipv4Net>,
    pub block_owner: Option<String>,
    pub owner_is_local: bool,
    /// The address is held by a node other than its block's owner (advertised as /32).
    pub borrowed_by: Option<String>,
    /// The kernel route this node will use (`ip route get` semantics), as text.
    pub kernel_route: Option<String>,
    /// The Loc-RIB path that covers it, if any.
    pub bgp_route: Option<RouteInfo>,
    /// When the address is a pod on this node.
    pub endpoint: Option<EndpointRecord>,
    /// One line per step, for people.
    pub steps: Vec<String>,
}
