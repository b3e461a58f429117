//! The time every decision about sessions and tokens is made at.
//!
//! One [`Clock`] is built at start and handed to the sessions service and the
//! token verifier, so tests move time forward (past a grace, an idle expiry, a
//! lifetime) instead of sleeping through it, and every rule sees the same
//! "now".

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now(&self) -> DateTime<Utc>;
}

/// The clock the service runs on.
pub type SharedClock = Arc<dyn Clock>;

/// The operating system's clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system clock moved forward by an adjustable amount: what the tests
/// inject, so that time passes at once and keeps running afterwards.
#[derive(Debug, Default)]
pub struct ShiftedClock {
    shift_ms: AtomicI64,
}

impl ShiftedClock {
    /// Moves this clock forward.
    pub fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.shift_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> DateTime<Utc> {
        let shift = chrono::Duration::milliseconds(self.shift_ms.load(Ordering::Relaxed));
        Utc::now() + shift
    }
}

/// `at + duration`, saturating at the largest representable time.
pub fn later(at: DateTime<Utc>, duration: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| at.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shifted_clock_moves_forward_and_keeps_running() {
        let clock = ShiftedClock::default();
        let before = Utc::now();
        clock.advance(Duration::from_secs(3600));
        let shifted = clock.now();
        assert!(shifted >= before + chrono::Duration::seconds(3600));
        assert!(clock.now() >= shifted);
    }

    #[test]
    fn later_saturates() {
        let now = Utc::now();
        assert_eq!(later(now, Duration::MAX), DateTime::<Utc>::MAX_UTC);
        assert_eq!(
            later(now, Duration::from_secs(5)),
            now + chrono::Duration::seconds(5)
        );
    }
}
