//! The slowest transfer we sit through. A registry that sends one byte a second
//! never trips a read timeout, so every response body must also average at least
//! `$LAYERS_MIN_RATE` bytes per second (default 1024; 0 turns the check off) over
//! each window of `$LAYERS_STALL_TIMEOUT` seconds; and a response's headers must
//! arrive within one window. Either failure counts as a dropped connection: retried,
//! and resumed for blobs, a bounded number of times.

use std::time::{Duration, Instant};

/// Default `$LAYERS_MIN_RATE`, bytes per second.
const DEFAULT_MIN_RATE: u64 = 1024;

/// `$LAYERS_MIN_RATE` bytes per second.
pub fn min_rate() -> u64 {
    std::env::var("LAYERS_MIN_RATE").ok().and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_MIN_RATE)
}

/// Watches one response body's pace.
#[derive(Debug)]
pub struct RateGuard {
    window: Duration,
    min_rate: u64,
    started: Instant,
    bytes: u64,
}

impl RateGuard {
    /// A guard with the configured window and rate, its first window starting now.
    pub fn new() -> RateGuard {
        RateGuard::with(super::stall_timeout(), min_rate())
    }

    fn with(window: Duration, min_rate: u64) -> RateGuard {
        RateGuard { window, min_rate, started: Instant::now(), bytes: 0 }
    }

    /// Counts `n` more bytes; fails when a whole window went by below the minimum rate.
    pub fn check(&mut self, n: usize) -> Result<(), String> {
        self.bytes += n as u64;
        let elapsed = self.started.elapsed();
        if elapsed < self.window {
            return Ok(());
        }
        let rate = self.bytes as f64 / elapsed.as_secs_f64();
        if self.min_rate > 0 && rate < self.min_rate as f64 {
            return Err(format!(
                "transfer too slow: {rate:.0} bytes/s over {:.0}s, below the minimum of {} bytes/s \
                 ($LAYERS_MIN_RATE, $LAYERS_STALL_TIMEOUT)",
                elapsed.as_secs_f64(),
                self.min_rate
            ));
        }
        *self = RateGuard::with(self.window, self.min_rate);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickle_fails_after_a_window_and_a_steady_flow_does_not() {
        let mut slow = RateGuard::with(Duration::from_millis(50), 1000);
        assert!(slow.check(1).is_ok(), "within the first window");
        std::thread::sleep(Duration::from_millis(60));
        assert!(slow.check(1).unwrap_err().contains("transfer too slow"));
        let mut fast = RateGuard::with(Duration::from_millis(50), 1000);
        std::thread::sleep(Duration::from_millis(60));
        assert!(fast.check(1 << 20).is_ok());
        let mut off = RateGuard::with(Duration::from_millis(1), 0);
        std::thread::sleep(Duration::from_millis(5));
        assert!(off.check(0).is_ok());
    }
}
