//! Every error case of RFC 4271 §6.1-6.3 (as revised by RFC 7606 for UPDATE attributes), RFC
//! 7313 for ROUTE-REFRESH, and the NOTIFICATION each one maps to, data field included.

use bgp::wire::*;
use bytes::Bytes;
use std::net::Ipv4Addr;

const IBGP: SessionContext = SessionContext {
    four_octet_as: true,
    extended_message: false,
    peer_type: PeerType::Internal,
};
const EBGP: SessionContext = SessionContext {
    four_octet_as: true,
    extended_message: false,
    peer_type: PeerType::External,
};
const AS2: SessionContext = SessionContext {
    four_octet_as: false,
    extended_message: false,
    peer_type: PeerType::External,
};

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

/// ORIGIN IGP, empty AS_PATH, NEXT_HOP 10.0.0.1, LOCAL_PREF 100: a valid iBGP attribute set.
const BASE: &[u8] = &[
    0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1, 0x40, 5, 4, 0, 0, 0, 100,
];
const NLRI: &[u8] = &[24, 192, 168, 1];

fn with(extra: &[u8]) -> Vec<u8> {
    [BASE, extra].concat()
}

fn err(bytes: &[u8], c: &SessionContext) -> DecodeError {
    match decode_message(bytes, c) {
        Err(e) => e,
        Ok(m) => panic!("decoded: {m:?}"),
    }
}

fn notif(bytes: &[u8], c: &SessionContext) -> (u8, u8, Vec<u8>) {
    let n = err(bytes, c).notification();
    (n.code, n.subcode, n.data.to_vec())
}

fn decoded(bytes: &[u8], c: &SessionContext) -> Update {
    match decode_message(bytes, c) {
        Ok(Message::Update(u)) => u,
        other => panic!("{other:?}"),
    }
}

/// The single recorded attribute error: (type code, action).
fn one_error(u: &Update) -> (u8, ErrorAction) {
    assert_eq!(u.attribute_errors.len(), 1, "{:?}", u.attribute_errors);
    (
        u.attribute_errors[0].type_code,
        u.attribute_errors[0].action,
    )
}

// ---- §6.1 Message Header error handling -------------------------------------------------------

#[test]
fn header_needs_19_bytes_before_deciding() {
    let k = msg(4, &[]);
    for n in 0..19 {
        assert_eq!(frame_length(&k[..n], &IBGP).unwrap(), None);
    }
    assert_eq!(frame_length(&k, &IBGP).unwrap(), Some(19));
    // The length is returned as soon as the header is there, before the body arrives.
    let u = update(&[], BASE, NLRI);
    assert_eq!(frame_length(&u[..19], &IBGP).unwrap(), Some(u.len()));
}

#[test]
fn marker_not_all_ones_is_connection_not_synchronized() {
    let mut k = msg(4, &[]);
    k[7] = 0xfe;
    let e = frame_length(&k, &IBGP).unwrap_err();
    assert_eq!(
        (e.offset(), e.notification()),
        (0, Notification::new(1, 1, Bytes::new()))
    );
    assert_eq!(notif(&k, &IBGP), (1, 1, vec![]));
}

#[test]
fn length_out_of_range_is_bad_message_length_with_the_length_field() {
    for len in [0u16, 18, 4097, 65535] {
        let mut k = msg(2, &[0, 0, 0, 0]);
        k[16..18].copy_from_slice(&len.to_be_bytes());
        let e = frame_length(&k, &IBGP).unwrap_err();
        assert_eq!(e.offset(), 16);
        assert_eq!(
            e.notification(),
            Notification::new(1, 2, len.to_be_bytes().to_vec())
        );
    }
    // RFC 8654: with Extended Message an UPDATE may be up to 65535 bytes, but OPEN may not.
    let ext = SessionContext {
        extended_message: true,
        ..IBGP
    };
    let mut k = msg(2, &[0, 0, 0, 0]);
    k[16..18].copy_from_slice(&5000u16.to_be_bytes());
    assert_eq!(frame_length(&k, &ext).unwrap(), Some(5000));
    k[18] = 1;
    assert_eq!(
        frame_length(&k, &ext).unwrap_err().notification().subcode,
        2
    );
}

#[test]
fn length_below_the_type_minimum_is_bad_message_length() {
    // OPEN 29, UPDATE 23, NOTIFICATION 21, KEEPALIVE exactly 19, ROUTE-REFRESH 23.
    for (t, bad) in [(1u8, 28usize), (2, 22), (3, 20), (4, 20), (4, 23), (5, 22)] {
        let k = msg(t, &vec![0; bad - 19]);
        let e = frame_length(&k, &IBGP).unwrap_err();
        assert_eq!(
            e.notification(),
            Notification::new(1, 2, (bad as u16).to_be_bytes().to_vec()),
            "type {t}"
        );
        assert_eq!(notif(&k, &IBGP).1, 2);
    }
}

#[test]
fn unknown_type_is_bad_message_type_with_the_type() {
    for t in [0u8, 6, 255] {
        let k = msg(t, &[0; 8]);
        let e = frame_length(&k, &IBGP).unwrap_err();
        assert_eq!(
            (e.offset(), e.notification()),
            (18, Notification::new(1, 3, vec![t]))
        );
    }
}

#[test]
fn decode_message_wants_exactly_one_message() {
    let mut two = msg(4, &[]);
    two.extend(msg(4, &[]));
    assert_eq!(notif(&two, &IBGP), (1, 2, vec![0, 19]));
    assert_eq!(
        notif(&msg(2, &[0, 0, 0, 0])[..20], &IBGP),
        (1, 2, vec![0, 23])
    );
    assert_eq!(notif(&[0xff; 5], &IBGP).1, 2);
}

// ---- §6.2 OPEN message error handling ----------------------------------------------------------

fn open(version: u8, my_as: u16, hold: u16, id: [u8; 4], params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&my_as.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id);
    b.push(params.len() as u8);
    b.extend_from_slice(params);
    msg(1, &b)
}

const CAPS: &[u8] = &[2, 6, 1, 4, 0, 1, 0, 1];

#[test]
fn open_valid_and_hold_time_zero_or_three() {
    for hold in [0, 3, 65535] {
        let Message::Open(o) =
            decode_message(&open(4, 65000, hold, [10, 0, 0, 1], CAPS), &IBGP).unwrap()
        else {
            panic!()
        };
        assert_eq!(o.hold_time, hold);
    }
}

#[test]
fn open_unsupported_version_names_version_4() {
    let e = err(&open(3, 65000, 90, [10, 0, 0, 1], CAPS), &IBGP);
    assert_eq!(e.offset(), 19);
    assert_eq!(e.notification(), Notification::new(2, 1, vec![0, 4]));
}

#[test]
fn open_bad_peer_as_zero() {
    // RFC 7607 §2, in My AS and in the 4-octet AS capability.
    assert_eq!(
        notif(&open(4, 0, 90, [10, 0, 0, 1], CAPS), &IBGP),
        (2, 2, vec![])
    );
    assert_eq!(
        notif(
            &open(4, 23456, 90, [10, 0, 0, 1], &[2, 6, 65, 4, 0, 0, 0, 0]),
            &IBGP
        ),
        (2, 2, vec![])
    );
    // The FSM's own check (configured AS) uses the same variant.
    assert_eq!(
        OpenError::BadPeerAs(64999).notification(),
        Notification::new(2, 2, Bytes::new())
    );
}

#[test]
fn open_bad_bgp_identifier() {
    let e = err(&open(4, 65000, 90, [0, 0, 0, 0], CAPS), &IBGP);
    assert_eq!(
        (e.offset(), e.notification()),
        (24, Notification::new(2, 3, Bytes::new()))
    );
}

#[test]
fn open_unsupported_optional_parameter() {
    // Type 1 (Authentication, deprecated by RFC 5492) and an unassigned type.
    for t in [1u8, 3, 254] {
        let e = err(
            &open(4, 65000, 90, [10, 0, 0, 1], &[t, 2, 0xaa, 0xbb]),
            &IBGP,
        );
        assert_eq!(
            (e.offset(), e.notification()),
            (29, Notification::new(2, 4, Bytes::new()))
        );
    }
}

#[test]
fn open_unacceptable_hold_time() {
    for hold in [1, 2] {
        let e = err(&open(4, 65000, hold, [10, 0, 0, 1], CAPS), &IBGP);
        assert_eq!(
            (e.offset(), e.notification()),
            (22, Notification::new(2, 6, Bytes::new()))
        );
    }
}

#[test]
fn open_unsupported_capability_carries_the_capability() {
    // Raised by the FSM; the codec maps it with the capability as data (RFC 5492 §5).
    let cap = Bytes::from_static(&[65, 4, 0, 0, 0xfd, 0xe8]);
    assert_eq!(
        OpenError::UnsupportedCapability(cap.clone()).notification(),
        Notification::new(2, 7, cap)
    );
    // Unknown capabilities themselves are kept, not refused.
    let Message::Open(o) = decode_message(
        &open(4, 65000, 90, [10, 0, 0, 1], &[2, 3, 200, 1, 7]),
        &IBGP,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(
        o.capabilities,
        vec![Capability::Unknown {
            code: 200,
            value: Bytes::from_static(&[7])
        }]
    );
}

#[test]
fn open_malformed_capabilities_are_unspecific() {
    for params in [
        &[2, 5, 1, 3, 0, 1, 0][..],    // multiprotocol of length 3
        &[2, 3, 2, 1, 0][..],          // route refresh with a value
        &[2, 5, 65, 3, 0, 0, 1][..],   // 4-octet AS of length 3
        &[2, 5, 64, 3, 0, 120, 0][..], // graceful restart not 2 + 4n
        &[2, 3, 1, 4, 0][..],          // capability overruns its parameter
        &[2][..],                      // truncated parameter header
    ] {
        let (code, sub, data) = notif(&open(4, 65000, 90, [10, 0, 0, 1], params), &IBGP);
        assert_eq!((code, sub, data), (2, 0, vec![]), "{params:?}");
    }
}

#[test]
fn open_parameters_not_matching_the_length() {
    let mut o = open(4, 65000, 90, [10, 0, 0, 1], CAPS);
    o[28] = 7; // Opt Parm Len one short of the 8 bytes present
    assert_eq!(
        notif(&o, &IBGP),
        (1, 2, (o.len() as u16).to_be_bytes().to_vec())
    );
    o[28] = 9;
    assert_eq!(notif(&o, &IBGP).1, 2);
}

// ---- §6.3 UPDATE message error handling --------------------------------------------------------

#[test]
fn update_lengths_overrunning_the_message_are_malformed_attribute_list() {
    // Withdrawn Routes Length too large.
    let mut u = update(&[24, 10, 0, 0], BASE, NLRI);
    u[19..21].copy_from_slice(&100u16.to_be_bytes());
    assert_eq!(notif(&u, &IBGP), (3, 1, vec![]));
    // Total Path Attribute Length too large.
    let mut u = update(&[], BASE, NLRI);
    u[21..23].copy_from_slice(&200u16.to_be_bytes());
    let e = err(&u, &IBGP);
    assert_eq!(
        (e.offset(), e.notification()),
        (21, Notification::new(3, 1, Bytes::new()))
    );
}

#[test]
fn update_unrecognized_well_known_attribute_carries_the_attribute() {
    let bad = [0x40, 99, 2, 0xde, 0xad];
    let e = err(&update(&[], &with(&bad), NLRI), &IBGP);
    assert_eq!(e.offset(), 23 + BASE.len());
    assert_eq!(e.notification(), Notification::new(3, 2, bad.to_vec()));
}

#[test]
fn update_missing_well_known_attributes_are_treat_as_withdraw() {
    // RFC 7606 §3 d revises §6.3: recorded, not reset.
    let cases: [(&[u8], u8, SessionContext); 4] = [
        (
            &[
                0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1, 0x40, 5, 4, 0, 0, 0, 100,
            ],
            attr_type::ORIGIN,
            IBGP,
        ),
        (
            &[
                0x40, 1, 1, 0, 0x40, 3, 4, 10, 0, 0, 1, 0x40, 5, 4, 0, 0, 0, 100,
            ],
            attr_type::AS_PATH,
            IBGP,
        ),
        (
            &[0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 100],
            attr_type::NEXT_HOP,
            IBGP,
        ),
        (
            &[0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 3, 4, 10, 0, 0, 1],
            attr_type::LOCAL_PREF,
            IBGP,
        ),
    ];
    for (attrs, missing, c) in cases {
        let u = decoded(&update(&[], attrs, NLRI), &c);
        assert_eq!(one_error(&u), (missing, ErrorAction::TreatAsWithdraw));
        assert!(u.is_treat_as_withdraw());
        assert_eq!(
            u.nlri.len(),
            1,
            "prefixes are kept so they can be withdrawn"
        );
    }
    // LOCAL_PREF is not required from an external peer, NEXT_HOP not with MP_REACH alone,
    // and nothing is required without NLRI.
    let ebgp = [
        0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, 0x40, 3, 4, 10, 0, 0, 1,
    ];
    assert!(decoded(&update(&[], &ebgp, NLRI), &EBGP)
        .attribute_errors
        .is_empty());
    let mp = [
        0x40, 1, 1, 0, 0x40, 2, 0, 0x40, 5, 4, 0, 0, 0, 1, 0x80, 14, 12, 0, 1, 1, 4, 10, 0, 0, 1,
        0, 16, 10, 2,
    ];
    assert!(decoded(&update(&[], &mp, &[]), &IBGP)
        .attribute_errors
        .is_empty());
    assert!(decoded(&update(&[24, 10, 0, 0], &[], &[]), &IBGP)
        .attribute_errors
        .is_empty());
    assert_eq!(
        UpdateError::MissingWellKnownAttribute(attr_type::ORIGIN).notification(),
        Notification::new(3, 3, vec![1])
    );
}

#[test]
fn update_attribute_flags_errors() {
    // RFC 7606 §3 c: ORIGIN marked optional is treat-as-withdraw.
    let u = decoded(
        &update(&[], &[&[0xc0, 1, 1, 0][..], &BASE[4..]].concat(), NLRI),
        &IBGP,
    );
    assert_eq!(u.attribute_errors[0].type_code, attr_type::ORIGIN);
    assert!(u.is_treat_as_withdraw());
    // ATOMIC_AGGREGATE with wrong flags is discarded.
    let u = decoded(&update(&[], &with(&[0xc0, 6, 0]), NLRI), &IBGP);
    assert_eq!(one_error(&u), (6, ErrorAction::AttributeDiscard));
    assert!(!u.attributes.atomic_aggregate);
    // MP_REACH_NLRI with wrong flags cannot be withdrawn: session reset, data = the attribute.
    let bad = [0x40, 14, 9, 0, 1, 1, 4, 10, 0, 0, 1, 0];
    assert_eq!(
        notif(&update(&[], &with(&bad), &[]), &IBGP),
        (3, 4, bad.to_vec())
    );
    assert_eq!(
        UpdateError::AttributeFlagsError(Bytes::from_static(&[0xc0, 1, 1, 0])).notification(),
        Notification::new(3, 4, vec![0xc0, 1, 1, 0])
    );
}

#[test]
fn update_attribute_length_errors() {
    // RFC 7606: each attribute's length error takes that attribute's action.
    let cases: [(&[u8], u8, ErrorAction); 9] = [
        (&[0x80, 4, 3, 0, 0, 1], 4, ErrorAction::TreatAsWithdraw), // MED §7.4
        (&[0x40, 6, 1, 0], 6, ErrorAction::AttributeDiscard),      // ATOMIC_AGGREGATE §7.6
        (
            &[0xc0, 7, 6, 0, 0, 1, 1, 1, 1],
            7,
            ErrorAction::AttributeDiscard,
        ), // AGGREGATOR §7.7 (4-octet wants 8)
        (&[0xc0, 8, 3, 0, 0, 1], 8, ErrorAction::TreatAsWithdraw), // COMMUNITIES §7.8
        (&[0xc0, 8, 0], 8, ErrorAction::TreatAsWithdraw),          // COMMUNITIES empty
        (
            &[0x80, 9, 5, 1, 1, 1, 1, 1],
            9,
            ErrorAction::TreatAsWithdraw,
        ), // ORIGINATOR_ID §7.9
        (
            &[0x80, 10, 6, 1, 1, 1, 1, 1, 1],
            10,
            ErrorAction::TreatAsWithdraw,
        ), // CLUSTER_LIST §7.10
        (&[0xc0, 17, 3, 2, 1, 0], 17, ErrorAction::AttributeDiscard), // AS4_PATH on 4-octet
        (
            &[0xc0, 18, 8, 0, 0, 0, 1, 1, 1, 1, 1],
            18,
            ErrorAction::AttributeDiscard,
        ),
    ];
    for (attr, code, action) in cases {
        let u = decoded(&update(&[], &with(attr), NLRI), &IBGP);
        assert_eq!(one_error(&u), (code, action), "{attr:?}");
        assert_eq!(u.attribute_errors[0].offset, 23 + BASE.len());
    }
    // ORIGIN and LOCAL_PREF of the wrong length (§7.1, §7.5).
    let u = decoded(
        &update(&[], &[&[0x40, 1, 2, 0, 0][..], &BASE[4..]].concat(), NLRI),
        &IBGP,
    );
    assert_eq!(one_error(&u), (1, ErrorAction::TreatAsWithdraw));
    let u = decoded(
        &update(&[], &[&BASE[..14], &[0x40, 5, 2, 0, 1][..]].concat(), NLRI),
        &IBGP,
    );
    assert_eq!(one_error(&u), (5, ErrorAction::TreatAsWithdraw));
    let a = Bytes::from_static(&[0x80, 4, 3, 0, 0, 1]);
    assert_eq!(
        UpdateError::AttributeLengthError(a.clone()).notification(),
        Notification::new(3, 5, a)
    );
}

#[test]
fn update_attribute_overrunning_the_attribute_field_is_treat_as_withdraw() {
    // RFC 7606 §4: the last attribute claims 9 bytes but the field ends after 2; the NLRI is
    // still found from the Total Path Attribute Length.
    let u = decoded(&update(&[], &with(&[0xc0, 8, 9, 0, 0]), NLRI), &IBGP);
    assert_eq!(one_error(&u), (8, ErrorAction::TreatAsWithdraw));
    assert_eq!(u.nlri, vec!["192.168.1.0/24".parse().unwrap()]);
    // A lone flags octet at the end.
    let u = decoded(&update(&[], &with(&[0x40]), NLRI), &IBGP);
    assert_eq!(u.attribute_errors[0].action, ErrorAction::TreatAsWithdraw);
    // Extended length header cut short.
    let u = decoded(&update(&[], &with(&[0x50, 2, 0]), NLRI), &IBGP);
    assert!(u.is_treat_as_withdraw());
}

#[test]
fn update_invalid_origin() {
    let u = decoded(
        &update(&[], &[&[0x40, 1, 1, 3][..], &BASE[4..]].concat(), NLRI),
        &IBGP,
    );
    assert_eq!(one_error(&u), (1, ErrorAction::TreatAsWithdraw));
    let a = Bytes::from_static(&[0x40, 1, 1, 3]);
    assert_eq!(
        UpdateError::InvalidOrigin(a.clone()).notification(),
        Notification::new(3, 6, a)
    );
}

#[test]
fn update_invalid_next_hop() {
    for nh in [[0, 0, 0, 0], [255, 255, 255, 255], [224, 0, 0, 5]] {
        let attrs = [&BASE[..7], &[0x40, 3, 4][..], &nh, &BASE[14..]].concat();
        let u = decoded(&update(&[], &attrs, NLRI), &IBGP);
        assert_eq!(one_error(&u), (3, ErrorAction::TreatAsWithdraw), "{nh:?}");
    }
    let attrs = [&BASE[..7], &[0x40, 3, 5, 10, 0, 0, 1, 0][..], &BASE[14..]].concat();
    assert_eq!(
        one_error(&decoded(&update(&[], &attrs, NLRI), &IBGP)),
        (3, ErrorAction::TreatAsWithdraw)
    );
    let a = Bytes::from_static(&[0x40, 3, 4, 0, 0, 0, 0]);
    assert_eq!(
        UpdateError::InvalidNextHop(a.clone()).notification(),
        Notification::new(3, 8, a)
    );
}

#[test]
fn update_optional_attribute_errors_in_mp_attributes_reset() {
    // RFC 7606 §7.11 / RFC 4760 §7: next hop length wrong for the family, truncated, bad NLRI.
    for bad in [
        &[0x80, 14, 9, 0, 2, 1, 4, 10, 0, 0, 1, 0][..], // IPv6 with a 4-byte next hop
        &[0x80, 14, 6, 0, 1, 1, 4, 10, 0][..],          // next hop overruns
        &[0x80, 14, 2, 0, 1][..],                       // too short for AFI/SAFI
        &[0x80, 14, 11, 0, 1, 1, 4, 10, 0, 0, 1, 0, 33, 1][..], // prefix /33
        &[0x80, 15, 5, 0, 1, 1, 24, 10][..],            // MP_UNREACH prefix overrun
    ] {
        let e = err(&update(&[], &with(bad), &[]), &IBGP);
        assert_eq!(
            e.notification(),
            Notification::new(3, 9, bad.to_vec()),
            "{bad:?}"
        );
        assert_eq!(e.offset(), 23 + BASE.len());
    }
    // An address family that was not negotiated is discarded.
    let u = decoded(&update(&[], &with(&[0x80, 15, 3, 0, 25, 70]), &[]), &IBGP);
    assert_eq!(one_error(&u), (15, ErrorAction::AttributeDiscard));
}

#[test]
fn update_invalid_network_field() {
    // RFC 7606 §5.3: prefix length over 32 or a prefix past the end resets the session.
    for (w, n) in [
        (&[][..], &[33, 1, 2, 3, 4, 5][..]),
        (&[][..], &[24, 10, 0][..]),
        (&[40, 1, 2, 3, 4, 5][..], &[][..]),
        (&[16, 10][..], &[][..]),
    ] {
        let attrs = if n.is_empty() { &[][..] } else { BASE };
        assert_eq!(
            notif(&update(w, attrs, n), &IBGP),
            (3, 10, vec![]),
            "{w:?} {n:?}"
        );
    }
    let e = err(&update(&[], BASE, &[24, 10, 0, 0, 33]), &IBGP);
    assert_eq!(e.offset(), 23 + BASE.len() + 4);
}

#[test]
fn update_malformed_as_path_is_treat_as_withdraw() {
    // RFC 7606 §7.2: bad segment type, zero-length segment, overrun, underrun, AS 0 (RFC 7607).
    for path in [
        &[5, 1, 0, 0, 0, 1][..],
        &[2, 0][..],
        &[2, 2, 0, 0, 0, 1][..],
        &[2, 1, 0, 0, 0, 1, 2][..],
        &[2, 1, 0, 0, 0, 0][..],
    ] {
        let attrs = [
            &BASE[..4],
            &[0x40, 2, path.len() as u8][..],
            path,
            &BASE[7..],
        ]
        .concat();
        let u = decoded(&update(&[], &attrs, NLRI), &IBGP);
        assert_eq!(one_error(&u), (2, ErrorAction::TreatAsWithdraw), "{path:?}");
        assert_eq!(u.attributes.as_path, None);
    }
    assert_eq!(
        UpdateError::MalformedAsPath.notification(),
        Notification::new(3, 11, Bytes::new())
    );
}

#[test]
fn update_duplicate_attributes() {
    // RFC 7606 §3 g: the first one wins; a repeated MP_REACH_NLRI resets.
    let u = decoded(
        &update(
            &[],
            &with(&[0x80, 4, 4, 0, 0, 0, 1, 0x80, 4, 4, 0, 0, 0, 2]),
            NLRI,
        ),
        &IBGP,
    );
    assert_eq!(u.attributes.med, Some(1));
    assert_eq!(one_error(&u), (4, ErrorAction::AttributeDiscard));
    let mp = [0x80, 15, 3, 0, 1, 1];
    assert_eq!(
        notif(&update(&[], &with(&[mp, mp].concat()), &[]), &IBGP),
        (3, 1, vec![])
    );
}

#[test]
fn update_unknown_attributes() {
    // Optional non-transitive: dropped quietly. Optional transitive: kept with Partial set.
    let u = decoded(
        &update(&[], &with(&[0x80, 99, 1, 7, 0xc0, 100, 2, 1, 2]), NLRI),
        &IBGP,
    );
    assert!(u.attribute_errors.is_empty());
    assert_eq!(
        u.attributes.unknown,
        vec![RawAttribute {
            flags: 0xe0,
            type_code: 100,
            value: Bytes::from_static(&[1, 2])
        }]
    );
}

#[test]
fn update_attributes_only_for_internal_peers_are_discarded_from_external_ones() {
    // RFC 7606 §7.5, §7.9, §7.10.
    let ebgp = [
        0x40, 1, 1, 0, 0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xe8, 0x40, 3, 4, 10, 0, 0, 1,
    ];
    for (extra, code) in [
        (&[0x40, 5, 4, 0, 0, 0, 9][..], 5),
        (&[0x80, 9, 4, 1, 1, 1, 1][..], 9),
        (&[0x80, 10, 4, 1, 1, 1, 1][..], 10),
    ] {
        let u = decoded(&update(&[], &[&ebgp[..], extra].concat(), NLRI), &EBGP);
        assert_eq!(one_error(&u), (code, ErrorAction::AttributeDiscard));
        assert_eq!(
            (u.attributes.local_pref, u.attributes.originator_id),
            (None, None)
        );
    }
}

#[test]
fn as4_path_merging_rules() {
    // RFC 6793 §4.2.3 on a 2-octet session.
    let base = [0x40, 1, 1, 0, 0x40, 3, 4, 10, 0, 0, 1];
    let path = |asns: &[u16]| {
        let mut v = vec![0x40, 2, 2 + 2 * asns.len() as u8, 2, asns.len() as u8];
        asns.iter()
            .for_each(|a| v.extend_from_slice(&a.to_be_bytes()));
        v
    };
    let as4 = |asns: &[u32]| {
        let mut v = vec![0xc0, 17, 2 + 4 * asns.len() as u8, 2, asns.len() as u8];
        asns.iter()
            .for_each(|a| v.extend_from_slice(&a.to_be_bytes()));
        v
    };
    let get = |attrs: Vec<u8>| {
        decoded(&update(&[], &[&base[..], &attrs].concat(), NLRI), &AS2).attributes
    };
    let seq = |v: &[u32]| {
        Some(AsPath {
            segments: vec![AsPathSegment::Sequence(v.to_vec())],
        })
    };
    // Leading ASes of AS_PATH prepended to AS4_PATH.
    let a = get([
        path(&[100, 23456, 23456]),
        as4(&[4_200_000_001, 4_200_000_002]),
    ]
    .concat());
    assert_eq!(a.as_path, seq(&[100, 4_200_000_001, 4_200_000_002]));
    // AS4_PATH longer than AS_PATH: ignored.
    let a = get([path(&[23456]), as4(&[1, 4_200_000_001])].concat());
    assert_eq!(a.as_path, seq(&[23456]));
    // AGGREGATOR that is not AS_TRANS: both AS4 attributes ignored.
    let agg = [0xc0, 7, 6, 0, 100, 10, 0, 0, 9];
    let agg4 = [0xc0, 18, 8, 0xfa, 0x56, 0xea, 0, 10, 0, 0, 9];
    let a = get([
        path(&[23456]),
        as4(&[4_200_000_001]),
        agg.to_vec(),
        agg4.to_vec(),
    ]
    .concat());
    assert_eq!(a.as_path, seq(&[23456]));
    assert_eq!(
        a.aggregator,
        Some(Aggregator {
            asn: 100,
            address: Ipv4Addr::new(10, 0, 0, 9)
        })
    );
    // AS_TRANS AGGREGATOR: AS4_AGGREGATOR gives the real AS.
    let agg_trans = [0xc0, 7, 6, 0x5b, 0xa0, 10, 0, 0, 9];
    let a = get([
        path(&[23456]),
        as4(&[4_200_000_001]),
        agg_trans.to_vec(),
        agg4.to_vec(),
    ]
    .concat());
    assert_eq!(a.as_path, seq(&[4_200_000_001]));
    assert_eq!(a.aggregator.map(|g| g.asn), Some(4_200_000_000));
}

// ---- ROUTE-REFRESH (RFC 7313 §5) ---------------------------------------------------------------

#[test]
fn route_refresh_of_wrong_length_carries_the_whole_message() {
    let m = msg(5, &[0, 1, 0, 1, 0]);
    let e = err(&m, &IBGP);
    assert_eq!(e.notification(), Notification::new(7, 1, m.clone()));
}
