//! A watch by polling: a thread asks for a listing every interval and sends the differences.
//! The lister may answer "unchanged" without reading anything (the file store looks at its
//! directory's mtime), so an idle watch costs one `stat` per interval. The thread stops when the
//! `Watch` is dropped or its receiver is gone.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Arc;
use std::time::Duration;

use super::StoreError;
use super::{Kind, Listing, Revision, Watch, WatchEvent};

pub fn spawn<F>(kind: Kind, interval: Duration, list: F) -> Result<Watch, StoreError>
where
    F: FnMut() -> Result<Option<Listing>, StoreError> + Send + 'static,
{
    let mut list = list;
    let (tx, rx) = channel();
    let stop = Arc::new(AtomicBool::new(false));
    // The first listing is taken here, so an error (store unreadable) reaches the caller.
    let first = list()?.unwrap_or_default();
    let mut seen = Seen::default();
    if !seen.diff(first, &tx) || tx.send(WatchEvent::Synced).is_err() {
        return Ok(Watch::new(rx, stop));
    }
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name(format!("watch-{kind}"))
        .spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                if stop2.load(Ordering::Relaxed) {
                    break;
                }
                match list() {
                    Ok(None) => {}
                    Ok(Some(listing)) => {
                        if !seen.diff(listing, &tx) {
                            break;
                        }
                    }
                    // The store may come back (a remounted disk): keep polling.
                    Err(e) => tracing::warn!(%kind, error = %e, "watch: listing failed"),
                }
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start watch thread: {e}")))?;
    Ok(Watch::new(rx, stop))
}

#[derive(Default)]
struct Seen {
    revisions: BTreeMap<String, Revision>,
    kinds: BTreeMap<String, Kind>,
    /// Corrupt files already reported, so one bad file is not reported every interval.
    corrupt: BTreeSet<(String, String)>,
    /// Names unreadable at the last listing: readable again is news even at the old revision.
    corrupt_names: BTreeSet<String>,
}

impl Seen {
    /// Sends what changed; false when the receiver is gone.
    fn diff(&mut self, listing: Listing, tx: &Sender<WatchEvent>) -> bool {
        let mut now = BTreeMap::new();
        let mut events = Vec::new();
        for rec in listing.records {
            now.insert(rec.name.clone(), rec.revision.clone());
            self.kinds.insert(rec.name.clone(), rec.kind);
            match self.revisions.get(&rec.name) {
                None => events.push(WatchEvent::Added(rec)),
                Some(r) if *r != rec.revision || self.corrupt_names.contains(&rec.name) => {
                    events.push(WatchEvent::Modified(rec))
                }
                Some(_) => {}
            }
        }
        // A record that became unreadable is not gone: keep the revision it was last read at,
        // so no Deleted is sent (a reader keeps what it knew) and a repair shows as Modified.
        for c in &listing.errors {
            if let Some(r) = self.revisions.get(&c.name) {
                now.insert(c.name.clone(), r.clone());
            }
        }
        for name in self.revisions.keys() {
            if !now.contains_key(name) {
                if let Some(kind) = self.kinds.remove(name) {
                    events.push(WatchEvent::Deleted {
                        kind,
                        name: name.clone(),
                    });
                }
            }
        }
        let mut reported = BTreeSet::new();
        self.corrupt_names = listing.errors.iter().map(|c| c.name.clone()).collect();
        for c in listing.errors {
            let key = (c.path.clone(), c.reason.clone());
            if !self.corrupt.contains(&key) {
                events.push(WatchEvent::Error(c));
            }
            reported.insert(key);
        }
        self.corrupt = reported;
        self.revisions = now;
        events.into_iter().all(|ev| tx.send(ev).is_ok())
    }
}
