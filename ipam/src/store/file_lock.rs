//! The file store's lock: `flock` on `<dir>/.lock`, held for the read-check-write of one
//! operation, so several agent processes on one machine (the lab) can share one directory.
//!
//! `flock` locks belong to an open file description, so two threads of one process using the same
//! descriptor would not exclude each other: a mutex serialises the threads of this process and
//! the `flock` serialises the processes.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::StoreError;

pub struct DirLock {
    file: Mutex<File>,
    path: PathBuf,
}

pub struct DirLockGuard<'a> {
    file: MutexGuard<'a, File>,
}

impl DirLock {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| StoreError::io("cannot open lock", path, e))?;
        Ok(DirLock {
            file: Mutex::new(file),
            path: path.to_path_buf(),
        })
    }

    pub fn lock(&self) -> Result<DirLockGuard<'_>, StoreError> {
        let file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        // std's `File::lock` is flock(LOCK_EX) on Linux; a signal may interrupt the wait.
        loop {
            match file.lock() {
                Ok(()) => return Ok(DirLockGuard { file }),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StoreError::io("cannot lock", &self.path, e)),
            }
        }
    }
}

impl Drop for DirLockGuard<'_> {
    fn drop(&mut self) {
        // Closing is not needed: the descriptor lives as long as the store.
        let _ = self.file.unlock();
    }
}
