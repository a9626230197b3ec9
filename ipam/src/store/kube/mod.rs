//! The `kubernetes` backend: records as objects of the Kubernetes API (custom resources of
//! `gingham.io/v1`, Node objects, Leases; [`objects`] says which), through kube-rs.
//!
//! - Compare-and-swap is the API server's own: an update sends the resourceVersion (and UID) it
//!   read, and a stale one comes back as 409 Conflict, the store's `Conflict`, after which the
//!   allocator re-reads and retries as on every backend. A create of a taken name is 409
//!   AlreadyExists; a delete sends its revision as preconditions.
//! - Watches are kube-runtime's watcher: a list, then a watch from its resourceVersion, resumed
//!   from the last one seen when the connection drops, listed again on 410 Gone, with backoff.
//!   A relist is turned into the difference with what the reader was told ([`Seen`]).
//! - Nodes leave when Kubernetes deletes their Node object: [`Store::nodes_depart`].
//!
//! The [`Store`] trait is blocking; the client is async. As for etcd, the store runs a small
//! tokio runtime on a thread of its own and every call is sent there with a deadline, so a call
//! from any thread fails with `Unavailable` instead of hanging while the API server is away.
//!
//! [`Seen`]: super::watch_state::Seen

pub mod names;
mod objects;
mod watch;

pub mod fake;
#[cfg(test)]
mod tests;

/// A store on a fresh API server in memory whose cluster has Node objects `nodes`: for the
/// allocator's tests on this backend.
#[cfg(test)]
pub(crate) fn in_memory(nodes: &[&str]) -> Arc<dyn Store> {
    let api = fake::FakeApi::new();
    for n in nodes {
        api.add_node(n);
    }
    Arc::new(KubeStore::with_service(api.service(), "kube-system", Duration::from_secs(5)).unwrap())
}

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::core::DynamicObject;
use kube::Client;

use super::runtime::{Health, Runtime};
use super::{CorruptRecord, Kind, Listing, Record, Revision, Store, StoreError, Watch};
use objects::Target;
pub use objects::{custom, ADDRESS as ADDRESS_ANNOTATION, AS as AS_ANNOTATION, GROUP};

/// The CustomResourceDefinitions of the IPAM records, derived from their types.
pub fn crds(
) -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition>
{
    use crate::resources::{
        BlockAffinityResource, IpPoolResource, IpamBlockResource, IpamConfigResource,
        IpamHandleResource,
    };
    use kube::CustomResourceExt;
    vec![
        IpPoolResource::crd(),
        IpamBlockResource::crd(),
        BlockAffinityResource::crd(),
        IpamHandleResource::crd(),
        IpamConfigResource::crd(),
    ]
}

/// How to reach the API: `--datastore kubernetes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeConfig {
    /// Where the Leases live (node heartbeats, the collector's leader lease); `None`: the
    /// client's default namespace (the pod's own in a cluster, the kubeconfig context's
    /// outside one).
    pub namespace: Option<String>,
    /// How long one operation may take before it fails with `Unavailable`.
    pub timeout: Duration,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            namespace: None,
            timeout: Duration::from_secs(5),
        }
    }
}

/// The `kubernetes` backend.
pub struct KubeStore {
    /// Dropped with the store: stops the runtime's thread.
    rt: Runtime,
    client: Client,
    namespace: String,
    timeout: Duration,
    health: Arc<Health>,
    /// Metadata others added to objects this store read (labels, owners, finalizers), carried
    /// over by the next update: a PUT replaces the whole object. Only objects that have any.
    extras: Mutex<HashMap<(Kind, String), objects::Extras>>,
}

/// Why a call failed, before it is said in the store's terms.
enum Failure {
    Api(Box<kube::core::Status>),
    /// Transient failures until the deadline; the last one.
    OutOfTime(Option<String>),
    Other(String),
}

fn transient(e: &kube::Error) -> bool {
    match e {
        // Overloaded, restarting, or behind a load balancer that lost it: try again.
        kube::Error::Api(s) => matches!(s.code, 429 | 500 | 502 | 503 | 504),
        // Connection refused or reset, TLS handshakes cut short: the server is not there now.
        kube::Error::HyperError(_)
        | kube::Error::Service(_)
        | kube::Error::ReadEvents(_)
        | kube::Error::HttpError(_) => true,
        _ => false,
    }
}

/// What a user is told when a kube error is not the API's answer.
fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => format!("{} {}: {}", s.code, s.reason, s.message),
        kube::Error::Service(e) => {
            // The innermost cause says it best ("Connection refused").
            let mut cause: &dyn std::error::Error = e.as_ref();
            while let Some(next) = cause.source() {
                cause = next;
            }
            cause.to_string()
        }
        other => other.to_string(),
    }
}

impl KubeStore {
    /// A client from the pod's service account in a cluster, or `KUBECONFIG`
    /// (`~/.kube/config`) outside one. It connects lazily: an API server that is not up yet is
    /// not an error here, only the first call that cannot reach it is.
    pub fn connect(cfg: &KubeConfig) -> Result<Self, StoreError> {
        let rt = Runtime::start("kube-store")?;
        let ns = cfg.namespace.clone();
        let (client, namespace) = rt
            .block(async move {
                let config = kube::Config::infer().await.map_err(|e| {
                    StoreError::Misconfigured(format!(
                        "no Kubernetes API to talk to: not in a pod with a service account, and no usable KUBECONFIG ({e})"
                    ))
                })?;
                let namespace = ns.unwrap_or_else(|| config.default_namespace.clone());
                let client = Client::try_from(config).map_err(|e| {
                    StoreError::Misconfigured(format!("cannot build a Kubernetes client: {e}"))
                })?;
                Ok::<_, StoreError>((client, namespace))
            })
            .ok_or_else(|| StoreError::Unavailable("the kube-store thread stopped".into()))??;
        Ok(Self::with(rt, client, namespace, cfg.timeout))
    }

    /// A store over any transport that speaks the API (a tower service of HTTP requests): the
    /// tests use kube-rs's mock service and an API server in memory.
    pub fn with_service<S, B>(
        service: S,
        namespace: &str,
        timeout: Duration,
    ) -> Result<Self, StoreError>
    where
        S: tower::Service<http::Request<kube::client::Body>, Response = http::Response<B>>
            + Send
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<tower::BoxError>,
        B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
        B::Error: Into<tower::BoxError>,
    {
        let rt = Runtime::start("kube-store")?;
        let ns = namespace.to_string();
        // The client's buffer task lives on the runtime that builds it.
        let client = rt
            .block(async move { Client::new(service, ns) })
            .ok_or_else(|| StoreError::Unavailable("the kube-store thread stopped".into()))?;
        Ok(Self::with(rt, client, namespace.to_string(), timeout))
    }

    fn with(rt: Runtime, client: Client, namespace: String, timeout: Duration) -> Self {
        KubeStore {
            rt,
            client,
            namespace,
            timeout,
            health: Arc::new(Health::new("Kubernetes API")),
            extras: Mutex::new(HashMap::new()),
        }
    }

    /// Notes (or forgets) the foreign metadata of a record's object as just read.
    fn saw(&self, kind: Kind, name: &str, meta: &kube::core::ObjectMeta) {
        let mut extras = self.extras.lock().unwrap_or_else(|e| e.into_inner());
        match objects::extras(meta) {
            Some(e) => {
                extras.insert((kind, name.to_string()), e);
            }
            None => {
                extras.remove(&(kind, name.to_string()));
            }
        }
    }

    fn carry_over(&self, kind: Kind, name: &str, meta: &mut kube::core::ObjectMeta) {
        let extras = self.extras.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = extras.get(&(kind, name.to_string())) {
            objects::apply_extras(meta, e);
        }
    }

    /// A record read back under `name` must be that record: an object made by hand, or two
    /// names that met in one object, must not pass for it.
    fn check_name(&self, name: &str, r: Record, object: &str) -> Result<Record, StoreError> {
        if r.name == name {
            Ok(r)
        } else {
            Err(StoreError::Corrupt {
                path: object.to_string(),
                reason: format!("holds the record {:?}, not {name:?}", r.name),
            })
        }
    }

    /// Runs `op` on the store's runtime, trying again while it fails transiently, until the
    /// deadline. A write whose answer was lost may have been made: tried again, an update or
    /// delete then fails its condition (Conflict, NotFound) and a create finds the name taken
    /// (AlreadyExists), and the caller re-reads, as after any race. The allocator is built for
    /// that: an assign finds the address an earlier try of its handle left in a block.
    fn call<T, F, Fut>(&self, op: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, kube::Error>> + Send,
    {
        const PAUSE: Duration = Duration::from_millis(200);
        let (timeout, client) = (self.timeout, self.client.clone());
        let r = self
            .rt
            .block(async move {
                let deadline = tokio::time::Instant::now() + timeout;
                let mut last: Option<String> = None;
                loop {
                    match tokio::time::timeout_at(deadline, op(client.clone())).await {
                        Ok(Ok(v)) => return Ok(v),
                        Ok(Err(e)) if transient(&e) => {
                            last = Some(describe(&e));
                            if tokio::time::Instant::now() + PAUSE >= deadline {
                                return Err(Failure::OutOfTime(last));
                            }
                            tokio::time::sleep(PAUSE).await;
                        }
                        Ok(Err(kube::Error::Api(s))) => return Err(Failure::Api(s)),
                        Ok(Err(e)) => return Err(Failure::Other(describe(&e))),
                        Err(_) => return Err(Failure::OutOfTime(last)),
                    }
                }
            })
            .unwrap_or_else(|| Err(Failure::Other("the kube-store thread stopped".into())));
        match &r {
            Err(Failure::OutOfTime(last)) => {
                self.health.saw::<()>(&Err(self.no_answer(last.as_deref())))
            }
            _ => self.health.saw::<()>(&Ok(())),
        }
        r
    }

    fn no_answer(&self, last: Option<&str>) -> StoreError {
        StoreError::Unavailable(format!(
            "the Kubernetes API did not answer within {} s{}",
            self.timeout.as_secs_f32(),
            last.map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        ))
    }

    /// A failure in the store's terms, for the record `kind`/`name` read at `expected`.
    fn error(&self, kind: Kind, name: &str, expected: Option<&Revision>, f: Failure) -> StoreError {
        match f {
            Failure::OutOfTime(last) => self.no_answer(last.as_deref()),
            Failure::Other(e) => StoreError::Unavailable(format!("Kubernetes API: {e}")),
            Failure::Api(s) => match (s.code, s.reason.as_str()) {
                // 404 about no object at all: the API serves no such resource (the CRDs are not
                // installed, or not established yet). Something to wait for, not a missing record.
                (404, _)
                    if s.details.as_ref().is_none_or(|d| d.name.is_empty())
                        && matches!(objects::target(kind), Target::Custom(_)) =>
                {
                    let plural = match objects::target(kind) {
                        Target::Custom(ar) => ar.plural,
                        _ => String::new(),
                    };
                    StoreError::Unavailable(format!(
                        "the Kubernetes API serves no {plural}.{GROUP}: Gingham's CRDs are not installed yet (kubectl apply -f deploy/gingham.yaml)"
                    ))
                }
                (404, _) => StoreError::NotFound {
                    kind,
                    name: name.into(),
                },
                (409, "AlreadyExists") => StoreError::AlreadyExists {
                    kind,
                    name: name.into(),
                },
                (409, _) => StoreError::Conflict {
                    kind,
                    name: name.into(),
                    expected: expected.cloned().unwrap_or(Revision(String::new())),
                },
                (401 | 403, _) => StoreError::Refused {
                    kind,
                    name: name.into(),
                    reason: format!(
                        "the Kubernetes API refused it ({} {}: {}); the agent's ServiceAccount needs the ClusterRole and Role of deploy/gingham.yaml",
                        s.code, s.reason, s.message
                    ),
                },
                (400 | 422, _) => StoreError::Refused {
                    kind,
                    name: name.into(),
                    reason: format!("the Kubernetes API refused it: {}", s.message),
                },
                _ => StoreError::Unavailable(format!(
                    "Kubernetes API: {} {}: {}",
                    s.code, s.reason, s.message
                )),
            },
        }
    }

    fn leases(client: Client, ns: &str) -> Api<Lease> {
        Api::namespaced(client, ns)
    }

    /// The Node object's metadata (all a record needs; the object's status is large), or why
    /// not.
    fn node(&self, name: &str) -> Result<kube::core::ObjectMeta, StoreError> {
        let n = name.to_string();
        self.call(move |c| {
            let n = n.clone();
            async move { Api::<Node>::all(c).get_metadata(&n).await }
        })
        .map(|m| m.metadata)
        .map_err(|f| self.error(Kind::Node, name, None, f))
    }

    /// After a Node write failed its condition: was the record gone (`NotFound`), or changed?
    fn node_conflict(&self, name: &str, rev: &Revision, e: StoreError) -> StoreError {
        if !matches!(e, StoreError::Conflict { .. }) {
            return e;
        }
        match self.node(name) {
            Ok(m) if objects::node_record(&m).is_none() => StoreError::NotFound {
                kind: Kind::Node,
                name: name.into(),
            },
            Err(StoreError::NotFound { .. }) => StoreError::NotFound {
                kind: Kind::Node,
                name: name.into(),
            },
            _ => StoreError::Conflict {
                kind: Kind::Node,
                name: name.into(),
                expected: rev.clone(),
            },
        }
    }

    fn patch_node(
        &self,
        name: &str,
        patch: serde_json::Value,
        rev: &Revision,
    ) -> Result<Node, StoreError> {
        let n = name.to_string();
        self.call(move |c| {
            let (n, patch) = (n.clone(), patch.clone());
            async move {
                Api::<Node>::all(c)
                    .patch(&n, &PatchParams::default(), &Patch::Merge(patch))
                    .await
            }
        })
        .map_err(|f| self.error(Kind::Node, name, Some(rev), f))
        .map_err(|e| self.node_conflict(name, rev, e))
    }
}

fn corrupt_err(c: CorruptRecord) -> StoreError {
    c.into()
}

fn sorted(mut listing: Listing) -> Listing {
    listing.records.sort_by(|a, b| a.name.cmp(&b.name));
    listing
}

impl Store for KubeStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Record, StoreError> {
        let object = objects::object_name_of(kind, name)?;
        let err = |f| self.error(kind, name, None, f);
        match objects::target(kind) {
            Target::Custom(ar) => {
                let obj = object.clone();
                let o = self
                    .call(move |c| {
                        let (ar, object) = (ar.clone(), obj.clone());
                        async move { Api::<DynamicObject>::all_with(c, &ar).get(&object).await }
                    })
                    .map_err(err)?;
                self.saw(kind, name, &o.metadata);
                let r = objects::custom_record(kind, &o).map_err(corrupt_err)?;
                self.check_name(name, r, &format!("{kind}/{object}"))
            }
            Target::Node => match objects::node_record(&self.node(name)?) {
                None => Err(StoreError::NotFound {
                    kind,
                    name: name.into(),
                }),
                Some(r) => r.map_err(corrupt_err),
            },
            Target::Lease(role) => {
                let ns = self.namespace.clone();
                let obj = object.clone();
                let l = self
                    .call(move |c| {
                        let object = obj.clone();
                        let api = Self::leases(c, &ns);
                        async move { api.get(&object).await }
                    })
                    .map_err(err)?;
                self.saw(kind, name, &l.metadata);
                let r = objects::lease_record(role, &l).map_err(corrupt_err)?;
                self.check_name(name, r, &format!("Lease/{object}"))
            }
        }
    }

    fn list(&self, kind: Kind) -> Result<Listing, StoreError> {
        let err = |f| self.error(kind, "", None, f);
        let mut listing = Listing::default();
        let mut take = |r: Result<Record, CorruptRecord>| match r {
            Ok(r) => listing.records.push(r),
            Err(c) => {
                tracing::warn!(path = %c.path, reason = %c.reason, "skipping unreadable record");
                listing.errors.push(c);
            }
        };
        match objects::target(kind) {
            Target::Custom(ar) => {
                let items = self
                    .call(move |c| {
                        let ar = ar.clone();
                        async move {
                            Api::<DynamicObject>::all_with(c, &ar)
                                .list(&ListParams::default())
                                .await
                        }
                    })
                    .map_err(err)?;
                for o in &items.items {
                    self.saw(kind, &objects::record_name(&o.metadata), &o.metadata);
                    take(objects::custom_record(kind, o));
                }
            }
            Target::Node => {
                let items = self
                    .call(|c| async move {
                        Api::<Node>::all(c)
                            .list_metadata(&ListParams::default())
                            .await
                    })
                    .map_err(err)?;
                items
                    .items
                    .iter()
                    .filter_map(|n| objects::node_record(&n.metadata))
                    .for_each(&mut take);
            }
            Target::Lease(role) => {
                let ns = self.namespace.clone();
                let items = self
                    .call(move |c| {
                        let api = Self::leases(c, &ns);
                        async move {
                            api.list(&ListParams::default().labels(&role.selector()))
                                .await
                        }
                    })
                    .map_err(err)?;
                for l in &items.items {
                    self.saw(kind, &objects::record_name(&l.metadata), &l.metadata);
                    take(objects::lease_record(role, l));
                }
            }
        }
        Ok(sorted(listing))
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let object = objects::object_name_of(kind, name)?;
        let err = |f| self.error(kind, name, None, f);
        match objects::target(kind) {
            Target::Custom(ar) => {
                let o = objects::custom_object(&ar, &object, name, data, None);
                let created = self
                    .call(move |c| {
                        let (ar, o) = (ar.clone(), o.clone());
                        async move {
                            Api::<DynamicObject>::all_with(c, &ar)
                                .create(&PostParams::default(), &o)
                                .await
                        }
                    })
                    .map_err(err)?;
                objects::custom_record(kind, &created).map_err(corrupt_err)
            }
            Target::Node => {
                let node = match self.node(name) {
                    Err(StoreError::NotFound { .. }) => {
                        return Err(StoreError::Refused {
                            kind,
                            name: name.into(),
                            reason: "Kubernetes has no Node of that name: the agent's node name (--node-name, NODENAME from spec.nodeName) must be its node's".into(),
                        })
                    }
                    other => other?,
                };
                if let Some(existing) = objects::node_record(&node) {
                    existing.map_err(corrupt_err)?;
                    return Err(StoreError::AlreadyExists {
                        kind,
                        name: name.into(),
                    });
                }
                let rev = objects::revision(&node);
                let patch =
                    objects::node_patch(objects::node_annotations(name, Some(&data))?, &rev);
                let node = self.patch_node(name, patch, &rev).map_err(|e| match e {
                    // Changed since we looked (say, the kubelet's status): as a lost race.
                    StoreError::Conflict { .. } | StoreError::NotFound { .. } => {
                        StoreError::AlreadyExists {
                            kind,
                            name: name.into(),
                        }
                    }
                    e => e,
                })?;
                objects::node_record(&node.metadata)
                    .unwrap_or_else(|| Err(objects_missing(name)))
                    .map_err(corrupt_err)
            }
            Target::Lease(role) => {
                let mut l = objects::lease_object(role, &object, name, &data, None)?;
                if role == objects::LeaseRole::Node {
                    // Owned by the Node, so it goes when the Node does. A Node that is not
                    // there (yet) leaves the lease without an owner, as before.
                    if let Ok(uid) = self.node(name).map(|m| m.uid.unwrap_or_default()) {
                        if !uid.is_empty() {
                            l.metadata.owner_references =
                                Some(vec![objects::owned_by_node(name, &uid)]);
                        }
                    }
                }
                let ns = self.namespace.clone();
                let created = self
                    .call(move |c| {
                        let l = l.clone();
                        let api = Self::leases(c, &ns);
                        async move { api.create(&PostParams::default(), &l).await }
                    })
                    .map_err(err)?;
                objects::lease_record(role, &created).map_err(corrupt_err)
            }
        }
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        revision: &Revision,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let object = objects::object_name_of(kind, name)?;
        let conflict = || StoreError::Conflict {
            kind,
            name: name.into(),
            expected: revision.clone(),
        };
        // Not a revision of this store: it cannot match.
        if objects::split_revision(revision).is_none() {
            return Err(conflict());
        }
        let err = |f| self.error(kind, name, Some(revision), f);
        match objects::target(kind) {
            Target::Custom(ar) => {
                let mut o = objects::custom_object(&ar, &object, name, data, Some(revision));
                self.carry_over(kind, name, &mut o.metadata);
                let replaced = self
                    .call(move |c| {
                        let (ar, o, object) = (ar.clone(), o.clone(), object.clone());
                        async move {
                            Api::<DynamicObject>::all_with(c, &ar)
                                .replace(&object, &PostParams::default(), &o)
                                .await
                        }
                    })
                    .map_err(err)?;
                objects::custom_record(kind, &replaced).map_err(corrupt_err)
            }
            Target::Node => {
                let patch =
                    objects::node_patch(objects::node_annotations(name, Some(&data))?, revision);
                let node = self.patch_node(name, patch, revision)?;
                objects::node_record(&node.metadata)
                    .unwrap_or_else(|| Err(objects_missing(name)))
                    .map_err(corrupt_err)
            }
            Target::Lease(role) => {
                let mut l = objects::lease_object(role, &object, name, &data, Some(revision))?;
                self.carry_over(kind, name, &mut l.metadata);
                let ns = self.namespace.clone();
                let replaced = self
                    .call(move |c| {
                        let (l, object) = (l.clone(), object.clone());
                        let api = Self::leases(c, &ns);
                        async move { api.replace(&object, &PostParams::default(), &l).await }
                    })
                    .map_err(err)?;
                objects::lease_record(role, &replaced).map_err(corrupt_err)
            }
        }
    }

    fn delete(&self, kind: Kind, name: &str, revision: &Revision) -> Result<(), StoreError> {
        let object = objects::object_name_of(kind, name)?;
        let Some((uid, rv)) = objects::split_revision(revision) else {
            return Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            });
        };
        let err = |f| self.error(kind, name, Some(revision), f);
        let params = DeleteParams::default().preconditions(Preconditions {
            resource_version: Some(rv),
            uid: Some(uid).filter(|u| !u.is_empty()),
        });
        match objects::target(kind) {
            Target::Custom(ar) => {
                self.call(move |c| {
                    let (ar, object, params) = (ar.clone(), object.clone(), params.clone());
                    async move {
                        Api::<DynamicObject>::all_with(c, &ar)
                            .delete(&object, &params)
                            .await
                            .map(|_| ())
                    }
                })
                .map_err(err)?;
            }
            Target::Node => {
                // The Node stays (it is the kubelet's); the record is its annotations.
                let patch = objects::node_patch(objects::node_annotations(name, None)?, revision);
                self.patch_node(name, patch, revision)?;
            }
            Target::Lease(_) => {
                let ns = self.namespace.clone();
                self.call(move |c| {
                    let (object, params) = (object.clone(), params.clone());
                    let api = Self::leases(c, &ns);
                    async move { api.delete(&object, &params).await.map(|_| ()) }
                })
                .map_err(err)?;
            }
        }
        Ok(())
    }

    fn watch(&self, kind: Kind) -> Result<Watch, StoreError> {
        let (tx, rx) = super::queue::bounded(super::WATCH_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let task = watch::WatchTask {
            client: self.client.clone(),
            namespace: self.namespace.clone(),
            kind,
            tx,
            stop: stop.clone(),
        };
        self.rt.handle().spawn(task.run());
        Ok(Watch::new(rx, stop))
    }

    fn nodes_depart(&self) -> bool {
        true
    }
}

/// A Node written with our annotations that reads back without them.
fn objects_missing(name: &str) -> CorruptRecord {
    CorruptRecord {
        kind: Kind::Node,
        name: name.into(),
        path: format!("Node/{name}"),
        reason: "the annotations just written are not on the Node".into(),
    }
}
