//! Rate limits on the endpoints that cost a password hash or guess one:
//! requests per client IP to `/register`, `/login` and `/password`, and login
//! attempts per email (counted on the normalised email, so case changes do not
//! reset it, and on unknown emails too, so the limit reveals nothing).
//!
//! GCRA limiters from `governor`, per instance. The email limiter is charged
//! *before* the password is checked: a budget charged only after a failed
//! check would still let every guess be verified, and a correct one succeed.
//! So it counts attempts; with the default of 20 a minute only failures ever
//! come near it.
//!
//! Memory is bounded: keys whose budget is full again carry no information
//! and are dropped by [`RateLimits::forget_idle`], called by the housekeeping
//! task, and inline when a flood of distinct keys pushes a map past a cap.

use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Past this many keys, idle keys are dropped inline rather than at the next tick.
const MAX_KEYS: usize = 100_000;

/// A refusal: come back in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// The per-IP and per-email limiters; `None` when limiting is off.
#[derive(Debug)]
pub struct RateLimits {
    limiters: Option<Limiters>,
}

#[derive(Debug)]
struct Limiters {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_email: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    /// `per_minute` requests per key and minute (bursts up to that many); 0 turns limiting off.
    pub fn new(per_minute: u32) -> Self {
        let limiters = NonZeroU32::new(per_minute).map(|n| {
            let quota = Quota::per_minute(n);
            Limiters {
                per_ip: DefaultKeyedRateLimiter::dashmap(quota),
                per_email: DefaultKeyedRateLimiter::dashmap(quota),
                clock: DefaultClock::default(),
            }
        });
        Self { limiters }
    }

    /// Charges one request to this client IP. Requests with no known address
    /// (never the case over TCP) are not limited.
    pub fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        match (&self.limiters, ip) {
            (Some(l), Some(ip)) => check(&l.per_ip, &ip, &l.clock),
            _ => Ok(()),
        }
    }

    /// Charges one login attempt to this (normalised) email.
    pub fn check_email(&self, email: &str) -> Result<(), RetryAfter> {
        match &self.limiters {
            Some(l) => check(&l.per_email, &email.to_owned(), &l.clock),
            None => Ok(()),
        }
    }

    /// Drops keys whose budget is full again: they carry no information.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiters {
            l.per_ip.retain_recent();
            l.per_email.retain_recent();
        }
    }

    /// Keys remembered (IPs plus emails).
    pub fn len(&self) -> usize {
        self.limiters
            .as_ref()
            .map_or(0, |l| l.per_ip.len() + l.per_email.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check<K: Hash + Eq + Clone>(
    limiter: &DefaultKeyedRateLimiter<K>,
    key: &K,
    clock: &DefaultClock,
) -> Result<(), RetryAfter> {
    if limiter.len() > MAX_KEYS {
        limiter.retain_recent();
    }
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(clock.now());
        RetryAfter(seconds_up(wait))
    })
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After: 0` invites a tight loop).
fn seconds_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_budget_then_a_retry_after() {
        let limits = RateLimits::new(3);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert_eq!(limits.check_ip(ip), Ok(()));
        }
        let Err(RetryAfter(secs)) = limits.check_ip(ip) else {
            panic!("the fourth request is refused");
        };
        assert!((1..=20).contains(&secs), "{secs}");
        // Another address has its own budget.
        assert_eq!(limits.check_ip(Some(IpAddr::from([10, 0, 0, 2]))), Ok(()));
    }

    #[test]
    fn zero_turns_limiting_off() {
        let limits = RateLimits::new(0);
        for _ in 0..1000 {
            assert_eq!(limits.check_email("a@example.com"), Ok(()));
        }
        assert!(limits.is_empty());
    }

    #[test]
    fn a_flood_of_distinct_keys_is_forgotten_once_their_budgets_refill() {
        // 60,000 a minute: one request back every millisecond.
        let limits = RateLimits::new(60_000);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limits.check_ip(Some(ip)), Ok(()));
            assert_eq!(limits.check_email(&format!("user{i}@example.com")), Ok(()));
        }
        assert_eq!(limits.len(), 40_000);
        std::thread::sleep(Duration::from_millis(20));
        limits.forget_idle();
        assert_eq!(
            limits.len(),
            0,
            "keys with a full budget carry nothing and are dropped"
        );
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_millis(2001)), 3);
        assert_eq!(seconds_up(Duration::ZERO), 1);
    }
}
