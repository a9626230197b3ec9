//! A bounded channel sender that never blocks the owner task.
//!
//! The speaker must not wait on a slow consumer (a subscriber that is busy, a session whose
//! socket is full): it could be the very task that would drain it. Items that do not fit in
//! the channel wait here, in order, and are retried on the next tick.

use std::collections::VecDeque;
use tokio::sync::mpsc::{self, error::TrySendError};

#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::Sender<T>,
    backlog: VecDeque<T>,
    closed: bool,
}

impl<T> Outbox<T> {
    pub fn new(tx: mpsc::Sender<T>) -> Self {
        Outbox {
            tx,
            backlog: VecDeque::new(),
            closed: false,
        }
    }

    pub fn push(&mut self, item: T) {
        if self.closed {
            return;
        }
        if self.backlog.is_empty() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => self.backlog.push_back(item),
                Err(TrySendError::Closed(_)) => self.closed = true,
            }
        } else {
            self.backlog.push_back(item);
        }
    }

    /// Moves as much of the backlog into the channel as fits.
    pub fn retry(&mut self) {
        while let Some(item) = self.backlog.pop_front() {
            match self.tx.try_send(item) {
                Ok(()) => {}
                Err(TrySendError::Full(item)) => {
                    self.backlog.push_front(item);
                    return;
                }
                Err(TrySendError::Closed(_)) => {
                    self.closed = true;
                    self.backlog.clear();
                    return;
                }
            }
        }
    }

    pub fn has_backlog(&self) -> bool {
        !self.backlog.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed || self.tx.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keeps_order_when_the_channel_is_full() {
        let (tx, mut rx) = mpsc::channel(2);
        let mut o = Outbox::new(tx);
        for i in 0..5 {
            o.push(i);
        }
        assert!(o.has_backlog());
        let mut got = vec![rx.recv().await.unwrap(), rx.recv().await.unwrap()];
        o.retry();
        got.push(rx.recv().await.unwrap());
        got.push(rx.recv().await.unwrap());
        o.retry();
        got.push(rx.recv().await.unwrap());
        assert_eq!(got, vec![0, 1, 2, 3, 4]);
        assert!(!o.has_backlog());
        drop(rx);
        o.push(9);
        assert!(o.is_closed());
    }
}
