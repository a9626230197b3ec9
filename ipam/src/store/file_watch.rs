//! Watches of the file store. Each kind's directory is watched with inotify, one inotify
//! instance per process shared by every watch, asking only for what changes a record (a file
//! renamed into place, deleted, or written in place): a change names its file, so only that
//! file is read, reads by others wake nobody, and an idle watch costs nothing. Where inotify
//! cannot be had (the kernel's `fs.inotify.max_user_instances`, 128 by default, is per user,
//! and 250 lab agents run as one user) a watch polls instead: a `stat` of the directory a
//! second, and when its mtime moved a `readdir` comparing inode numbers (every write renames a
//! new file into place), so it still reads only the files that changed; an edit in place is
//! not seen that way.

use std::collections::{BTreeSet, HashMap};
use std::ffi::OsStr;
use std::os::unix::fs::DirEntryExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, TrySendError};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use inotify::{EventMask, WatchDescriptor, WatchMask, Watches};

use super::file::{list_dir, read_one, record_stem};
use super::queue::{self, QueueRx, QueueTx};
use super::watch_state::Seen;
use super::WATCH_QUEUE;
use super::{names, Kind, StoreError, Watch, WatchEvent};

/// How often a polling watch reads its directory.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// How often an inotify watch's thread looks whether its `Watch` was dropped: only how long
/// the thread outlives it, so long enough that 250 idle agents do not wake for it.
const STOP_CHECK: Duration = Duration::from_secs(5);

/// What the inotify side tells one watch.
enum DirEvent {
    /// The record file with this name (`<stem>.json`) changed, appeared or went.
    Changed(String),
    /// Events were lost (queue overflow): list everything.
    Rescan,
}

/// Changes queued for one watch. The inotify thread never waits for a watch: when a watch's
/// queue is full it sets the watch's `lagging` flag instead, and the watch lists its directory
/// again, as after the kernel's own queue overflow.
/// (Tiny under test, so that the tests can fill it.)
const DIR_QUEUE: usize = if cfg!(test) { 8 } else { 1024 };

/// One watch as the inotify thread sees it.
struct Listener {
    id: u64,
    tx: QueueTx<DirEvent>,
    lagging: Arc<AtomicBool>,
}

impl Listener {
    fn tell(&self, ev: DirEvent) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(ev) {
            self.lagging.store(true, Ordering::Relaxed);
        }
    }
}

/// The watches to tell about one watched directory.
struct Route {
    dir: PathBuf,
    watches: Vec<Listener>,
}

/// The process's one inotify instance: its watch handle and, per watch descriptor, whom to
/// tell. The reader thread takes `routes` only; adding and removing watches never waits for
/// it, so one lock is enough.
struct Inotify {
    watches: Mutex<Watches>,
    routes: Mutex<HashMap<WatchDescriptor, Route>>,
}

fn inotify() -> Option<&'static Inotify> {
    static SHARED: OnceLock<Option<Inotify>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let mut ino = match inotify::Inotify::init() {
                Ok(i) => i,
                Err(e) => {
                    tracing::info!("inotify unavailable ({e}): file store watches poll instead");
                    return None;
                }
            };
            let shared = Inotify {
                watches: Mutex::new(ino.watches()),
                routes: Mutex::new(HashMap::new()),
            };
            let started = std::thread::Builder::new()
                .name("inotify".into())
                .spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match ino.read_events_blocking(&mut buf) {
                            Ok(events) => {
                                if let Some(shared) = inotify() {
                                    shared.dispatch(events);
                                }
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => {
                                tracing::warn!("inotify read failed ({e}): watches stop");
                                return;
                            }
                        }
                    }
                });
            match started {
                Ok(_) => Some(shared),
                Err(e) => {
                    tracing::info!("cannot start the inotify thread ({e}): watches poll");
                    None
                }
            }
        })
        .as_ref()
}

/// The events that change a record file. Not IN_OPEN or IN_ACCESS: a watch reads the files
/// it is told about, and every agent watches the same directories.
fn mask() -> WatchMask {
    WatchMask::MOVED_TO | WatchMask::MOVED_FROM | WatchMask::DELETE | WatchMask::CLOSE_WRITE
}

impl Inotify {
    fn dispatch<'a>(&self, events: impl Iterator<Item = inotify::Event<&'a OsStr>>) {
        let routes = self.routes.lock().unwrap_or_else(|e| e.into_inner());
        for ev in events {
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                for l in routes.values().flat_map(|r| &r.watches) {
                    l.tell(DirEvent::Rescan);
                }
                continue;
            }
            let Some(file) = ev.name.and_then(OsStr::to_str) else {
                continue;
            };
            if record_stem(file).is_none() {
                continue;
            }
            if let Some(route) = routes.get(&ev.wd) {
                for l in &route.watches {
                    l.tell(DirEvent::Changed(file.to_string()));
                }
            }
        }
    }
}

/// One watch's registration with the shared instance; dropping it unregisters.
struct Registration {
    wd: WatchDescriptor,
    id: u64,
}

impl Registration {
    fn new(
        dir: &Path,
        tx: QueueTx<DirEvent>,
        lagging: Arc<AtomicBool>,
    ) -> std::io::Result<Registration> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let ino = inotify().ok_or_else(|| std::io::Error::other("no inotify"))?;
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // Adding a directory already watched returns its descriptor again.
        let wd = ino
            .watches
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .add(dir, mask())?;
        ino.routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(wd.clone())
            .or_insert_with(|| Route {
                dir: dir.to_path_buf(),
                watches: Vec::new(),
            })
            .watches
            .push(Listener { id, tx, lagging });
        Ok(Registration { wd, id })
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(ino) = inotify() else { return };
        let mut routes = ino.routes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(route) = routes.get_mut(&self.wd) {
            route.watches.retain(|l| l.id != self.id);
            if route.watches.is_empty() {
                tracing::trace!(dir = %route.dir.display(), "no watch left");
                routes.remove(&self.wd);
                let _ = ino
                    .watches
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(self.wd.clone());
            }
        }
    }
}

/// Starts a watch of `dir` (the records of `kind`): the current records as `Added`, then
/// `Synced`, then every change. The first listing happens here, so an unreadable directory
/// is the caller's error.
pub(super) fn spawn(kind: Kind, dir: PathBuf) -> Result<Watch, StoreError> {
    spawn_with(kind, dir, false)
}

fn spawn_with(kind: Kind, dir: PathBuf, force_polling: bool) -> Result<Watch, StoreError> {
    let (tx, rx) = queue::bounded(WATCH_QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let (dtx, drx) = queue::bounded(DIR_QUEUE);
    let lagging = Arc::new(AtomicBool::new(false));
    // Registered before the first listing, so a change in between is not missed (reading it
    // twice is harmless: `Seen` sends only what differs).
    let registration = match force_polling {
        true => None,
        false => match Registration::new(&dir, dtx, lagging.clone()) {
            Ok(r) => Some(r),
            Err(e) => {
                if inotify().is_some() {
                    tracing::info!(dir = %dir.display(), "cannot watch with inotify ({e}): polling");
                }
                None
            }
        },
    };
    // A polling watch takes its inodes before the first listing for the same reason: a file
    // that appears in between is then read twice, not missed.
    let mut inodes = match registration {
        Some(_) => HashMap::new(),
        None => inode_map(&dir).unwrap_or_default(),
    };
    let mut seen = Seen::new(kind);
    let mut out = Vec::new();
    seen.all(list_dir(&dir, kind, "")?, &mut out);
    out.push(WatchEvent::Synced);
    let stop2 = stop.clone();
    std::thread::Builder::new()
        .name(format!("watch-{kind}"))
        .spawn(move || {
            // Sent from here: a listing longer than the queue waits for the reader, who has
            // the watch only once this function returns.
            if !send(&tx, &mut out) {
                return;
            }
            match registration {
                Some(reg) => follow_events(kind, &dir, &drx, &lagging, &mut seen, &tx, &stop2, reg),
                None => follow_by_polling(kind, &dir, &mut inodes, &mut seen, &tx, &stop2),
            }
        })
        .map_err(|e| StoreError::Unavailable(format!("cannot start watch thread: {e}")))?;
    Ok(Watch::new(rx, stop))
}

/// Hands events to the reader, waiting while its queue is full (this thread is the watch's
/// own); false when the reader is gone.
fn send(tx: &QueueTx<WatchEvent>, out: &mut Vec<WatchEvent>) -> bool {
    out.drain(..).all(|ev| tx.send(ev).is_ok())
}

/// Reads one changed file into `out`.
fn read_changed(kind: Kind, dir: &Path, file: &str, seen: &mut Seen, out: &mut Vec<WatchEvent>) {
    let Some(name) = record_stem(file).and_then(names::unescape) else {
        return; // no record name escapes to this file: not a record
    };
    match read_one(&dir.join(file), kind, &name) {
        Ok(now) => seen.one(&name, now, out),
        // The directory itself is unreadable now: say so, keep what we knew.
        Err(e) => tracing::warn!(%kind, error = %e, "watch: cannot read {file}"),
    }
}

#[allow(clippy::too_many_arguments)]
fn follow_events(
    kind: Kind,
    dir: &Path,
    events: &QueueRx<DirEvent>,
    lagging: &AtomicBool,
    seen: &mut Seen,
    tx: &QueueTx<WatchEvent>,
    stop: &AtomicBool,
    _registration: Registration,
) {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let first = match events.recv_timeout(STOP_CHECK) {
            Ok(ev) => ev,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        // A burst (a write is several inotify events) is read once per file.
        let mut files = BTreeSet::new();
        let mut rescan = false;
        for ev in std::iter::once(first).chain(events.try_iter()) {
            match ev {
                DirEvent::Changed(f) => {
                    files.insert(f);
                }
                DirEvent::Rescan => rescan = true,
            }
        }
        // Changes were dropped while our queue was full: only a listing knows them now.
        rescan |= lagging.swap(false, Ordering::Relaxed);
        if rescan {
            match list_dir(dir, kind, "") {
                Ok(listing) => seen.all(listing, &mut out),
                Err(e) => tracing::warn!(%kind, error = %e, "watch: listing failed"),
            }
        } else {
            for f in &files {
                read_changed(kind, dir, f, seen, &mut out);
            }
        }
        if !send(tx, &mut out) {
            return;
        }
    }
}

/// File name → inode of every record file in `dir`.
fn inode_map(dir: &Path) -> std::io::Result<HashMap<String, u64>> {
    let mut map = HashMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(f) = entry.file_name().to_str() {
            if record_stem(f).is_some() {
                map.insert(f.to_string(), entry.ino());
            }
        }
    }
    Ok(map)
}

fn follow_by_polling(
    kind: Kind,
    dir: &Path,
    inodes: &mut HashMap<String, u64>,
    seen: &mut Seen,
    tx: &QueueTx<WatchEvent>,
    stop: &AtomicBool,
) {
    let mut out = Vec::new();
    let mut failing = false;
    // The directory's mtime at our last listing, and when that listing began.
    let mut last: Option<(SystemTime, SystemTime)> = None;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_EVERY);
        // Every write renames a file into the directory, which sets the directory's mtime: an
        // unchanged mtime means nothing to read. The mtime moves with the kernel's coarse clock,
        // so a change in the same tick as our last listing would leave it as it was: the
        // shortcut is only taken when that listing began well after the mtime it saw.
        let mtime = std::fs::metadata(dir).and_then(|m| m.modified()).ok();
        let unchanged = match (mtime, last) {
            (Some(m), Some((seen_m, listed_at))) => {
                m == seen_m && m + Duration::from_secs(1) < listed_at
            }
            _ => false,
        };
        if unchanged {
            continue;
        }
        let listed_at = SystemTime::now();
        let now = match inode_map(dir) {
            Ok(m) => m,
            // The store may come back (a remounted disk): keep polling, say it once.
            Err(e) => {
                if !failing {
                    tracing::warn!(%kind, error = %e, "watch: cannot list {}", dir.display());
                    failing = true;
                }
                continue;
            }
        };
        failing = false;
        last = mtime.map(|m| (m, listed_at));
        let changed: BTreeSet<&String> = now
            .iter()
            .filter(|(f, ino)| inodes.get(*f) != Some(ino))
            .map(|(f, _)| f)
            .chain(inodes.keys().filter(|f| !now.contains_key(*f)))
            .collect();
        for f in changed {
            read_changed(kind, dir, f, seen, &mut out);
        }
        *inodes = now;
        if !send(tx, &mut out) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{FileStore, Store};
    use serde_json::json;

    /// The same story through inotify and through polling.
    fn story(force_polling: bool) {
        let dir = tempfile::tempdir().unwrap();
        let s = FileStore::open(dir.path().join("store")).unwrap();
        s.create(Kind::Node, "a", json!(1)).unwrap();
        let w = spawn_with(Kind::Node, s.dir().join("Node"), force_polling).unwrap();
        let t = Duration::from_secs(3);
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(r)) if r.name == "a"));
        assert_eq!(w.recv_timeout(t), Some(WatchEvent::Synced));
        let b = s.create(Kind::Node, "b c", json!(2)).unwrap();
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Added(r)) if r.name == "b c"));
        s.update(Kind::Node, "b c", &b.revision, json!(3)).unwrap();
        assert!(matches!(w.recv_timeout(t), Some(WatchEvent::Modified(r)) if r.data == json!(3)));
        let a = s.get(Kind::Node, "a").unwrap();
        s.delete(Kind::Node, "a", &a.revision).unwrap();
        assert!(matches!(
            w.recv_timeout(t),
            Some(WatchEvent::Deleted { name, .. }) if name == "a"
        ));
        // Other kinds, temporaries and files that are no record are not news.
        s.create(Kind::IPPool, "p", json!(1)).unwrap();
        std::fs::write(s.dir().join("Node/.x.json.1-1.tmp"), b"{").unwrap();
        std::fs::write(s.dir().join("Node/notes.txt"), b"hi").unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        assert_eq!(w.try_recv(), None);
    }

    #[test]
    fn inotify_watch_sees_adds_changes_and_deletes_only() {
        assert!(inotify().is_some(), "this kernel has inotify");
        story(false);
    }

    #[test]
    fn polling_watch_sees_adds_changes_and_deletes_only() {
        story(true);
    }
}
