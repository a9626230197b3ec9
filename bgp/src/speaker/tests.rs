//! Owner helpers: UPDATE packing on the wire and address canonicalisation.

use super::owner::{canonical, encode_batch};
use crate::rib::OutBatch;
use crate::wire::{decode_message, Message, Origin, PathAttributes, SessionContext};
use ipnet::Ipv4Net;
use std::net::IpAddr;
use std::sync::Arc;

fn attrs(nh: [u8; 4]) -> Arc<PathAttributes> {
    Arc::new(PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(Default::default()),
        next_hop: Some(nh.into()),
        local_pref: Some(100),
        ..Default::default()
    })
}

fn prefixes(n: u32, third: u8) -> Vec<Ipv4Net> {
    (0..n)
        .map(|i| Ipv4Net::new([10, third, (i / 4) as u8, (i % 4 * 64) as u8].into(), 26).unwrap())
        .collect()
}

#[test]
fn batch_is_packed_per_attribute_set_with_end_of_rib_last() {
    let ctx = SessionContext {
        four_octet_as: true,
        ..Default::default()
    };
    let batch = OutBatch {
        withdrawn: prefixes(10, 9),
        groups: vec![
            (attrs([1, 1, 1, 1]), prefixes(1000, 1)),
            (attrs([2, 2, 2, 2]), prefixes(3, 2)),
        ],
        end_of_rib: true,
    };
    let msgs = encode_batch(&batch, &ctx).unwrap();
    let decoded: Vec<_> = msgs
        .iter()
        .map(|m| decode_message(m, &ctx).unwrap())
        .collect();
    let updates: Vec<_> = decoded
        .into_iter()
        .map(|m| match m {
            Message::Update(u) => u,
            other => panic!("{other:?}"),
        })
        .collect();
    // 1000 /26 prefixes of 5 bytes fit in two 4096-byte messages, not 1000.
    assert!(updates.len() <= 5, "{} messages", updates.len());
    assert_eq!(updates[0].withdrawn.len(), 10);
    let announced: usize = updates.iter().map(|u| u.nlri.len()).sum();
    assert_eq!(announced, 1003);
    assert!(updates.last().unwrap().is_end_of_rib());
    assert!(updates
        .iter()
        .all(|u| u.nlri.is_empty() || u.attributes.next_hop.is_some()));
}

#[test]
fn mapped_addresses_compare_as_ipv4() {
    let mapped: IpAddr = "::ffff:127.0.0.2".parse().unwrap();
    assert_eq!(canonical(mapped), "127.0.0.2".parse::<IpAddr>().unwrap());
    let v6: IpAddr = "fd00::1".parse().unwrap();
    assert_eq!(canonical(v6), v6);
}
