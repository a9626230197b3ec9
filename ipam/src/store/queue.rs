//! A bounded queue whose memory follows what it holds, not its bound.
//!
//! std's `sync_channel(n)` allocates and writes all `n` slots when it is made: a watch queue of
//! 4,096 events cost 426 KB of resident memory per watch in every agent, though a watch
//! rarely holds more than a few events. This is std's unbounded channel (slots allocated in
//! small blocks as they fill) with a count of what is queued: the same bound, and `try_send`,
//! `send` and `recv_timeout` as `sync_channel` has them, except that a `send` into a full queue
//! looks again every millisecond instead of sleeping until a place frees.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SendError, TrySendError};
use std::sync::Arc;
use std::time::Duration;

/// How long a `send` into a full queue sleeps before it looks again: a full queue means a
/// slow reader, so there is no hurry.
const FULL_WAIT: Duration = Duration::from_millis(1);

struct Shared {
    len: AtomicUsize,
    cap: usize,
    reader_gone: AtomicBool,
}

/// A queue of at most `cap` values.
pub(crate) fn bounded<T>(cap: usize) -> (QueueTx<T>, QueueRx<T>) {
    let (tx, rx) = mpsc::channel();
    let shared = Arc::new(Shared {
        len: AtomicUsize::new(0),
        cap,
        reader_gone: AtomicBool::new(false),
    });
    (
        QueueTx {
            tx,
            shared: shared.clone(),
        },
        QueueRx { rx, shared },
    )
}

/// A queue without a bound (the memory store's, which only tests use).
pub(crate) fn unbounded<T>() -> (QueueTx<T>, QueueRx<T>) {
    bounded(usize::MAX)
}

pub(crate) struct QueueTx<T> {
    tx: mpsc::Sender<T>,
    shared: Arc<Shared>,
}

impl<T> Clone for QueueTx<T> {
    fn clone(&self) -> Self {
        QueueTx {
            tx: self.tx.clone(),
            shared: self.shared.clone(),
        }
    }
}

impl<T> QueueTx<T> {
    /// Queues `v` unless its reader is gone or the queue is full (in that order, as
    /// `sync_channel`: a sender waiting out a full queue learns that nobody will read it).
    pub fn try_send(&self, v: T) -> Result<(), TrySendError<T>> {
        let s = &self.shared;
        if s.reader_gone.load(Ordering::Acquire) {
            return Err(TrySendError::Disconnected(v));
        }
        // Take a place before sending: the bound holds with several senders, and a sender
        // never sees `Full` because of another one's failed attempt.
        let mut len = s.len.load(Ordering::Acquire);
        loop {
            if len >= s.cap {
                return Err(TrySendError::Full(v));
            }
            match s
                .len
                .compare_exchange_weak(len, len + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => len = now,
            }
        }
        self.tx.send(v).map_err(|SendError(v)| {
            s.len.fetch_sub(1, Ordering::AcqRel);
            TrySendError::Disconnected(v)
        })
    }

    /// Queues `v`, waiting while the queue is full; an error only when the reader is gone.
    pub fn send(&self, mut v: T) -> Result<(), SendError<T>> {
        loop {
            match self.try_send(v) {
                Ok(()) => return Ok(()),
                Err(TrySendError::Disconnected(back)) => return Err(SendError(back)),
                Err(TrySendError::Full(back)) => {
                    v = back;
                    std::thread::sleep(FULL_WAIT);
                }
            }
        }
    }
}

pub(crate) struct QueueRx<T> {
    rx: mpsc::Receiver<T>,
    shared: Arc<Shared>,
}

impl<T> QueueRx<T> {
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        let v = self.rx.recv_timeout(timeout)?;
        self.shared.len.fetch_sub(1, Ordering::AcqRel);
        Ok(v)
    }

    pub fn try_recv(&self) -> Option<T> {
        let v = self.rx.try_recv().ok()?;
        self.shared.len.fetch_sub(1, Ordering::AcqRel);
        Some(v)
    }

    /// What is queued now, without waiting.
    pub fn try_iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.try_recv())
    }
}

impl<T> Drop for QueueRx<T> {
    fn drop(&mut self) {
        self.shared.reader_gone.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_at_most_its_bound_and_frees_places_as_it_is_read() {
        let (tx, rx) = bounded(2);
        tx.try_send(1).unwrap();
        tx.try_send(2).unwrap();
        assert!(matches!(tx.try_send(3), Err(TrySendError::Full(3))));
        assert_eq!(rx.try_recv(), Some(1));
        tx.try_send(3).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(10)), Ok(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(1)),
            Err(RecvTimeoutError::Timeout)
        );
    }

    #[test]
    fn send_waits_for_a_place_and_gives_up_when_the_reader_is_gone() {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sender = {
            let tx = tx.clone();
            std::thread::spawn(move || tx.send(2))
        };
        std::thread::sleep(Duration::from_millis(20));
        assert!(!sender.is_finished(), "a full queue makes send wait");
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(1));
        sender.join().unwrap().unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)), Ok(2));

        tx.send(3).unwrap();
        let sender = std::thread::spawn(move || tx.send(4));
        std::thread::sleep(Duration::from_millis(20));
        drop(rx);
        assert_eq!(sender.join().unwrap(), Err(SendError(4)));
    }

    #[test]
    fn a_full_queue_whose_reader_is_gone_says_so() {
        let (tx, rx) = bounded(1);
        tx.try_send(1).unwrap();
        assert!(matches!(tx.try_send(2), Err(TrySendError::Full(2))));
        drop(rx);
        assert!(matches!(tx.try_send(3), Err(TrySendError::Disconnected(3))));
        assert_eq!(tx.send(4), Err(SendError(4)));
    }

    #[test]
    fn a_send_to_a_dropped_reader_fails_at_once() {
        let (tx, rx) = bounded(4);
        drop(rx);
        assert!(matches!(tx.try_send(1), Err(TrySendError::Disconnected(1))));
        assert_eq!(tx.send(2), Err(SendError(2)));
    }
}
