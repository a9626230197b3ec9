//! Leadership of a cluster-wide job through a [`LeaderLease`] record, the way client-go's
//! leader election uses a Kubernetes Lease: the holder renews it, and another agent takes it
//! over by compare-and-swap once it has seen no renewal for the lease's duration.
//!
//! Expiry is judged by this agent's own clock, from when it first saw the record unchanged, not
//! by comparing the holder's renew time with our time: clocks of two nodes may disagree by more
//! than a lease's duration, the passing of time on one node does not.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::resources::{self, LeaderLease, Versioned};
use crate::store::{Revision, Store, StoreError};

pub struct Leadership {
    store: Arc<dyn Store>,
    name: String,
    holder: String,
    duration: Duration,
    /// The holder's record as we last saw it, and when we first saw it like that.
    observed: Option<(Revision, Instant)>,
}

impl Leadership {
    /// Leadership of the job `name` (the lease record's name) for `holder` (this node).
    pub fn new(store: Arc<dyn Store>, name: &str, holder: &str, duration: Duration) -> Self {
        Leadership {
            store,
            name: name.to_string(),
            holder: holder.to_string(),
            duration,
            observed: None,
        }
    }

    /// One look: renews the lease when we hold it, takes it when nobody does or its holder
    /// stopped renewing. True when we lead now. A write that loses a race is no error: someone
    /// else leads.
    pub fn try_lead(&mut self, now_secs: u64, now: Instant) -> Result<bool, StoreError> {
        let mine = LeaderLease {
            holder: self.holder.clone(),
            renew_time: now_secs,
            duration_secs: self.duration.as_secs().max(1),
        };
        let current = resources::get::<LeaderLease>(&*self.store, &self.name)?;
        let write = match current {
            None => resources::create(&*self.store, &self.name, mine).map(|_| ()),
            Some(v) if v.value.holder == self.holder => self.renew(v, mine),
            Some(v) => {
                let since = match &self.observed {
                    Some((rev, at)) if *rev == v.revision => *at,
                    _ => {
                        self.observed = Some((v.revision.clone(), now));
                        return Ok(false);
                    }
                };
                let duration = Duration::from_secs(v.value.duration_secs.max(1));
                if now.duration_since(since) < duration {
                    return Ok(false);
                }
                tracing::info!(
                    "{}: {} stopped renewing the lease {} s ago; taking it over",
                    self.name,
                    v.value.holder,
                    now.duration_since(since).as_secs()
                );
                self.renew(v, mine)
            }
        };
        match write {
            Ok(()) => {
                self.observed = None;
                Ok(true)
            }
            Err(
                StoreError::Conflict { .. }
                | StoreError::AlreadyExists { .. }
                | StoreError::NotFound { .. },
            ) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn renew(&self, v: Versioned<LeaderLease>, mine: LeaderLease) -> Result<(), StoreError> {
        resources::update(&*self.store, Versioned { value: mine, ..v }).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    #[test]
    fn one_leader_and_a_takeover_after_the_holder_stops() {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let d = Duration::from_secs(15);
        let mut a = Leadership::new(store.clone(), "node-collector", "a", d);
        let mut b = Leadership::new(store.clone(), "node-collector", "b", d);
        let t0 = Instant::now();
        assert!(a.try_lead(100, t0).unwrap(), "nobody held it");
        assert!(!b.try_lead(100, t0).unwrap());
        // a renews: b sees a new revision each time and never takes over.
        for i in 1..5u64 {
            let t = t0 + Duration::from_secs(10 * i);
            assert!(a.try_lead(100 + 10 * i, t).unwrap());
            assert!(!b.try_lead(100 + 10 * i, t).unwrap());
        }
        // a stops. b has seen the record unchanged since t0+40 s: not before 15 s have passed.
        let last = t0 + Duration::from_secs(40);
        assert!(!b.try_lead(0, last + Duration::from_secs(14)).unwrap());
        assert!(b.try_lead(0, last + Duration::from_secs(15)).unwrap());
        // a, back, finds b leading and waits in its turn.
        assert!(!a.try_lead(200, last + Duration::from_secs(16)).unwrap());
    }

    #[test]
    fn a_holders_clock_does_not_matter() {
        // The holder's renew time is years off: only changes of the record count.
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let d = Duration::from_secs(15);
        let mut a = Leadership::new(store.clone(), "job", "a", d);
        let mut b = Leadership::new(store.clone(), "job", "b", d);
        let t0 = Instant::now();
        assert!(a.try_lead(1, t0).unwrap());
        assert!(!b.try_lead(4_000_000_000, t0).unwrap());
        assert!(a.try_lead(2, t0 + Duration::from_secs(10)).unwrap());
        assert!(!b
            .try_lead(4_000_000_000, t0 + Duration::from_secs(20))
            .unwrap());
    }
}
