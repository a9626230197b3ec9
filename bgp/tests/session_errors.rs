//! Every error case of RFC 4271 §6.1-6.3 (as revised by RFC 7606), RFC 7313 and RFC 6608, sent
//! as crafted bytes over a real TCP session to a running speaker, and what comes back. Each row
//! of the table is one test and one row of docs/BGP-ERRORS.md (`the_doc_lists_every_row` keeps
//! the two in step); `wire_errors.rs` checks the same cases against the codec alone.

mod common;

use bgp::fsm::State;
use bgp::wire::{
    decode_message, encode_message, frame_length, Afi, Capability, Message, Notification, Open,
    PeerType, RouteRefresh, Safi, SessionContext, MARKER,
};
use bgp::{PeerConfig, RouteSource, RouteView, Speaker, SpeakerConfig};
use bytes::{Buf, BytesMut};
use common::{connect_from, free_port, wait_until, Node, WAIT};
use ipnet::{IpNet, Ipv4Net};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Every speaker's BGP Identifier: fixed (not its address) so that rows can carry it.
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 1);
/// The hand-written peer's BGP Identifier.
const PEER_ID: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 9);
const LOCAL_AS: u32 = 64512;
const EXTERNAL_AS: u32 = 65000;
/// The speaker originates this prefix; a ROUTE-REFRESH brings it back (`TestPeer::probe`).
const LOCAL_PREFIX: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(10, 88, 0, 0), 24);
/// The prefix of every UPDATE the rows send: 192.168.1.0/24.
const PREFIX: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 1, 0), 24);
const NLRI: &[u8] = &[24, 192, 168, 1];
/// The NEXT_HOP of the valid attribute sets.
const NEXT_HOP: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// ORIGIN IGP, empty AS_PATH, NEXT_HOP 10.0.0.1, LOCAL_PREF 100: a valid iBGP attribute set.
const BASE: &[u8] = &[
    0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1, 0x40, 5, 4, 0, 0, 0, 100,
];
/// ORIGIN IGP, AS_PATH 65000 (4 octets), NEXT_HOP 10.0.0.1: a valid eBGP attribute set.
const EBGP_BASE: &[u8] = &[
    0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, 0x40, 3, 4, 10, 0, 0, 1,
];
/// The same with a 2-octet AS_PATH.
const EBGP2_BASE: &[u8] = &[
    0x40, 1, 1, 0, 0x40, 2, 4, 2, 1, 0xfd, 0xe8, 0x40, 3, 4, 10, 0, 0, 1,
];
/// ORIGIN IGP, AS_PATH 23456 (AS_TRANS, 2 octets), NEXT_HOP 10.0.0.1.
const AS_TRANS_BASE: &[u8] = &[
    0x40, 1, 1, 0, 0x40, 2, 4, 2, 1, 0x5b, 0xa0, 0x40, 3, 4, 10, 0, 0, 1,
];
/// MP_REACH_NLRI (IPv4 unicast, no prefixes) flagged well-known instead of optional.
const MP_REACH_WELL_KNOWN: &[u8] = &[0x40, 14, 9, 0, 1, 1, 4, 10, 0, 0, 1, 0];
/// A multicast prefix, 224.0.1.0/24.
const MULTICAST: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::new(224, 0, 1, 0), 24);
/// Capabilities of the OPENs built byte by byte: IPv4 unicast, route refresh, 4-octet AS 64512.
const CAPS: &[u8] = &[2, 14, 1, 4, 0, 1, 0, 1, 2, 0, 65, 4, 0, 0, 0xfc, 0x00];

// ---- Building messages ---------------------------------------------------------------------

fn msg(t: u8, body: &[u8]) -> Vec<u8> {
    let mut m = MARKER.to_vec();
    m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    m.push(t);
    m.extend_from_slice(body);
    m
}

fn update(withdrawn: &[u8], attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let mut b = (withdrawn.len() as u16).to_be_bytes().to_vec();
    b.extend_from_slice(withdrawn);
    b.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    b.extend_from_slice(attrs);
    b.extend_from_slice(nlri);
    msg(2, &b)
}

/// An UPDATE for [`PREFIX`] with exactly these attributes.
fn announce(attrs: &[u8]) -> Vec<u8> {
    update(&[], attrs, NLRI)
}

/// An iBGP UPDATE for [`PREFIX`]: the valid attributes, then `extra`.
fn with(extra: &[u8]) -> Vec<u8> {
    announce(&[BASE, extra].concat())
}

fn open(version: u8, my_as: u16, hold: u16, id: Ipv4Addr, params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id.octets());
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    msg(1, &b)
}

/// `bytes` with `new` written over it at `at`.
fn patch(mut bytes: Vec<u8>, at: usize, new: &[u8]) -> Vec<u8> {
    bytes[at..at + new.len()].copy_from_slice(new);
    bytes
}

/// `bytes` with the header's Length field set to `len`.
fn length(bytes: Vec<u8>, len: u16) -> Vec<u8> {
    patch(bytes, 16, &len.to_be_bytes())
}

// ---- The table -----------------------------------------------------------------------------

/// What the test peer's OPEN makes of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Session {
    /// AS 64512 on both sides, 4-octet AS.
    Ibgp,
    /// The peer is AS 65000, 4-octet AS.
    Ebgp,
    /// AS 65000 without the 4-octet AS capability: AS numbers are 2 octets (RFC 6793).
    Ebgp2,
}

impl Session {
    fn peer_as(self) -> u32 {
        match self {
            Session::Ibgp => LOCAL_AS,
            Session::Ebgp | Session::Ebgp2 => EXTERNAL_AS,
        }
    }

    /// No Extended Message capability: the 4096-octet limit of RFC 4271 §4.1 applies.
    fn open(self) -> Open {
        let mut caps = vec![
            Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
            },
            Capability::RouteRefresh,
        ];
        if self != Session::Ebgp2 {
            caps.push(Capability::FourOctetAs(self.peer_as()));
        }
        Open::new(self.peer_as(), 90, PEER_ID, caps)
    }

    fn ctx(self) -> SessionContext {
        SessionContext {
            four_octet_as: self != Session::Ebgp2,
            extended_message: false,
            peer_type: if self == Session::Ibgp {
                PeerType::Internal
            } else {
                PeerType::External
            },
        }
    }

    /// A valid attribute set from this peer.
    fn base(self) -> &'static [u8] {
        match self {
            Session::Ibgp => BASE,
            Session::Ebgp => EBGP_BASE,
            Session::Ebgp2 => EBGP2_BASE,
        }
    }
}

/// When the row's bytes go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// Right after connecting: the speaker has sent its OPEN and waits for ours (OpenSent).
    InsteadOfOpen,
    /// After our OPEN, before our KEEPALIVE (OpenConfirm).
    InOpenConfirm,
    /// Once the session is Established.
    Established,
}
use When::*;

/// The path `routes()` shows after an attribute discard: the other attributes survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Kept {
    as_path: &'static str,
    local_pref: Option<u32>,
    med: Option<u32>,
}

/// What [`BASE`] leaves in the RIB.
const IBGP_PATH: Kept = Kept {
    as_path: "",
    local_pref: Some(100),
    med: None,
};
/// What [`EBGP_BASE`] leaves in the RIB.
const EBGP_PATH: Kept = Kept {
    as_path: "65000",
    local_pref: None,
    med: None,
};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// The speaker sends exactly this NOTIFICATION and closes the connection.
    Notification {
        code: u8,
        subcode: u8,
        data: Vec<u8>,
    },
    /// RFC 7606 §2: the UPDATE's prefixes are withdrawn; the session stays up.
    TreatAsWithdraw,
    /// RFC 7606 §2: the attribute is dropped, the route kept with the rest; the session stays up.
    AttributeDiscard(Kept),
    /// RFC 4271 §6.3 "the route SHOULD be ignored": `prefix` never enters the RIB, and no
    /// NOTIFICATION is sent.
    Ignored(Ipv4Net),
}

struct Row {
    rfc: &'static str,
    session: Session,
    when: When,
    bytes: Vec<u8>,
    /// Where in `bytes` the speaker's own address goes (it differs from row to row).
    own_address_at: Option<usize>,
    expect: Expect,
}

impl Row {
    fn new(rfc: &'static str, when: When, bytes: Vec<u8>, expect: Expect) -> Row {
        Row {
            rfc,
            session: Session::Ibgp,
            when,
            bytes,
            own_address_at: None,
            expect,
        }
    }

    fn on(self, session: Session) -> Row {
        Row { session, ..self }
    }
}

fn notify(rfc: &'static str, when: When, bytes: Vec<u8>, code: u8, sub: u8, data: &[u8]) -> Row {
    let expect = Expect::Notification {
        code,
        subcode: sub,
        data: data.to_vec(),
    };
    Row::new(rfc, when, bytes, expect)
}

/// An UPDATE error that ends an Established session.
fn reset(rfc: &'static str, bytes: Vec<u8>, code: u8, sub: u8, data: &[u8]) -> Row {
    notify(rfc, Established, bytes, code, sub, data)
}

fn withdraw(rfc: &'static str, bytes: Vec<u8>) -> Row {
    Row::new(rfc, Established, bytes, Expect::TreatAsWithdraw)
}

fn discard(rfc: &'static str, bytes: Vec<u8>, kept: Kept) -> Row {
    Row::new(rfc, Established, bytes, Expect::AttributeDiscard(kept))
}

fn ignored(rfc: &'static str, bytes: Vec<u8>, prefix: Ipv4Net) -> Row {
    Row::new(rfc, Established, bytes, Expect::Ignored(prefix))
}

/// The table, and one test per row (so a failure names its row).
macro_rules! rows {
    ($($name:ident: $row:expr,)*) => {
        fn table() -> Vec<(&'static str, Row)> {
            vec![$((stringify!($name), $row),)*]
        }
        $(
            #[tokio::test]
            async fn $name() {
                run(stringify!($name)).await;
            }
        )*
    };
}

rows! {
    // ---- RFC 4271 §6.1 Message Header ----
    header_marker_not_all_ones: notify("4271 §6.1", InsteadOfOpen, patch(msg(4, &[]), 7, &[0xfe]), 1, 1, &[]),
    header_length_below_19: notify("4271 §6.1", InsteadOfOpen, length(msg(2, &[0; 4]), 18), 1, 2, &[0, 18]),
    header_length_above_4096: reset("4271 §6.1", length(msg(2, &[0; 4]), 4097), 1, 2, &[0x10, 0x01]),
    header_open_shorter_than_29: notify("4271 §6.1", InsteadOfOpen, msg(1, &[0; 9]), 1, 2, &[0, 28]),
    header_update_shorter_than_23: reset("4271 §6.1", msg(2, &[0; 3]), 1, 2, &[0, 22]),
    header_notification_shorter_than_21: reset("4271 §6.1", msg(3, &[6]), 1, 2, &[0, 20]),
    header_keepalive_longer_than_19: reset("4271 §6.1", msg(4, &[0]), 1, 2, &[0, 20]),
    header_route_refresh_shorter_than_23: reset("4271 §6.1", msg(5, &[0, 1, 0]), 1, 2, &[0, 22]),
    header_unknown_message_type: notify("4271 §6.1", InsteadOfOpen, msg(6, &[0; 8]), 1, 3, &[6]),
    header_message_type_0: reset("4271 §6.1", msg(0, &[0; 8]), 1, 3, &[0]),

    // ---- RFC 4271 §6.2 OPEN ----
    open_unsupported_version: notify("4271 §6.2", InsteadOfOpen, open(3, 64512, 90, PEER_ID, CAPS), 2, 1, &[0, 4]),
    open_my_as_zero: notify("7607 §2", InsteadOfOpen, open(4, 0, 90, PEER_ID, CAPS), 2, 2, &[]),
    open_four_octet_as_zero: notify("7607 §2", InsteadOfOpen, open(4, 23456, 90, PEER_ID, &[2, 6, 65, 4, 0, 0, 0, 0]), 2, 2, &[]),
    // The data is the My AS field as received (64999).
    open_peer_as_not_configured: notify("4271 §6.2", InsteadOfOpen, open(4, 64999, 90, PEER_ID, &[2, 6, 1, 4, 0, 1, 0, 1]), 2, 2, &[0xfd, 0xe7]),
    open_bgp_identifier_zero: notify("4271 §6.2", InsteadOfOpen, open(4, 64512, 90, Ipv4Addr::UNSPECIFIED, CAPS), 2, 3, &[]),
    open_bgp_identifier_multicast: notify("4271 §6.2", InsteadOfOpen, open(4, 64512, 90, Ipv4Addr::new(224, 0, 0, 5), CAPS), 2, 3, &[]),
    open_bgp_identifier_ours_from_internal_peer: notify("6286 §2.2", InsteadOfOpen, open(4, 64512, 90, ROUTER_ID, CAPS), 2, 3, &[]),
    open_unsupported_optional_parameter: notify("4271 §6.2", InsteadOfOpen, open(4, 64512, 90, PEER_ID, &[1, 2, 0xaa, 0xbb]), 2, 4, &[]),
    open_hold_time_two: notify("4271 §6.2", InsteadOfOpen, open(4, 64512, 2, PEER_ID, CAPS), 2, 6, &[]),
    open_malformed_capability: notify("4271 §6.2", InsteadOfOpen, open(4, 64512, 90, PEER_ID, &[2, 5, 1, 3, 0, 1, 0]), 2, 0, &[]),
    // Opt Parm Len one short of the parameters: the message length is wrong for this OPEN.
    open_opt_parm_len_short_of_the_parameters: notify("4271 §6.1", InsteadOfOpen, patch(open(4, 64512, 90, PEER_ID, CAPS), 28, &[15]), 1, 2, &[0, 45]),

    // ---- RFC 4271 §6.3 UPDATE, as revised by RFC 7606 ----
    update_withdrawn_length_overrun: reset("4271 §6.3", patch(update(&[24, 10, 0, 0], BASE, NLRI), 19, &100u16.to_be_bytes()), 3, 1, &[]),
    update_path_attribute_length_overrun: reset("4271 §6.3", patch(with(&[]), 21, &200u16.to_be_bytes()), 3, 1, &[]),
    update_unrecognized_well_known_attribute: reset("4271 §6.3", with(&[0x40, 99, 2, 0xde, 0xad]), 3, 2, &[0x40, 99, 2, 0xde, 0xad]),
    update_missing_origin: withdraw("7606 §3 d", announce(&BASE[4..])),
    update_missing_as_path: withdraw("7606 §3 d", announce(&[&BASE[..4], &BASE[7..]].concat())),
    update_missing_next_hop: withdraw("7606 §3 d", announce(&[&BASE[..7], &BASE[14..]].concat())),
    update_missing_local_pref_from_internal_peer: withdraw("7606 §3 d", announce(&BASE[..14])),
    update_without_attributes: withdraw("7606 §3 d", announce(&[])),
    update_origin_flagged_optional: withdraw("7606 §3 c", announce(&[&[0xc0, 1, 1, 0][..], &BASE[4..]].concat())),
    update_atomic_aggregate_flagged_optional: discard("7606 §3 c", with(&[0xc0, 6, 0]), IBGP_PATH),
    update_mp_reach_flagged_well_known: reset("7606 §3 c", no_nlri(MP_REACH_WELL_KNOWN), 3, 4, MP_REACH_WELL_KNOWN),
    update_origin_length_2: withdraw("7606 §7.1", announce(&[&[0x40, 1, 2, 0, 0][..], &BASE[4..]].concat())),
    update_origin_undefined_value: withdraw("7606 §7.1", announce(&[&[0x40, 1, 1, 3][..], &BASE[4..]].concat())),
    update_as_path_bad_segment_type: withdraw("7606 §7.2", as_path(&[5, 1, 0, 0, 0, 1])),
    update_as_path_zero_length_segment: withdraw("7606 §7.2", as_path(&[2, 0])),
    update_as_path_segment_overrun: withdraw("7606 §7.2", as_path(&[2, 2, 0, 0, 0, 1])),
    update_as_path_segment_underrun: withdraw("7606 §7.2", as_path(&[2, 1, 0, 0, 0, 1, 2])),
    update_as_path_with_as_0: withdraw("7607 §2", as_path(&[2, 1, 0, 0, 0, 0])),
    update_next_hop_length_5: withdraw("7606 §7.3", announce(&[&BASE[..7], &[0x40, 3, 5, 10, 0, 0, 1, 0][..], &BASE[14..]].concat())),
    update_next_hop_0_0_0_0: withdraw("7606 §7.3", next_hop([0, 0, 0, 0])),
    update_next_hop_broadcast: withdraw("7606 §7.3", next_hop([255, 255, 255, 255])),
    update_next_hop_multicast: withdraw("7606 §7.3", next_hop([224, 0, 0, 5])),
    // §6.3 a): the NEXT_HOP must not be the receiving speaker's address (here the session's).
    // The speaker's address goes in at 33, the NEXT_HOP value.
    update_next_hop_is_the_receiving_speaker: Row { own_address_at: Some(33), ..ignored("4271 §6.3", next_hop([0; 4]), PREFIX) },
    update_nlri_multicast_prefix: ignored("4271 §6.3", update(&[], BASE, &[24, 224, 0, 1]), MULTICAST),
    update_med_length_3: withdraw("7606 §7.4", with(&[0x80, 4, 3, 0, 0, 1])),
    update_local_pref_length_2: withdraw("7606 §7.5", announce(&[&BASE[..14], &[0x40, 5, 2, 0, 1][..]].concat())),
    update_atomic_aggregate_length_1: discard("7606 §7.6", with(&[0x40, 6, 1, 0]), IBGP_PATH),
    update_aggregator_length_6_on_4_octet_session: discard("7606 §7.7", with(&[0xc0, 7, 6, 0, 0, 1, 1, 1, 1]), IBGP_PATH),
    update_aggregator_with_as_0: discard("7607 §2", with(&[0xc0, 7, 8, 0, 0, 0, 0, 10, 0, 0, 9]), IBGP_PATH),
    update_communities_length_3: withdraw("7606 §7.8", with(&[0xc0, 8, 3, 0, 0, 1])),
    update_communities_empty: withdraw("7606 §7.8", with(&[0xc0, 8, 0])),
    update_originator_id_length_5: withdraw("7606 §7.9", with(&[0x80, 9, 5, 1, 1, 1, 1, 1])),
    update_cluster_list_length_6: withdraw("7606 §7.10", with(&[0x80, 10, 6, 1, 1, 1, 1, 1, 1])),
    update_as4_path_on_4_octet_session: discard("6793 §4.1", with(&[0xc0, 17, 3, 2, 1, 0]), IBGP_PATH),
    update_as4_aggregator_on_4_octet_session: discard("6793 §4.1", with(&[0xc0, 18, 8, 0, 0, 0, 1, 1, 1, 1, 1]), IBGP_PATH),
    // AS_PATH 23456 (AS_TRANS) and an AS4_PATH whose one AS is cut short: the AS_PATH stays.
    // AS_PATH 23456 (AS_TRANS) stays when the AS4_PATH beside it is malformed (its AS cut short).
    update_as4_path_malformed_on_2_octet_session: discard("6793 §6", announce(&[AS_TRANS_BASE, &[0xc0, 17, 3, 2, 1, 0]].concat()), Kept { as_path: "23456", ..EBGP_PATH }).on(Session::Ebgp2),
    update_local_pref_from_external_peer: external("7606 §7.5", &[0x40, 5, 4, 0, 0, 0, 9]),
    update_originator_id_from_external_peer: external("7606 §7.9", &[0x80, 9, 4, 1, 1, 1, 1]),
    update_cluster_list_from_external_peer: external("7606 §7.10", &[0x80, 10, 4, 1, 1, 1, 1]),
    update_mp_reach_ipv6_with_4_octet_next_hop: mp_reset(&[0x80, 14, 9, 0, 2, 1, 4, 10, 0, 0, 1, 0]),
    update_mp_reach_next_hop_overrun: mp_reset(&[0x80, 14, 6, 0, 1, 1, 4, 10, 0]),
    update_mp_reach_too_short: mp_reset(&[0x80, 14, 2, 0, 1]),
    update_mp_reach_prefix_longer_than_32: mp_reset(&[0x80, 14, 11, 0, 1, 1, 4, 10, 0, 0, 1, 0, 33, 1]),
    update_mp_unreach_prefix_overrun: mp_reset(&[0x80, 15, 5, 0, 1, 1, 24, 10]),
    update_mp_unreach_family_not_negotiated: discard("4760 §6", with(&[0x80, 15, 3, 0, 25, 70]), IBGP_PATH),
    update_attribute_overruns_the_attribute_field: withdraw("7606 §4", with(&[0xc0, 8, 9, 0, 0])),
    update_lone_flags_octet: withdraw("7606 §4", with(&[0x40])),
    update_extended_length_cut_short: withdraw("7606 §4", with(&[0x50, 2, 0])),
    update_nlri_prefix_longer_than_32: reset("7606 §5.3", update(&[], BASE, &[33, 1, 2, 3, 4, 5]), 3, 10, &[]),
    update_nlri_prefix_overrun: reset("7606 §5.3", update(&[], BASE, &[24, 10, 0]), 3, 10, &[]),
    update_withdrawn_prefix_longer_than_32: reset("7606 §5.3", update(&[40, 1, 2, 3, 4, 5], &[], &[]), 3, 10, &[]),
    update_withdrawn_prefix_overrun: reset("7606 §5.3", update(&[16, 10], &[], &[]), 3, 10, &[]),
    // The first MULTI_EXIT_DISC (1) wins.
    update_med_twice: discard("7606 §3 g", with(&[0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2]), Kept { med: Some(1), ..IBGP_PATH }),
    update_mp_unreach_twice: reset("7606 §3 g", no_nlri(&[0x80, 15, 3, 0, 1, 1, 0x80, 15, 3, 0, 1, 1]), 3, 1, &[]),

    // ---- RFC 7313 §5 ROUTE-REFRESH ----
    route_refresh_length_24: reset("7313 §5", msg(5, &[0, 1, 0, 1, 0]), 7, 1, &msg(5, &[0, 1, 0, 1, 0])),

    // ---- RFC 6608 Finite State Machine errors ----
    fsm_keepalive_in_opensent: notify("6608 §4", InsteadOfOpen, msg(4, &[]), 5, 1, &[]),
    fsm_update_in_opensent: notify("6608 §4", InsteadOfOpen, with(&[]), 5, 1, &[]),
    // Event 28 (a malformed UPDATE) is unexpected before Established, like any UPDATE.
    fsm_malformed_update_in_opensent: notify("6608 §4", InsteadOfOpen, patch(with(&[]), 21, &200u16.to_be_bytes()), 5, 1, &[]),
    fsm_update_in_openconfirm: notify("6608 §4", InOpenConfirm, with(&[]), 5, 2, &[]),
    fsm_route_refresh_in_openconfirm: notify("6608 §4", InOpenConfirm, msg(5, &[0, 1, 0, 1]), 5, 2, &[]),
    fsm_open_in_openconfirm: notify("6608 §4", InOpenConfirm, open(4, 64512, 90, PEER_ID, CAPS), 5, 2, &[]),
    fsm_open_in_established: reset("6608 §4", open(4, 64512, 90, PEER_ID, CAPS), 5, 3, &[]),
    // An OPEN error after Established is an unexpected message, not an OPEN Message Error.
    fsm_malformed_open_in_established: reset("6608 §4", open(3, 64512, 90, PEER_ID, CAPS), 5, 3, &[]),
}

/// An iBGP UPDATE without NLRI: the valid attributes, then `extra`.
fn no_nlri(extra: &[u8]) -> Vec<u8> {
    update(&[], &[BASE, extra].concat(), &[])
}

/// An eBGP UPDATE carrying `attr`, which only internal peers may send: it is discarded.
fn external(rfc: &'static str, attr: &[u8]) -> Row {
    let bytes = announce(&[EBGP_BASE, attr].concat());
    discard(rfc, bytes, EBGP_PATH).on(Session::Ebgp)
}

/// An iBGP UPDATE for [`PREFIX`] with this AS_PATH value.
fn as_path(path: &[u8]) -> Vec<u8> {
    announce(&[&BASE[..4], &[0x40, 2, path.len() as u8], path, &BASE[7..]].concat())
}

/// An iBGP UPDATE for [`PREFIX`] with this NEXT_HOP.
fn next_hop(nh: [u8; 4]) -> Vec<u8> {
    announce(&[&BASE[..7], &[0x40, 3, 4][..], &nh, &BASE[14..]].concat())
}

/// RFC 7606 §7.11: a malformed MP_REACH_NLRI / MP_UNREACH_NLRI resets the session with Optional
/// Attribute Error (RFC 4760 §7), the attribute as data.
fn mp_reset(attr: &[u8]) -> Row {
    reset("7606 §7.11", no_nlri(attr), 3, 9, attr)
}

// ---- Running a row -------------------------------------------------------------------------

/// The hand-written peer: one TCP connection to the speaker, bytes out, messages in.
struct TestPeer {
    stream: TcpStream,
    buf: BytesMut,
    ctx: SessionContext,
    /// The row, for failure messages.
    name: &'static str,
}

impl TestPeer {
    async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    async fn send(&mut self, m: &Message) {
        let mut b = BytesMut::new();
        encode_message(m, &self.ctx, &mut b).unwrap();
        self.write(&b).await;
    }

    /// The speaker's next message; `None` once it has closed the connection.
    async fn next(&mut self) -> Option<Message> {
        loop {
            let name = self.name;
            let framed = frame_length(&self.buf, &self.ctx)
                .unwrap_or_else(|e| panic!("{name}: the speaker's framing: {e}"));
            if let Some(len) = framed.filter(|&len| self.buf.len() >= len) {
                let m = decode_message(&self.buf[..len], &self.ctx)
                    .unwrap_or_else(|e| panic!("{name}: the speaker's message: {e}"));
                self.buf.advance(len);
                return Some(m);
            }
            let read = tokio::time::timeout(WAIT, self.stream.read_buf(&mut self.buf))
                .await
                .unwrap_or_else(|_| panic!("{}: nothing from the speaker in {WAIT:?}", self.name));
            if !matches!(read, Ok(n) if n > 0) {
                return None;
            }
        }
    }

    /// Reads on to the speaker's next UPDATE announcing [`LOCAL_PREFIX`]; the session must
    /// stay up meanwhile.
    async fn local_update(&mut self, after: &str) {
        loop {
            match self.next().await {
                Some(Message::Update(u)) if announces_local(&u) => return,
                Some(Message::Notification(n)) => panic!(
                    "{}: after {after} the speaker sent NOTIFICATION {}/{} data {:02x?}",
                    self.name,
                    n.code,
                    n.subcode,
                    &n.data[..]
                ),
                Some(_) => {}
                None => panic!("{}: after {after} the speaker closed", self.name),
            }
        }
    }

    /// OPEN (and for Established, KEEPALIVE) as [`Session`] says.
    async fn open(&mut self, session: Session, when: When) {
        self.send(&Message::Open(session.open())).await;
        // The speaker's KEEPALIVE: it took our OPEN and is in OpenConfirm.
        loop {
            match self.next().await {
                Some(Message::Keepalive) => break,
                Some(Message::Open(_)) => {}
                other => panic!("{}: our OPEN got {other:?}", self.name),
            }
        }
        if when == Established {
            self.send(&Message::Keepalive).await;
            // Its table (LOCAL_PREFIX) comes only once it is Established.
            self.local_update("our KEEPALIVE").await;
        }
    }

    /// A ROUTE-REFRESH, answered by the speaker's table. The speaker handles a session's
    /// messages in order, so once LOCAL_PREFIX is back everything sent before has reached its
    /// RIB, and the session has survived it.
    async fn probe(&mut self, after: &str) {
        self.send(&Message::RouteRefresh(RouteRefresh {
            afi: Afi::IPV4,
            subtype: 0,
            safi: Safi::UNICAST,
        }))
        .await;
        self.local_update(after).await;
    }

    /// The NOTIFICATION the speaker sends (after its OPEN, KEEPALIVEs or UPDATEs); nothing may
    /// follow it, and the connection must close.
    async fn notification(&mut self) -> Notification {
        let n = loop {
            match self.next().await {
                Some(Message::Notification(n)) => break n,
                Some(_) => {}
                None => panic!("{}: closed without a NOTIFICATION", self.name),
            }
        };
        let mut rest = self.buf.to_vec();
        let closed = tokio::time::timeout(WAIT, self.stream.read_to_end(&mut rest)).await;
        assert!(
            closed.is_ok(),
            "{}: the connection stayed open after the NOTIFICATION",
            self.name
        );
        assert!(
            rest.is_empty(),
            "{}: bytes after the NOTIFICATION: {rest:02x?}",
            self.name
        );
        n
    }
}

fn announces_local(u: &bgp::wire::Update) -> bool {
    u.nlri.contains(&LOCAL_PREFIX)
        || u.attributes
            .mp_reach
            .as_ref()
            .is_some_and(|mp| mp.nlri.contains(&IpNet::V4(LOCAL_PREFIX)))
}

/// A speaker (AS 64512) on 127.88.<row>.2 with the test peer on 127.88.<row>.9 configured as a
/// passive peer, originating [`LOCAL_PREFIX`]. One address pair per row: rows run in parallel.
async fn speaker(index: usize, session: Session) -> (Node, Ipv4Addr) {
    let octet = u8::try_from(index + 1).expect("at most 255 rows");
    let ip = Ipv4Addr::new(127, 88, octet, 2);
    let peer_ip = Ipv4Addr::new(127, 88, octet, 9);
    let port = free_port(ip);
    let mut cfg = SpeakerConfig::new(LOCAL_AS, ROUTER_ID);
    cfg.listen = Some(SocketAddr::new(ip.into(), port));
    let handle = Speaker::start(cfg).await.unwrap();
    let mut peer = PeerConfig::new(peer_ip.into(), session.peer_as());
    peer.passive = true;
    handle.add_peer(peer).await.unwrap();
    handle.announce(LOCAL_PREFIX, None).await.unwrap();
    let node = Node {
        ip,
        port,
        asn: LOCAL_AS,
        handle,
    };
    (node, peer_ip)
}

/// The peer's path for [`PREFIX`] in the speaker's RIB.
async fn path(node: &Node, peer: Ipv4Addr) -> Option<RouteView> {
    let source = RouteSource::Peer(peer.into());
    node.handle
        .routes()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.prefix == PREFIX && r.source == source)
}

async fn last_error(node: &Node, peer: Ipv4Addr) -> Option<String> {
    let addr = IpAddr::V4(peer);
    let st = node.status().await;
    let p = st.peers.iter().find(|p| p.address == addr)?;
    p.last_error.as_ref().map(|e| e.to_string())
}

/// The session is Established and never went down.
async fn still_up(node: &Node, peer: Ipv4Addr, name: &str) {
    let addr = IpAddr::V4(peer);
    let st = node.status().await;
    let p = st.peers.iter().find(|p| p.address == addr).unwrap();
    let last_error = p.last_error.as_ref().map(|e| e.to_string());
    assert_eq!(
        (p.state, p.flaps, last_error),
        (State::Established, 0, None),
        "{name}: (state, flaps, last error)"
    );
}

async fn run(name: &'static str) {
    let rows = table();
    let index = rows.iter().position(|(n, _)| *n == name).unwrap();
    let row = &rows[index].1;
    let (node, peer_ip) = speaker(index, row.session).await;
    let mut peer = TestPeer {
        stream: connect_from(peer_ip, &node).await,
        buf: BytesMut::new(),
        ctx: row.session.ctx(),
        name,
    };
    if row.when != InsteadOfOpen {
        peer.open(row.session, row.when).await;
    }
    let mut bytes = row.bytes.clone();
    if let Some(at) = row.own_address_at {
        bytes[at..at + 4].copy_from_slice(&node.ip.octets());
    }
    match &row.expect {
        Expect::Notification {
            code,
            subcode,
            data,
        } => {
            peer.write(&bytes).await;
            let n = peer.notification().await;
            assert_eq!(
                (n.code, n.subcode, &n.data[..]),
                (*code, *subcode, &data[..]),
                "{name}: NOTIFICATION (code, subcode, data)"
            );
            // Also what the speaker reports about the peer.
            let reported = format!("({code}/{subcode})");
            wait_until(|| async {
                last_error(&node, peer_ip)
                    .await
                    .is_some_and(|e| e.starts_with("sent NOTIFICATION") && e.ends_with(&reported))
            })
            .await;
        }
        Expect::TreatAsWithdraw => {
            peer.write(&update(&[], row.session.base(), NLRI)).await;
            peer.probe("the valid UPDATE").await;
            assert!(
                path(&node, peer_ip).await.is_some(),
                "{name}: the valid UPDATE's prefix is not in the RIB"
            );
            peer.write(&bytes).await;
            peer.probe("the malformed UPDATE").await;
            assert_eq!(
                path(&node, peer_ip).await,
                None,
                "{name}: the prefix was not withdrawn"
            );
            still_up(&node, peer_ip, name).await;
        }
        Expect::AttributeDiscard(kept) => {
            peer.write(&bytes).await;
            peer.probe("the UPDATE").await;
            let p = path(&node, peer_ip)
                .await
                .unwrap_or_else(|| panic!("{name}: the prefix is not in the RIB"));
            assert_eq!(
                (p.next_hop, p.origin.as_str(), p.as_path.as_str()),
                (NEXT_HOP, "IGP", kept.as_path),
                "{name}: (next hop, origin, AS path)"
            );
            assert_eq!(
                (p.local_pref, p.med),
                (kept.local_pref, kept.med),
                "{name}: (LOCAL_PREF, MED)"
            );
            still_up(&node, peer_ip, name).await;
        }
        Expect::Ignored(prefix) => {
            peer.write(&bytes).await;
            peer.probe("the UPDATE").await;
            let source = RouteSource::Peer(peer_ip.into());
            let routes = node.handle.routes().await.unwrap();
            let taken = routes
                .iter()
                .find(|r| r.prefix == *prefix && r.source == source);
            assert_eq!(taken, None, "{name}: the route was taken");
            still_up(&node, peer_ip, name).await;
        }
    }
    node.handle.shutdown().await.unwrap();
}

// ---- The doc -------------------------------------------------------------------------------

/// docs/BGP-ERRORS.md has one table row per test row, with its RFC section and outcome.
#[test]
fn the_doc_lists_every_row() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/BGP-ERRORS.md");
    let doc = std::fs::read_to_string(path).unwrap();
    // Row name -> (RFC, outcome), from lines "| case | RFC | outcome | `name` |".
    let mut in_doc: BTreeMap<&str, (&str, &str)> = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        let Some(name) = cells
            .last()
            .and_then(|c| c.strip_prefix('`'))
            .and_then(|c| c.strip_suffix('`'))
        else {
            continue;
        };
        assert_eq!(cells.len(), 4, "{line}");
        assert!(
            in_doc.insert(name, (cells[1], cells[2])).is_none(),
            "{name} twice in the doc"
        );
    }
    let rows = table();
    let in_table: BTreeSet<&str> = rows.iter().map(|(n, _)| *n).collect();
    let documented: BTreeSet<&str> = in_doc.keys().copied().collect();
    assert_eq!(
        in_table.difference(&documented).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "rows missing from the doc"
    );
    assert_eq!(
        documented.difference(&in_table).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "doc rows with no test"
    );
    for (name, row) in &rows {
        let (rfc, outcome) = in_doc[name];
        assert_eq!(rfc, format!("RFC {}", row.rfc), "{name}: RFC");
        let says = match &row.expect {
            Expect::Notification { code, subcode, .. } => format!("NOTIFICATION {code}/{subcode} "),
            Expect::TreatAsWithdraw => "treat-as-withdraw".into(),
            Expect::AttributeDiscard(_) => "attribute discarded".into(),
            Expect::Ignored(_) => "route ignored".into(),
        };
        assert!(
            outcome.starts_with(&says),
            "{name}: {outcome:?} is not {says:?}"
        );
    }
}
