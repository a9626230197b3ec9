//! The BGP-4 message model: what the codec decodes into and encodes from.
//!
//! These types are shared by the codec (`wire::*`), the FSM, the RIB and the speaker. They hold
//! values in their most useful form (4-octet AS numbers, merged AS_PATH), not raw wire fields;
//! the codec converts according to the [`SessionContext`].

use bytes::Bytes;
use ipnet::{IpNet, Ipv4Net};
use std::net::{IpAddr, Ipv4Addr};

/// RFC 6793 §9: the 2-octet placeholder sent in My AS / AS_PATH for a 4-octet AS number.
pub const AS_TRANS: u16 = 23456;
/// RFC 4271 §4.1: every message starts with 16 bytes of 0xff.
pub const MARKER: [u8; 16] = [0xff; 16];
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1: the maximum message size without the Extended Message capability.
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 8654 §3: the maximum once the Extended Message capability is negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;

/// Whether the peer is in our AS (iBGP) or another (eBGP): some attributes depend on it
/// (LOCAL_PREF is mandatory on iBGP and ignored from eBGP, RFC 4271 §5.1.5).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum PeerType {
    #[default]
    Internal,
    External,
}

/// What the wire form of a message depends on: fixed when the session reaches OpenConfirm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionContext {
    /// Both sides sent the 4-octet AS capability (RFC 6793): AS_PATH and AGGREGATOR use 4 octets.
    pub four_octet_as: bool,
    /// Both sides sent the Extended Message capability (RFC 8654): messages up to 65535 bytes.
    pub extended_message: bool,
    pub peer_type: PeerType,
}

impl SessionContext {
    /// Largest message this session may send or receive.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}

/// RFC 4271 §4.1 message type codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    Open = 1,
    Update = 2,
    Notification = 3,
    Keepalive = 4,
    /// RFC 2918 §3.
    RouteRefresh = 5,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Open,
            2 => Self::Update,
            3 => Self::Notification,
            4 => Self::Keepalive,
            5 => Self::RouteRefresh,
            _ => return None,
        })
    }
}

/// One BGP message.
// UPDATE dominates the size; boxing it would cost an allocation per received UPDATE on the hot
// path, while messages live only between the socket and the RIB.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }
}

/// Address Family Identifier (IANA registry "Address Family Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Afi(pub u16);
impl Afi {
    pub const IPV4: Afi = Afi(1);
    pub const IPV6: Afi = Afi(2);
}

/// Subsequent Address Family Identifier (RFC 4760 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Safi(pub u8);
impl Safi {
    pub const UNICAST: Safi = Safi(1);
}

/// OPEN message, RFC 4271 §4.2.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+
/// |    Version    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |     My Autonomous System      |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |           Hold Time           |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                         BGP Identifier                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Opt Parm Len  |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |             Optional Parameters (variable)                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Always 4 when we send; a received other value is refused during decode.
    pub version: u8,
    /// The 2-octet My AS field as on the wire (AS_TRANS when the real AS needs 4 octets).
    pub my_as: u16,
    pub hold_time: u16,
    pub bgp_id: Ipv4Addr,
    /// Capabilities from all Capabilities optional parameters (type 2), in wire order.
    pub capabilities: Vec<Capability>,
    /// Optional parameters other than Capabilities, kept as (type, value) so they can be reported.
    pub other_params: Vec<(u8, Bytes)>,
}

impl Open {
    /// Builds an OPEN for `asn`, putting AS_TRANS in My AS when it does not fit in 2 octets
    /// (RFC 6793 §4.1). The caller includes `Capability::FourOctetAs` in `capabilities`.
    pub fn new(asn: u32, hold_time: u16, bgp_id: Ipv4Addr, capabilities: Vec<Capability>) -> Self {
        let my_as = if asn > u16::MAX as u32 {
            AS_TRANS
        } else {
            asn as u16
        };
        Open {
            version: 4,
            my_as,
            hold_time,
            bgp_id,
            capabilities,
            other_params: Vec::new(),
        }
    }

    /// The speaker's real AS: from the 4-octet AS capability when present (RFC 6793 §4.1).
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(self.my_as as u32)
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    pub fn has_capability(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }
}

/// One capability (RFC 5492). Codes from the IANA "Capability Codes" registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// Code 1, RFC 4760 §8.
    Multiprotocol { afi: Afi, safi: Safi },
    /// Code 2, RFC 2918 §2.
    RouteRefresh,
    /// Code 6, RFC 8654 §3.
    ExtendedMessage,
    /// Code 64, RFC 4724 §3.
    GracefulRestart(GracefulRestart),
    /// Code 65, RFC 6793 §3: the speaker's 4-octet AS number.
    FourOctetAs(u32),
    /// Any other capability, kept as raw bytes.
    Unknown { code: u8, value: Bytes },
}

impl Capability {
    pub const MULTIPROTOCOL: u8 = 1;
    pub const ROUTE_REFRESH: u8 = 2;
    pub const EXTENDED_MESSAGE: u8 = 6;
    pub const GRACEFUL_RESTART: u8 = 64;
    pub const FOUR_OCTET_AS: u8 = 65;

    pub fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol { .. } => Self::MULTIPROTOCOL,
            Capability::RouteRefresh => Self::ROUTE_REFRESH,
            Capability::ExtendedMessage => Self::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => Self::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => Self::FOUR_OCTET_AS,
            Capability::Unknown { code, .. } => *code,
        }
    }
}

/// Graceful Restart capability value, RFC 4724 §3.
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits)                           |
/// +--------------------------------------------------+
/// | Restart Time in seconds (12 bits)                |
/// +--------------------------------------------------+
/// | Address Family Identifier (16 bits)              |
/// +--------------------------------------------------+
/// | Subsequent Address Family Identifier (8 bits)    |
/// +--------------------------------------------------+
/// | Flags for Address Family (8 bits)                |
/// +--------------------------------------------------+
/// | ...                                              |
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GracefulRestart {
    /// R bit: the sender has restarted.
    pub restart_state: bool,
    /// N bit (RFC 8538 §2): the sender supports graceful restart for NOTIFICATIONs.
    pub notification: bool,
    /// 12 bits: at most 4095 seconds.
    pub restart_time: u16,
    pub families: Vec<GracefulRestartFamily>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GracefulRestartFamily {
    pub afi: Afi,
    pub safi: Safi,
    /// F bit: forwarding state was preserved for this family.
    pub forwarding_preserved: bool,
}

/// UPDATE message, RFC 4271 §4.3.
///
/// ```text
/// +-----------------------------------------------------+
/// |   Withdrawn Routes Length (2 octets)                |
/// +-----------------------------------------------------+
/// |   Withdrawn Routes (variable)                       |
/// +-----------------------------------------------------+
/// |   Total Path Attribute Length (2 octets)            |
/// +-----------------------------------------------------+
/// |   Path Attributes (variable)                        |
/// +-----------------------------------------------------+
/// |   Network Layer Reachability Information (variable) |
/// +-----------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: PathAttributes,
    pub nlri: Vec<Ipv4Net>,
    /// Attribute errors that RFC 7606 lets the session survive (attribute discard or
    /// treat-as-withdraw). Errors that reset the session make decoding fail instead.
    /// Always empty on a message we build to send.
    pub attribute_errors: Vec<AttributeError>,
}

impl Update {
    /// RFC 7606 §2: when any attribute error calls for treat-as-withdraw, every NLRI of the
    /// message (including MP_REACH_NLRI) is handled as withdrawn.
    pub fn is_treat_as_withdraw(&self) -> bool {
        self.attribute_errors
            .iter()
            .any(|e| e.action == ErrorAction::TreatAsWithdraw)
    }

    /// End-of-RIB marker for IPv4 unicast (RFC 4724 §2): an UPDATE with nothing in it.
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty()
            && self.nlri.is_empty()
            && self.attributes == PathAttributes::default()
            && self.attribute_errors.is_empty()
    }
}

/// RFC 7606 §2 ways of handling a malformed attribute, from lightest to heaviest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ErrorAction {
    /// Drop the attribute, keep the route.
    AttributeDiscard,
    /// Handle every prefix of the UPDATE as withdrawn.
    TreatAsWithdraw,
    /// Send the NOTIFICATION and reset the session.
    SessionReset,
}

/// A malformed attribute that was survived, kept to be logged and counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttributeError {
    pub type_code: u8,
    pub action: ErrorAction,
    /// Byte offset of the attribute from the start of the message.
    pub offset: usize,
    pub reason: String,
}

/// ORIGIN values, RFC 4271 §5.1.1 (lower is preferred in the decision process).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
#[repr(u8)]
pub enum Origin {
    #[default]
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH in its 4-octet form (after RFC 6793 §4.2.3 AS4_PATH merging when the peer is 2-octet).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct AsPath {
    pub segments: Vec<AsPathSegment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AsPathSegment {
    /// Type 1: an unordered set (counts as 1 in path length, RFC 4271 §9.1.2.2 a).
    Set(Vec<u32>),
    /// Type 2: an ordered sequence.
    Sequence(Vec<u32>),
}

impl AsPath {
    /// Path length for the decision process: each AS in a sequence counts 1, each set counts 1.
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s {
                AsPathSegment::Set(_) => 1,
                AsPathSegment::Sequence(v) => v.len(),
            })
            .sum()
    }

    /// The neighbouring AS: the first AS of the first sequence (RFC 4271 §9.1.2.2 c).
    pub fn first_as(&self) -> Option<u32> {
        match self.segments.first() {
            Some(AsPathSegment::Sequence(v)) => v.first().copied(),
            _ => None,
        }
    }

    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| match s {
            AsPathSegment::Set(v) | AsPathSegment::Sequence(v) => v.contains(&asn),
        })
    }
}

/// AGGREGATOR, RFC 4271 §5.1.7 (AS in 4-octet form after AS4_AGGREGATOR merging).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// MP_REACH_NLRI, RFC 4760 §3.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpReach {
    pub afi: Afi,
    pub safi: Safi,
    /// One address, or for IPv6 a global and a link-local (RFC 2545 §3).
    pub next_hops: Vec<IpAddr>,
    pub nlri: Vec<IpNet>,
}

/// MP_UNREACH_NLRI, RFC 4760 §4.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MpUnreach {
    pub afi: Afi,
    pub safi: Safi,
    pub withdrawn: Vec<IpNet>,
}

/// An attribute we do not interpret, kept to be passed on (RFC 4271 §5: optional transitive
/// attributes are re-sent with the Partial bit set).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

/// Attribute flag bits, RFC 4271 §4.3.
pub mod attr_flags {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    pub const COMMUNITIES: u8 = 8;
    pub const ORIGINATOR_ID: u8 = 9;
    pub const CLUSTER_LIST: u8 = 10;
    pub const MP_REACH_NLRI: u8 = 14;
    pub const MP_UNREACH_NLRI: u8 = 15;
    pub const AS4_PATH: u8 = 17;
    pub const AS4_AGGREGATOR: u8 = 18;
}

/// The path attributes of one UPDATE, interpreted.
///
/// AS4_PATH and AS4_AGGREGATOR never appear here: decoding merges them into `as_path` and
/// `aggregator` (RFC 6793 §4.2.3) and encoding regenerates them for 2-octet sessions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    /// RFC 1997 communities, in wire order.
    pub communities: Vec<u32>,
    /// RFC 4456 §8.
    pub originator_id: Option<Ipv4Addr>,
    /// RFC 4456 §8.
    pub cluster_list: Vec<Ipv4Addr>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Unrecognised attributes, in wire order.
    pub unknown: Vec<RawAttribute>,
}

/// NOTIFICATION message, RFC 4271 §4.5.
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// | Error code    | Error subcode |   Data (variable)             |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Bytes>) -> Self {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }
}

/// ROUTE-REFRESH message, RFC 2918 §3.
///
/// ```text
/// 0       7      15      23      31
/// +-------+-------+-------+-------+
/// |      AFI      | Res.  | SAFI  |
/// +-------+-------+-------+-------+
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: Afi,
    /// Reserved in RFC 2918; the message subtype in RFC 7313. Kept as received.
    pub subtype: u8,
    pub safi: Safi,
}

/// NOTIFICATION error codes and subcodes: RFC 4271 §4.5 and §6, RFC 4486 (Cease), RFC 5492 §5
/// (Unsupported Capability), RFC 7313 (ROUTE-REFRESH message error), RFC 4271 errata for FSM.
pub mod error_code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    pub const ROUTE_REFRESH_MESSAGE: u8 = 7;
    /// RFC 9687: we could not send for the send hold time (the peer stopped reading).
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;

    /// Message Header Error subcodes (RFC 4271 §6.1).
    pub mod header {
        pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
        pub const BAD_MESSAGE_LENGTH: u8 = 2;
        pub const BAD_MESSAGE_TYPE: u8 = 3;
    }

    /// OPEN Message Error subcodes (RFC 4271 §6.2, RFC 5492 §5).
    pub mod open {
        pub const UNSUPPORTED_VERSION_NUMBER: u8 = 1;
        pub const BAD_PEER_AS: u8 = 2;
        pub const BAD_BGP_IDENTIFIER: u8 = 3;
        pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
        pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
        pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    }

    /// UPDATE Message Error subcodes (RFC 4271 §6.3).
    pub mod update {
        pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
        pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
        pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
        pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
        pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
        pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
        pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
        pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
        pub const INVALID_NETWORK_FIELD: u8 = 10;
        pub const MALFORMED_AS_PATH: u8 = 11;
    }

    /// Finite State Machine Error subcodes (RFC 6608).
    pub mod fsm {
        pub const UNSPECIFIED: u8 = 0;
        pub const UNEXPECTED_IN_OPENSENT: u8 = 1;
        pub const UNEXPECTED_IN_OPENCONFIRM: u8 = 2;
        pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
    }

    /// Cease subcodes (RFC 4486 §4, RFC 8203 for the shutdown communication).
    pub mod cease {
        pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
        pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
        pub const PEER_DECONFIGURED: u8 = 3;
        pub const ADMINISTRATIVE_RESET: u8 = 4;
        pub const CONNECTION_REJECTED: u8 = 5;
        pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
        pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
        pub const OUT_OF_RESOURCES: u8 = 8;
    }

    /// ROUTE-REFRESH Message Error subcodes (RFC 7313 §5).
    pub mod route_refresh {
        pub const INVALID_MESSAGE_LENGTH: u8 = 1;
    }
}
