//! Property tests: decode(encode(m)) == m for generated messages of every type under every
//! session context, arbitrary bytes never panic the decoder, and encode_updates always packs
//! within the size limit and decodes back to the same prefixes.

use bgp::wire::*;
use bytes::{Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn ctx() -> impl Strategy<Value = SessionContext> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(four, ext, ibgp)| SessionContext {
        four_octet_as: four,
        extended_message: ext,
        peer_type: if ibgp {
            PeerType::Internal
        } else {
            PeerType::External
        },
    })
}

fn v4net() -> impl Strategy<Value = Ipv4Net> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, l)| Ipv4Net::new(Ipv4Addr::from(a), l).unwrap().trunc())
}

fn v6net() -> impl Strategy<Value = IpNet> {
    (any::<u128>(), 0u8..=128)
        .prop_map(|(a, l)| IpNet::V6(Ipv6Net::new(Ipv6Addr::from(a), l).unwrap().trunc()))
}

fn host() -> impl Strategy<Value = Ipv4Addr> {
    (0x0100_0000u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn asn() -> impl Strategy<Value = u32> {
    prop_oneof![1u32..=65535, 1u32..=u32::MAX]
}

fn as_path() -> impl Strategy<Value = AsPath> {
    let seg = prop_oneof![
        prop::collection::vec(asn(), 1..8).prop_map(AsPathSegment::Set),
        prop::collection::vec(asn(), 1..300).prop_map(AsPathSegment::Sequence),
    ];
    prop::collection::vec(seg, 0..4).prop_map(|segs| {
        // The decoder joins adjacent sequences (a sender splits them at 255), so generate them
        // joined.
        let mut out: Vec<AsPathSegment> = Vec::new();
        for s in segs {
            match (out.last_mut(), s) {
                (Some(AsPathSegment::Sequence(p)), AsPathSegment::Sequence(v)) => p.extend(v),
                (_, s) => out.push(s),
            }
        }
        AsPath { segments: out }
    })
}

fn mp_reach() -> impl Strategy<Value = MpReach> {
    prop_oneof![
        (host(), prop::collection::vec(v4net(), 0..6)).prop_map(|(nh, nlri)| MpReach {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            next_hops: vec![IpAddr::V4(nh)],
            nlri: nlri.into_iter().map(IpNet::V4).collect(),
        }),
        (
            prop::collection::vec(any::<u128>(), 1..=2),
            prop::collection::vec(v6net(), 0..6)
        )
            .prop_map(|(nh, nlri)| MpReach {
                afi: Afi::IPV6,
                safi: Safi::UNICAST,
                next_hops: nh
                    .into_iter()
                    .map(|a| IpAddr::V6(Ipv6Addr::from(a)))
                    .collect(),
                nlri,
            }),
    ]
}

fn mp_unreach() -> impl Strategy<Value = MpUnreach> {
    prop_oneof![
        prop::collection::vec(v4net(), 0..6).prop_map(|w| MpUnreach {
            afi: Afi::IPV4,
            safi: Safi::UNICAST,
            withdrawn: w.into_iter().map(IpNet::V4).collect()
        }),
        prop::collection::vec(v6net(), 0..6).prop_map(|w| MpUnreach {
            afi: Afi::IPV6,
            safi: Safi::UNICAST,
            withdrawn: w
        }),
    ]
}

fn unknown_attr() -> impl Strategy<Value = RawAttribute> {
    (19u8..=255, prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(t, v)| RawAttribute {
        flags: attr_flags::OPTIONAL | attr_flags::TRANSITIVE | attr_flags::PARTIAL,
        type_code: t,
        value: v.into(),
    })
}

prop_compose! {
    fn attrs()(
        origin in prop::option::of(prop_oneof![Just(Origin::Igp), Just(Origin::Egp), Just(Origin::Incomplete)]),
        as_path in prop::option::of(as_path()),
        next_hop in prop::option::of(host()),
        med in prop::option::of(any::<u32>()),
        local_pref in prop::option::of(any::<u32>()),
        atomic_aggregate in any::<bool>(),
        aggregator in prop::option::of((asn(), any::<u32>()).prop_map(|(asn, a)| Aggregator { asn, address: a.into() })),
        communities in prop::collection::vec(any::<u32>(), 0..5),
        originator_id in prop::option::of(any::<u32>().prop_map(Ipv4Addr::from)),
        cluster_list in prop::collection::vec(any::<u32>().prop_map(Ipv4Addr::from), 0..4),
        mp_reach in prop::option::of(mp_reach()),
        mp_unreach in prop::option::of(mp_unreach()),
        unknown in prop::collection::vec(unknown_attr(), 0..3),
    ) -> PathAttributes {
        let mut unknown = unknown;
        unknown.sort_by_key(|u| u.type_code);
        unknown.dedup_by_key(|u| u.type_code);
        PathAttributes {
            origin, as_path, next_hop, med, local_pref, atomic_aggregate, aggregator, communities,
            originator_id, cluster_list, mp_reach, mp_unreach, unknown,
        }
    }
}

fn update() -> impl Strategy<Value = Update> {
    (
        prop::collection::vec(v4net(), 0..40),
        attrs(),
        prop::collection::vec(v4net(), 0..40),
    )
        .prop_map(|(withdrawn, mut attributes, nlri)| {
            // A clean UPDATE with reachability has its mandatory attributes (RFC 4271 §5, LOCAL_PREF
            // added for iBGP by `expected`); without reachability they are optional.
            if !nlri.is_empty() || attributes.mp_reach.is_some() {
                attributes.origin.get_or_insert(Origin::Igp);
                attributes.as_path.get_or_insert_with(AsPath::default);
                attributes.local_pref.get_or_insert(100);
            }
            if !nlri.is_empty() {
                attributes
                    .next_hop
                    .get_or_insert(Ipv4Addr::new(10, 0, 0, 1));
            }
            Update {
                withdrawn,
                attributes,
                nlri,
                attribute_errors: vec![],
            }
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    let gr_family =
        (any::<u16>(), any::<u8>(), any::<bool>()).prop_map(|(a, s, f)| GracefulRestartFamily {
            afi: Afi(a),
            safi: Safi(s),
            forwarding_preserved: f,
        });
    prop_oneof![
        (any::<u16>(), any::<u8>()).prop_map(|(a, s)| Capability::Multiprotocol {
            afi: Afi(a),
            safi: Safi(s)
        }),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        (
            any::<bool>(),
            any::<bool>(),
            0u16..4096,
            prop::collection::vec(gr_family, 0..4)
        )
            .prop_map(
                |(r, n, t, families)| Capability::GracefulRestart(GracefulRestart {
                    restart_state: r,
                    notification: n,
                    restart_time: t,
                    families
                })
            ),
        (1u32..).prop_map(Capability::FourOctetAs),
        (
            any::<u8>().prop_filter("known", |c| ![1, 2, 6, 64, 65].contains(c)),
            prop::collection::vec(any::<u8>(), 0..20)
        )
            .prop_map(|(code, v)| Capability::Unknown {
                code,
                value: v.into()
            }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            1u16..,
            prop_oneof![Just(0u16), 3u16..],
            1u32..,
            prop::collection::vec(capability(), 0..40)
        )
            .prop_map(|(my_as, hold, id, caps)| Message::Open(Open {
                version: 4,
                my_as,
                hold_time: hold,
                bgp_id: id.into(),
                capabilities: caps,
                other_params: vec![]
            })),
        update().prop_map(Message::Update),
        (
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..100)
        )
            .prop_map(|(c, s, d)| Message::Notification(Notification::new(c, s, d))),
        Just(Message::Keepalive),
        (any::<u16>(), any::<u8>(), any::<u8>()).prop_map(|(a, t, s)| Message::RouteRefresh(
            RouteRefresh {
                afi: Afi(a),
                subtype: t,
                safi: Safi(s)
            }
        )),
    ]
}

/// What decoding the encoded `m` must give under `c`.
fn expected(m: &Message, c: &SessionContext) -> Message {
    let Message::Update(u) = m else {
        return m.clone();
    };
    let mut u = u.clone();
    let a = &mut u.attributes;
    if c.peer_type == PeerType::External {
        // RFC 4271 §5.1.5 / RFC 4456 §8: never sent to external peers.
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
    }
    // RFC 6793 §4.2.3: towards a 2-octet peer, an AGGREGATOR that is not AS_TRANS makes the
    // receiver ignore AS4_PATH, so 4-octet AS numbers of the path come back as AS_TRANS.
    if let (false, Some(agg), Some(p)) = (c.four_octet_as, a.aggregator, a.as_path.as_mut()) {
        if agg.asn <= 65535 && agg.asn != AS_TRANS as u32 {
            for s in &mut p.segments {
                let (AsPathSegment::Set(v) | AsPathSegment::Sequence(v)) = s;
                v.iter_mut()
                    .filter(|x| **x > 65535)
                    .for_each(|x| *x = AS_TRANS as u32);
            }
        }
    }
    Message::Update(u)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(m in message(), c in ctx()) {
        let mut out = BytesMut::new();
        match encode_message(&m, &c, &mut out) {
            Ok(()) => {}
            Err(EncodeError::MessageTooLong { .. }) => {
                prop_assert!(out.is_empty());
                return Ok(());
            }
            Err(e) => return Err(TestCaseError::fail(format!("encode: {e}"))),
        }
        prop_assert!(out.len() <= c.max_message_len());
        prop_assert_eq!(frame_length(&out, &c).unwrap(), Some(out.len()));
        let got = decode_message(&out, &c).map_err(|e| TestCaseError::fail(format!("decode: {e}")))?;
        prop_assert_eq!(got, expected(&m, &c));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300), c in ctx()) {
        let _ = frame_length(&bytes, &c);
        if let Err(e) = decode_message(&bytes, &c) {
            let _ = (e.notification(), e.offset());
        }
    }

    #[test]
    fn arbitrary_bodies_never_panic(t in 0u8..7, body in prop::collection::vec(any::<u8>(), 0..300), c in ctx()) {
        let mut m = MARKER.to_vec();
        m.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        m.push(t);
        m.extend_from_slice(&body);
        match decode_message(&m, &c) {
            Ok(_) => {}
            Err(e) => prop_assert!(e.offset() <= m.len()),
        }
    }

    #[test]
    fn encode_updates_fits_and_decodes_back(
        withdrawn in prop::collection::vec(v4net(), 0..1500),
        nlri in prop::collection::vec(v4net(), 0..1500),
        u in update(),
        c in ctx(),
    ) {
        let mut attrs = u.attributes;
        attrs.mp_reach = None;
        attrs.mp_unreach = None;
        attrs.next_hop = Some(Ipv4Addr::new(10, 0, 0, 1));
        attrs.origin = Some(Origin::Egp);
        attrs.as_path.get_or_insert_with(AsPath::default);
        attrs.local_pref = Some(7);
        let msgs = match encode_updates(&withdrawn, &attrs, &nlri, &c) {
            Ok(m) => m,
            Err(EncodeError::AttributesTooLong { .. }) => return Ok(()),
            Err(e) => return Err(TestCaseError::fail(format!("{e}"))),
        };
        let want = expected(&Message::Update(Update { attributes: attrs, ..Default::default() }), &c);
        let Message::Update(want) = want else { unreachable!() };
        let (mut w, mut n) = (vec![], vec![]);
        for m in &msgs {
            prop_assert!(m.len() <= c.max_message_len());
            let Ok(Message::Update(u)) = decode_message(m, &c) else {
                return Err(TestCaseError::fail("not a decodable UPDATE"));
            };
            prop_assert!(u.attribute_errors.is_empty(), "{:?}", u.attribute_errors);
            if u.nlri.is_empty() {
                prop_assert_eq!(&u.attributes, &PathAttributes::default());
            } else {
                prop_assert_eq!(&u.attributes, &want.attributes);
            }
            w.extend(u.withdrawn);
            n.extend(u.nlri);
        }
        prop_assert_eq!(w, withdrawn);
        prop_assert_eq!(n, nlri);
    }
}

#[test]
fn unknown_attribute_over_255_bytes_uses_extended_length() {
    let a = PathAttributes {
        unknown: vec![RawAttribute {
            flags: 0xe0,
            type_code: 99,
            value: Bytes::from(vec![7u8; 300]),
        }],
        ..Default::default()
    };
    let c = SessionContext::default();
    let mut out = BytesMut::new();
    encode_message(
        &Message::Update(Update {
            attributes: a.clone(),
            ..Default::default()
        }),
        &c,
        &mut out,
    )
    .unwrap();
    assert_eq!(&out[23..27], &[0xf0, 99, 1, 44]);
    let Ok(Message::Update(u)) = decode_message(&out, &c) else {
        panic!()
    };
    assert_eq!(u.attributes, a);
}
