//! Message counters of one peer, shared between its session tasks and the speaker's status.

use crate::wire::MessageType;
use std::sync::atomic::{AtomicU64, Ordering};

/// Per message type, in the order of [`MessageType`] codes 1..=5.
#[derive(Debug, Default)]
pub struct MessageCounters {
    received: [AtomicU64; 5],
    sent: [AtomicU64; 5],
}

fn index(t: MessageType) -> usize {
    t as usize - 1
}

impl MessageCounters {
    pub fn count_in(&self, t: MessageType) {
        self.received[index(t)].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_out(&self, t: MessageType, n: u64) {
        self.sent[index(t)].fetch_add(n, Ordering::Relaxed);
    }

    pub fn received(&self, t: MessageType) -> u64 {
        self.received[index(t)].load(Ordering::Relaxed)
    }

    pub fn sent(&self, t: MessageType) -> u64 {
        self.sent[index(t)].load(Ordering::Relaxed)
    }
}
