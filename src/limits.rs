//! Rate limits on the endpoints that cost a password hash or guess one:
//! requests per client IP to `/register`, `/login` and `/password`, and failed
//! logins per email (counted on the normalised email, so case changes do not
//! reset it, and on unknown emails too, so the limit reveals nothing).
//!
//! Per client IP: GCRA limiters from `governor`, per instance. Per email: a
//! token bucket that is charged *before* the password is checked and refunded
//! when the login succeeds ([`EmailCharge::refund`]). Charging only after a
//! failed check would let a burst of guesses in flight slip past the limit
//! (each verified, a correct one succeeding); never refunding would refuse a
//! user who signs in from many devices. `governor` cannot give a unit back,
//! hence the small bucket here.
//!
//! Memory is bounded: keys whose budget is full again carry no information
//! and are dropped by [`RateLimits::forget_idle`], called by the housekeeping
//! task, and inline when a flood of distinct keys pushes a map past a cap.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    per_email: Buckets,
    clock: DefaultClock,
}

/// A login attempt charged to an email. Dropped, it stays charged (a failed
/// or abandoned attempt); [`EmailCharge::refund`] gives it back.
#[derive(Debug)]
#[must_use = "a successful login refunds its charge"]
pub struct EmailCharge<'a> {
    buckets: Option<&'a Buckets>,
    key: String,
}

impl EmailCharge<'_> {
    /// The login succeeded: it does not count against its email.
    pub fn refund(self) {
        if let Some(buckets) = self.buckets {
            buckets.refund(&self.key);
        }
    }
}

/// Token buckets per key: `capacity` tokens, refilled at `capacity` a minute.
#[derive(Debug)]
struct Buckets {
    capacity: f64,
    per_second: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Buckets {
    fn new(per_minute: NonZeroU32) -> Self {
        let capacity = f64::from(per_minute.get());
        Self {
            capacity,
            per_second: capacity / 60.0,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.capacity);
        bucket.at = now;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        // A panic while holding the lock leaves counters, not broken invariants.
        self.buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn charge(&self, key: &str) -> Result<(), RetryAfter> {
        let now = Instant::now();
        let mut buckets = self.lock();
        if buckets.len() > MAX_KEYS {
            self.forget_full(&mut buckets, now);
        }
        let bucket = buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.capacity,
            at: now,
        });
        self.refill(bucket, now);
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(RetryAfter(seconds_up(Duration::from_secs_f64(wait))))
        }
    }

    fn refund(&self, key: &str) {
        let now = Instant::now();
        if let Some(bucket) = self.lock().get_mut(key) {
            self.refill(bucket, now);
            bucket.tokens = (bucket.tokens + 1.0).min(self.capacity);
        }
    }

    /// Drops buckets that are full again: they carry no information.
    fn forget_full(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) {
        buckets.retain(|_, bucket| {
            self.refill(bucket, now);
            bucket.tokens < self.capacity
        });
    }

    fn len(&self) -> usize {
        self.lock().len()
    }
}

impl RateLimits {
    /// `per_minute` requests per key and minute (bursts up to that many); 0 turns limiting off.
    pub fn new(per_minute: u32) -> Self {
        let limiters = NonZeroU32::new(per_minute).map(|n| {
            let quota = Quota::per_minute(n);
            Limiters {
                per_ip: DefaultKeyedRateLimiter::dashmap(quota),
                per_email: Buckets::new(n),
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

    /// Charges one login attempt to this (normalised) email, before the
    /// password is checked; refund the charge if the login succeeds.
    pub fn charge_email(&self, email: &str) -> Result<EmailCharge<'_>, RetryAfter> {
        let buckets = self.limiters.as_ref().map(|l| &l.per_email);
        if let Some(buckets) = buckets {
            buckets.charge(email)?;
        }
        Ok(EmailCharge {
            buckets,
            key: email.to_owned(),
        })
    }

    /// Drops keys whose budget is full again: they carry no information.
    pub fn forget_idle(&self) {
        if let Some(l) = &self.limiters {
            l.per_ip.retain_recent();
            l.per_email
                .forget_full(&mut l.per_email.lock(), Instant::now());
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
            assert!(limits.charge_email("a@example.com").is_ok());
        }
        assert!(limits.is_empty());
    }

    #[test]
    fn attempts_in_flight_count_and_successes_are_given_back() {
        let limits = RateLimits::new(3);
        // Three attempts in flight at once use the whole budget...
        let charges: Vec<_> = (0..3)
            .map(|_| limits.charge_email("a@example.com").expect("within budget"))
            .collect();
        assert!(limits.charge_email("a@example.com").is_err());
        // ...and when they succeed, they were never failures.
        for charge in charges {
            charge.refund();
        }
        for _ in 0..50 {
            limits
                .charge_email("a@example.com")
                .expect("successful logins never run out")
                .refund();
        }
        // Failures (dropped charges) do count.
        for _ in 0..3 {
            drop(limits.charge_email("a@example.com").expect("within budget"));
        }
        let Err(RetryAfter(secs)) = limits.charge_email("a@example.com") else {
            panic!("the fourth failure is refused");
        };
        assert!((1..=20).contains(&secs), "{secs}");
        // Another email has its own budget.
        assert!(limits.charge_email("b@example.com").is_ok());
    }

    #[test]
    fn a_flood_of_distinct_keys_is_forgotten_once_their_budgets_refill() {
        // 60,000 a minute: one request back every millisecond.
        let limits = RateLimits::new(60_000);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limits.check_ip(Some(ip)), Ok(()));
            assert!(limits.charge_email(&format!("user{i}@example.com")).is_ok());
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
