//! The routing owner: the one task that owns the node's routing state and the only writer of
//! the kernel's routes.
//!
//! ```text
//!                         ┌──────────────── supervisor (JoinSet): a task that ends stops the agent ─┐
//!  registry watch ──► mesh task ──add/remove peer──► SpeakerHandle ──► bgp speaker (own tasks)      │
//!                                                        ▲    │                                     │
//!                                      announce/withdraw │    │ RouteBatch (bounded, coalescing)    │
//!                                                        │    ▼                                     │
//!  IPAM ──► local task ──RoutingMsg::Local (bounded)──► ┌──────────────┐ ──netlink batches──► kernel │
//!                       (blocks, borrowed /32s)         │ routing owner│   (via, blackhole, host)   │
//!  control socket ──► handler ──RoutingMsg (bounded)──► │  this file   │                            │
//!   (routectl, CNI)    attach/detach host route, view   └──────────────┘                            │
//!                  └──► IPAM, endpoint records (blocking tasks), speaker status                     │
//!  housekeeping (heartbeat, empty blocks) ──► IPAM; metrics HTTP ──► handler                        │
//!                                                                                                   ┘
//! ```
//!
//! What it keeps is what the kernel needs and nothing more. The best routes themselves live in
//! the speaker's RIB only: each batch from the subscription is turned into kernel operations
//! and forgotten. The owner keeps the node's blocks (which prefixes get a blackhole), the
//! prefixes it announces, the pods' host routes, the blocks another node's route overrides
//! (two affinities), and the prefixes whose last write the kernel refused.
//!
//! The kernel state of a prefix is a function of its best route and of the node's blocks:
//! - best from a peer, next hop not this node: `<prefix> via <next hop> proto bird`;
//! - best local and one of our blocks (shorter than /32): `blackhole <prefix> proto bird`;
//! - anything else (withdrawn, a borrowed /32, an `--advertise` prefix): no route of ours.
//!
//! Reconcile (after a restart, once every peer has sent its table again, End-of-RIB marking
//! its end, and then every [`REPAIR_EVERY`]): read our routes from the kernel into a compact sorted table, ask
//! the speaker to send every best route again, compare each against the table as it comes,
//! and when the resync is complete delete what nothing claimed. Until the first reconcile
//! nothing of a previous run is deleted, so forwarding survives an agent restart.

use super::error::AgentError;
use crate::kernel::{BirdTarget, DesiredRoute, Kernel, KernelError, OwnedTable, RouteOp};
use bgp::fsm::State;
use bgp::{RouteBatch, RouteEvent, RouteSource, SpeakerHandle, Subscription};
use ipnet::Ipv4Net;
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// Drift repair: a full reconcile this often, like BIRD's kernel scan.
pub const REPAIR_EVERY: Duration = Duration::from_secs(30);
/// The first reconcile waits at most this long for the sessions.
pub const SWEEP_AFTER: Duration = Duration::from_secs(20);
/// ... or this long after every peer is Established (time to send their tables).
pub const SETTLE: Duration = Duration::from_secs(3);
/// A reconcile waits for the route stream to pause this long: one begun while a large table
/// is still flowing in would snapshot the kernel half-written, and every route written after
/// the snapshot would come back from the resync as a replace that meets itself.
pub const QUIET: Duration = Duration::from_secs(1);
/// Messages the owner's inbox holds.
pub const INBOX: usize = 256;
/// How often the owner looks while something is pending (the first sweep, a due repair).
pub const TICK: Duration = Duration::from_secs(1);
/// How long a block announced from a claim is kept against reads of IPAM that do not show it.
pub const CLAIM_GRACE: Duration = Duration::from_secs(10);

/// What the other tasks ask of the routing owner.
#[derive(Debug)]
pub enum RoutingMsg {
    /// This node's confirmed blocks and the addresses it borrowed, as IPAM has them now.
    Local {
        blocks: Vec<Ipv4Net>,
        borrowed: Vec<Ipv4Addr>,
        /// Answered once the announcements are made.
        done: Option<oneshot::Sender<()>>,
    },
    /// A pod's host route `<ip> dev <ifname> scope link`, kept from now on.
    AttachHost {
        ip: Ipv4Addr,
        ifname: String,
        reply: oneshot::Sender<Result<(), KernelError>>,
    },
    /// The pod is gone: its host route goes.
    DetachHost {
        ip: Ipv4Addr,
        ifname: String,
        reply: oneshot::Sender<Result<(), KernelError>>,
    },
    View(oneshot::Sender<RoutingView>),
    /// IPAM just confirmed this node's claim on a block: announce it now, before the
    /// assignment that claimed it has finished writing (the next `Local` confirms it).
    /// Answered once it is announced.
    NewBlock(Ipv4Net, oneshot::Sender<()>),
    /// An interface came up: the kernel dropped our routes through it when it went down.
    LinkUp(String),
}

/// What the owner can say about the kernel, for `routectl` and metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutingView {
    pub blocks: BTreeSet<Ipv4Net>,
    /// Our blocks whose best route is another node's (two affinities): no blackhole.
    pub overridden: BTreeSet<Ipv4Net>,
    /// Prefixes the kernel refused on the last try (retried by the repair).
    pub failed: BTreeSet<Ipv4Net>,
    pub announced: BTreeSet<Ipv4Net>,
    pub host_routes: usize,
    /// The first reconcile after start has run.
    pub swept: bool,
}

impl RoutingView {
    /// Whether the kernel holds the route for a best path of `prefix` from `source` via
    /// `next_hop` (as the owner last wrote it).
    pub fn in_kernel(
        &self,
        prefix: Ipv4Net,
        source: RouteSource,
        next_hop: Ipv4Addr,
        me: Ipv4Addr,
    ) -> bool {
        if self.failed.contains(&prefix) {
            return false;
        }
        match source {
            RouteSource::Local => {
                self.blocks.contains(&prefix)
                    && prefix.prefix_len() < 32
                    && !self.overridden.contains(&prefix)
            }
            RouteSource::Peer(_) => next_hop != me,
        }
    }

    /// Blackholes in the kernel.
    pub fn blackholes(&self) -> usize {
        self.blocks
            .iter()
            .filter(|b| b.prefix_len() < 32)
            .filter(|b| !self.overridden.contains(b) && !self.failed.contains(b))
            .count()
    }
}

/// The other tasks' handle on the owner.
#[derive(Debug, Clone)]
pub struct RoutingHandle {
    tx: mpsc::Sender<RoutingMsg>,
}

impl RoutingHandle {
    pub fn new(tx: mpsc::Sender<RoutingMsg>) -> Self {
        RoutingHandle { tx }
    }

    async fn send(&self, msg: RoutingMsg) -> Result<(), AgentError> {
        self.tx
            .send(msg)
            .await
            .map_err(|_| AgentError::OwnerStopped)
    }

    pub async fn attach_host(&self, ip: Ipv4Addr, ifname: &str) -> Result<(), AgentError> {
        let (reply, rx) = oneshot::channel();
        self.send(RoutingMsg::AttachHost {
            ip,
            ifname: ifname.to_string(),
            reply,
        })
        .await?;
        Ok(rx.await.map_err(|_| AgentError::OwnerStopped)??)
    }

    pub async fn detach_host(&self, ip: Ipv4Addr, ifname: &str) -> Result<(), AgentError> {
        let (reply, rx) = oneshot::channel();
        self.send(RoutingMsg::DetachHost {
            ip,
            ifname: ifname.to_string(),
            reply,
        })
        .await?;
        Ok(rx.await.map_err(|_| AgentError::OwnerStopped)??)
    }

    /// Tells the owner an interface came up (see [`RoutingMsg::LinkUp`]).
    pub async fn link_up(&self, ifname: String) -> Result<(), AgentError> {
        self.send(RoutingMsg::LinkUp(ifname)).await
    }

    pub async fn view(&self) -> Result<RoutingView, AgentError> {
        let (reply, rx) = oneshot::channel();
        self.send(RoutingMsg::View(reply)).await?;
        rx.await.map_err(|_| AgentError::OwnerStopped)
    }

    /// A block claimed just now: returns once it is announced.
    pub async fn new_block(&self, block: Ipv4Net) -> Result<(), AgentError> {
        let (done, rx) = oneshot::channel();
        self.send(RoutingMsg::NewBlock(block, done)).await?;
        rx.await.map_err(|_| AgentError::OwnerStopped)
    }

    /// Sends IPAM's view of this node's blocks; returns once the announcements are made.
    pub async fn set_local(
        &self,
        blocks: Vec<Ipv4Net>,
        borrowed: Vec<Ipv4Addr>,
    ) -> Result<(), AgentError> {
        let (done, rx) = oneshot::channel();
        self.send(RoutingMsg::Local {
            blocks,
            borrowed,
            done: Some(done),
        })
        .await?;
        rx.await.map_err(|_| AgentError::OwnerStopped)
    }
}

/// A reconcile in progress: our routes as the kernel had them, and which the resync claimed.
struct Reconcile {
    table: OwnedTable,
    claimed: Vec<bool>,
    /// The resync number whose completion ends it.
    resync: u64,
}

/// When the first reconcile may run.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// Not yet: started at, and since when every peer has been Established.
    Waiting {
        started: Instant,
        all_up_since: Option<Instant>,
    },
    Done,
}

/// What the first sweep needs to know of a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relearning {
    pub established: bool,
    /// Both sides negotiated graceful restart: the peer marks the end of its table.
    pub graceful_restart: bool,
    pub end_of_rib: bool,
}

impl Relearning {
    fn of(p: &bgp::PeerStatus) -> Self {
        Relearning {
            established: p.state == State::Established,
            graceful_restart: p.graceful_restart.is_some(),
            end_of_rib: p.end_of_rib_received,
        }
    }
}

/// Whether every peer has sent its table again, so that what nobody re-announced is stale
/// (RFC 4724 §4.1: the restarting speaker defers its route selection, here the sweep, until
/// it has the End-of-RIB from every peer). A peer that sends End-of-RIB is done when it has;
/// one that does not (no graceful restart negotiated; End-of-RIB is optional then) gets
/// `settle` after every session is up. The caller bounds the whole wait.
pub fn relearned(peers: &[Relearning], all_up_for: Option<Duration>, settle: Duration) -> bool {
    let Some(up_for) = all_up_for else {
        return false;
    };
    !peers.is_empty()
        && peers
            .iter()
            .all(|p| p.established && (p.end_of_rib || (!p.graceful_restart && up_for >= settle)))
}

/// The owner's configuration.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// This node's address: a best route via ourselves is never installed.
    pub me: Ipv4Addr,
    /// `--advertise` prefixes.
    pub advertise: Vec<Ipv4Net>,
    pub sweep_after: Duration,
    pub settle: Duration,
    pub repair_every: Duration,
}

impl RoutingConfig {
    pub fn new(me: Ipv4Addr, advertise: Vec<Ipv4Net>) -> Self {
        RoutingConfig {
            me,
            advertise,
            sweep_after: SWEEP_AFTER,
            settle: SETTLE,
            repair_every: REPAIR_EVERY,
        }
    }
}

pub struct RoutingOwner<K: Kernel> {
    cfg: RoutingConfig,
    kernel: K,
    speaker: SpeakerHandle,
    blocks: BTreeSet<Ipv4Net>,
    /// Our blocks and borrowed /32s as IPAM last said (announced with `--advertise`).
    local: Vec<Ipv4Net>,
    /// Blocks announced from a claim, and when (see [`CLAIM_GRACE`]).
    claimed: BTreeMap<Ipv4Net, Instant>,
    announced: BTreeSet<Ipv4Net>,
    overridden: BTreeSet<Ipv4Net>,
    failed: BTreeSet<Ipv4Net>,
    /// Pods' host routes: address → cali device.
    host_routes: BTreeMap<Ipv4Addr, String>,
    reconcile: Option<Reconcile>,
    sweep: Sweep,
    next_repair: Instant,
    /// When the last batch of route changes came (see [`QUIET`]).
    last_batch: Instant,
    /// The last batch said more changes wait behind it: the kernel is behind the RIB.
    behind: bool,
    /// The next look while something is pending: it moves only when the look happens, so a
    /// steady stream of batches cannot put it off.
    tick_at: Instant,
}

impl<K: Kernel> RoutingOwner<K> {
    /// `host_routes`: the pods recorded on this node (their routes are kept from the start).
    pub fn new(
        cfg: RoutingConfig,
        kernel: K,
        speaker: SpeakerHandle,
        host_routes: impl IntoIterator<Item = (Ipv4Addr, String)>,
    ) -> Self {
        let now = Instant::now();
        RoutingOwner {
            next_repair: now + cfg.repair_every,
            cfg,
            kernel,
            speaker,
            blocks: BTreeSet::new(),
            local: Vec::new(),
            claimed: BTreeMap::new(),
            announced: BTreeSet::new(),
            overridden: BTreeSet::new(),
            failed: BTreeSet::new(),
            host_routes: host_routes.into_iter().collect(),
            reconcile: None,
            sweep: Sweep::Waiting {
                started: now,
                all_up_since: None,
            },
            last_batch: now,
            behind: false,
            tick_at: now + TICK,
        }
    }

    /// Announces this node's blocks, borrowed addresses and `--advertise` prefixes before any
    /// peer is configured, so every peer's first table from us (and the End-of-RIB after it,
    /// which a restarting node's peers sweep on) already holds them.
    pub async fn announce_initial(
        &mut self,
        blocks: Vec<Ipv4Net>,
        borrowed: Vec<Ipv4Addr>,
    ) -> Result<(), AgentError> {
        self.set_local(blocks, borrowed).await
    }

    async fn set_local(
        &mut self,
        mut blocks: Vec<Ipv4Net>,
        borrowed: Vec<Ipv4Addr>,
    ) -> Result<(), AgentError> {
        // A read of IPAM that began before a claim does not know the block yet: a block
        // claimed in the last few seconds stays unless a later read drops it.
        let now = Instant::now();
        self.claimed
            .retain(|b, at| now - *at < CLAIM_GRACE && !blocks.contains(b));
        blocks.extend(self.claimed.keys().copied());
        self.blocks = blocks.iter().copied().collect();
        self.overridden.retain(|b| self.blocks.contains(b));
        self.local = blocks
            .iter()
            .copied()
            .chain(borrowed.iter().map(|ip| Ipv4Net::from(*ip)))
            .collect();
        self.sync_announcements().await
    }

    /// Runs until the speaker's route stream ends (the speaker stopped) or every sender of
    /// `inbox` is gone; both mean the agent is stopping, and the supervisor says why.
    pub async fn run(
        mut self,
        mut routes: Subscription,
        mut inbox: mpsc::Receiver<RoutingMsg>,
    ) -> Result<(), AgentError> {
        // The advertised prefixes need no IPAM: announce them at once.
        self.sync_announcements().await?;
        loop {
            // Woken for the next thing due, not every second: an idle agent of a large mesh
            // sleeps until its next repair.
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                batch = routes.recv() => match batch {
                    Some(b) => self.apply_batch(b).await,
                    None => return Err(AgentError::TaskEnded {
                        task: "speaker route stream",
                        reason: None,
                    }),
                },
                msg = inbox.recv() => match msg {
                    Some(m) => self.handle(m).await?,
                    None => return Ok(()),
                },
                _ = tokio::time::sleep_until(wake) => {
                    self.tick_at = Instant::now() + TICK;
                    self.on_tick(&routes).await?
                }
            }
        }
    }

    /// When the owner has something to look at by itself: every second until the first sweep
    /// (it watches the sessions come up) and while a due repair waits for a pause; otherwise
    /// the next repair. Route batches and messages wake it anyway.
    fn next_wake(&self, now: Instant) -> Instant {
        match self.sweep {
            Sweep::Waiting { .. } => self.tick_at,
            // The resync's batches carry a reconcile to its end.
            Sweep::Done if self.reconcile.is_some() => now + self.cfg.repair_every,
            Sweep::Done if now < self.next_repair => self.next_repair,
            Sweep::Done => self.tick_at,
        }
    }

    async fn handle(&mut self, msg: RoutingMsg) -> Result<(), AgentError> {
        match msg {
            RoutingMsg::Local {
                blocks,
                borrowed,
                done,
            } => {
                self.set_local(blocks, borrowed).await?;
                if let Some(done) = done {
                    let _ = done.send(());
                }
            }
            RoutingMsg::AttachHost { ip, ifname, reply } => {
                let r = self.kernel.add_host_route(ip, &ifname).await;
                if r.is_ok() {
                    self.host_routes.insert(ip, ifname);
                }
                let _ = reply.send(r);
            }
            RoutingMsg::DetachHost { ip, ifname, reply } => {
                let r = self.kernel.delete_host_route(ip, &ifname).await;
                if r.is_ok() && self.host_routes.get(&ip) == Some(&ifname) {
                    self.host_routes.remove(&ip);
                }
                let _ = reply.send(r);
            }
            RoutingMsg::View(reply) => {
                let _ = reply.send(self.view());
            }
            RoutingMsg::NewBlock(block, done) => {
                self.claimed.insert(block, Instant::now());
                self.blocks.insert(block);
                if !self.local.contains(&block) {
                    self.local.push(block);
                }
                self.sync_announcements().await?;
                let _ = done.send(());
            }
            // Repair now rather than at the next period. Before the first sweep there is
            // nothing to do: that reconcile is still to come.
            RoutingMsg::LinkUp(ifname) => {
                if matches!(self.sweep, Sweep::Done) {
                    tracing::info!("link {ifname} is up: repairing the kernel's routes now");
                    self.next_repair = Instant::now();
                }
            }
        }
        Ok(())
    }

    fn view(&self) -> RoutingView {
        RoutingView {
            blocks: self.blocks.clone(),
            overridden: self.overridden.clone(),
            failed: self.failed.clone(),
            announced: self.announced.clone(),
            host_routes: self.host_routes.len(),
            swept: matches!(self.sweep, Sweep::Done),
        }
    }

    /// Announces our blocks, borrowed /32s and `--advertise` prefixes; withdraws the rest.
    async fn sync_announcements(&mut self) -> Result<(), AgentError> {
        let want: BTreeSet<Ipv4Net> = self
            .local
            .iter()
            .chain(self.cfg.advertise.iter())
            .copied()
            .collect();
        for p in want
            .difference(&self.announced)
            .copied()
            .collect::<Vec<_>>()
        {
            self.speaker.announce(p, None).await?;
            tracing::info!("announcing {p}");
            self.announced.insert(p);
        }
        for p in self
            .announced
            .difference(&want)
            .copied()
            .collect::<Vec<_>>()
        {
            self.speaker.withdraw(p).await?;
            tracing::info!("withdrawing {p}");
            self.announced.remove(&p);
        }
        Ok(())
    }

    /// What the kernel should hold for a prefix, given its best route now.
    fn desired(&mut self, event: &RouteEvent) -> Option<DesiredRoute> {
        match *event {
            RouteEvent::Best {
                prefix,
                next_hop,
                source: RouteSource::Peer(_),
            } => {
                if self.blocks.contains(&prefix) {
                    // Another node routes one of our blocks (two affinities): its route wins.
                    self.overridden.insert(prefix);
                }
                // A route back to ourselves (a peer reflecting our own prefix) is never
                // installed.
                (next_hop != self.cfg.me).then(|| DesiredRoute::via(prefix, next_hop))
            }
            RouteEvent::Best {
                prefix,
                source: RouteSource::Local,
                ..
            }
            | RouteEvent::Withdrawn { prefix } => {
                self.overridden.remove(&prefix);
                // No blackhole for a /32 block: it would take the pod's host route's place
                // (Calico #2624).
                (self.blocks.contains(&prefix) && prefix.prefix_len() < 32)
                    .then(|| DesiredRoute::blackhole(prefix))
            }
        }
    }

    /// Turns a batch of best-route changes into one batch of kernel operations.
    async fn apply_batch(&mut self, batch: RouteBatch) {
        self.last_batch = Instant::now();
        self.behind = batch.backlog;
        let mut ops = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let want = self.desired(event);
            let prefix = event.prefix();
            if let Some(rec) = &mut self.reconcile {
                // Reconciling: write only what differs from the kernel.
                let have = rec.table.find(&prefix).map(|i| {
                    rec.claimed[i] = true;
                    rec.table.bird[i].1
                });
                let want_target = want.as_ref().map(|d| match d.target {
                    crate::kernel::RouteTarget::Via(gw) => BirdTarget::Via(gw),
                    _ => BirdTarget::Blackhole,
                });
                if have == want_target && !self.failed.contains(&prefix) {
                    continue;
                }
            }
            ops.push(match want {
                Some(route) => RouteOp::Replace(route),
                None => RouteOp::Remove(prefix),
            });
        }
        self.write(ops).await;
        if let (Some(n), Some(rec)) = (batch.synced, &self.reconcile) {
            if rec.resync == n {
                self.finish_reconcile().await;
            }
        }
    }

    /// Applies `ops`, remembering which prefixes the kernel refused.
    async fn write(&mut self, ops: Vec<RouteOp>) {
        if ops.is_empty() {
            return;
        }
        match self.kernel.apply(&ops).await {
            Ok(results) => {
                for (op, err) in ops.iter().zip(results) {
                    match err {
                        // The repair retries what the kernel refused; said once per prefix
                        // until it succeeds, not at every retry.
                        Some(e) if self.failed.insert(op.prefix()) => {
                            tracing::warn!("kernel: {e}")
                        }
                        Some(e) => tracing::debug!("kernel, still: {e}"),
                        None => {
                            if self.failed.remove(&op.prefix()) {
                                tracing::info!("kernel: {} is written now", op.prefix());
                            }
                        }
                    }
                }
            }
            Err(e) => {
                tracing::warn!("kernel: a batch of {} route changes failed: {e}", ops.len());
                self.failed.extend(ops.iter().map(RouteOp::prefix));
            }
        }
    }

    async fn on_tick(&mut self, routes: &Subscription) -> Result<(), AgentError> {
        let now = Instant::now();
        match self.sweep {
            Sweep::Waiting {
                started,
                all_up_since,
            } => {
                let status = self.speaker.status().await?;
                let peers: Vec<Relearning> = status.peers.iter().map(Relearning::of).collect();
                let all_up = !peers.is_empty() && peers.iter().all(|p| p.established);
                let all_up_since = if all_up {
                    all_up_since.or(Some(now))
                } else {
                    None
                };
                self.sweep = Sweep::Waiting {
                    started,
                    all_up_since,
                };
                // The table written, too: a pause in the route stream. And never while the
                // kernel is still behind the RIB, whatever the time: a snapshot of a kernel
                // half-written makes every route written after it come back as a replace.
                let quiet = now - self.last_batch >= QUIET;
                let relearned =
                    relearned(&peers, all_up_since.map(|t| now - t), self.cfg.settle) && quiet;
                if (relearned || now - started >= self.cfg.sweep_after)
                    && !self.behind
                    && self.reconcile.is_none()
                {
                    self.start_reconcile(routes).await?;
                }
            }
            // A repair waits for a pause too, but not longer than one more period.
            Sweep::Done
                if now >= self.next_repair
                    && (now - self.last_batch >= QUIET
                        || now >= self.next_repair + self.cfg.repair_every)
                    && !self.behind
                    && self.reconcile.is_none() =>
            {
                self.start_reconcile(routes).await?;
            }
            Sweep::Done => {}
        }
        Ok(())
    }

    async fn start_reconcile(&mut self, routes: &Subscription) -> Result<(), AgentError> {
        let table = match self.kernel.owned_table().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("kernel reconcile skipped: cannot read the routing table: {e}");
                self.next_repair = Instant::now() + self.cfg.repair_every;
                return Ok(());
            }
        };
        let resync = self.speaker.resync(routes).await?;
        tracing::debug!(
            "reconcile: {} routes of ours in the kernel, resync {resync}",
            table.bird.len()
        );
        self.reconcile = Some(Reconcile {
            claimed: vec![false; table.bird.len()],
            table,
            resync,
        });
        Ok(())
    }

    /// The resync is complete: what no best route claimed is stale; host routes are brought
    /// to what the endpoints say.
    async fn finish_reconcile(&mut self) {
        let Some(rec) = self.reconcile.take() else {
            return;
        };
        let mut ops: Vec<RouteOp> = rec
            .table
            .bird
            .iter()
            .zip(&rec.claimed)
            .filter(|(_, claimed)| !**claimed)
            .map(|((prefix, _), _)| RouteOp::Remove(*prefix))
            .collect();
        let stale = ops.len();
        // Our blocks' blackholes, in case the kernel lost one the stream did not cover.
        for b in &self.blocks {
            let present = rec
                .table
                .find(b)
                .map(|i| rec.table.bird[i].1 == BirdTarget::Blackhole);
            if b.prefix_len() < 32
                && !self.overridden.contains(b)
                && present != Some(true)
                && self.announced.contains(b)
            {
                ops.push(RouteOp::Replace(DesiredRoute::blackhole(*b)));
            }
        }
        // Pods: a device that is gone (deleted while we were down) gets no route; its record
        // stays until CNI DEL, which kubelet retries.
        let links = self.kernel.interface_names().await.unwrap_or_default();
        let have: BTreeMap<Ipv4Addr, &String> =
            rec.table.hosts.iter().map(|(ip, dev)| (*ip, dev)).collect();
        let mut hosts = 0;
        for (ip, dev) in &self.host_routes {
            if links.contains(dev) && have.get(ip) != Some(&dev) {
                ops.push(RouteOp::Replace(DesiredRoute::host(*ip, dev)));
                hosts += 1;
            }
        }
        for (ip, dev) in &rec.table.hosts {
            if self.host_routes.get(ip) != Some(dev) {
                ops.push(RouteOp::Delete(DesiredRoute::host(*ip, dev)));
                hosts += 1;
            }
        }
        if stale + hosts > 0 {
            tracing::info!(
                "kernel reconcile: {stale} stale routes removed, {hosts} host routes repaired"
            );
        }
        self.write(ops).await;
        if !matches!(self.sweep, Sweep::Done) {
            tracing::info!("first reconcile done: the kernel matches the RIB");
            // A graceful restart is over: new sessions are no restart any more.
            if let Err(e) = self.speaker.restart_complete().await {
                tracing::debug!("restart complete: {e}");
            }
        }
        self.sweep = Sweep::Done;
        self.next_repair = Instant::now() + self.cfg.repair_every;
    }
}

#[cfg(test)]
mod tests;
