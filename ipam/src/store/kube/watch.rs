//! One watch of one kind, on the store's runtime: kube-runtime's watcher turned into the
//! store's [`WatchEvent`]s.
//!
//! The watcher lists, then watches from the list's resourceVersion; when the connection drops
//! it watches again from the last resourceVersion it saw, and when the API server says that one
//! is too old (410 Gone) it lists again; between failed attempts it backs off. Each listing
//! (`Init` … `InitDone`) is compared with what the reader was told, so after a relist the reader
//! gets the difference, as from every other backend.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::Value;

use super::objects::{self, Target};
use crate::store::runtime::send_all;
use crate::store::watch_state::Seen;
use crate::store::{CorruptRecord, Kind, Listing, Record, WatchEvent};

pub(super) struct WatchTask {
    pub client: Client,
    pub namespace: String,
    pub kind: Kind,
    pub tx: crate::store::queue::QueueTx<WatchEvent>,
    pub stop: Arc<AtomicBool>,
}

/// What an object is to the reader: its record's name, and the record (`None`: not a record,
/// like a Node no agent registered).
type Read = (String, Option<Result<Record, CorruptRecord>>);

fn meta_name(m: &kube::core::ObjectMeta) -> String {
    m.annotations
        .as_ref()
        .and_then(|a| a.get(objects::NAME))
        .or(m.name.as_ref())
        .cloned()
        .unwrap_or_default()
}

impl WatchTask {
    pub async fn run(self) {
        let kind = self.kind;
        match objects::target(kind) {
            Target::Custom(ar) => {
                let api = Api::<DynamicObject>::all_with(self.client.clone(), &ar);
                let stream = watcher(api, watcher::Config::default());
                self.follow(stream, move |o: &DynamicObject| {
                    (
                        meta_name(&o.metadata),
                        Some(objects::custom_record(kind, o)),
                    )
                })
                .await
            }
            Target::Node => {
                // Metadata only: the annotations are all a record needs, and a Node's status
                // (images, conditions) is most of its size, sent again at every kubelet update.
                let api = Api::<PartialObjectMeta<Node>>::all(self.client.clone());
                let stream = watcher(api, watcher::Config::default());
                self.follow(stream, |n: &PartialObjectMeta<Node>| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        objects::node_record(&n.metadata),
                    )
                })
                .await
            }
            Target::Lease(role) => {
                let api = Api::<Lease>::namespaced(self.client.clone(), &self.namespace);
                let cfg = watcher::Config::default().labels(&role.selector());
                let stream = watcher(api, cfg);
                self.follow(stream, move |l: &Lease| {
                    (meta_name(&l.metadata), Some(objects::lease_record(role, l)))
                })
                .await
            }
        }
    }

    async fn follow<K, S>(self, stream: S, read: impl Fn(&K) -> Read)
    where
        K: Clone + Debug + Send + 'static,
        S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    {
        let mut stream = std::pin::pin!(stream.default_backoff());
        let mut seen = Seen::new(self.kind);
        let mut synced = false;
        let mut listing: Option<Listing> = None;
        // A Node changes with every status the kubelet posts; the reader hears of it only
        // when its record (our annotations) changes.
        let mut last_data: Option<HashMap<String, Value>> =
            (self.kind == Kind::Node).then(HashMap::new);
        let mut broken: Option<String> = None;
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                // Only to notice a reader that went away while nothing changes.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    continue;
                }
            };
            let event = match next {
                None => return, // a watcher never ends by itself
                Some(Err(e)) => {
                    // Logged once per cause, not once per attempt.
                    let e = e.to_string();
                    if broken.as_deref() != Some(e.as_str()) {
                        tracing::warn!("Kubernetes API: the {} watch: {e}; retrying", self.kind);
                        broken = Some(e);
                    }
                    continue;
                }
                Some(Ok(ev)) => ev,
            };
            if broken.take().is_some() {
                tracing::info!("Kubernetes API: the {} watch is back", self.kind);
            }
            let mut out = Vec::new();
            match event {
                watcher::Event::Init => listing = Some(Listing::default()),
                watcher::Event::InitApply(o) => {
                    let l = listing.get_or_insert_with(Listing::default);
                    match read(&o).1 {
                        Some(Ok(r)) => l.records.push(r),
                        Some(Err(c)) => l.errors.push(c),
                        None => {}
                    }
                }
                watcher::Event::InitDone => {
                    let mut l = listing.take().unwrap_or_default();
                    l.records.sort_by(|a, b| a.name.cmp(&b.name));
                    seen.all(l, &mut out);
                    if !synced {
                        out.push(WatchEvent::Synced);
                        synced = true;
                    }
                }
                watcher::Event::Apply(o) => {
                    let (name, rec) = read(&o);
                    let now = match rec {
                        Some(Ok(r)) => Ok(Some(r)),
                        Some(Err(c)) => Err(c),
                        None => Ok(None),
                    };
                    seen.one(&name, now, &mut out);
                }
                watcher::Event::Delete(o) => {
                    let (name, _) = read(&o);
                    seen.one(&name, Ok(None), &mut out);
                }
            }
            if let Some(last) = last_data.as_mut() {
                out.retain(|ev| match ev {
                    WatchEvent::Added(r) | WatchEvent::Modified(r) => {
                        last.insert(r.name.clone(), r.data.clone()).as_ref() != Some(&r.data)
                            || matches!(ev, WatchEvent::Added(_))
                    }
                    WatchEvent::Deleted { name, .. } => {
                        last.remove(name);
                        true
                    }
                    _ => true,
                });
            }
            if !send_all(&self.tx, out).await {
                return;
            }
        }
    }
}
