//! Best-route subscribers (the agent's routing owner): what each still has to see, as a set of
//! dirty prefixes, handed over in bounded batches.
//!
//! A subscriber that is slower than the RIB (a kernel taking a full table) does not make the
//! speaker queue one event per change: a changed prefix is only marked dirty, and when the
//! subscriber has room the owner turns up to [`MAX_BATCH`] dirty prefixes into events from the
//! RIB as it is *then*. A prefix that flapped ten times while the subscriber was busy costs one
//! event.
//!
//! The dirty set is kept small: when it would pass [`DIRTY_MAX`] prefixes (a full table
//! arriving faster than a kernel takes it), or when the subscriber asks for a resync, the
//! subscriber switches to a walk of the whole RIB in prefix order, which sends every best route
//! as it is when the walk reaches it. Only what the walk cannot see stays in the set: prefixes
//! withdrawn meanwhile, and changes behind the walk's position. Announcements and changes cost
//! at most [`DIRTY_MAX`] entries, not the table; withdrawals still take one each (the RIB no
//! longer holds a withdrawn prefix, so only the set remembers it), which a peer dropping a
//! whole table makes as large as that table for as long as the subscriber is behind.

use crate::rib::{Rib, RouteEvent};
use ipnet::Ipv4Net;
use std::collections::{BTreeSet, VecDeque};
use tokio::sync::mpsc;

/// Most events in one batch.
pub const MAX_BATCH: usize = 8192;
/// Batches a subscriber may have unread.
pub const CHANNEL: usize = 2;
/// Dirty prefixes kept before a walk of the whole RIB is cheaper (about 1 MB).
pub const DIRTY_MAX: usize = 65_536;

/// Changes of best routes, in prefix order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteBatch {
    pub events: Vec<RouteEvent>,
    /// With this batch the subscriber has seen every best route that existed when it
    /// subscribed (`Some(0)`) or asked for resync number `n` (`Some(n)`).
    pub synced: Option<u64>,
    /// More changes are waiting behind this batch: the subscriber is not caught up.
    pub backlog: bool,
}

/// The agent's end of a subscription.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: mpsc::Receiver<RouteBatch>,
    /// Events of a batch not yet returned by [`Subscription::next_event`].
    pending: VecDeque<RouteEvent>,
}

impl Subscription {
    pub(super) fn new(id: u64, rx: mpsc::Receiver<RouteBatch>) -> Self {
        Subscription {
            id,
            rx,
            pending: VecDeque::new(),
        }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The next batch; `None` once the speaker has stopped.
    pub async fn recv(&mut self) -> Option<RouteBatch> {
        if !self.pending.is_empty() {
            return Some(RouteBatch {
                events: self.pending.drain(..).collect(),
                synced: None,
                backlog: false,
            });
        }
        self.rx.recv().await
    }

    /// One event at a time (for tests and simple consumers).
    pub async fn next_event(&mut self) -> Option<RouteEvent> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            self.pending.extend(self.rx.recv().await?.events);
        }
    }
}

/// The owner's side of one subscriber.
#[derive(Debug)]
pub(super) struct Subscriber {
    pub tx: mpsc::Sender<RouteBatch>,
    dirty: BTreeSet<Ipv4Net>,
    /// A walk of the RIB is under way: `Some(None)` before its first prefix, `Some(Some(p))`
    /// once `p` and everything before it was sent.
    walk: Option<Option<Ipv4Net>>,
    /// A resync (or the initial dump) is under way: report it done when `dirty` empties.
    sync_pending: Option<u64>,
    next_sync: u64,
    /// A waiter task holds a clone of `tx` and will bring a permit.
    pub waiting: bool,
}

impl Subscriber {
    /// A new subscriber starts with every current best route dirty.
    pub fn new(tx: mpsc::Sender<RouteBatch>, rib: &Rib) -> Self {
        let mut s = Subscriber {
            tx,
            dirty: BTreeSet::new(),
            walk: None,
            sync_pending: None,
            next_sync: 0,
            waiting: false,
        };
        s.resync(rib);
        s
    }

    /// `prefix` changed (`rib` has it as it is now).
    pub fn mark(&mut self, prefix: Ipv4Net, rib: &Rib) {
        if let Some(at) = self.walk {
            // The walk will send it, unless it has passed it or it is gone from the RIB.
            if at.is_none_or(|at| prefix > at) && rib.has_best(prefix) {
                return;
            }
        }
        self.dirty.insert(prefix);
        if self.dirty.len() > DIRTY_MAX && self.walk.is_none() {
            // From the first dirty prefix: what the subscriber took before was taken from the
            // front of the set, so in a table that arrives in order none of it comes again.
            let first = self.dirty.first().copied();
            self.start_walk(rib, first);
        }
    }

    /// Walk the RIB from `from` on (from its start when `None`): the dirty prefixes it will
    /// visit need no entry.
    fn start_walk(&mut self, rib: &Rib, from: Option<Ipv4Net>) {
        // From just before `from`: the walk sends what comes after its position.
        let at = from.and_then(|p| rib.best_before(p));
        self.walk = Some(at);
        self.dirty
            .retain(|p| !rib.has_best(*p) || at.is_some_and(|at| *p <= at));
    }

    /// Sends every best route again; returns the number the completing batch will carry.
    pub fn resync(&mut self, rib: &Rib) -> u64 {
        self.start_walk(rib, None);
        let n = self.next_sync;
        self.next_sync += 1;
        self.sync_pending = Some(n);
        n
    }

    #[cfg(test)]
    pub fn dirty_len(&self) -> usize {
        self.dirty.len()
    }

    pub fn has_work(&self) -> bool {
        !self.dirty.is_empty() || self.walk.is_some() || self.sync_pending.is_some()
    }

    /// Up to [`MAX_BATCH`] events: the dirty prefixes, then the walk's next best routes, all
    /// as they are in the RIB now.
    pub fn take_batch(&mut self, rib: &Rib) -> RouteBatch {
        let mut events = Vec::with_capacity(MAX_BATCH.min(self.dirty.len() + 1024));
        while events.len() < MAX_BATCH {
            let Some(prefix) = self.dirty.pop_first() else {
                break;
            };
            events.push(rib.current(prefix));
        }
        if let Some(at) = self.walk {
            let room = MAX_BATCH - events.len();
            let mut last = at;
            let mut done = true;
            for (i, event) in rib.best_from(at).enumerate() {
                if i == room {
                    done = false;
                    break;
                }
                last = Some(event.prefix());
                events.push(event);
            }
            self.walk = if done { None } else { Some(last) };
        }
        let synced = if self.dirty.is_empty() && self.walk.is_none() {
            self.sync_pending.take()
        } else {
            None
        };
        RouteBatch {
            events,
            synced,
            backlog: self.has_work(),
        }
    }
}
