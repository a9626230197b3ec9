//! Hand-built messages of every type: encode, decode, compare.

use bgp::wire::*;
use bytes::BytesMut;
use std::net::Ipv4Addr;

fn ctx(four: bool, peer_type: PeerType) -> SessionContext {
    SessionContext {
        four_octet_as: four,
        extended_message: false,
        peer_type,
    }
}

fn roundtrip(m: &Message, c: &SessionContext) -> Message {
    let mut out = BytesMut::new();
    encode_message(m, c, &mut out).expect("encode");
    assert_eq!(frame_length(&out, c).unwrap(), Some(out.len()));
    decode_message(&out, c).expect("decode")
}

fn attrs() -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath {
            segments: vec![AsPathSegment::Sequence(vec![64512, 4_200_000_000, 65001])],
        }),
        next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
        med: Some(100),
        local_pref: Some(200),
        communities: vec![0xfde8_0001, 0xfde8_0002],
        ..Default::default()
    }
}

#[test]
fn every_message_type_roundtrips() {
    let open = Open::new(
        4_200_000_000,
        90,
        Ipv4Addr::new(192, 0, 2, 1),
        vec![
            Capability::Multiprotocol {
                afi: Afi::IPV4,
                safi: Safi::UNICAST,
            },
            Capability::RouteRefresh,
            Capability::FourOctetAs(4_200_000_000),
            Capability::GracefulRestart(GracefulRestart {
                restart_state: true,
                notification: false,
                restart_time: 120,
                families: vec![GracefulRestartFamily {
                    afi: Afi::IPV4,
                    safi: Safi::UNICAST,
                    forwarding_preserved: true,
                }],
            }),
        ],
    );
    let upd = Update {
        withdrawn: vec!["10.9.0.0/16".parse().unwrap()],
        attributes: attrs(),
        nlri: vec![
            "192.168.1.0/26".parse().unwrap(),
            "192.168.2.0/24".parse().unwrap(),
        ],
        attribute_errors: vec![],
    };
    let msgs = [
        Message::Open(open),
        Message::Update(upd),
        Message::Notification(Notification::new(6, 2, &b"\x03bye"[..])),
        Message::Keepalive,
        Message::RouteRefresh(RouteRefresh {
            afi: Afi::IPV4,
            subtype: 0,
            safi: Safi::UNICAST,
        }),
    ];
    for four in [true, false] {
        let c = ctx(four, PeerType::Internal);
        for m in &msgs {
            assert_eq!(&roundtrip(m, &c), m, "four_octet_as={four}");
        }
    }
}

#[test]
fn encode_updates_packs_and_decodes_back() {
    let c = ctx(true, PeerType::Internal);
    let nlri: Vec<ipnet::Ipv4Net> = (0..3000u32)
        .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        .collect();
    let withdrawn: Vec<ipnet::Ipv4Net> = (0..500u32)
        .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0xc0a8_0000 + (i << 6)), 26).unwrap())
        .collect();
    let msgs = encode_updates(&withdrawn, &attrs(), &nlri, &c).unwrap();
    let (mut got_w, mut got_n) = (vec![], vec![]);
    for m in &msgs {
        assert!(m.len() <= 4096);
        let Message::Update(u) = decode_message(m, &c).unwrap() else {
            panic!("not an update")
        };
        assert!(u.attribute_errors.is_empty(), "{:?}", u.attribute_errors);
        if !u.nlri.is_empty() {
            assert_eq!(u.attributes, attrs());
        } else {
            assert_eq!(u.attributes, PathAttributes::default());
        }
        got_w.extend(u.withdrawn);
        got_n.extend(u.nlri);
    }
    assert_eq!(got_w, withdrawn);
    assert_eq!(got_n, nlri);
    // 3000 * 4 + 500 * 5 bytes of prefixes at about 4000 per message.
    assert!(msgs.len() <= 5, "{} messages", msgs.len());
}
