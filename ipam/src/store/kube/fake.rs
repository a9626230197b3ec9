//! An API server in memory, as much of one as the store uses, for tests that need a whole
//! conversation rather than a scripted exchange (the store conformance suite, the allocator's
//! property and race tests): objects by collection, one resourceVersion counter, 409 on a
//! taken name, a stale resourceVersion or UID and a failed delete precondition, JSON merge
//! patches, label selectors, and watches from a resourceVersion that answer 410 Gone below the
//! last compaction. Every request is logged.
//!
//! For tests only: `interop-tests` serves it over HTTP so that agents in network namespaces can
//! run on the `kubernetes` datastore without a cluster. Nothing in the agent uses it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::channel::mpsc::{unbounded, UnboundedSender};
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use serde_json::{json, Value};

pub type Body = BoxBody<Bytes, Infallible>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

struct Watcher {
    collection: String,
    selector: Option<(String, String)>,
    tx: UnboundedSender<Bytes>,
}

#[derive(Default)]
struct State {
    rv: u64,
    uid: u64,
    /// Collection path → name → object.
    objects: BTreeMap<String, BTreeMap<String, Value>>,
    /// Every change: (resourceVersion, collection, type, object).
    events: Vec<(u64, String, &'static str, Value)>,
    /// Watches from below this resourceVersion are 410 Gone.
    compacted: u64,
    watchers: Vec<Watcher>,
    requests: Vec<Seen>,
    /// Answers to give instead of serving the next requests: (code, reason).
    faults: Vec<(u16, &'static str)>,
    /// Watch requests are answered 503 (the API server is restarting).
    refuse_watches: bool,
}

#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {},
           "status": if code < 300 { "Success" } else { "Failure" },
           "message": message, "reason": reason, "code": code})
}

/// 404 about one object, as the API server says it (its details name the object).
fn not_found(name: &str) -> Response<Body> {
    let mut s = status(404, "NotFound", &format!("{name} not found"));
    s["details"] = json!({"name": name});
    full(404, &s)
}

fn full(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

/// RFC 7386.
fn merge(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = json!({});
            }
            let t = target.as_object_mut().unwrap();
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other.clone(),
    }
}

fn labels_match(o: &Value, selector: &Option<(String, String)>) -> bool {
    match selector {
        None => true,
        Some((k, v)) => o["metadata"]["labels"][k].as_str() == Some(v.as_str()),
    }
}

/// `(collection, name)` of a path the store uses.
fn split(path: &str) -> Option<(String, Option<String>)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let base = match segs.as_slice() {
        ["api", "v1", "nodes", ..] => 3,
        ["apis", "coordination.k8s.io", "v1", "namespaces", _, "leases", ..] => 6,
        ["apis", "gingham.io", "v1", _, ..] => 4,
        _ => return None,
    };
    let collection = format!("/{}", segs[..base].join("/"));
    match segs.len() - base {
        0 => Some((collection, None)),
        1 => Some((collection, Some(segs[base].to_string()))),
        _ => None,
    }
}

fn query_param(query: &str, key: &str) -> Option<String> {
    query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| {
            v.replace("%3D", "=")
                .replace("%2F", "/")
                .replace("%2C", ",")
        })
    })
}

impl FakeApi {
    pub fn new() -> Self {
        FakeApi::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A tower service for `kube::Client::new`.
    pub fn service(
        &self,
    ) -> impl tower::Service<
        Request<kube::client::Body>,
        Response = Response<Body>,
        Error = Infallible,
        Future = impl Send,
    > + Send
           + Clone
           + 'static {
        let api = self.clone();
        tower::service_fn(move |req: Request<kube::client::Body>| {
            let api = api.clone();
            async move { Ok::<_, Infallible>(api.serve(req).await) }
        })
    }

    /// A Node object as its kubelet would have created it.
    pub fn add_node(&self, name: &str) {
        let mut st = self.lock();
        let node = json!({"apiVersion": "v1", "kind": "Node",
                          "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
                          "status": {"conditions": []}});
        st.insert("/api/v1/nodes", name, node, "ADDED");
    }

    /// The kubelet posts a status: the Node's resourceVersion moves, our annotations do not.
    pub fn touch_node(&self, name: &str) {
        let mut st = self.lock();
        let Some(mut n) = st
            .objects
            .get("/api/v1/nodes")
            .and_then(|c| c.get(name))
            .cloned()
        else {
            return;
        };
        n["status"]["heartbeat"] = json!(st.rv);
        st.insert("/api/v1/nodes", name, n, "MODIFIED");
    }

    pub fn delete_node(&self, name: &str) {
        let mut st = self.lock();
        st.remove("/api/v1/nodes", name);
    }

    /// Someone else (a user, another controller) labels an object.
    pub fn label(&self, collection: &str, name: &str, key: &str, value: &str) {
        let mut st = self.lock();
        if let Some(mut o) = st.get(collection, name) {
            o["metadata"]["labels"][key] = json!(value);
            st.insert(collection, name, o, "MODIFIED");
        }
    }

    pub fn object(&self, collection: &str, name: &str) -> Option<Value> {
        self.lock().get(collection, name)
    }

    /// Forgets the history: a watch from before now is answered 410 Gone.
    pub fn compact(&self) {
        let mut st = self.lock();
        st.compacted = st.rv;
        st.events.clear();
    }

    /// Ends every open watch, as a restarting API server or a broken connection does.
    pub fn drop_watches(&self) {
        self.lock().watchers.clear();
    }

    /// While set, every watch request is answered 503 Service Unavailable.
    pub fn refuse_watches(&self, refuse: bool) {
        self.lock().refuse_watches = refuse;
    }

    /// The next `n` requests are answered `code`/`reason` instead of being served.
    pub fn fail_next(&self, n: usize, code: u16, reason: &'static str) {
        let mut st = self.lock();
        for _ in 0..n {
            st.faults.push((code, reason));
        }
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.lock().requests.clone()
    }

    async fn serve(&self, req: Request<kube::client::Body>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        self.handle(parts.method, &parts.uri, &bytes)
    }

    /// Answers one request.
    pub fn handle(&self, method: Method, uri: &http::Uri, bytes: &[u8]) -> Response<Body> {
        let body: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let path = uri.path().to_string();
        let query = uri.query().unwrap_or("").to_string();
        let mut st = self.lock();
        st.requests.push(Seen {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            body: body.clone(),
        });
        if let Some((code, reason)) = (!st.faults.is_empty()).then(|| st.faults.remove(0)) {
            return full(code, &status(code, reason, "injected by the test"));
        }
        let Some((collection, name)) = split(&path) else {
            return full(404, &status(404, "NotFound", &format!("no route {path}")));
        };
        match (method, name) {
            (Method::GET, Some(name)) => match st.get(&collection, &name) {
                Some(o) => full(200, &o),
                None => not_found(&name),
            },
            (Method::GET, None) => {
                let selector = query_param(&query, "labelSelector").and_then(|s| {
                    s.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                });
                if query_param(&query, "watch").is_some_and(|w| w == "true" || w == "1") {
                    if st.refuse_watches {
                        return full(503, &status(503, "ServiceUnavailable", "restarting"));
                    }
                    let from: u64 = query_param(&query, "resourceVersion")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    return st.watch(collection, selector, from);
                }
                let items: Vec<Value> = st
                    .objects
                    .get(&collection)
                    .map(|c| {
                        c.values()
                            .filter(|o| labels_match(o, &selector))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default();
                full(
                    200,
                    &json!({"apiVersion": "v1", "kind": "List",
                            "metadata": {"resourceVersion": st.rv.to_string()}, "items": items}),
                )
            }
            (Method::POST, None) => {
                let name = body["metadata"]["name"].as_str().unwrap_or("").to_string();
                if st.get(&collection, &name).is_some() {
                    return full(
                        409,
                        &status(409, "AlreadyExists", &format!("{name} already exists")),
                    );
                }
                let o = st.insert(&collection, &name, body, "ADDED");
                full(201, &o)
            }
            (Method::PUT, Some(name)) => {
                let Some(cur) = st.get(&collection, &name) else {
                    return not_found(&name);
                };
                if let Some(r) = st.precondition_failed(&cur, &body["metadata"]) {
                    return r;
                }
                let o = st.insert(&collection, &name, body, "MODIFIED");
                full(200, &o)
            }
            (Method::PATCH, Some(name)) => {
                let Some(mut cur) = st.get(&collection, &name) else {
                    return not_found(&name);
                };
                if let Some(r) = st.precondition_failed(&cur, &body["metadata"]) {
                    return r;
                }
                merge(&mut cur, &body);
                let o = st.insert(&collection, &name, cur, "MODIFIED");
                full(200, &o)
            }
            (Method::DELETE, Some(name)) => {
                let Some(cur) = st.get(&collection, &name) else {
                    return not_found(&name);
                };
                if let Some(r) = st.precondition_failed(&cur, &body["preconditions"]) {
                    return r;
                }
                st.remove(&collection, &name);
                full(200, &status(200, "", ""))
            }
            (m, _) => full(405, &status(405, "MethodNotAllowed", m.as_ref())),
        }
    }
}

impl State {
    fn get(&self, collection: &str, name: &str) -> Option<Value> {
        self.objects.get(collection)?.get(name).cloned()
    }

    /// 409 unless `cond`'s resourceVersion and UID (where given) are the object's.
    fn precondition_failed(&self, cur: &Value, cond: &Value) -> Option<Response<Body>> {
        for (field, what) in [("resourceVersion", "resourceVersion"), ("uid", "UID")] {
            if let Some(want) = cond[field].as_str() {
                if cur["metadata"][field].as_str() != Some(want) {
                    return Some(full(
                        409,
                        &status(
                            409,
                            "Conflict",
                            &format!("Operation cannot be fulfilled: the object has been modified (precondition on {what} failed)"),
                        ),
                    ));
                }
            }
        }
        None
    }

    fn insert(&mut self, collection: &str, name: &str, mut o: Value, ty: &'static str) -> Value {
        self.rv += 1;
        let uid = match self.get(collection, name) {
            Some(cur) => cur["metadata"]["uid"].clone(),
            None => {
                self.uid += 1;
                json!(format!("uid-{}", self.uid))
            }
        };
        o["metadata"]["uid"] = uid;
        o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        self.objects
            .entry(collection.to_string())
            .or_default()
            .insert(name.to_string(), o.clone());
        self.publish(collection, ty, o.clone());
        o
    }

    fn remove(&mut self, collection: &str, name: &str) {
        if let Some(mut o) = self
            .objects
            .get_mut(collection)
            .and_then(|c| c.remove(name))
        {
            self.rv += 1;
            o["metadata"]["resourceVersion"] = json!(self.rv.to_string());
            self.publish(collection, "DELETED", o);
        }
    }

    fn publish(&mut self, collection: &str, ty: &'static str, o: Value) {
        self.events
            .push((self.rv, collection.to_string(), ty, o.clone()));
        let line = Bytes::from(format!("{}\n", json!({"type": ty, "object": o})));
        self.watchers.retain(|w| {
            if w.collection != collection || !labels_match(&o, &w.selector) {
                return !w.tx.is_closed();
            }
            w.tx.unbounded_send(line.clone()).is_ok()
        });
    }

    fn watch(
        &mut self,
        collection: String,
        selector: Option<(String, String)>,
        from: u64,
    ) -> Response<Body> {
        let (tx, rx) = unbounded::<Bytes>();
        if from < self.compacted {
            let gone = status(410, "Expired", "too old resource version");
            let _ = tx.unbounded_send(Bytes::from(format!(
                "{}\n",
                json!({"type": "ERROR", "object": gone})
            )));
        } else {
            for (rv, c, ty, o) in &self.events {
                if *rv > from && *c == collection && labels_match(o, &selector) {
                    let _ = tx.unbounded_send(Bytes::from(format!(
                        "{}\n",
                        json!({"type": ty, "object": o})
                    )));
                }
            }
            self.watchers.push(Watcher {
                collection,
                selector,
                tx,
            });
        }
        let stream = rx.map(|b| Ok::<_, Infallible>(http_body::Frame::data(b)));
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(BodyExt::boxed(StreamBody::new(stream)))
            .unwrap()
    }
}
