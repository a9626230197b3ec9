//! Connect-retry backoff: how long to wait before the next outgoing connection attempt.
//!
//! RFC 4271 §8 only fixes a ConnectRetryTimer (120 s suggested); with a full mesh restarting
//! together that is both too slow for the first retry and too synchronised. Nodes that start
//! together refuse each other for a moment (each learns of the other from the registry a few
//! milliseconds apart), so the first retry of a peer never yet reached comes quickly: half a
//! second, or the configured interval if that is shorter. After a session ends, retries start
//! at the configured interval. Every failure doubles the wait up to a cap, and the jitter of
//! RFC 4271 §10 (a random factor between 0.75 and 1.0) keeps peers from retrying in lock-step.

use std::time::Duration;

/// Upper bound of the retry interval.
pub const MAX_CONNECT_RETRY: Duration = Duration::from_secs(60);
/// The first retry's interval.
pub const FIRST_RETRY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    current: Duration,
    seed: u64,
}

impl Backoff {
    pub fn new(base: Duration) -> Self {
        let base = base.max(Duration::from_millis(10));
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64)
            | 1;
        Backoff {
            base,
            current: base.min(FIRST_RETRY),
            seed,
        }
    }

    /// The delay before the next attempt; each call doubles the following one (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.current.mul_f64(self.jitter());
        self.current = (self.current * 2).min(MAX_CONNECT_RETRY.max(self.base));
        delay
    }

    /// Back to the configured interval (after a session reached Established): a session that
    /// ends is not the start-up race, and a peer that keeps closing must not be hammered.
    pub fn reset(&mut self) {
        self.current = self.base;
    }

    /// xorshift64: enough randomness to de-synchronise peers, no dependency needed.
    fn jitter(&mut self) -> f64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        0.75 + 0.25 * (self.seed % 10_000) as f64 / 10_000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let d1 = b.next_delay();
        assert!(
            d1 >= Duration::from_millis(375) && d1 <= Duration::from_millis(500),
            "{d1:?}"
        );
        let d2 = b.next_delay();
        assert!(
            d2 >= Duration::from_millis(750) && d2 <= Duration::from_secs(1),
            "{d2:?}"
        );
        for _ in 0..10 {
            assert!(b.next_delay() <= MAX_CONNECT_RETRY);
        }
        assert!(b.next_delay() >= MAX_CONNECT_RETRY.mul_f64(0.75));
        b.reset();
        let d = b.next_delay();
        assert!(
            d >= Duration::from_millis(3750) && d <= Duration::from_secs(5),
            "{d:?}"
        );
        // A configured interval shorter than the first retry is kept.
        assert!(
            Backoff::new(Duration::from_millis(100)).next_delay() <= Duration::from_millis(100)
        );
    }
}
