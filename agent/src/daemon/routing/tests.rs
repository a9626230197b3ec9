//! The routing owner against a fake kernel: messages and route batches in, kernel operations
//! out. The speaker is a real one with no peers (it answers announce, withdraw, status and
//! resync); peer routes are fed as the batches a subscription would deliver.

use super::*;
use crate::kernel::{BirdTarget, DesiredRoute, OwnedTable, RouteOp, RouteTarget};
use bgp::{Speaker, SpeakerConfig};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

const ME: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(172, 18, 0, 3);

fn net(s: &str) -> Ipv4Net {
    s.parse().unwrap()
}

/// What the fake kernel holds and what it was asked to do.
#[derive(Debug, Default)]
struct FakeState {
    bird: BTreeMap<Ipv4Net, BirdTarget>,
    hosts: BTreeMap<Ipv4Addr, String>,
    links: HashSet<String>,
    ops: Vec<RouteOp>,
    /// Prefixes whose writes the kernel refuses.
    refuse: HashSet<Ipv4Net>,
}

#[derive(Debug, Clone, Default)]
struct FakeKernel(Arc<Mutex<FakeState>>);

impl FakeKernel {
    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.0.lock().unwrap()
    }

    fn take_ops(&self) -> Vec<RouteOp> {
        std::mem::take(&mut self.state().ops)
    }
}

impl Kernel for FakeKernel {
    async fn apply(&mut self, ops: &[RouteOp]) -> Result<Vec<Option<KernelError>>, KernelError> {
        let mut st = self.state();
        let mut out = Vec::new();
        for op in ops {
            st.ops.push(op.clone());
            if st.refuse.contains(&op.prefix()) {
                out.push(Some(KernelError::netlink(format!("{op:?}"), libc::EEXIST)));
                continue;
            }
            match op {
                RouteOp::Add(r) | RouteOp::Replace(r) => match &r.target {
                    RouteTarget::Via(gw) => {
                        st.bird.insert(r.prefix, BirdTarget::Via(*gw));
                    }
                    RouteTarget::Blackhole => {
                        st.bird.insert(r.prefix, BirdTarget::Blackhole);
                    }
                    RouteTarget::Device(dev) => {
                        st.hosts.insert(r.prefix.addr(), dev.clone());
                    }
                },
                RouteOp::Delete(r) => match &r.target {
                    RouteTarget::Device(_) => {
                        st.hosts.remove(&r.prefix.addr());
                    }
                    _ => {
                        st.bird.remove(&r.prefix);
                    }
                },
                RouteOp::Remove(p) => {
                    st.bird.remove(p);
                }
            }
            out.push(None);
        }
        Ok(out)
    }

    async fn owned_table(&mut self) -> Result<OwnedTable, KernelError> {
        let st = self.state();
        Ok(OwnedTable {
            bird: st.bird.iter().map(|(p, t)| (*p, *t)).collect(),
            hosts: st.hosts.iter().map(|(ip, d)| (*ip, d.clone())).collect(),
        })
    }

    async fn add_host_route(&mut self, ip: Ipv4Addr, ifname: &str) -> Result<(), KernelError> {
        let mut st = self.state();
        if !st.links.contains(ifname) {
            return Err(KernelError::NoSuchInterface(ifname.into()));
        }
        st.ops.push(RouteOp::Add(DesiredRoute::host(ip, ifname)));
        st.hosts.insert(ip, ifname.into());
        Ok(())
    }

    async fn delete_host_route(&mut self, ip: Ipv4Addr, ifname: &str) -> Result<(), KernelError> {
        let mut st = self.state();
        st.ops.push(RouteOp::Delete(DesiredRoute::host(ip, ifname)));
        st.hosts.remove(&ip);
        Ok(())
    }

    async fn interface_names(&mut self) -> Result<HashSet<String>, KernelError> {
        Ok(self.state().links.clone())
    }
}

async fn speaker() -> SpeakerHandle {
    Speaker::start(SpeakerConfig::new(64512, ME)).await.unwrap()
}

async fn owner(kernel: &FakeKernel) -> (RoutingOwner<FakeKernel>, Subscription) {
    let sp = speaker().await;
    let sub = sp.subscribe().await.unwrap();
    let o = RoutingOwner::new(
        RoutingConfig::new(ME, vec![]),
        kernel.clone(),
        sp,
        Vec::new(),
    );
    (o, sub)
}

fn best(prefix: &str, nh: Ipv4Addr) -> RouteEvent {
    RouteEvent::Best {
        prefix: net(prefix),
        next_hop: nh,
        source: RouteSource::Peer(PEER.into()),
    }
}

fn local(prefix: &str) -> RouteEvent {
    RouteEvent::Best {
        prefix: net(prefix),
        next_hop: ME,
        source: RouteSource::Local,
    }
}

fn withdrawn(prefix: &str) -> RouteEvent {
    RouteEvent::Withdrawn {
        prefix: net(prefix),
    }
}

fn batch(events: Vec<RouteEvent>) -> RouteBatch {
    RouteBatch {
        events,
        synced: None,
        backlog: false,
    }
}

/// IPAM's read of this node's blocks (no borrowed addresses), as the local task sends it.
async fn read_local(o: &mut RoutingOwner<FakeKernel>, blocks: &[&str]) {
    o.handle(RoutingMsg::Local {
        blocks: blocks.iter().map(|b| net(b)).collect(),
        borrowed: vec![],
        done: None,
    })
    .await
    .unwrap();
}

/// A block the CNI handler has just claimed.
async fn claim(o: &mut RoutingOwner<FakeKernel>, block: &str) {
    o.handle(RoutingMsg::NewBlock(net(block), oneshot::channel().0))
        .await
        .unwrap();
}

#[tokio::test]
async fn peer_routes_become_via_routes_in_one_batch_and_go_when_withdrawn() {
    let k = FakeKernel::default();
    let (mut o, _sub) = owner(&k).await;
    o.apply_batch(batch(vec![
        best("192.168.1.0/26", PEER),
        best("192.168.2.0/26", PEER),
        // A peer reflecting a route back to us: never installed.
        best("192.168.3.0/26", ME),
    ]))
    .await;
    assert_eq!(
        k.take_ops(),
        vec![
            RouteOp::Replace(DesiredRoute::via(net("192.168.1.0/26"), PEER)),
            RouteOp::Replace(DesiredRoute::via(net("192.168.2.0/26"), PEER)),
            RouteOp::Remove(net("192.168.3.0/26")),
        ]
    );
    o.apply_batch(batch(vec![withdrawn("192.168.1.0/26")]))
        .await;
    assert_eq!(k.take_ops(), vec![RouteOp::Remove(net("192.168.1.0/26"))]);
    assert_eq!(
        k.state().bird.keys().collect::<Vec<_>>(),
        vec![&net("192.168.2.0/26")]
    );
}

#[tokio::test]
async fn local_blocks_are_announced_and_blackholed_but_not_a_slash_32() {
    let k = FakeKernel::default();
    let (mut o, _sub) = owner(&k).await;
    o.handle(RoutingMsg::Local {
        blocks: vec![net("192.168.9.0/26"), net("192.168.10.7/32")],
        borrowed: vec!["192.168.20.5".parse().unwrap()],
        done: None,
    })
    .await
    .unwrap();
    // The speaker originates them (blocks and the borrowed /32).
    let routes = o.speaker.routes().await.unwrap();
    let mut announced: Vec<String> = routes.iter().map(|r| r.prefix.to_string()).collect();
    announced.sort();
    assert_eq!(
        announced,
        vec!["192.168.10.7/32", "192.168.20.5/32", "192.168.9.0/26"]
    );
    // The RIB's answer: every one is best and local.
    o.apply_batch(batch(vec![
        local("192.168.9.0/26"),
        local("192.168.10.7/32"),
        local("192.168.20.5/32"),
    ]))
    .await;
    assert_eq!(
        k.take_ops(),
        vec![
            RouteOp::Replace(DesiredRoute::blackhole(net("192.168.9.0/26"))),
            RouteOp::Remove(net("192.168.10.7/32")),
            RouteOp::Remove(net("192.168.20.5/32")),
        ]
    );
    // Released: withdrawn from BGP, and its blackhole goes.
    read_local(&mut o, &[]).await;
    assert!(o.speaker.routes().await.unwrap().is_empty());
    o.apply_batch(batch(vec![withdrawn("192.168.9.0/26")]))
        .await;
    assert_eq!(k.take_ops(), vec![RouteOp::Remove(net("192.168.9.0/26"))]);
    assert!(k.state().bird.is_empty());
}

#[tokio::test]
async fn another_nodes_route_to_our_block_replaces_its_blackhole_until_withdrawn() {
    let k = FakeKernel::default();
    let (mut o, _sub) = owner(&k).await;
    read_local(&mut o, &["192.168.9.0/26"]).await;
    o.apply_batch(batch(vec![local("192.168.9.0/26")])).await;
    // Two affinities: the other node's route wins in the RIB.
    o.apply_batch(batch(vec![best("192.168.9.0/26", PEER)]))
        .await;
    let view = o.view();
    assert!(view.overridden.contains(&net("192.168.9.0/26")));
    assert_eq!(view.blackholes(), 0);
    assert_eq!(
        k.state().bird.get(&net("192.168.9.0/26")),
        Some(&BirdTarget::Via(PEER))
    );
    // It goes: our local route is best again, and the blackhole comes back.
    o.apply_batch(batch(vec![local("192.168.9.0/26")])).await;
    assert_eq!(
        k.state().bird.get(&net("192.168.9.0/26")),
        Some(&BirdTarget::Blackhole)
    );
    assert!(o.view().overridden.is_empty());
}

#[tokio::test]
async fn reconcile_writes_only_differences_and_removes_what_nothing_claims() {
    let k = FakeKernel::default();
    {
        let mut st = k.state();
        // A previous run left: one good route, one with an old gateway, one stale, and a host
        // route of a pod that is gone.
        st.bird.insert(net("192.168.1.0/26"), BirdTarget::Via(PEER));
        st.bird.insert(
            net("192.168.2.0/26"),
            BirdTarget::Via("172.18.0.9".parse().unwrap()),
        );
        st.bird.insert(net("192.168.3.0/26"), BirdTarget::Via(PEER));
        st.hosts
            .insert("192.168.9.5".parse().unwrap(), "cali0000000005".into());
        st.links.insert("cali0000000007".into());
    }
    let sp = speaker().await;
    let sub = sp.subscribe().await.unwrap();
    let mut o = RoutingOwner::new(
        RoutingConfig::new(ME, vec![]),
        k.clone(),
        sp,
        // A pod recorded on this node whose host route the kernel lost.
        vec![("192.168.9.7".parse().unwrap(), "cali0000000007".to_string())],
    );
    o.start_reconcile(&sub).await.unwrap();
    let n = o.reconcile.as_ref().unwrap().resync;
    // The resync of the RIB: two best routes.
    o.apply_batch(RouteBatch {
        events: vec![best("192.168.1.0/26", PEER), best("192.168.2.0/26", PEER)],
        synced: Some(n),
        backlog: false,
    })
    .await;
    let ops = k.take_ops();
    assert_eq!(
        ops,
        vec![
            RouteOp::Replace(DesiredRoute::via(net("192.168.2.0/26"), PEER)),
            RouteOp::Remove(net("192.168.3.0/26")),
            RouteOp::Replace(DesiredRoute::host(
                "192.168.9.7".parse().unwrap(),
                "cali0000000007"
            )),
            RouteOp::Delete(DesiredRoute::host(
                "192.168.9.5".parse().unwrap(),
                "cali0000000005"
            )),
        ],
        "the good route is left alone"
    );
    assert!(o.view().swept);
    assert!(o.reconcile.is_none());
}

#[tokio::test]
async fn refused_writes_are_remembered_and_retried_by_the_repair() {
    let k = FakeKernel::default();
    k.state().refuse.insert(net("192.168.1.0/26"));
    let (mut o, sub) = owner(&k).await;
    o.apply_batch(batch(vec![best("192.168.1.0/26", PEER)]))
        .await;
    let view = o.view();
    assert!(view.failed.contains(&net("192.168.1.0/26")));
    assert!(!view.in_kernel(
        net("192.168.1.0/26"),
        RouteSource::Peer(PEER.into()),
        PEER,
        ME
    ));
    // The kernel accepts it now; the repair's resync retries it even though the stream has
    // nothing new to say about the prefix.
    k.state().refuse.clear();
    k.take_ops();
    o.start_reconcile(&sub).await.unwrap();
    let n = o.reconcile.as_ref().unwrap().resync;
    o.apply_batch(RouteBatch {
        events: vec![best("192.168.1.0/26", PEER)],
        synced: Some(n),
        backlog: false,
    })
    .await;
    assert_eq!(
        k.take_ops(),
        vec![RouteOp::Replace(DesiredRoute::via(
            net("192.168.1.0/26"),
            PEER
        ))]
    );
    assert!(o.view().failed.is_empty());
}

#[tokio::test]
async fn host_routes_attach_and_detach_through_messages() {
    let k = FakeKernel::default();
    k.state().links.insert("cali0000000001".into());
    let (mut o, _sub) = owner(&k).await;
    let ip: Ipv4Addr = "192.168.9.1".parse().unwrap();
    let (reply, rx) = oneshot::channel();
    o.handle(RoutingMsg::AttachHost {
        ip,
        ifname: "cali0000000001".into(),
        reply,
    })
    .await
    .unwrap();
    rx.await.unwrap().unwrap();
    assert_eq!(o.view().host_routes, 1);
    // A device that does not exist: refused, and not kept.
    let (reply, rx) = oneshot::channel();
    o.handle(RoutingMsg::AttachHost {
        ip: "192.168.9.2".parse().unwrap(),
        ifname: "cali0000000002".into(),
        reply,
    })
    .await
    .unwrap();
    assert!(matches!(
        rx.await.unwrap(),
        Err(KernelError::NoSuchInterface(_))
    ));
    assert_eq!(o.view().host_routes, 1);
    let (reply, rx) = oneshot::channel();
    o.handle(RoutingMsg::DetachHost {
        ip,
        ifname: "cali0000000001".into(),
        reply,
    })
    .await
    .unwrap();
    rx.await.unwrap().unwrap();
    assert_eq!(o.view().host_routes, 0);
    assert!(k.state().hosts.is_empty());
}

/// The whole loop: the owner task runs, a block arrives as a message, the speaker originates
/// it, the subscription brings its best route back and the blackhole lands in the kernel; the
/// first sweep runs when no peer is there to wait for.
#[tokio::test(start_paused = true)]
async fn the_running_owner_turns_messages_into_kernel_routes() {
    let k = FakeKernel::default();
    k.state()
        .bird
        .insert(net("192.168.77.0/26"), BirdTarget::Via(PEER));
    let sp = speaker().await;
    let sub = sp.subscribe().await.unwrap();
    let mut cfg = RoutingConfig::new(ME, vec![net("10.96.0.0/12")]);
    cfg.sweep_after = Duration::from_secs(5);
    let o = RoutingOwner::new(cfg, k.clone(), sp.clone(), Vec::new());
    let (tx, rx) = mpsc::channel(INBOX);
    let task = tokio::spawn(o.run(sub, rx));
    let h = RoutingHandle::new(tx);
    h.set_local(vec![net("192.168.9.0/26")], vec![])
        .await
        .unwrap();
    // The blackhole arrives through the speaker's subscription.
    let mut ok = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if k.state().bird.get(&net("192.168.9.0/26")) == Some(&BirdTarget::Blackhole) {
            ok = true;
            break;
        }
    }
    assert!(ok, "{:?}", k.state());
    // The advertised prefix is announced, and gets no route of ours.
    let prefixes: Vec<Ipv4Net> = sp
        .routes()
        .await
        .unwrap()
        .iter()
        .map(|r| r.prefix)
        .collect();
    assert!(prefixes.contains(&net("10.96.0.0/12")));
    // Before the sweep the previous run's route stays; after it (no peers: after
    // `sweep_after`) it is gone.
    assert!(k.state().bird.contains_key(&net("192.168.77.0/26")));
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert!(h.view().await.unwrap().swept);
    assert!(!k.state().bird.contains_key(&net("192.168.77.0/26")));
    assert!(k.state().bird.contains_key(&net("192.168.9.0/26")));
    // Dropping every handle ends the owner cleanly.
    drop(h);
    assert!(task.await.unwrap().is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_repair_waits_for_the_route_stream_to_pause_but_not_forever() {
    let k = FakeKernel::default();
    let (mut o, sub) = owner(&k).await;
    o.sweep = Sweep::Done;
    o.next_repair = Instant::now();
    // Routes flowing in: no snapshot of a half-written table.
    o.apply_batch(batch(vec![best("192.168.1.0/26", PEER)]))
        .await;
    o.on_tick(&sub).await.unwrap();
    assert!(
        o.reconcile.is_none(),
        "a repair began while routes were flowing"
    );
    tokio::time::advance(QUIET).await;
    o.on_tick(&sub).await.unwrap();
    assert!(o.reconcile.is_some(), "the repair began after the pause");

    // A stream that never pauses delays the repair by one period at most.
    let (mut o, sub) = owner(&k).await;
    o.sweep = Sweep::Done;
    o.next_repair = Instant::now();
    let period = o.cfg.repair_every;
    let start = Instant::now();
    while o.reconcile.is_none() {
        o.apply_batch(batch(vec![best("192.168.1.0/26", PEER)]))
            .await;
        o.on_tick(&sub).await.unwrap();
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    assert!(Instant::now() - start >= period && Instant::now() - start <= period + QUIET);
}

#[test]
fn the_first_sweep_waits_for_every_peers_end_of_rib() {
    let settle = Duration::from_secs(3);
    let gr = |eor| Relearning {
        established: true,
        graceful_restart: true,
        end_of_rib: eor,
    };
    let plain = |eor| Relearning {
        established: true,
        graceful_restart: false,
        end_of_rib: eor,
    };
    let ms = Duration::from_millis;
    // Every End-of-RIB in: at once, no settle time.
    assert!(relearned(&[gr(true), gr(true)], Some(ms(10)), settle));
    // One graceful-restart peer still sending: not even after the settle time.
    assert!(!relearned(&[gr(true), gr(false)], Some(ms(60_000)), settle));
    // A peer without graceful restart may never send End-of-RIB: settle after all are up.
    assert!(!relearned(
        &[gr(true), plain(false)],
        Some(ms(2_000)),
        settle
    ));
    assert!(relearned(
        &[gr(true), plain(false)],
        Some(ms(3_000)),
        settle
    ));
    assert!(relearned(&[plain(true)], Some(ms(1)), settle));
    // A session not up yet, or no peers at all: wait (the caller's bound ends it).
    let down = Relearning {
        established: false,
        graceful_restart: true,
        end_of_rib: false,
    };
    assert!(!relearned(&[gr(true), down], None, settle));
    assert!(!relearned(&[], Some(ms(60_000)), settle));
}

#[tokio::test(start_paused = true)]
async fn a_claimed_block_is_announced_at_once_and_outlives_a_stale_read() {
    let k = FakeKernel::default();
    let (mut o, _sub) = owner(&k).await;
    let announced = |o: &RoutingOwner<FakeKernel>| o.view().announced;
    // The claim is confirmed: announced before IPAM's next read.
    claim(&mut o, "192.168.9.0/26").await;
    assert!(announced(&o).contains(&net("192.168.9.0/26")));
    // A read of IPAM that began before the claim does not show it: the block stays.
    read_local(&mut o, &[]).await;
    assert!(announced(&o).contains(&net("192.168.9.0/26")));
    // A read that shows it takes over; a later one without it (released) withdraws it.
    read_local(&mut o, &["192.168.9.0/26"]).await;
    read_local(&mut o, &[]).await;
    assert!(announced(&o).is_empty());
    // And a claim no read ever confirms goes after its grace.
    claim(&mut o, "192.168.10.0/26").await;
    tokio::time::advance(CLAIM_GRACE + Duration::from_secs(1)).await;
    read_local(&mut o, &[]).await;
    assert!(announced(&o).is_empty());
}
