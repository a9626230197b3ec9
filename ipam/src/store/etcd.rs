//! The `etcd` backend (etcd v3): one key per record, `<prefix><Kind>/<name>`, whose value is the
//! record's JSON data; a record's revision is its key's `mod_revision`.
//!
//! - Compare-and-swap is an etcd transaction: create succeeds only if `create_revision == 0`,
//!   update and delete only if `mod_revision` is still the one read. When the compare fails, the
//!   same transaction reads the key, so a failure says which it was (gone, taken, changed) in one
//!   round trip.
//! - A watch lists the kind at a revision, then watches from the next one. After a disconnect
//!   it resumes from the last revision it has seen; if etcd compacted past that, it lists again
//!   and sends the difference (the reader cannot tell the two apart).
//! - A node's `Node` and `NodeLease` records are put under an etcd lease of their own, renewed by
//!   the agent's heartbeat: when an agent stops, etcd removes both `ttl` seconds later and every
//!   other agent's mesh sees the node leave ([`Store::node_ttl`]).
//!
//! The [`Store`] trait is blocking (the allocator runs on blocking threads) while the etcd client
//! is async: the store runs a small tokio runtime on a thread of its own and every call is a
//! future sent there with a deadline. A call therefore works from any thread and never hangs
//! when etcd is unreachable or has no quorum: it fails with `Unavailable` after the deadline.

use std::collections::HashMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Identity,
    KeyValue, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::runtime::{send_all, Health, Runtime};
use super::watch_state::Seen;
use super::{
    CorruptRecord, Kind, Listing, Record, Revision, Store, StoreError, Watch, WatchEvent,
    WATCH_QUEUE,
};

/// The key prefix Gingham's records live under unless `--etcd-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "/gingham/v1/";

/// How to reach etcd: `--etcd-endpoints` and friends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdConfig {
    /// `http://host:port` or `https://host:port`, one per member.
    pub endpoints: Vec<String>,
    /// Every key starts with this; ends with `/`.
    pub prefix: String,
    /// PEM files; TLS is used when a CA is given.
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// How long one operation may take before it fails with `Unavailable`.
    pub timeout: Duration,
    /// How long a node's records outlive its last heartbeat.
    pub node_ttl: Duration,
}

impl EtcdConfig {
    pub fn new(endpoints: Vec<String>) -> Self {
        EtcdConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.to_string(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            timeout: Duration::from_secs(5),
            node_ttl: Duration::from_secs(40),
        }
    }
}

/// The `etcd` backend.
pub struct EtcdStore {
    /// Dropped with the store: stops the runtime's thread.
    rt: Runtime,
    client: Client,
    prefix: String,
    timeout: Duration,
    node_ttl: Duration,
    health: Arc<Health>,
    /// Node name → the etcd lease its Node and NodeLease records are put under.
    leases: Mutex<HashMap<String, i64>>,
}

fn unavailable(e: etcd_client::Error) -> StoreError {
    StoreError::Unavailable(format!("etcd: {}", describe(&e)))
}

/// An error in a user's words: a gRPC status by its message ("etcdserver: no leader"), a
/// connection failure by what failed, not tonic's debug dump.
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) if s.message().contains("connect") => {
            "a member cannot be reached".to_string()
        }
        etcd_client::Error::GRpcStatus(s) => s.message().to_string(),
        other => other.to_string(),
    }
}

/// What a caller is told when etcd did not serve a call within its deadline.
fn no_answer(timeout: Duration, last: Option<&etcd_client::Error>) -> StoreError {
    StoreError::Unavailable(format!(
        "etcd did not answer within {} s (no quorum, or no member reachable){}",
        timeout.as_secs_f32(),
        last.map(|e| format!("; last error: {}", describe(e)))
            .unwrap_or_default()
    ))
}

/// The request timed out in the client (tonic's deadline) rather than being refused.
fn timed_out(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            matches!(
                s.code(),
                tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
            ) || s.message().contains("Timeout expired")
        }
        _ => false,
    }
}

/// Errors after which the same call may succeed in a moment: no connection to this member, no
/// leader right now. Not a request etcd refused for what it is.
fn retriable(e: &etcd_client::Error) -> bool {
    use tonic::Code;
    match e {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(s) => matches!(
            s.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::Unknown
        ),
        _ => false,
    }
}

impl EtcdStore {
    /// Starts the client. It connects lazily: an etcd that is down now is not an error here,
    /// only the first call that cannot reach it is.
    pub fn connect(cfg: &EtcdConfig) -> Result<Self, StoreError> {
        if cfg.endpoints.is_empty() {
            return Err(StoreError::Unavailable("no etcd endpoints given".into()));
        }
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(cfg.timeout)
            .with_timeout(cfg.timeout)
            .with_keep_alive(Duration::from_secs(10), cfg.timeout)
            // A member cut off from the others must not answer (or keep a watch open) with
            // what it alone knows.
            .with_require_leader(true);
        if let Some(ca) = &cfg.ca_file {
            let read =
                |p: &PathBuf| std::fs::read(p).map_err(|e| StoreError::io("cannot read", p, e));
            let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            match (&cfg.cert_file, &cfg.key_file) {
                (Some(cert), Some(key)) => {
                    tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
                }
                (None, None) => {}
                _ => {
                    return Err(StoreError::Unavailable(
                        "a client certificate needs both a cert file and a key file".into(),
                    ))
                }
            }
            opts = opts.with_tls(tls);
        }
        let rt = Runtime::start("etcd-store")?;
        let endpoints = cfg.endpoints.clone();
        let client = rt
            .block(async move { Client::connect(endpoints, Some(opts)).await })
            .ok_or_else(|| StoreError::Unavailable("the etcd thread stopped".into()))?
            .map_err(unavailable)?;
        let mut prefix = cfg.prefix.clone();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Ok(EtcdStore {
            rt,
            client,
            prefix,
            timeout: cfg.timeout,
            node_ttl: cfg.node_ttl,
            health: Arc::new(Health::new("etcd")),
            leases: Mutex::new(HashMap::new()),
        })
    }

    /// Runs `op` on the store's runtime and waits for it, at most `timeout`. While etcd says
    /// it cannot serve now (a member down, a leader election, no leader) the operation is tried
    /// again within the deadline: the client's next try goes to another member, and an election
    /// is over in a second or two. Every write is a compare-and-swap, so a retried write that
    /// had in fact committed fails its compare and the caller re-reads, as after any conflict.
    fn call<T, F, Fut>(&self, op: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Fn(Client) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, etcd_client::Error>> + Send,
    {
        const PAUSE: Duration = Duration::from_millis(100);
        let (timeout, client) = (self.timeout, self.client.clone());
        let r = self.rt.block(async move {
            let deadline = tokio::time::Instant::now() + timeout;
            let mut last: Option<etcd_client::Error> = None;
            let r = loop {
                match tokio::time::timeout_at(deadline, op(client.clone())).await {
                    Ok(Ok(v)) => break Ok(v),
                    Ok(Err(e)) if retriable(&e) || timed_out(&e) => {
                        if retriable(&e) && tokio::time::Instant::now() + PAUSE < deadline {
                            last = Some(e);
                            tokio::time::sleep(PAUSE).await;
                            continue;
                        }
                        // Out of time while etcd could not serve: the same thing to a user
                        // however the last try failed.
                        if !timed_out(&e) {
                            last = Some(e);
                        }
                        break Err(no_answer(timeout, last.as_ref()));
                    }
                    Ok(Err(e)) => break Err(unavailable(e)),
                    Err(_) => break Err(no_answer(timeout, last.as_ref())),
                }
            };
            r
        });
        let r = r.unwrap_or_else(|| Err(StoreError::Unavailable("the etcd thread stopped".into())));
        self.health.saw(&r);
        r
    }

    fn kind_prefix(&self, kind: Kind) -> String {
        format!("{}{}/", self.prefix, kind.as_str())
    }

    fn key(&self, kind: Kind, name: &str) -> Result<String, StoreError> {
        if name.is_empty() {
            return Err(StoreError::InvalidName {
                name: name.into(),
                reason: "empty".into(),
            });
        }
        Ok(format!("{}{name}", self.kind_prefix(kind)))
    }

    /// The lease a node's records are put under: the one this store granted before, or a new
    /// one. Only `Node` and `NodeLease` records have one.
    fn lease_for(&self, kind: Kind, name: &str) -> Result<Option<i64>, StoreError> {
        if !matches!(kind, Kind::Node | Kind::NodeLease) {
            return Ok(None);
        }
        if let Some(id) = self.lock_leases().get(name) {
            return Ok(Some(*id));
        }
        let ttl = self.node_ttl.as_secs().max(1) as i64;
        let id = self
            .call(move |mut client| async move { Ok(client.lease_grant(ttl, None).await?.id()) })?;
        self.lock_leases().insert(name.to_string(), id);
        Ok(Some(id))
    }

    /// Renews a node's lease before its heartbeat is written; an expired one is forgotten, so
    /// the write that follows gets a new one.
    fn renew(&self, name: &str) -> Result<(), StoreError> {
        let Some(id) = self.lock_leases().get(name).copied() else {
            return Ok(());
        };
        let ttl = self.call(move |mut client| async move {
            let (mut keeper, mut stream) = client.lease_keep_alive(id).await?;
            keeper.keep_alive().await?;
            match stream.message().await? {
                Some(resp) => Ok(resp.ttl()),
                None => Err(etcd_client::Error::LeaseKeepAliveError(
                    "etcd closed the lease keep-alive stream".into(),
                )),
            }
        })?;
        if ttl <= 0 {
            tracing::warn!("etcd: the lease of node {name} had expired; taking a new one");
            self.lock_leases().remove(name);
        }
        Ok(())
    }

    fn lock_leases(&self) -> std::sync::MutexGuard<'_, HashMap<String, i64>> {
        // The map is only a cache of lease ids: a panic while holding it leaves it usable.
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A conditional put or delete: `op` if `cmp` holds, else a read of the key.
    fn txn(&self, cmp: Compare, op: TxnOp, key: &str) -> Result<TxnOutcome, StoreError> {
        let key = key.to_string();
        self.call(move |mut client| {
            let txn = Txn::new()
                .when([cmp.clone()])
                .and_then([op.clone()])
                .or_else([TxnOp::get(key.clone(), None)]);
            async move { Ok(outcome(client.txn(txn).await?)) }
        })
    }

    fn record(&self, kind: Kind, kv: &KeyValue) -> Result<Record, CorruptRecord> {
        record_of(&self.kind_prefix(kind), kind, kv)
    }

    fn list_keys(&self, kind: Kind, key_prefix: String) -> Result<Listing, StoreError> {
        let kind_prefix = self.kind_prefix(kind);
        self.call(move |mut client| {
            let (kind_prefix, key_prefix) = (kind_prefix.clone(), key_prefix.clone());
            async move {
                list_at(&mut client, &kind_prefix, kind, key_prefix)
                    .await
                    .map(|(l, _)| l)
            }
        })
    }
}

/// What a conditional write's answer says.
fn outcome(resp: etcd_client::TxnResponse) -> TxnOutcome {
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    if resp.succeeded() {
        return TxnOutcome::Done(revision);
    }
    let current = resp.op_responses().into_iter().find_map(|r| match r {
        TxnOpResponse::Get(mut g) => Some(g.take_kvs().into_iter().next()),
        _ => None,
    });
    TxnOutcome::Failed(current.flatten())
}

enum TxnOutcome {
    /// The compare held; the revision the write made.
    Done(i64),
    /// It did not; the key as it is now, if it exists.
    Failed(Option<KeyValue>),
}

/// A key-value as a record of `kind`, or why it is not one.
fn record_of(kind_prefix: &str, kind: Kind, kv: &KeyValue) -> Result<Record, CorruptRecord> {
    let key = String::from_utf8_lossy(kv.key()).into_owned();
    let name = key.strip_prefix(kind_prefix).unwrap_or(&key).to_string();
    let corrupt = |reason: String| CorruptRecord {
        kind,
        name: name.clone(),
        path: key.clone(),
        reason,
    };
    let data = serde_json::from_slice(kv.value()).map_err(|e| corrupt(e.to_string()))?;
    Ok(Record {
        kind,
        name: name.clone(),
        revision: Revision(kv.mod_revision().to_string()),
        data,
    })
}

/// The records under `key_prefix` and the store revision they were read at.
async fn list_at(
    client: &mut Client,
    kind_prefix: &str,
    kind: Kind,
    key_prefix: String,
) -> Result<(Listing, i64), etcd_client::Error> {
    let resp = client
        .get(key_prefix, Some(GetOptions::new().with_prefix()))
        .await?;
    let revision = resp.header().map(|h| h.revision()).unwrap_or(0);
    let mut listing = Listing::default();
    // etcd returns keys in byte order, which is the order of the names.
    for kv in resp.kvs() {
        match record_of(kind_prefix, kind, kv) {
            Ok(r) => listing.records.push(r),
            Err(c) => {
                tracing::warn!(path = %c.path, reason = %c.reason, "skipping unreadable record");
                listing.errors.push(c);
            }
        }
    }
    Ok((listing, revision))
}

/// A revision read from this store; anything else cannot match a key's revision.
fn parse_revision(r: &Revision) -> Option<i64> {
    r.0.parse().ok().filter(|n| *n > 0)
}

impl Store for EtcdStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Record, StoreError> {
        let key = self.key(kind, name)?;
        let kv = self.call(move |mut client| {
            let key = key.clone();
            async move { Ok(client.get(key, None).await?.take_kvs().into_iter().next()) }
        })?;
        match kv {
            None => Err(StoreError::NotFound {
                kind,
                name: name.into(),
            }),
            Some(kv) => self.record(kind, &kv).map_err(StoreError::from),
        }
    }

    fn list(&self, kind: Kind) -> Result<Listing, StoreError> {
        self.list_keys(kind, self.kind_prefix(kind))
    }

    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Listing, StoreError> {
        self.list_keys(kind, format!("{}{prefix}", self.kind_prefix(kind)))
    }

    fn list_names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let kind_prefix = self.kind_prefix(kind);
        self.call(move |mut client| {
            let kind_prefix = kind_prefix.clone();
            async move {
                let resp = client
                    .get(
                        kind_prefix.clone(),
                        Some(GetOptions::new().with_prefix().with_keys_only()),
                    )
                    .await?;
                // etcd returns keys in byte order, which is the order of the names.
                Ok(resp
                    .kvs()
                    .iter()
                    .map(|kv| {
                        let key = String::from_utf8_lossy(kv.key());
                        key.strip_prefix(&kind_prefix).unwrap_or(&key).to_string()
                    })
                    .collect())
            }
        })
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let key = self.key(kind, name)?;
        let value = encode(kind, name, &data)?;
        let lease = self.lease_for(kind, name)?;
        let opts = lease.map(|id| PutOptions::new().with_lease(id));
        let cmp = Compare::create_revision(key.clone(), CompareOp::Equal, 0);
        match self.txn(cmp, TxnOp::put(key.clone(), value, opts), &key)? {
            TxnOutcome::Done(revision) => Ok(Record {
                kind,
                name: name.into(),
                revision: Revision(revision.to_string()),
                data,
            }),
            TxnOutcome::Failed(current) => match current.map(|kv| self.record(kind, &kv)) {
                Some(Err(c)) => Err(c.into()),
                _ => Err(StoreError::AlreadyExists {
                    kind,
                    name: name.into(),
                }),
            },
        }
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        revision: &Revision,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let key = self.key(kind, name)?;
        let value = encode(kind, name, &data)?;
        if kind == Kind::NodeLease {
            self.renew(name)?;
        }
        let lease = self.lease_for(kind, name)?;
        let opts = lease.map(|id| PutOptions::new().with_lease(id));
        let expected = parse_revision(revision).unwrap_or(-1);
        let cmp = Compare::mod_revision(key.clone(), CompareOp::Equal, expected);
        match self.txn(cmp, TxnOp::put(key.clone(), value, opts), &key)? {
            TxnOutcome::Done(rev) => Ok(Record {
                kind,
                name: name.into(),
                revision: Revision(rev.to_string()),
                data,
            }),
            TxnOutcome::Failed(None) => Err(StoreError::NotFound {
                kind,
                name: name.into(),
            }),
            TxnOutcome::Failed(Some(_)) => Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            }),
        }
    }

    fn delete(&self, kind: Kind, name: &str, revision: &Revision) -> Result<(), StoreError> {
        let key = self.key(kind, name)?;
        let expected = parse_revision(revision).unwrap_or(-1);
        let cmp = Compare::mod_revision(key.clone(), CompareOp::Equal, expected);
        match self.txn(cmp, TxnOp::delete(key.clone(), None), &key)? {
            TxnOutcome::Done(_) => Ok(()),
            TxnOutcome::Failed(None) => Err(StoreError::NotFound {
                kind,
                name: name.into(),
            }),
            TxnOutcome::Failed(Some(_)) => Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            }),
        }
    }

    fn watch(&self, kind: Kind) -> Result<Watch, StoreError> {
        let (tx, rx) = super::queue::bounded(WATCH_QUEUE);
        let stop = Arc::new(AtomicBool::new(false));
        let task = WatchTask {
            client: self.client.clone(),
            kind,
            kind_prefix: self.kind_prefix(kind),
            tx,
            stop: stop.clone(),
            health: self.health.clone(),
        };
        self.rt.handle().spawn(task.run());
        Ok(Watch::new(rx, stop))
    }

    fn node_ttl(&self) -> Option<Duration> {
        Some(self.node_ttl)
    }
}

fn encode(kind: Kind, name: &str, data: &serde_json::Value) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(data)
        .map_err(|e| StoreError::Unavailable(format!("cannot encode {kind} {name}: {e}")))
}

/// One watch of one kind, on the store's runtime.
struct WatchTask {
    client: Client,
    kind: Kind,
    kind_prefix: String,
    tx: super::queue::QueueTx<WatchEvent>,
    stop: Arc<AtomicBool>,
    health: Arc<Health>,
}

/// Why a watch stream ended.
enum Ended {
    /// The reader is gone: stop.
    Stopped,
    /// etcd compacted past the revision we would resume from: list again.
    Compacted,
    /// The stream broke (a member went down, the network): resume after a pause.
    Broken(String),
}

impl WatchTask {
    async fn run(mut self) {
        let mut seen = Seen::new(self.kind);
        let mut synced = false;
        // The revision everything up to which has been sent; `None`: list first.
        let mut at: Option<i64> = None;
        let mut pause = Duration::from_millis(100);
        let mut broken: Option<String> = None;
        loop {
            if self.stop.load(Ordering::Relaxed) {
                return;
            }
            let from = match at {
                Some(rev) => rev,
                None => {
                    let listed = list_at(
                        &mut self.client,
                        &self.kind_prefix,
                        self.kind,
                        self.kind_prefix.clone(),
                    )
                    .await;
                    match listed {
                        Ok((listing, rev)) => {
                            let mut out = Vec::new();
                            seen.all(listing, &mut out);
                            if !synced {
                                out.push(WatchEvent::Synced);
                                synced = true;
                            }
                            if !self.send(out).await {
                                return;
                            }
                            at = Some(rev);
                            rev
                        }
                        Err(e) => {
                            self.broke(&mut broken, describe(&e));
                            pause = self.sleep(pause).await;
                            continue;
                        }
                    }
                }
            };
            match self.follow(&mut seen, from, &mut at, &mut broken).await {
                Ended::Stopped => return,
                Ended::Compacted => {
                    tracing::info!(
                        "etcd: the {} watch fell behind a compaction; listing again",
                        self.kind
                    );
                    at = None;
                }
                Ended::Broken(e) => {
                    self.broke(&mut broken, e);
                    pause = self.sleep(pause).await;
                }
            }
        }
    }

    /// Logs a broken watch once per cause, not once per attempt.
    fn broke(&self, broken: &mut Option<String>, e: String) {
        if broken.as_deref() != Some(e.as_str()) {
            tracing::warn!("etcd: the {} watch: {e}; resuming", self.kind);
            *broken = Some(e);
        }
    }

    /// Sleeps `pause` (checking the reader is still there) and returns the next pause.
    async fn sleep(&self, pause: Duration) -> Duration {
        tokio::time::sleep(pause).await;
        (pause * 2).min(Duration::from_secs(5))
    }

    /// Watches from `from + 1` until the stream ends; `at` follows what has been sent.
    async fn follow(
        &mut self,
        seen: &mut Seen,
        from: i64,
        at: &mut Option<i64>,
        broken: &mut Option<String>,
    ) -> Ended {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from + 1)
            .with_progress_notify();
        let mut stream = match self
            .client
            .watch(self.kind_prefix.clone(), Some(opts))
            .await
        {
            Ok(s) => s,
            Err(e) => return Ended::Broken(describe(&e)),
        };
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                // Only to notice a reader that went away while nothing changes.
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if self.stop.load(Ordering::Relaxed) {
                        return Ended::Stopped;
                    }
                    continue;
                }
            };
            let resp = match msg {
                Ok(Some(resp)) => resp,
                Ok(None) => return Ended::Broken("etcd closed the watch".into()),
                Err(e) => return Ended::Broken(describe(&e)),
            };
            if resp.compact_revision() > 0 {
                return Ended::Compacted;
            }
            if resp.canceled() {
                return Ended::Broken(format!(
                    "etcd cancelled the watch: {}",
                    resp.cancel_reason()
                ));
            }
            if broken.take().is_some() {
                tracing::info!("etcd: the {} watch is back", self.kind);
                self.health.set_up();
            }
            let mut out = Vec::new();
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let name = String::from_utf8_lossy(kv.key());
                let name = name
                    .strip_prefix(&self.kind_prefix)
                    .unwrap_or(&name)
                    .to_string();
                match ev.event_type() {
                    EventType::Put => {
                        let now = record_of(&self.kind_prefix, self.kind, kv).map(Some);
                        seen.one(&name, now, &mut out);
                    }
                    EventType::Delete => seen.one(&name, Ok(None), &mut out),
                }
                *at = Some(at.unwrap_or(0).max(kv.mod_revision()));
            }
            // A progress notification says everything up to its revision has been sent (etcd
            // sends one only to a watcher that has caught up). The response that confirms the
            // watch's creation does not: the history from `from` may still be on its way.
            if resp.events().is_empty() && !resp.created() {
                if let Some(h) = resp.header() {
                    *at = Some(at.unwrap_or(0).max(h.revision()));
                }
            }
            if !self.send(out).await {
                return Ended::Stopped;
            }
        }
    }

    /// Sends events to the reader; false when it is gone.
    async fn send(&self, events: Vec<WatchEvent>) -> bool {
        send_all(&self.tx, events).await
    }
}
