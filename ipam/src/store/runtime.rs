//! The async clients of the `etcd` and `kubernetes` backends behind the blocking [`Store`]
//! trait: a small tokio runtime on a thread of its own, to which every call is sent, and a note
//! of whether the datastore answered so that a change is logged once, not at every attempt.
//!
//! [`Store`]: super::Store

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, TrySendError};
use std::time::Duration;

use super::{StoreError, WatchEvent};

/// A current-thread runtime that runs until this is dropped.
pub(super) struct Runtime {
    handle: tokio::runtime::Handle,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Runtime {
    pub fn start(name: &str) -> Result<Self, StoreError> {
        let (rt_tx, rt_rx) = sync_channel(1);
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = rt_tx.send(Err(e));
                        return;
                    }
                };
                let _ = rt_tx.send(Ok(rt.handle().clone()));
                // Runs the store's futures until the store is dropped.
                let _ = rt.block_on(stop_rx);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the {name} thread: {e}")))?;
        let handle = rt_rx
            .recv()
            .map_err(|_| StoreError::Unavailable(format!("the {name} thread did not start")))?
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the {name} runtime: {e}"))
            })?;
        Ok(Runtime {
            handle,
            _stop: stop_tx,
        })
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }

    /// Runs `fut` on the runtime and waits for its output, from a thread outside it; `None`
    /// if the runtime stopped first.
    pub fn block<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = sync_channel(1);
        self.handle.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv().ok()
    }
}

/// Whether the datastore answered the last call: a change is logged once, not every attempt.
pub(super) struct Health {
    name: &'static str,
    up: AtomicBool,
}

impl Health {
    pub fn new(name: &'static str) -> Self {
        Health {
            name,
            up: AtomicBool::new(true),
        }
    }

    pub fn saw<T>(&self, r: &Result<T, StoreError>) {
        let up = !matches!(r, Err(StoreError::Unavailable(_)));
        if self.up.swap(up, Ordering::Relaxed) != up {
            match r {
                Err(e) if !up => tracing::warn!("{}: {e}; retrying", self.name),
                _ => tracing::info!("{}: reachable again", self.name),
            }
        }
    }

    pub fn set_up(&self) {
        self.up.store(true, Ordering::Relaxed);
    }
}

/// Sends a watch's events to its reader; false when the reader is gone. A full queue is waited
/// out without blocking the store's runtime, which serves every other call: the reader is
/// slow, and the datastore keeps its history until we read on (or we list again).
pub(super) async fn send_all(
    tx: &super::queue::QueueTx<WatchEvent>,
    events: Vec<WatchEvent>,
) -> bool {
    for mut ev in events {
        loop {
            match tx.try_send(ev) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    ev = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
    }
    true
}
