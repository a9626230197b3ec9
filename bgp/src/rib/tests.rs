//! Decision steps, import checks, export rules and packing.

use super::*;
use crate::wire::{AsPath, AsPathSegment, AttributeError, ErrorAction, Origin};

const LOCAL_AS: u32 = 65000;
const ROUTER_ID: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MY_ADDR: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 1);

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn peer(addr: &str, asn: u32, id: [u8; 4]) -> PeerInfo {
    PeerInfo {
        address: ip(addr),
        router_id: Ipv4Addr::from(id),
        remote_as: asn,
        peer_type: if asn == LOCAL_AS {
            PeerType::Internal
        } else {
            PeerType::External
        },
    }
}

fn attrs(path: &[u32], next_hop: &str) -> PathAttributes {
    PathAttributes {
        origin: Some(Origin::Igp),
        as_path: Some(AsPath {
            segments: vec![AsPathSegment::Sequence(path.to_vec())],
        }),
        next_hop: Some(next_hop.parse().unwrap()),
        ..Default::default()
    }
}

fn announce(prefixes: &[&str], a: PathAttributes) -> Update {
    Update {
        attributes: a,
        nlri: prefixes.iter().map(|p| net(p)).collect(),
        ..Default::default()
    }
}

fn rib() -> Rib {
    Rib::new(LOCAL_AS, ROUTER_ID)
}

/// Two peers offer the same prefix with `a` and `b`; returns (winner, reason).
fn duel(pa: PeerInfo, a: PathAttributes, pb: PeerInfo, b: PathAttributes) -> (IpAddr, BestReason) {
    let mut r = rib();
    r.peer_up(pa, MY_ADDR, false);
    r.peer_up(pb, MY_ADDR, false);
    r.apply_update(pa.address, &announce(&["10.9.0.0/24"], a));
    r.apply_update(pb.address, &announce(&["10.9.0.0/24"], b));
    let (path, reason) = r.best(&net("10.9.0.0/24")).unwrap();
    let RouteSource::Peer(addr) = path.source else {
        panic!("local won")
    };
    (addr, reason)
}

// ---- Decision process, one test per step ----

#[test]
fn single_path_is_only_path() {
    let mut r = rib();
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    let ev = r.apply_update(
        p.address,
        &announce(&["10.1.0.0/26"], attrs(&[], "172.18.0.2")),
    );
    assert_eq!(
        ev,
        vec![RouteEvent::Best {
            prefix: net("10.1.0.0/26"),
            next_hop: "172.18.0.2".parse().unwrap(),
            source: RouteSource::Peer(p.address)
        }]
    );
    assert_eq!(r.best(&net("10.1.0.0/26")).unwrap().1, BestReason::OnlyPath);
}

#[test]
fn local_route_beats_learned() {
    let mut r = rib();
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(&["10.1.0.0/26"], attrs(&[], "172.18.0.2")),
    );
    let ev = r.originate(net("10.1.0.0/26"), None);
    assert_eq!(
        ev,
        vec![RouteEvent::Best {
            prefix: net("10.1.0.0/26"),
            next_hop: ROUTER_ID,
            source: RouteSource::Local
        }]
    );
    assert_eq!(
        r.best(&net("10.1.0.0/26")).unwrap().1,
        BestReason::LocallyOriginated
    );
    // Withdrawing the local route falls back to the learned one.
    let ev = r.withdraw_local(net("10.1.0.0/26"));
    assert!(matches!(
        ev[0],
        RouteEvent::Best {
            source: RouteSource::Peer(_),
            ..
        }
    ));
}

#[test]
fn highest_local_pref_wins() {
    let a = PathAttributes {
        local_pref: Some(200),
        ..attrs(&[1, 2, 3], "1.1.1.1")
    };
    let b = PathAttributes {
        local_pref: Some(100),
        ..attrs(&[1], "2.2.2.2")
    };
    let pa = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 3]);
    let pb = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    assert_eq!(duel(pa, a, pb, b), (pa.address, BestReason::LocalPref));
}

#[test]
fn local_pref_from_ebgp_is_ignored() {
    // An eBGP peer cannot raise its own preference (§9.1.1): both count as 100.
    let a = PathAttributes {
        local_pref: Some(500),
        ..attrs(&[65001, 7], "1.1.1.1")
    };
    let b = attrs(&[65002], "2.2.2.2");
    let pa = peer("172.18.0.3", 65001, [10, 0, 0, 3]);
    let pb = peer("172.18.0.4", 65002, [10, 0, 0, 4]);
    assert_eq!(duel(pa, a, pb, b), (pb.address, BestReason::AsPathLength));
}

#[test]
fn shortest_as_path_wins_and_a_set_counts_one() {
    let a = PathAttributes {
        as_path: Some(AsPath {
            segments: vec![
                AsPathSegment::Sequence(vec![65001]),
                AsPathSegment::Set(vec![1, 2, 3, 4]),
            ],
        }),
        ..attrs(&[], "1.1.1.1")
    };
    let b = attrs(&[65002, 5, 6], "2.2.2.2");
    let pa = peer("172.18.0.3", 65001, [10, 0, 0, 3]);
    let pb = peer("172.18.0.2", 65002, [10, 0, 0, 2]);
    assert_eq!(duel(pa, a, pb, b), (pa.address, BestReason::AsPathLength));
}

#[test]
fn lowest_origin_wins() {
    let a = PathAttributes {
        origin: Some(Origin::Egp),
        ..attrs(&[65001], "1.1.1.1")
    };
    let b = PathAttributes {
        origin: Some(Origin::Incomplete),
        ..attrs(&[65002], "2.2.2.2")
    };
    let pa = peer("172.18.0.3", 65001, [10, 0, 0, 3]);
    let pb = peer("172.18.0.2", 65002, [10, 0, 0, 2]);
    assert_eq!(duel(pa, a, pb, b), (pa.address, BestReason::Origin));
}

#[test]
fn lowest_med_wins_within_the_same_neighbour_as() {
    let a = PathAttributes {
        med: Some(10),
        ..attrs(&[65001], "1.1.1.1")
    };
    let b = PathAttributes {
        med: Some(5),
        ..attrs(&[65001], "2.2.2.2")
    };
    let pa = peer("172.18.0.2", 65001, [10, 0, 0, 2]);
    let pb = peer("172.18.0.3", 65001, [10, 0, 0, 3]);
    assert_eq!(duel(pa, a, pb, b), (pb.address, BestReason::Med));
}

#[test]
fn missing_med_counts_as_zero() {
    let a = PathAttributes {
        med: Some(1),
        ..attrs(&[65001], "1.1.1.1")
    };
    let b = attrs(&[65001], "2.2.2.2");
    let pa = peer("172.18.0.2", 65001, [10, 0, 0, 2]);
    let pb = peer("172.18.0.3", 65001, [10, 0, 0, 3]);
    assert_eq!(duel(pa, a, pb, b), (pb.address, BestReason::Med));
}

#[test]
fn med_is_not_compared_across_neighbour_ases() {
    // Different neighbour ASes: MED is skipped, the lower router ID decides.
    let a = PathAttributes {
        med: Some(0),
        ..attrs(&[65001], "1.1.1.1")
    };
    let b = PathAttributes {
        med: Some(50),
        ..attrs(&[65002], "2.2.2.2")
    };
    let pa = peer("172.18.0.3", 65001, [10, 0, 0, 9]);
    let pb = peer("172.18.0.2", 65002, [10, 0, 0, 2]);
    assert_eq!(duel(pa, a, pb, b), (pb.address, BestReason::RouterId));
}

#[test]
fn ebgp_beats_ibgp() {
    let a = attrs(&[65001], "1.1.1.1");
    let b = PathAttributes {
        local_pref: Some(100),
        ..attrs(&[65002], "2.2.2.2")
    };
    let pa = peer("172.18.0.9", 65001, [10, 0, 0, 9]);
    let pb = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    assert_eq!(
        duel(pa, a, pb, b),
        (pa.address, BestReason::ExternalOverInternal)
    );
}

#[test]
fn lowest_router_id_wins() {
    let pa = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 7]);
    let pb = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 3]);
    let r = duel(pa, attrs(&[], "1.1.1.1"), pb, attrs(&[], "2.2.2.2"));
    assert_eq!(r, (pb.address, BestReason::RouterId));
}

#[test]
fn originator_id_replaces_router_id() {
    let pa = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 7]);
    let pb = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 3]);
    let a = PathAttributes {
        originator_id: Some([10, 0, 0, 2].into()),
        ..attrs(&[], "1.1.1.1")
    };
    assert_eq!(
        duel(pa, a, pb, attrs(&[], "2.2.2.2")),
        (pa.address, BestReason::RouterId)
    );
}

#[test]
fn shortest_cluster_list_wins() {
    let pa = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 7]);
    let pb = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 8]);
    let id = Some(Ipv4Addr::new(10, 0, 0, 50));
    let a = PathAttributes {
        originator_id: id,
        cluster_list: vec![[1, 1, 1, 1].into(), [2, 2, 2, 2].into()],
        ..attrs(&[], "1.1.1.1")
    };
    let b = PathAttributes {
        originator_id: id,
        cluster_list: vec![[1, 1, 1, 1].into()],
        ..attrs(&[], "2.2.2.2")
    };
    assert_eq!(
        duel(pa, a, pb, b),
        (pb.address, BestReason::ClusterListLength)
    );
}

#[test]
fn lowest_peer_address_is_the_last_tie_break() {
    let pa = peer("172.18.0.9", 65001, [10, 0, 0, 7]);
    let pb = peer("172.18.0.3", 65001, [10, 0, 0, 7]);
    let r = duel(
        pa,
        attrs(&[65001], "1.1.1.1"),
        pb,
        attrs(&[65001], "2.2.2.2"),
    );
    assert_eq!(r, (pb.address, BestReason::PeerAddress));
}

// ---- Import ----

#[test]
fn ebgp_route_with_our_as_in_path_is_rejected() {
    let mut r = rib();
    let p = peer("172.18.0.9", 65001, [10, 0, 0, 9]);
    r.peer_up(p, MY_ADDR, false);
    let ev = r.apply_update(
        p.address,
        &announce(&["10.5.0.0/24"], attrs(&[65001, LOCAL_AS], "1.1.1.1")),
    );
    assert!(ev.is_empty());
    assert!(r.best(&net("10.5.0.0/24")).is_none());
    let c = r.counts(p.address);
    assert_eq!((c.received, c.accepted), (1, 0));
}

#[test]
fn treat_as_withdraw_removes_the_prefixes() {
    let mut r = rib();
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(&["10.1.0.0/26"], attrs(&[], "172.18.0.2")),
    );
    let mut bad = announce(&["10.1.0.0/26"], attrs(&[], "172.18.0.2"));
    bad.attribute_errors.push(AttributeError {
        type_code: 1,
        action: ErrorAction::TreatAsWithdraw,
        offset: 23,
        reason: "bad origin".into(),
    });
    let ev = r.apply_update(p.address, &bad);
    assert_eq!(
        ev,
        vec![RouteEvent::Withdrawn {
            prefix: net("10.1.0.0/26")
        }]
    );
}

#[test]
fn explicit_withdraw_and_peer_down_withdraw_everything() {
    let mut r = rib();
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(
            &["10.1.0.0/26", "10.1.0.64/26", "10.1.0.128/26"],
            attrs(&[], "172.18.0.2"),
        ),
    );
    let w = Update {
        withdrawn: vec![net("10.1.0.0/26")],
        ..Default::default()
    };
    assert_eq!(
        r.apply_update(p.address, &w),
        vec![RouteEvent::Withdrawn {
            prefix: net("10.1.0.0/26")
        }]
    );
    let mut ev = r.peer_down(p.address);
    ev.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        ev,
        vec![
            RouteEvent::Withdrawn {
                prefix: net("10.1.0.128/26")
            },
            RouteEvent::Withdrawn {
                prefix: net("10.1.0.64/26")
            },
        ]
    );
    assert_eq!(r.prefix_count(), 0);
}

#[test]
fn attribute_sets_are_shared_between_prefixes_and_peers() {
    let mut r = rib();
    let p1 = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    let p2 = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 3]);
    r.peer_up(p1, MY_ADDR, false);
    r.peer_up(p2, MY_ADDR, false);
    let a = attrs(&[], "172.18.0.2");
    let prefixes: Vec<String> = (0..200)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let refs: Vec<&str> = prefixes.iter().map(|s| s.as_str()).collect();
    r.apply_update(p1.address, &announce(&refs, a.clone()));
    r.apply_update(p2.address, &announce(&refs, a));
    let first = r.best(&net("10.0.0.0/24")).unwrap().0.attrs.clone();
    let last = r.best(&net("10.0.199.0/24")).unwrap().0.attrs.clone();
    assert!(Arc::ptr_eq(&first, &last));
    assert_eq!(r.attribute_sets(), 1);
}

// ---- Export ----

fn batch_for(r: &mut Rib, p: &PeerInfo) -> OutBatch {
    r.take_batch(p.address, usize::MAX)
}

#[test]
fn ibgp_learned_route_is_not_sent_to_ibgp_peers_but_to_ebgp() {
    let mut r = rib();
    let ibgp1 = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    let ibgp2 = peer("172.18.0.3", LOCAL_AS, [10, 0, 0, 3]);
    let ebgp = peer("172.18.0.9", 65009, [10, 0, 0, 9]);
    for p in [ibgp1, ibgp2, ebgp] {
        r.peer_up(p, MY_ADDR, false);
        batch_for(&mut r, &p); // initial (empty) dump + End-of-RIB
    }
    r.apply_update(
        ibgp1.address,
        &announce(
            &["10.1.0.0/26"],
            PathAttributes {
                local_pref: Some(100),
                ..attrs(&[], "172.18.0.2")
            },
        ),
    );
    assert!(
        batch_for(&mut r, &ibgp1).is_empty(),
        "never back to the source"
    );
    assert!(batch_for(&mut r, &ibgp2).is_empty(), "split horizon");
    let b = batch_for(&mut r, &ebgp);
    assert_eq!(b.groups.len(), 1);
    let (a, prefixes) = &b.groups[0];
    assert_eq!(prefixes, &vec![net("10.1.0.0/26")]);
    assert_eq!(
        a.as_path.as_ref().unwrap().segments,
        vec![AsPathSegment::Sequence(vec![LOCAL_AS])]
    );
    assert_eq!(a.next_hop, Some(MY_ADDR));
    assert_eq!(a.local_pref, None);
}

#[test]
fn ebgp_learned_route_goes_to_ibgp_with_next_hop_kept_and_local_pref_set() {
    let mut r = rib();
    let ibgp = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    let ebgp = peer("172.18.0.9", 65009, [10, 0, 0, 9]);
    r.peer_up(ibgp, MY_ADDR, false);
    r.peer_up(ebgp, MY_ADDR, false);
    let learned = PathAttributes {
        med: Some(7),
        ..attrs(&[65009], "172.18.0.9")
    };
    r.apply_update(ebgp.address, &announce(&["10.7.0.0/24"], learned));
    let b = batch_for(&mut r, &ibgp);
    let (a, _) = &b.groups[0];
    assert_eq!(a.next_hop, Some("172.18.0.9".parse().unwrap()));
    assert_eq!(a.local_pref, Some(DEFAULT_LOCAL_PREF));
    assert_eq!(a.med, Some(7));
    assert_eq!(
        a.as_path.as_ref().unwrap().segments,
        vec![AsPathSegment::Sequence(vec![65009])]
    );
}

#[test]
fn local_route_uses_next_hop_self_and_ebgp_prepends() {
    let mut r = rib();
    let ibgp = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    let ebgp = peer("172.18.0.9", 65009, [10, 0, 0, 9]);
    r.peer_up(ibgp, MY_ADDR, false);
    r.peer_up(ebgp, MY_ADDR, false);
    r.originate(net("192.168.1.0/26"), None);
    let b = batch_for(&mut r, &ibgp);
    let a = &b.groups[0].0;
    assert_eq!(a.next_hop, Some(MY_ADDR));
    assert_eq!(a.local_pref, Some(100));
    assert_eq!(
        a.as_path.as_ref().unwrap().segments,
        Vec::<AsPathSegment>::new()
    );
    assert!(b.end_of_rib);
    let b = batch_for(&mut r, &ebgp);
    let a = &b.groups[0].0;
    assert_eq!(
        a.as_path.as_ref().unwrap().segments,
        vec![AsPathSegment::Sequence(vec![LOCAL_AS])]
    );
    assert_eq!(a.local_pref, None);
    // An explicit next hop goes to iBGP unchanged.
    r.originate(net("192.168.2.0/26"), Some("172.18.0.50".parse().unwrap()));
    let b = batch_for(&mut r, &ibgp);
    assert_eq!(b.groups[0].0.next_hop, Some("172.18.0.50".parse().unwrap()));
    assert!(!b.end_of_rib, "End-of-RIB only once");
}

#[test]
fn announcements_are_packed_by_attribute_set_and_withdrawals_follow() {
    let mut r = rib();
    let ibgp = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(ibgp, MY_ADDR, false);
    batch_for(&mut r, &ibgp);
    for i in 0..10 {
        r.originate(net(&format!("192.168.{i}.0/26")), None);
    }
    for i in 0..5 {
        r.originate(
            net(&format!("192.168.{i}.64/26")),
            Some("172.18.0.77".parse().unwrap()),
        );
    }
    let b = batch_for(&mut r, &ibgp);
    let mut sizes: Vec<usize> = b.groups.iter().map(|g| g.1.len()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![5, 10]);
    // Nothing changed: nothing to send; a change and back is also nothing.
    r.originate(net("192.168.0.0/26"), None);
    assert!(batch_for(&mut r, &ibgp).is_empty());
    r.withdraw_local(net("192.168.1.0/26"));
    r.withdraw_local(net("192.168.2.0/26"));
    let b = batch_for(&mut r, &ibgp);
    assert_eq!(
        b.withdrawn,
        vec![net("192.168.1.0/26"), net("192.168.2.0/26")]
    );
    assert_eq!(r.counts(ibgp.address).advertised, 13);
}

#[test]
fn initial_dump_contains_the_table() {
    let mut r = rib();
    r.originate(net("192.168.0.0/26"), None);
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    assert_eq!(r.peers_with_work(), vec![p.address]);
    let b = batch_for(&mut r, &p);
    assert_eq!(b.groups[0].1, vec![net("192.168.0.0/26")]);
    assert!(b.end_of_rib);
    assert!(r.peers_with_work().is_empty());
}

#[test]
fn routes_view_marks_best_with_reason() {
    let mut r = rib();
    let p = peer("172.18.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(&["192.168.0.0/26"], attrs(&[65001, 65002], "172.18.0.2")),
    );
    r.originate(net("192.168.0.0/26"), None);
    let v = r.routes();
    assert_eq!(v.len(), 2);
    assert!(v[0].best && v[0].source == RouteSource::Local);
    assert_eq!(v[0].reason.as_deref(), Some("locally originated"));
    assert_eq!(v[1].as_path, "65001 65002");
    assert!(!v[1].best && v[1].reason.is_none());
}

#[test]
fn adj_rib_in_counts_follow_rejections_replacements_and_withdrawals() {
    let mut r = rib();
    let p = peer("172.18.0.9", 65001, [10, 0, 0, 9]);
    r.peer_up(p, MY_ADDR, false);
    let good = attrs(&[65001], "172.18.0.9");
    let looped = attrs(&[65001, LOCAL_AS], "172.18.0.9");
    r.apply_update(
        p.address,
        &announce(&["10.1.0.0/24", "10.2.0.0/24"], good.clone()),
    );
    r.apply_update(p.address, &announce(&["10.3.0.0/24"], looped.clone()));
    let c = r.counts(p.address);
    assert_eq!((c.received, c.accepted), (3, 2));
    // A replacement is not a new route; an accepted route that now loops becomes rejected.
    r.apply_update(p.address, &announce(&["10.1.0.0/24"], good.clone()));
    let ev = r.apply_update(p.address, &announce(&["10.2.0.0/24"], looped));
    assert_eq!(
        ev,
        vec![RouteEvent::Withdrawn {
            prefix: net("10.2.0.0/24")
        }]
    );
    let c = r.counts(p.address);
    assert_eq!((c.received, c.accepted), (3, 1));
    // A rejected route that becomes acceptable enters the Loc-RIB.
    r.apply_update(p.address, &announce(&["10.3.0.0/24"], good));
    let c = r.counts(p.address);
    assert_eq!((c.received, c.accepted), (3, 2));
    let received = r.received(p.address);
    let flags: Vec<(Ipv4Net, bool)> = received.iter().map(|(n, _, ok)| (*n, *ok)).collect();
    assert_eq!(
        flags,
        vec![
            (net("10.1.0.0/24"), true),
            (net("10.2.0.0/24"), false),
            (net("10.3.0.0/24"), true)
        ]
    );
    let w = Update {
        withdrawn: vec![net("10.2.0.0/24"), net("10.3.0.0/24")],
        ..Default::default()
    };
    r.apply_update(p.address, &w);
    let c = r.counts(p.address);
    assert_eq!((c.received, c.accepted), (1, 1));
    assert_eq!(
        r.peer_down(p.address),
        vec![RouteEvent::Withdrawn {
            prefix: net("10.1.0.0/24")
        }]
    );
}

#[test]
fn adj_rib_out_batches_are_bounded_and_end_of_rib_comes_last() {
    let mut r = rib();
    let p = peer("10.0.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    for i in 0..10u32 {
        let prefix = Ipv4Net::new(std::net::Ipv4Addr::from(0x0b00_0000 + (i << 8)), 24).unwrap();
        r.originate(prefix, None);
    }
    let first = r.take_batch(p.address, 4);
    let count = |b: &OutBatch| b.groups.iter().map(|g| g.1.len()).sum::<usize>();
    assert_eq!(count(&first), 4);
    assert!(!first.end_of_rib, "End-of-RIB only after the whole table");
    assert!(r.has_work(p.address));
    let second = r.take_batch(p.address, 4);
    assert_eq!(count(&second), 4);
    let third = r.take_batch(p.address, 4);
    assert_eq!(count(&third), 2);
    assert!(third.end_of_rib);
    assert!(!r.has_work(p.address));
}

#[test]
fn graceful_restart_keeps_stale_paths_until_end_of_rib() {
    let mut r = rib();
    let p = peer("10.0.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(
            &["10.1.0.0/24", "10.2.0.0/24", "10.3.0.0/24"],
            attrs(&[], "10.0.0.2"),
        ),
    );
    // The session ends without a NOTIFICATION: nothing changes for subscribers.
    assert_eq!(r.peer_down_graceful(p.address), 3);
    assert_eq!(r.stale_count(p.address), 3);
    assert_eq!(r.best_routes().len(), 3, "still used for forwarding");
    assert!(r.routes().iter().all(|v| v.stale));
    // Back with its forwarding state: the stale paths stay until End-of-RIB.
    assert!(r.peer_up(p, MY_ADDR, true).is_empty());
    assert_eq!(r.stale_count(p.address), 3);
    // It sends two of them again (one changed), and withdraws nothing.
    let ev = r.apply_update(
        p.address,
        &announce(&["10.1.0.0/24"], attrs(&[], "10.0.0.2")),
    );
    assert!(ev.is_empty(), "the same path again changes nothing: {ev:?}");
    let ev = r.apply_update(
        p.address,
        &announce(&["10.2.0.0/24"], attrs(&[], "10.0.0.9")),
    );
    assert_eq!(ev.len(), 1, "a new next hop is a change");
    assert_eq!(r.stale_count(p.address), 1);
    // End-of-RIB: what it did not send again goes.
    let ev = r.sweep_stale(p.address);
    assert_eq!(
        ev,
        vec![RouteEvent::Withdrawn {
            prefix: net("10.3.0.0/24")
        }]
    );
    assert_eq!(r.stale_count(p.address), 0);
    assert_eq!(r.counts(p.address).accepted, 2);
    assert!(r.routes().iter().all(|v| !v.stale));
}

#[test]
fn a_peer_back_without_forwarding_state_flushes_its_stale_paths() {
    let mut r = rib();
    let p = peer("10.0.0.2", LOCAL_AS, [10, 0, 0, 2]);
    r.peer_up(p, MY_ADDR, false);
    r.apply_update(
        p.address,
        &announce(&["10.1.0.0/24"], attrs(&[], "10.0.0.2")),
    );
    r.peer_down_graceful(p.address);
    let ev = r.peer_up(p, MY_ADDR, false);
    assert_eq!(
        ev,
        vec![RouteEvent::Withdrawn {
            prefix: net("10.1.0.0/24")
        }]
    );
    assert_eq!(r.stale_count(p.address), 0);
}

#[test]
fn a_route_refresh_keeps_a_withdrawal_that_was_waiting() {
    let mut r = rib();
    let from = peer("172.18.0.2", 65001, [10, 0, 0, 2]);
    let to = peer("172.18.0.3", 65002, [10, 0, 0, 3]);
    r.peer_up(from, MY_ADDR, false);
    r.peer_up(to, MY_ADDR, false);
    r.apply_update(
        from.address,
        &announce(
            &["10.7.0.0/24", "10.8.0.0/24"],
            attrs(&[65001], "172.18.0.2"),
        ),
    );
    let first = r.take_batch(to.address, 100);
    assert_eq!(first.groups.iter().map(|g| g.1.len()).sum::<usize>(), 2);
    // 10.7 is withdrawn, but the peer is slow: the withdrawal waits. A ROUTE-REFRESH comes.
    let mut gone = announce(&[], attrs(&[65001], "172.18.0.2"));
    gone.withdrawn = vec![net("10.7.0.0/24")];
    r.apply_update(from.address, &gone);
    r.refresh(to.address);
    let b = r.take_batch(to.address, 100);
    assert_eq!(
        b.withdrawn,
        vec![net("10.7.0.0/24")],
        "the withdrawal still goes"
    );
    let resent: Vec<Ipv4Net> = b.groups.iter().flat_map(|g| g.1.clone()).collect();
    assert_eq!(
        resent,
        vec![net("10.8.0.0/24")],
        "and the rest is sent again"
    );
    assert!(r.take_batch(to.address, 100).groups.is_empty());
}
