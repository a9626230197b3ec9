//! The Kubernetes datastore without an API server: an API in memory ([`FakeApi`]) for whole
//! conversations (the store conformance suite, the allocator's property and race tests), and
//! kube-rs's mock service (`tower_test::mock`) for scripted exchanges, where every request the
//! store makes is checked by method, path, query and body. `cargo test -p ipam kube` runs them.

use std::sync::Arc;
use std::time::Duration;

use super::fake::FakeApi;
use super::*;
use crate::conformance;

const NS: &str = "kube-system";

/// A store on a fresh API in memory with the conformance suite's nodes.
fn fake_store() -> (FakeApi, Arc<dyn Store>) {
    let api = FakeApi::new();
    for n in conformance::NODES {
        api.add_node(n);
    }
    let store = KubeStore::with_service(api.service(), NS, Duration::from_secs(5)).unwrap();
    (api, Arc::new(store))
}

#[test]
fn kube_store_passes_the_store_conformance_suite() {
    conformance::run_all(&|| fake_store().1);
}

// --- scripted exchanges over kube-rs's mock service ------------------------------------------

use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock;

use crate::resources::{self as res, NodeRecord};
use crate::{NodeRegistry, Revision};

type Handle = mock::Handle<Request<Body>, Response<Body>>;
type Reply = mock::SendResponse<Response<Body>>;

fn mock_store(timeout: Duration) -> (KubeStore, Handle) {
    let (svc, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (KubeStore::with_service(svc, NS, timeout).unwrap(), handle)
}

/// Runs a blocking store call beside the script that answers it.
fn beside<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    std::thread::spawn(f)
}

/// The next request: checked by method and path, its query and body returned with the means
/// to answer it.
async fn expect(h: &mut Handle, method: Method, path: &str) -> (String, Value, Reply) {
    let (req, reply) = tokio::time::timeout(Duration::from_secs(10), h.next_request())
        .await
        .unwrap_or_else(|_| panic!("no {method} {path} came"))
        .expect("the client is gone");
    assert_eq!(req.method(), method, "{}", req.uri());
    assert_eq!(req.uri().path(), path);
    let query = req.uri().query().unwrap_or("").to_string();
    let bytes = req.into_body().collect_bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (query, body, reply)
}

fn answer(reply: Reply, code: u16, body: &Value) {
    reply.send_response(
        Response::builder()
            .status(code)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn api_status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("scripted {reason}"), "reason": reason, "code": code})
}

/// 404 about one object: the API server names it in the details.
fn not_found(name: &str) -> Value {
    let mut s = api_status(404, "NotFound");
    s["details"] = json!({"name": name});
    s
}

fn block_object(object: &str, name: &str, uid: &str, rv: &str, spec: Value) -> Value {
    json!({"apiVersion": "gingham.io/v1", "kind": "IPAMBlock",
           "metadata": {"name": object, "uid": uid, "resourceVersion": rv,
                        "annotations": {"gingham.io/name": name}},
           "spec": spec})
}

const BLOCKS: &str = "/apis/gingham.io/v1/ipamblocks";

#[tokio::test]
async fn kube_create_posts_the_custom_resource_with_its_name_and_spec() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let call = beside(move || {
        store.create(
            Kind::IPAMBlock,
            "192-168-0-0-26",
            json!({"cidr": "192.168.0.0/26"}),
        )
    });
    let (query, body, reply) = expect(&mut h, Method::POST, BLOCKS).await;
    assert_eq!(query, "");
    assert_eq!(body["apiVersion"], "gingham.io/v1");
    assert_eq!(body["kind"], "IPAMBlock");
    assert_eq!(body["metadata"]["name"], "192-168-0-0-26");
    assert_eq!(
        body["metadata"]["annotations"]["gingham.io/name"],
        "192-168-0-0-26"
    );
    assert_eq!(body["spec"], json!({"cidr": "192.168.0.0/26"}));
    assert!(
        body["metadata"].get("resourceVersion").is_none(),
        "a create has no revision"
    );
    answer(
        reply,
        201,
        &block_object(
            "192-168-0-0-26",
            "192-168-0-0-26",
            "u1",
            "7",
            body["spec"].clone(),
        ),
    );
    let rec = call.join().unwrap().unwrap();
    assert_eq!(rec.revision, Revision("u1/7".into()));
    assert_eq!(rec.data, json!({"cidr": "192.168.0.0/26"}));
}

#[tokio::test]
async fn kube_create_of_a_taken_name_is_already_exists_and_odd_names_are_encoded() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store = Arc::new(store);
    let s = store.clone();
    let name = "node1-192.168.0.0/26";
    let call = beside(move || s.create(Kind::BlockAffinity, name, json!({})));
    let (_, body, reply) =
        expect(&mut h, Method::POST, "/apis/gingham.io/v1/blockaffinities").await;
    let object = body["metadata"]["name"].as_str().unwrap().to_string();
    assert!(object.starts_with("node1-192-168-0-0-26-"), "{object}");
    assert!(names::is_subdomain(&object));
    assert_eq!(body["metadata"]["annotations"]["gingham.io/name"], name);
    answer(reply, 409, &api_status(409, "AlreadyExists"));
    assert!(matches!(
        call.join().unwrap(),
        Err(StoreError::AlreadyExists {
            kind: Kind::BlockAffinity,
            ..
        })
    ));
}

#[tokio::test]
async fn kube_get_of_a_missing_object_is_not_found_and_one_without_spec_is_corrupt() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store = Arc::new(store);
    let s = store.clone();
    let call = beside(move || s.get(Kind::IPAMBlock, "10-0-0-0-26"));
    let (_, _, reply) = expect(&mut h, Method::GET, &format!("{BLOCKS}/10-0-0-0-26")).await;
    answer(reply, 404, &not_found("10-0-0-0-26"));
    assert!(matches!(
        call.join().unwrap(),
        Err(StoreError::NotFound { .. })
    ));

    let s = store.clone();
    let call = beside(move || s.get(Kind::IPAMBlock, "10-0-0-64-26"));
    let (_, _, reply) = expect(&mut h, Method::GET, &format!("{BLOCKS}/10-0-0-64-26")).await;
    let mut o = block_object("10-0-0-64-26", "10-0-0-64-26", "u", "3", json!(null));
    o.as_object_mut().unwrap().remove("spec");
    answer(reply, 200, &o);
    match call.join().unwrap() {
        Err(StoreError::Corrupt { path, reason }) => {
            assert_eq!(path, "IPAMBlock/10-0-0-64-26");
            assert_eq!(reason, "no spec");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_list_reads_every_object_sorted_by_record_name_and_reports_the_unreadable() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let call = beside(move || store.list(Kind::IPAMBlock));
    let (query, _, reply) = expect(&mut h, Method::GET, BLOCKS).await;
    assert!(!query.contains("watch"), "{query}");
    let mut broken = block_object("zz", "zz", "u3", "5", json!(null));
    broken.as_object_mut().unwrap().remove("spec");
    answer(
        reply,
        200,
        &json!({"apiVersion": "gingham.io/v1", "kind": "IPAMBlockList",
        "metadata": {"resourceVersion": "9"},
        "items": [block_object("b-x", "b", "u2", "4", json!(2)),
                  block_object("a-x", "a", "u1", "3", json!(1)), broken]}),
    );
    let listing = call.join().unwrap().unwrap();
    let names: Vec<&str> = listing.records.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(listing.errors.len(), 1);
    assert_eq!(listing.errors[0].name, "zz");
}

#[tokio::test]
async fn kube_update_puts_the_resource_version_and_a_stale_one_is_a_conflict() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store = Arc::new(store);
    let s = store.clone();
    let call = beside(move || {
        s.update(
            Kind::IPAMBlock,
            "n",
            &Revision("u1/41".into()),
            json!({"v": 2}),
        )
    });
    let (_, body, reply) = expect(&mut h, Method::PUT, &format!("{BLOCKS}/n")).await;
    assert_eq!(body["metadata"]["resourceVersion"], "41");
    assert_eq!(body["metadata"]["uid"], "u1");
    assert_eq!(body["spec"], json!({"v": 2}));
    answer(reply, 409, &api_status(409, "Conflict"));
    match call.join().unwrap() {
        Err(StoreError::Conflict { expected, .. }) => assert_eq!(expected.0, "u1/41"),
        other => panic!("{other:?}"),
    }
    // A revision this store never gave out cannot match: no request at all.
    assert!(matches!(
        store.update(Kind::IPAMBlock, "n", &Revision("41".into()), json!({})),
        Err(StoreError::Conflict { .. })
    ));
}

#[tokio::test]
async fn kube_a_heartbeat_retries_its_lease_after_a_409() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store: Arc<dyn Store> = Arc::new(store);
    let reg = NodeRegistry::new(store);
    let call = beside(move || reg.heartbeat("node-1", 1_800_000_000));
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let lease = |rv: &str, renew: &str| {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "gingham-node-node-1", "namespace": NS, "uid": "l1", "resourceVersion": rv,
                     "labels": {"gingham.io/lease": "node"}, "annotations": {"gingham.io/name": "node-1"}},
        "spec": {"holderIdentity": "node-1", "renewTime": renew}})
    };
    // The registry checks the node is registered...
    let (_, _, reply) = expect(&mut h, Method::GET, "/api/v1/nodes/node-1").await;
    answer(
        reply,
        200,
        &json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-1", "uid": "n1", "resourceVersion": "3",
                     "annotations": {"gingham.io/ipv4-address": "172.18.0.2", "gingham.io/as": "64512"}}}),
    );
    // ... reads its lease, writes it back: 409, someone else did in between.
    for (rv, code) in [("10", 409), ("11", 200)] {
        let (_, _, reply) = expect(
            &mut h,
            Method::GET,
            &format!("{leases}/gingham-node-node-1"),
        )
        .await;
        answer(reply, 200, &lease(rv, "2027-01-15T08:00:00.000000Z"));
        let (_, body, reply) = expect(
            &mut h,
            Method::PUT,
            &format!("{leases}/gingham-node-node-1"),
        )
        .await;
        assert_eq!(body["metadata"]["resourceVersion"], rv);
        assert_eq!(body["metadata"]["labels"]["gingham.io/lease"], "node");
        assert_eq!(body["spec"]["holderIdentity"], "node-1");
        assert!(body["spec"]["renewTime"]
            .as_str()
            .unwrap()
            .starts_with("2027-01-15T08:00:00"));
        if code == 409 {
            answer(reply, 409, &api_status(409, "Conflict"));
        } else {
            answer(
                reply,
                200,
                &lease("12", body["spec"]["renewTime"].as_str().unwrap()),
            );
        }
    }
    call.join().unwrap().unwrap();
}

#[tokio::test]
async fn kube_delete_sends_resource_version_and_uid_preconditions() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store = Arc::new(store);
    let s = store.clone();
    let call = beside(move || {
        s.delete(
            Kind::IPAMHandle,
            "k8s-pod-network.abc",
            &Revision("u9/77".into()),
        )
    });
    let (_, body, reply) = expect(
        &mut h,
        Method::DELETE,
        "/apis/gingham.io/v1/ipamhandles/k8s-pod-network.abc",
    )
    .await;
    assert_eq!(
        body["preconditions"],
        json!({"resourceVersion": "77", "uid": "u9"})
    );
    answer(reply, 409, &api_status(409, "Conflict"));
    assert!(matches!(
        call.join().unwrap(),
        Err(StoreError::Conflict { .. })
    ));
    let s = store.clone();
    let call = beside(move || {
        s.delete(
            Kind::IPAMHandle,
            "k8s-pod-network.abc",
            &Revision("u9/78".into()),
        )
    });
    let (_, _, reply) = expect(
        &mut h,
        Method::DELETE,
        "/apis/gingham.io/v1/ipamhandles/k8s-pod-network.abc",
    )
    .await;
    answer(
        reply,
        200,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}),
    );
    call.join().unwrap().unwrap();
}

#[tokio::test]
async fn kube_registering_a_node_patches_its_annotations_at_the_revision_read() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let rec = NodeRecord {
        name: "gingham-worker".into(),
        address: "172.18.0.3".parse().unwrap(),
        asn: 64512,
        last_heartbeat: 0,
    };
    let call = beside(move || res::create(&store, "gingham-worker", rec));
    let node = |ann: Value, rv: &str| {
        json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "gingham-worker", "uid": "n7", "resourceVersion": rv, "annotations": ann}})
    };
    let (_, _, reply) = expect(&mut h, Method::GET, "/api/v1/nodes/gingham-worker").await;
    answer(
        reply,
        200,
        &node(json!({"node.alpha.kubernetes.io/ttl": "0"}), "100"),
    );
    let (req, reply) = h.next_request().await.unwrap();
    assert_eq!(req.method(), Method::PATCH);
    assert_eq!(req.uri().path(), "/api/v1/nodes/gingham-worker");
    assert_eq!(
        req.headers()["content-type"],
        "application/merge-patch+json",
        "a JSON merge patch (RFC 7386)"
    );
    let body: Value =
        serde_json::from_slice(&req.into_body().collect_bytes().await.unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"metadata": {"resourceVersion": "100", "uid": "n7", "annotations": {
        "gingham.io/ipv4-address": "172.18.0.3", "gingham.io/as": "64512"}}})
    );
    answer(
        reply,
        200,
        &node(
            json!({"gingham.io/ipv4-address": "172.18.0.3", "gingham.io/as": "64512"}),
            "101",
        ),
    );
    let v = call.join().unwrap().unwrap();
    assert_eq!(v.revision, Revision("n7/101".into()));
    assert_eq!(v.value.address.to_string(), "172.18.0.3");
}

#[tokio::test]
async fn kube_a_node_kubernetes_does_not_know_is_refused_not_retried() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let store: Arc<dyn Store> = Arc::new(store);
    let reg = NodeRegistry::new(store);
    let rec = NodeRecord {
        name: "ghost".into(),
        address: "172.18.0.9".parse().unwrap(),
        asn: 64512,
        last_heartbeat: 0,
    };
    let call = beside(move || reg.register(&rec));
    // The registry reads the record, then creates it: both find no Node.
    for _ in 0..2 {
        let (_, _, reply) = expect(&mut h, Method::GET, "/api/v1/nodes/ghost").await;
        answer(reply, 404, &not_found("ghost"));
    }
    match call.join().unwrap() {
        Err(StoreError::Refused { reason, .. }) => assert!(reason.contains("NODENAME"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_forbidden_is_refused_naming_the_rbac() {
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let call = beside(move || store.list(Kind::IPPool));
    let (_, _, reply) = expect(&mut h, Method::GET, "/apis/gingham.io/v1/ippools").await;
    answer(reply, 403, &api_status(403, "Forbidden"));
    match call.join().unwrap() {
        Err(e @ StoreError::Refused { .. }) => {
            assert!(e.to_string().contains("deploy/gingham.yaml"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn kube_an_overloaded_api_is_retried_then_unavailable_at_the_deadline() {
    let (store, mut h) = mock_store(Duration::from_secs(2));
    let store = Arc::new(store);
    let s = store.clone();
    // 503 once, then the answer: the caller sees only the answer.
    let call = beside(move || s.get(Kind::IPAMConfig, "default"));
    let (_, _, reply) = expect(
        &mut h,
        Method::GET,
        "/apis/gingham.io/v1/ipamconfigs/default",
    )
    .await;
    answer(reply, 503, &api_status(503, "ServiceUnavailable"));
    let (_, _, reply) = expect(
        &mut h,
        Method::GET,
        "/apis/gingham.io/v1/ipamconfigs/default",
    )
    .await;
    answer(
        reply,
        200,
        &json!({"apiVersion": "gingham.io/v1", "kind": "IPAMConfig",
        "metadata": {"name": "default", "uid": "c", "resourceVersion": "1"}, "spec": {"strict_affinity": true}}),
    );
    assert_eq!(call.join().unwrap().unwrap().data["strict_affinity"], true);
    // 503 until the deadline: Unavailable, saying what the API last said.
    let s = store.clone();
    let call = beside(move || s.get(Kind::IPAMConfig, "default"));
    let started = std::time::Instant::now();
    while !call.is_finished() {
        match tokio::time::timeout(Duration::from_millis(500), h.next_request()).await {
            Ok(Some((_, reply))) => answer(reply, 503, &api_status(503, "ServiceUnavailable")),
            _ => continue,
        }
    }
    match call.join().unwrap() {
        Err(StoreError::Unavailable(msg)) => {
            assert!(
                msg.contains("did not answer within 2 s") && msg.contains("503"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Answers the watcher's initial list of IPAMBlocks.
async fn answer_list(h: &mut Handle, rv: &str, items: Vec<Value>) {
    let (query, _, reply) = expect(h, Method::GET, BLOCKS).await;
    assert!(
        !query.contains("watch=true"),
        "a list, not a watch: {query}"
    );
    answer(
        reply,
        200,
        &json!({"apiVersion": "gingham.io/v1", "kind": "IPAMBlockList",
        "metadata": {"resourceVersion": rv}, "items": items}),
    );
}

/// Takes the watcher's watch request; returns its query and the means to answer it.
async fn take_watch(h: &mut Handle) -> (String, Reply) {
    let (query, _, reply) = expect(h, Method::GET, BLOCKS).await;
    assert!(query.contains("watch=true"), "{query}");
    (query, reply)
}

fn lines(events: &[Value]) -> Body {
    let mut out = Vec::new();
    for e in events {
        out.extend_from_slice(e.to_string().as_bytes());
        out.push(b'\n');
    }
    Body::from(out)
}

fn recv(w: &Watch) -> crate::store::WatchEvent {
    w.recv_timeout(Duration::from_secs(10))
        .expect("a watch event")
}

#[tokio::test]
async fn kube_a_watch_relists_after_410_gone_and_sends_the_difference() {
    use crate::store::WatchEvent;
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let w = store.watch(Kind::IPAMBlock).unwrap();
    answer_list(
        &mut h,
        "10",
        vec![block_object("a", "a", "ua", "8", json!(1))],
    )
    .await;
    let (query, reply) = take_watch(&mut h).await;
    assert!(query.contains("resourceVersion=10"), "{query}");
    let ev = tokio::task::spawn_blocking(move || {
        let first = (recv(&w), recv(&w));
        (w, first)
    })
    .await
    .unwrap();
    let (w, (a, synced)) = ev;
    assert!(matches!(a, WatchEvent::Added(r) if r.name == "a"));
    assert_eq!(synced, WatchEvent::Synced);
    // The history the watch needs is gone: 410, and the watcher lists again.
    reply.send_response(
        Response::builder()
            .status(200)
            .body(lines(&[json!({"type": "ERROR",
        "object": api_status(410, "Expired")})]))
            .unwrap(),
    );
    answer_list(
        &mut h,
        "30",
        vec![block_object("b", "b", "ub", "25", json!(2))],
    )
    .await;
    let (query, _held) = take_watch(&mut h).await;
    assert!(query.contains("resourceVersion=30"), "{query}");
    let (b, gone_a) = tokio::task::spawn_blocking(move || (recv(&w), recv(&w)))
        .await
        .unwrap();
    assert!(matches!(b, WatchEvent::Added(r) if r.name == "b"));
    assert_eq!(
        gone_a,
        WatchEvent::Deleted {
            kind: Kind::IPAMBlock,
            name: "a".into()
        }
    );
}

#[tokio::test]
async fn kube_a_dropped_watch_resumes_from_the_last_resource_version() {
    use crate::store::WatchEvent;
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let w = store.watch(Kind::IPAMBlock).unwrap();
    answer_list(&mut h, "10", vec![]).await;
    let (_, reply) = take_watch(&mut h).await;
    // One change, then the connection ends.
    reply.send_response(
        Response::builder()
            .status(200)
            .body(lines(&[json!({"type": "ADDED",
        "object": block_object("c", "c", "uc", "12", json!(3))})]))
            .unwrap(),
    );
    let (query, _held) = take_watch(&mut h).await;
    assert!(
        query.contains("resourceVersion=12"),
        "resumes after what it saw: {query}"
    );
    let (synced, c) = tokio::task::spawn_blocking(move || (recv(&w), recv(&w)))
        .await
        .unwrap();
    assert_eq!(synced, WatchEvent::Synced);
    assert!(matches!(c, WatchEvent::Added(r) if r.name == "c" && r.data == json!(3)));
}

/// The allocator's race, as `tests/race.rs` runs it on the file store with four processes:
/// here four clients, each with its own connection, on one API server, two nodes sharing
/// blocks. Every write is a compare-and-swap on resourceVersion; losers re-read and retry.
#[test]
fn kube_race_four_clients_two_nodes_no_address_twice() {
    use crate::{AllocationAttrs, Ipam, IpamSettings};
    use std::collections::BTreeSet;
    let api = FakeApi::new();
    let first: Arc<dyn Store> =
        Arc::new(KubeStore::with_service(api.service(), NS, Duration::from_secs(5)).unwrap());
    for (i, n) in ["race-a", "race-b"].into_iter().enumerate() {
        api.add_node(n);
        NodeRegistry::new(first.clone())
            .register(&NodeRecord {
                name: n.into(),
                address: std::net::Ipv4Addr::new(172, 18, 0, 2 + i as u8),
                asn: 64512,
                last_heartbeat: 0,
            })
            .unwrap();
    }
    let settings = IpamSettings {
        pool_cidr: "10.250.0.0/22".parse().unwrap(),
        ..Default::default()
    };
    // The API server stumbles at the start: the calls that meet a 503 are tried again.
    api.fail_next(3, 503, "ServiceUnavailable");
    let workers: Vec<_> = [("race-a", 0), ("race-a", 1), ("race-b", 2), ("race-b", 3)]
        .into_iter()
        .map(|(node, id)| {
            let store: Arc<dyn Store> = Arc::new(
                KubeStore::with_service(api.service(), NS, Duration::from_secs(5)).unwrap(),
            );
            let ipam = Ipam::open(store, settings.clone()).unwrap();
            std::thread::spawn(move || {
                let attrs = AllocationAttrs::node(node);
                let mut held = Vec::new();
                for i in 0..100 {
                    let h = format!("w{id}-{i}");
                    held.push((h.clone(), ipam.assign(&h, &attrs).unwrap()));
                    if i % 2 == 1 {
                        let (h, ip) = held.remove(i % held.len());
                        assert_eq!(ipam.release(&h).unwrap(), vec![ip]);
                    }
                }
                (held, ipam.conflicts())
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    let mut conflicts = 0;
    for w in workers {
        let (held, c) = w.join().unwrap();
        conflicts += c;
        for (_, ip) in held {
            assert!(all.insert(ip), "{ip} held twice");
        }
    }
    assert_eq!(all.len(), 200);
    let ipam = Ipam::open(first, settings).unwrap();
    let problems = ipam.check().unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    eprintln!("kube race: 400 assigns, 200 releases, {conflicts} conflicts retried");
    // Every write went through the API: updates as PUTs with a resourceVersion.
    let puts = api
        .requests()
        .iter()
        .filter(|r| r.method == Method::PUT)
        .count();
    assert!(puts > 400, "{puts} PUTs");
}

#[test]
fn kube_the_mesh_hears_of_annotations_and_deleted_nodes_not_kubelet_status() {
    use crate::resources::TypedEvent;
    let (api, store) = fake_store();
    let reg = NodeRegistry::new(store.clone());
    let rec = |name: &str, last: u8| NodeRecord {
        name: name.into(),
        address: std::net::Ipv4Addr::new(172, 18, 0, last),
        asn: 64512,
        last_heartbeat: 0,
    };
    reg.register(&rec("a", 2)).unwrap();
    let w = reg.watch().unwrap();
    let t = Duration::from_secs(5);
    assert!(matches!(w.recv_timeout(t), Some(TypedEvent::Added(v)) if v.value == rec("a", 2)));
    assert_eq!(w.recv_timeout(t), Some(TypedEvent::Synced));
    // The kubelet posts its status every few seconds: the Node's resourceVersion moves, the
    // record does not, and the mesh is not woken.
    for _ in 0..3 {
        api.touch_node("a");
    }
    assert_eq!(w.recv_timeout(Duration::from_millis(800)), None);
    // A node whose agent has not registered it is no member; then its agent does.
    api.touch_node("b");
    reg.register(&rec("b", 3)).unwrap();
    assert!(matches!(w.recv_timeout(t), Some(TypedEvent::Added(v)) if v.value == rec("b", 3)));
    // The cluster deletes node a (kubectl delete node, a cloud's node controller).
    api.delete_node("a");
    assert_eq!(w.recv_timeout(t), Some(TypedEvent::Deleted("a".into())));
    assert_eq!(reg.list().unwrap(), vec![rec("b", 3)]);
    assert!(
        store.nodes_depart(),
        "the agents release a deleted node's IPAM"
    );
    // The registration was a merge patch of the node's annotations.
    let patch = api
        .requests()
        .into_iter()
        .find(|r| r.method == Method::PATCH)
        .unwrap();
    assert_eq!(patch.path, "/api/v1/nodes/a");
    assert_eq!(
        patch.body["metadata"]["annotations"],
        json!({"gingham.io/ipv4-address": "172.18.0.2", "gingham.io/as": "64512"})
    );
}

#[test]
fn kube_a_watch_cut_off_during_a_compaction_lists_again_and_converges() {
    use crate::store::WatchEvent;
    let (api, store) = fake_store();
    store.create(Kind::IPAMHandle, "h1", json!(1)).unwrap();
    let w = store.watch(Kind::IPAMHandle).unwrap();
    let t = Duration::from_secs(10);
    assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(r)) if r.name == "h1"));
    assert_eq!(w.recv_timeout(t), Some(WatchEvent::Synced));
    // While the watch is down, h1 goes, h2 comes, and the history is compacted: resuming
    // from the last resourceVersion gets 410 Gone, and the watcher lists again.
    let watching = || {
        api.requests()
            .iter()
            .any(|r| r.query.contains("watch=true"))
    };
    let start = std::time::Instant::now();
    while !watching() && start.elapsed() < t {
        std::thread::sleep(Duration::from_millis(10));
    }
    api.refuse_watches(true);
    api.drop_watches();
    let h1 = store.get(Kind::IPAMHandle, "h1").unwrap();
    store.delete(Kind::IPAMHandle, "h1", &h1.revision).unwrap();
    store.create(Kind::IPAMHandle, "h2", json!(2)).unwrap();
    api.compact();
    api.refuse_watches(false);
    let mut got = Vec::new();
    while got.len() < 2 {
        got.push(w.recv_timeout(t).expect("the difference after the relist"));
    }
    assert!(
        got.iter()
            .any(|e| matches!(e, WatchEvent::Added(r) if r.name == "h2")),
        "{got:?}"
    );
    assert!(got.contains(&WatchEvent::Deleted {
        kind: Kind::IPAMHandle,
        name: "h1".into()
    }));
    let relists = api
        .requests()
        .iter()
        .filter(|r| {
            r.method == Method::GET
                && r.path == "/apis/gingham.io/v1/ipamhandles"
                && !r.query.contains("watch=true")
        })
        .count();
    assert_eq!(relists, 2, "one list at the start, one after 410 Gone");
}

#[tokio::test]
async fn kube_a_cluster_without_the_crds_is_unavailable_not_empty() {
    // The API server's 404 for a resource it does not serve names no object: the CRDs are
    // not installed (or not established yet), which the agent waits out.
    let (store, mut h) = mock_store(Duration::from_secs(5));
    let call = beside(move || store.list(Kind::IPAMHandle));
    let (_, _, reply) = expect(&mut h, Method::GET, "/apis/gingham.io/v1/ipamhandles").await;
    answer(reply, 404, &api_status(404, "NotFound"));
    match call.join().unwrap() {
        Err(StoreError::Unavailable(msg)) => {
            assert!(
                msg.contains("ipamhandles.gingham.io") && msg.contains("CRDs"),
                "{msg}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn kube_a_heartbeat_lease_is_owned_by_its_node_and_updates_keep_what_others_added() {
    let (api, store) = fake_store();
    let reg = NodeRegistry::new(store.clone());
    reg.register(&NodeRecord {
        name: "a".into(),
        address: "172.18.0.2".parse().unwrap(),
        asn: 64512,
        last_heartbeat: 0,
    })
    .unwrap();
    reg.heartbeat("a", 1_800_000_000).unwrap();
    let leases = format!("/apis/coordination.k8s.io/v1/namespaces/{NS}/leases");
    let node_uid = api.object("/api/v1/nodes", "a").unwrap()["metadata"]["uid"].clone();
    let lease = api.object(&leases, "gingham-node-a").unwrap();
    let owners = &lease["metadata"]["ownerReferences"];
    assert_eq!(owners[0]["kind"], "Node");
    assert_eq!(owners[0]["name"], "a");
    assert_eq!(
        owners[0]["uid"], node_uid,
        "garbage-collected with its Node"
    );
    // Someone labels the lease; the next heartbeats replace the object and keep both.
    api.label(&leases, "gingham-node-a", "team", "net");
    reg.heartbeat("a", 1_800_000_010).unwrap();
    reg.heartbeat("a", 1_800_000_020).unwrap();
    let lease = api.object(&leases, "gingham-node-a").unwrap();
    assert_eq!(lease["metadata"]["labels"]["team"], "net");
    assert_eq!(lease["metadata"]["labels"]["gingham.io/lease"], "node");
    assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], node_uid);
    assert!(lease["spec"]["renewTime"]
        .as_str()
        .unwrap()
        .starts_with("2027-01-15T08:00:20"));
    // The same for a custom resource.
    let r = store
        .create(
            Kind::IPAMConfig,
            "default",
            json!({"strict_affinity": false}),
        )
        .unwrap();
    api.label("/apis/gingham.io/v1/ipamconfigs", "default", "owner", "ops");
    let r2 = store.get(Kind::IPAMConfig, "default").unwrap();
    assert_ne!(r.revision, r2.revision);
    store
        .update(
            Kind::IPAMConfig,
            "default",
            &r2.revision,
            json!({"strict_affinity": true}),
        )
        .unwrap();
    let o = api
        .object("/apis/gingham.io/v1/ipamconfigs", "default")
        .unwrap();
    assert_eq!(o["metadata"]["labels"]["owner"], "ops");
    assert_eq!(o["spec"]["strict_affinity"], true);
}
