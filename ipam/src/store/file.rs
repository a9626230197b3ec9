//! The `file` backend, the embedded default: one directory, one JSON file per record at
//! `<dir>/<kind>/<name>.json`.
//!
//! Writes go to a temporary file that is fsynced and renamed over the record, then the directory
//! is fsynced, so a crash leaves either the old or the new record, never a torn one (heartbeats,
//! `NodeLease`, skip the two fsyncs: see [`durable`]). Readers need
//! no lock because rename is atomic; writers take [`DirLock`] for their read-check-write so that
//! compare-and-swap holds across processes. A file that cannot be read is reported with its path
//! and left alone: nothing overwrites it silently.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::file_lock::DirLock;
use super::StoreError;
use super::{file_watch, names, CorruptRecord, Kind, Listing, Record, Revision, Store, Watch};

pub struct FileStore {
    dir: PathBuf,
    lock: DirLock,
}

impl FileStore {
    /// Opens a store in `dir`, creating `dir` itself if needed but not its parents: a typo in
    /// `--datastore` must not quietly make a tree somewhere.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        match fs::create_dir(&dir) {
            Ok(()) => tracing::info!("created the datastore directory {}", dir.display()),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io("cannot create", &dir, e)),
        }
        for kind in Kind::ALL {
            let d = dir.join(kind.as_str());
            fs::create_dir_all(&d).map_err(|e| StoreError::io("cannot create", &d, e))?;
        }
        let lock = DirLock::open(&dir.join(".lock"))?;
        let store = FileStore { dir, lock };
        store.sweep_temporaries();
        Ok(store)
    }

    /// Removes temporaries left by writers that crashed between staging and renaming. Only old
    /// ones: a young one may belong to a write in flight in another process.
    fn sweep_temporaries(&self) {
        const OLD: Duration = Duration::from_secs(600);
        for kind in Kind::ALL {
            let Ok(entries) = fs::read_dir(self.dir.join(kind.as_str())) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if !(name.starts_with('.') && name.ends_with(".tmp")) {
                    continue;
                }
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > OLD) {
                    let _ = fs::remove_file(entry.path());
                }
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, kind: Kind, name: &str) -> Result<PathBuf, StoreError> {
        Ok(self
            .dir
            .join(kind.as_str())
            .join(format!("{}.json", names::escape(name)?)))
    }

    /// Writes `rec` to a temporary file next to `path` and fsyncs it. This is the slow part of
    /// a write, so it happens before the lock is taken: writers of different records (or
    /// processes racing for one) sync in parallel and the lock is held only for check+rename.
    fn stage(&self, path: &Path, rec: &Record) -> Result<Staged, StoreError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let bytes = serde_json::to_vec_pretty(rec)
            .map_err(|e| StoreError::Unavailable(format!("cannot encode {}: {e}", rec.name)))?;
        let parent = path.parent().unwrap_or(&self.dir);
        let file_name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("record");
        // Unique per process and write, since several writers may stage the same record.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = parent.join(format!(".{file_name}.{}-{n}.tmp", std::process::id()));
        let staged = Staged { tmp };
        let mut f = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&staged.tmp)
            .map_err(|e| StoreError::io("cannot create", &staged.tmp, e))?;
        f.write_all(&bytes)
            .and_then(|_| {
                if durable(rec.kind) {
                    f.sync_all()
                } else {
                    Ok(())
                }
            })
            .map_err(|e| StoreError::io("cannot write", &staged.tmp, e))?;
        Ok(staged)
    }

    /// Moves a staged record into place (under the lock) and makes the rename durable.
    fn commit(&self, staged: Staged, path: &Path, kind: Kind) -> Result<(), StoreError> {
        fs::rename(&staged.tmp, path)
            .map_err(|e| StoreError::io("cannot rename", &staged.tmp, e))?;
        std::mem::forget(staged);
        if durable(kind) {
            sync_dir(path.parent().unwrap_or(&self.dir))?;
        }
        Ok(())
    }
}

/// Reads the records of one kind whose file name starts with `prefix` (escaped).
/// The stem of a record's file name (`<stem>.json`). Hidden files are temporaries of writes in
/// progress (or left by a crash), never records.
pub(super) fn record_stem(fname: &str) -> Option<&str> {
    if fname.starts_with('.') {
        return None;
    }
    fname.strip_suffix(".json")
}

pub(super) fn list_dir(dir: &Path, kind: Kind, prefix: &str) -> Result<Listing, StoreError> {
    let mut listing = Listing::default();
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("cannot list", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("cannot list", dir, e))?;
        let fname = entry.file_name();
        let Some(fname) = fname.to_str() else {
            continue;
        };
        let Some(stem) = record_stem(fname).filter(|_| fname.starts_with(prefix)) else {
            continue;
        };
        match read_record(&entry.path(), kind) {
            Ok(Some(rec)) => listing.records.push(rec),
            Ok(None) => {} // deleted since the directory was read
            Err(StoreError::Corrupt { path, reason }) => {
                tracing::warn!(%path, %reason, "skipping unreadable record");
                // A file no name escapes to is still reported, under its file name.
                let name = names::unescape(stem).unwrap_or_else(|| stem.to_string());
                listing.errors.push(CorruptRecord {
                    kind,
                    name,
                    path,
                    reason,
                });
            }
            Err(e) => return Err(e),
        }
    }
    listing.records.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// One record file as a watch reads it: there, gone, or unreadable (as that record's error);
/// `Err` only when the file cannot be read at all for another reason.
pub(super) fn read_one(
    path: &Path,
    kind: Kind,
    name: &str,
) -> Result<Result<Option<Record>, CorruptRecord>, StoreError> {
    match read_record(path, kind) {
        Ok(r) => Ok(Ok(r)),
        Err(StoreError::Corrupt { path, reason }) => Ok(Err(CorruptRecord {
            kind,
            name: name.to_string(),
            path,
            reason,
        })),
        Err(e) => Err(e),
    }
}

/// A staged temporary file, removed if it is never committed (a lost compare-and-swap).
struct Staged {
    tmp: PathBuf,
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

/// Reads one record file: `Ok(None)` if there is none, `Err(Corrupt)` if it is unreadable.
fn read_record(path: &Path, kind: Kind) -> Result<Option<Record>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(corrupt(path, e.to_string())),
    };
    let rec: Record = serde_json::from_slice(&bytes).map_err(|e| corrupt(path, e.to_string()))?;
    // A record copied into the wrong place would be found under a name it does not carry.
    let expected = names::escape(&rec.name).ok().map(|n| format!("{n}.json"));
    let actual = path
        .file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string);
    if rec.kind != kind || expected != actual {
        return Err(corrupt(
            path,
            format!("holds {} {:?}, not what its path says", rec.kind, rec.name),
        ));
    }
    if parse_revision(&rec.revision).is_none() {
        return Err(corrupt(path, format!("bad revision {:?}", rec.revision.0)));
    }
    Ok(Some(rec))
}

fn corrupt(path: &Path, reason: String) -> StoreError {
    StoreError::Corrupt {
        path: path.display().to_string(),
        reason,
    }
}

/// Whether writes of `kind` are made durable (fsync of the file and of its directory). A
/// heartbeat is not: it says the agent is alive now, and after a power failure the agent
/// writes a new one in seconds; making every heartbeat of a 250-node lab durable cost a
/// disk flush every 40 ms. A rename is atomic all the same, so it is never torn.
fn durable(kind: Kind) -> bool {
    kind != Kind::NodeLease
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io("cannot sync", dir, e))
}

/// A revision is `<generation>-<incarnation>`. The incarnation is drawn when the record is
/// created and kept by its updates, so a record deleted and created again never repeats a
/// revision another process may still hold (no ABA), without a global counter to fsync.
fn parse_revision(rev: &Revision) -> Option<(u64, &str)> {
    let (gen, inc) = rev.0.split_once('-')?;
    let gen = gen.parse().ok()?;
    (!inc.is_empty() && inc.bytes().all(|b| b.is_ascii_hexdigit())).then_some((gen, inc))
}

fn new_incarnation() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}{:x}", nanos, std::process::id())
}

impl Store for FileStore {
    fn get(&self, kind: Kind, name: &str) -> Result<Record, StoreError> {
        let path = self.path(kind, name)?;
        read_record(&path, kind)?.ok_or_else(|| StoreError::NotFound {
            kind,
            name: name.into(),
        })
    }

    fn list(&self, kind: Kind) -> Result<Listing, StoreError> {
        list_dir(&self.dir.join(kind.as_str()), kind, "")
    }

    fn list_prefix(&self, kind: Kind, prefix: &str) -> Result<Listing, StoreError> {
        // Escaping maps byte by byte, so the escaped prefix is a prefix of every escaped name
        // that starts with `prefix`: files of other names are not even opened.
        let escaped = if prefix.is_empty() {
            String::new()
        } else {
            names::escape(prefix)?
        };
        let mut listing = list_dir(&self.dir.join(kind.as_str()), kind, &escaped)?;
        listing.records.retain(|r| r.name.starts_with(prefix));
        Ok(listing)
    }

    fn list_names(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let dir = self.dir.join(kind.as_str());
        let entries = fs::read_dir(&dir).map_err(|e| StoreError::io("cannot list", &dir, e))?;
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("cannot list", &dir, e))?;
            let fname = entry.file_name();
            if let Some(name) = fname
                .to_str()
                .and_then(record_stem)
                .and_then(names::unescape)
            {
                out.push(name);
            }
        }
        out.sort();
        Ok(out)
    }

    fn create(
        &self,
        kind: Kind,
        name: &str,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let path = self.path(kind, name)?;
        let rec = Record {
            kind,
            name: name.into(),
            revision: Revision(format!("1-{}", new_incarnation())),
            data,
        };
        let staged = self.stage(&path, &rec)?;
        let _guard = self.lock.lock()?;
        // A corrupt file makes `read` fail with Corrupt, so it is never replaced by a create.
        if read_record(&path, kind)?.is_some() {
            return Err(StoreError::AlreadyExists {
                kind,
                name: name.into(),
            });
        }
        self.commit(staged, &path, kind)?;
        Ok(rec)
    }

    fn update(
        &self,
        kind: Kind,
        name: &str,
        revision: &Revision,
        data: serde_json::Value,
    ) -> Result<Record, StoreError> {
        let path = self.path(kind, name)?;
        // The new record is staged before locking; if the stored revision turns out not to be
        // `revision` it is thrown away. A revision we cannot parse matches no stored record.
        let staged = match parse_revision(revision) {
            Some((gen, inc)) => {
                let rec = Record {
                    kind,
                    name: name.into(),
                    revision: Revision(format!("{}-{inc}", gen + 1)),
                    data,
                };
                let staged = self.stage(&path, &rec)?;
                Some((rec, staged))
            }
            None => None,
        };
        let _guard = self.lock.lock()?;
        let cur = read_record(&path, kind)?.ok_or_else(|| StoreError::NotFound {
            kind,
            name: name.into(),
        })?;
        match staged {
            Some((rec, staged)) if &cur.revision == revision => {
                self.commit(staged, &path, kind)?;
                Ok(rec)
            }
            _ => Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            }),
        }
    }

    fn delete(&self, kind: Kind, name: &str, revision: &Revision) -> Result<(), StoreError> {
        let path = self.path(kind, name)?;
        let _guard = self.lock.lock()?;
        let cur = read_record(&path, kind)?.ok_or_else(|| StoreError::NotFound {
            kind,
            name: name.into(),
        })?;
        if &cur.revision != revision {
            return Err(StoreError::Conflict {
                kind,
                name: name.into(),
                expected: revision.clone(),
            });
        }
        fs::remove_file(&path).map_err(|e| StoreError::io("cannot remove", &path, e))?;
        sync_dir(path.parent().unwrap_or(&self.dir))
    }

    fn watch(&self, kind: Kind) -> Result<Watch, StoreError> {
        file_watch::spawn(kind, self.dir.join(kind.as_str()))
    }
}

#[cfg(test)]
mod tests;
