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

#[test]
fn a_busy_subscriber_sees_each_prefix_once_as_it_is_now() {
    use super::subscriber::{Subscriber, MAX_BATCH};
    use crate::rib::{Rib, RouteEvent};
    let mut rib = Rib::new(64512, "10.0.0.1".parse().unwrap());
    let many = MAX_BATCH + 100;
    for i in 0..many as u32 {
        let p = Ipv4Net::new(std::net::Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap();
        rib.originate(p, None);
    }
    let (tx, _rx) = tokio::sync::mpsc::channel(2);
    let mut s = Subscriber::new(tx, &rib);
    // The initial view comes in bounded batches; the last one says it is complete.
    let first = s.take_batch(&rib);
    assert_eq!(first.events.len(), MAX_BATCH);
    assert_eq!(first.synced, None);
    let second = s.take_batch(&rib);
    assert_eq!(second.events.len(), 100);
    assert_eq!(second.synced, Some(0));
    assert!(!s.has_work());
    // A prefix that flaps while the subscriber is busy costs one event: the current state.
    let p: Ipv4Net = "11.0.0.0/24".parse().unwrap();
    for _ in 0..10 {
        for e in rib
            .withdraw_local(p)
            .into_iter()
            .chain(rib.originate(p, None))
        {
            s.mark(e.prefix(), &rib);
        }
    }
    rib.withdraw_local(p);
    s.mark(p, &rib);
    let b = s.take_batch(&rib);
    assert_eq!(b.events, vec![RouteEvent::Withdrawn { prefix: p }]);
    // A resync sends everything again and reports its own number when done.
    let n = s.resync(&rib);
    assert_eq!(n, 1);
    let mut seen = 0;
    let mut synced = None;
    while s.has_work() {
        let b = s.take_batch(&rib);
        seen += b.events.len();
        synced = b.synced.or(synced);
    }
    assert_eq!(seen, many - 1);
    assert_eq!(synced, Some(1));
}

#[test]
fn a_subscriber_far_behind_walks_the_rib_and_misses_nothing() {
    use super::subscriber::{Subscriber, DIRTY_MAX};
    use crate::rib::{Rib, RouteEvent};
    use std::collections::BTreeMap;
    let mut rib = Rib::new(64512, "10.0.0.1".parse().unwrap());
    let (tx, _rx) = tokio::sync::mpsc::channel(2);
    let mut s = Subscriber::new(tx, &rib);
    // What the subscriber believes, from the events it got.
    let mut seen: BTreeMap<Ipv4Net, bool> = BTreeMap::new();
    let apply = |b: super::subscriber::RouteBatch, seen: &mut BTreeMap<Ipv4Net, bool>| {
        for e in b.events {
            match e {
                RouteEvent::Best { prefix, .. } => seen.insert(prefix, true),
                RouteEvent::Withdrawn { prefix } => seen.remove(&prefix),
            };
        }
    };
    apply(s.take_batch(&rib), &mut seen);
    let net = |i: u32| Ipv4Net::new(std::net::Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap();
    // A table much larger than the dirty set arrives while the subscriber reads nothing.
    let n = DIRTY_MAX as u32 * 2;
    for i in 0..n {
        for e in rib.originate(net(i), None) {
            s.mark(e.prefix(), &rib);
        }
    }
    assert!(s.dirty_len() <= DIRTY_MAX, "the dirty set stays bounded");
    // Half read; then some withdrawn behind and ahead of the walk, some added behind it.
    for _ in 0..8 {
        apply(s.take_batch(&rib), &mut seen);
    }
    for i in (0..n).step_by(997) {
        for e in rib.withdraw_local(net(i)) {
            s.mark(e.prefix(), &rib);
        }
    }
    for i in n..n + 10 {
        for e in rib.originate(net(i), None) {
            s.mark(e.prefix(), &rib);
        }
    }
    while s.has_work() {
        apply(s.take_batch(&rib), &mut seen);
    }
    let want: BTreeMap<Ipv4Net, bool> = rib.best_prefixes().map(|p| (p, true)).collect();
    assert_eq!(seen.len(), want.len());
    assert!(seen == want, "the subscriber's view is the RIB's");
}

#[test]
fn a_table_in_order_reaches_a_slow_subscriber_once_per_prefix() {
    use super::subscriber::{Subscriber, DIRTY_MAX, MAX_BATCH};
    use crate::rib::Rib;
    use std::collections::HashMap;
    let mut rib = Rib::new(64512, "10.0.0.1".parse().unwrap());
    let (tx, _rx) = tokio::sync::mpsc::channel(2);
    let mut s = Subscriber::new(tx, &rib);
    s.take_batch(&rib);
    let net = |i: u32| Ipv4Net::new(std::net::Ipv4Addr::from(0x0c00_0000 + (i << 8)), 24).unwrap();
    let mut count: HashMap<Ipv4Net, u32> = HashMap::new();
    let n = DIRTY_MAX as u32 * 3;
    // The RIB takes the table eight times faster than the subscriber: the dirty set overflows
    // and a walk takes over, from where the subscriber was.
    for i in 0..n {
        for e in rib.originate(net(i), None) {
            s.mark(e.prefix(), &rib);
        }
        if i % (8 * MAX_BATCH as u32) == 0 {
            for e in s.take_batch(&rib).events {
                *count.entry(e.prefix()).or_default() += 1;
            }
        }
    }
    while s.has_work() {
        for e in s.take_batch(&rib).events {
            *count.entry(e.prefix()).or_default() += 1;
        }
    }
    assert_eq!(count.len(), n as usize, "every prefix");
    assert!(count.values().all(|c| *c == 1), "none twice");
}
