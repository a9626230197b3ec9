//! Polling helpers: every wait names what it awaited and what it saw last, so a timeout reads
//! like an assertion message instead of "timed out".

use std::fmt::Debug;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

const POLL: Duration = Duration::from_millis(100);

/// Polls `probe` until it returns `Ok(true)`. Errors from the probe count as "not yet" (a daemon
/// may not have opened its socket) and are reported if the wait times out.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<bool>,
) -> Result<()> {
    wait_for(timeout, what, &mut probe, |ok| *ok).map(|_| ())
}

/// Polls `probe` until `done(&value)`; returns that value. On timeout the error shows the last
/// value observed (or the last probe error).
pub fn wait_for<T: Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Result<T>,
    done: impl Fn(&T) -> bool,
) -> Result<T> {
    let start = Instant::now();
    loop {
        let last = match probe() {
            Ok(v) if done(&v) => return Ok(v),
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {e:#}"),
        };
        if start.elapsed() >= timeout {
            bail!("timed out after {timeout:?} waiting for {what}; last observed: {last}");
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_names_what_and_last_value() {
        let mut n = 0;
        let err = wait_for(
            Duration::from_millis(250),
            "n to reach 100",
            || {
                n += 1;
                Ok(n)
            },
            |v| *v >= 100,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("n to reach 100"), "{err}");
        assert!(err.contains("last observed: "), "{err}");
    }

    #[test]
    fn returns_the_value_that_satisfied() {
        let mut n = 0;
        let v = wait_for(
            Duration::from_secs(5),
            "n to reach 3",
            || {
                n += 1;
                Ok(n)
            },
            |v| *v >= 3,
        )
        .unwrap();
        assert_eq!(v, 3);
    }
}
