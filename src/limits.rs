//! Rate limits on the endpoints that cost a password hash or guess one:
//! requests per client IP to `/register`, `/login` and `/password`, and failed
//! logins per email (counted on the normalised email, so case changes do not
//! reset it, and on unknown emails too, so the limit reveals nothing).
//!
//! Where the counters live ([`RateLimits`] chooses, the handlers do not know):
//! - SQLite (one instance): in memory. Per client IP, GCRA limiters from
//!   `governor`; per email, a token bucket (below).
//! - PostgreSQL (any number of instances): one GCRA cell per key in a shared
//!   table ([`crate::store::RateLimitTable`]), one upsert per limited request,
//!   so N instances give one limit, not N. When that table cannot be reached
//!   within [`SHARED_TIMEOUT`], the limits fall back to the in-memory ones at
//!   half the budget per instance ([`fallback_budget`]): stricter, never off.
//!   The state is a gauge in `/metrics` and one log line per transition. A
//!   key the table refused is refused again by the same instance from memory
//!   until its Retry-After, so a flood costs no round trip per request.
//!
//! Per email, the budget is charged *before* the password is checked and
//! refunded when the login succeeds ([`EmailCharge::refund`]). Charging only
//! after a failed check would let a burst of guesses in flight slip past the
//! limit (each verified, a correct one succeeding); never refunding would
//! refuse a user who signs in from many devices. `governor` cannot give a unit
//! back, hence the small bucket here; in the shared table a refund is one
//! atomic decrement.
//!
//! Memory is bounded: keys whose budget is full again carry no information
//! and are dropped by [`RateLimits::forget_idle`], called by the housekeeping
//! task, and inline when a flood of distinct keys pushes a map past a cap; the
//! shared table is cleaned the same way, a bounded batch per statement
//! ([`RateLimits::delete_expired_shared`]).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

use crate::clock::SharedClock;
use crate::store::{RateLimitTable, StoreError};

/// Past this many keys, idle keys are dropped inline rather than at the next tick.
const MAX_KEYS: usize = 100_000;

/// How long a limited request waits for the shared table before it falls back
/// to the per-instance limit: far above a healthy upsert (a millisecond), far
/// below a request's patience. Limited requests cost an argon2 hash anyway.
pub const SHARED_TIMEOUT: Duration = Duration::from_secs(1);

/// In fallback, how often one request tries the shared table again; the
/// others go straight to the per-instance limit, so a database that hangs
/// stalls at most one request per period, not every one.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// The per-instance budget while the shared table cannot be reached: half the
/// shared one (at least 1), so that a few instances in fallback together give
/// about what one shared limit gives, and one instance gives less.
pub fn fallback_budget(per_minute: u32) -> u32 {
    (per_minute / 2).max(1)
}

/// A refusal: come back in this many seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

/// Where the limits are kept right now (`/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimiterMode {
    /// `AUTH_RATE_LIMIT=0`.
    Off,
    /// In this instance's memory (SQLite).
    Local,
    /// In the shared table (PostgreSQL).
    Shared,
    /// The shared table cannot be reached: the stricter per-instance limit.
    Fallback,
}

/// The per-IP and per-email limiters; both `None` when limiting is off.
#[derive(Debug)]
pub struct RateLimits {
    /// In memory: the whole budget on SQLite, the fallback budget next to a
    /// shared table.
    local: Option<Limiters>,
    shared: Option<Shared>,
}

#[derive(Debug)]
struct Limiters {
    per_ip: DefaultKeyedRateLimiter<IpAddr>,
    per_email: Buckets,
    clock: DefaultClock,
}

impl Limiters {
    fn new(per_minute: NonZeroU32) -> Self {
        Self {
            per_ip: DefaultKeyedRateLimiter::dashmap(Quota::per_minute(per_minute)),
            per_email: Buckets::new(per_minute),
            clock: DefaultClock::default(),
        }
    }
}

/// The shared table, its GCRA parameters, and whether it answers.
#[derive(Debug)]
struct Shared {
    table: RateLimitTable,
    clock: SharedClock,
    /// One request back every this many microseconds...
    interval_us: i64,
    /// ...and at most this far ahead: a burst of the whole budget.
    burst_us: i64,
    fallback_budget: u32,
    /// Keys the table refused, and until when (unix µs): refused again by
    /// this instance without a round trip, so a flood from one address costs
    /// the database one write per refusal period, not one per request.
    refused: Mutex<HashMap<String, i64>>,
    fallback: AtomicBool,
    /// While in fallback: when one request may try the table again.
    next_probe: Mutex<Instant>,
}

impl Shared {
    /// Charges `key`; `None` when the table cannot tell (use the fallback).
    async fn charge(&self, key: &str) -> Option<Result<(), RetryAfter>> {
        let now_us = self.clock.now().timestamp_micros();
        if let Some(until) = self.refused_until(key, now_us) {
            return Some(Err(retry_after_us(until - now_us)));
        }
        let charged = self
            .attempt(
                self.table
                    .charge(key, now_us, self.interval_us, self.burst_us),
            )
            .await?;
        if charged.allowed {
            return Some(Ok(()));
        }
        // A refusal leaves the cell as it was: it allows one more request
        // once now reaches tat + interval - burst.
        let wait_us = charged.tat_us + self.interval_us - self.burst_us - now_us;
        self.remember_refusal(key, now_us + wait_us, now_us);
        Some(Err(retry_after_us(wait_us)))
    }

    /// Until when (unix µs) the table refuses `key`, if this instance knows
    /// it does. For a client IP that is exact: other instances' charges only
    /// move the cell later. For an email a refund elsewhere may free a unit
    /// a little earlier (within one interval): strict, never loose.
    fn refused_until(&self, key: &str, now_us: i64) -> Option<i64> {
        let mut refused = lock(&self.refused);
        match refused.get(key) {
            Some(&until) if until > now_us => Some(until),
            Some(_) => {
                refused.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember_refusal(&self, key: &str, until_us: i64, now_us: i64) {
        let mut refused = lock(&self.refused);
        if refused.len() > MAX_KEYS {
            refused.retain(|_, until| *until > now_us);
        }
        refused.insert(key.to_owned(), until_us);
    }

    /// Drops refusals that have run out.
    fn forget_past_refusals(&self) {
        let now_us = self.clock.now().timestamp_micros();
        lock(&self.refused).retain(|_, until| *until > now_us);
    }

    /// Runs one statement on the table with [`SHARED_TIMEOUT`], unless in
    /// fallback and it is not yet time to try again. Records the transitions.
    async fn attempt<T>(
        &self,
        statement: impl Future<Output = Result<T, StoreError>>,
    ) -> Option<T> {
        if self.fallback.load(Ordering::Acquire) {
            let mut next = lock(&self.next_probe);
            let now = Instant::now();
            if now < *next {
                return None;
            }
            *next = now + PROBE_EVERY;
        }
        match tokio::time::timeout(SHARED_TIMEOUT, statement).await {
            Ok(Ok(value)) => {
                self.set_fallback(false, "");
                Some(value)
            }
            Ok(Err(e)) => {
                self.set_fallback(true, &e.to_string());
                None
            }
            Err(_) => {
                self.set_fallback(true, "timed out");
                None
            }
        }
    }

    /// Logs once per transition, never per request.
    fn set_fallback(&self, on: bool, why: &str) {
        if self.fallback.swap(on, Ordering::AcqRel) == on {
            return;
        }
        if on {
            *lock(&self.next_probe) = Instant::now() + PROBE_EVERY;
            log::warn!(
                "rate limits: the shared counters cannot be reached ({why}); this instance \
                 limits alone, at {} per minute, until they can",
                self.fallback_budget
            );
        } else {
            log::warn!("rate limits: the shared counters answer again; limits are shared");
        }
    }
}

/// A login attempt charged to an email. Dropped, it stays charged (a failed
/// or abandoned attempt); [`EmailCharge::refund`] gives it back.
#[derive(Debug)]
#[must_use = "a successful login refunds its charge"]
pub struct EmailCharge<'a> {
    on: ChargedOn<'a>,
    key: String,
}

#[derive(Debug)]
enum ChargedOn<'a> {
    Nothing,
    Local(&'a Buckets),
    Shared(&'a Shared),
}

impl EmailCharge<'_> {
    /// The login succeeded (or could not be judged): it does not count
    /// against its email. Given back where it was charged.
    pub async fn refund(self) {
        match self.on {
            ChargedOn::Nothing => {}
            ChargedOn::Local(buckets) => buckets.refund(&self.key),
            ChargedOn::Shared(shared) => {
                // Not given back if the table is gone meanwhile: that errs
                // on the strict side.
                let _ = shared
                    .attempt(shared.table.refund(&self.key, shared.interval_us))
                    .await;
            }
        }
    }
}

/// The shared table's key for `value` of `kind`: a SHA-256, so that the
/// table holds no client addresses nor typed emails (a dump of it reveals
/// nothing), and every key has the same small size.
fn shared_key(kind: &str, value: &str) -> String {
    use base64::Engine;
    use sha2::{Digest, Sha256};
    let digest = Sha256::new()
        .chain_update(kind)
        .chain_update(":")
        .chain_update(value)
        .finalize();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves counters, not broken invariants.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
        lock(&self.buckets)
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
    /// In memory (SQLite): `per_minute` requests per key and minute (bursts up
    /// to that many); 0 turns limiting off.
    pub fn new(per_minute: u32) -> Self {
        Self {
            local: NonZeroU32::new(per_minute).map(Limiters::new),
            shared: None,
        }
    }

    /// In the shared `table` (PostgreSQL), with the per-instance fallback
    /// ([`fallback_budget`]) in memory; 0 turns limiting off.
    pub fn shared(per_minute: u32, table: RateLimitTable, clock: SharedClock) -> Self {
        let Some(n) = NonZeroU32::new(per_minute) else {
            return Self::new(0);
        };
        let fallback = fallback_budget(n.get());
        // Rounded up: never looser than the budget.
        let interval_us =
            i64::try_from(60_000_000_u64.div_ceil(u64::from(n.get()))).expect("at most a minute");
        Self {
            local: NonZeroU32::new(fallback).map(Limiters::new),
            shared: Some(Shared {
                table,
                clock,
                interval_us,
                burst_us: interval_us * i64::from(n.get()),
                fallback_budget: fallback,
                refused: Mutex::new(HashMap::new()),
                fallback: AtomicBool::new(false),
                next_probe: Mutex::new(Instant::now()),
            }),
        }
    }

    /// Charges one request to this client IP (its /64 for IPv6, see
    /// [`crate::connections::address_key`]). Requests with no known address
    /// (never the case over TCP) are not limited.
    pub async fn check_ip(&self, ip: Option<IpAddr>) -> Result<(), RetryAfter> {
        let Some(ip) = ip.map(crate::connections::address_key) else {
            return Ok(());
        };
        if let Some(shared) = &self.shared
            && let Some(verdict) = shared.charge(&shared_key("ip", &ip.to_string())).await
        {
            return verdict;
        }
        match &self.local {
            Some(l) => check(&l.per_ip, &ip, &l.clock),
            None => Ok(()),
        }
    }

    /// Charges one login attempt to this (normalised) email, before the
    /// password is checked; refund the charge if the login succeeds.
    pub async fn charge_email(&self, email: &str) -> Result<EmailCharge<'_>, RetryAfter> {
        if let Some(shared) = &self.shared {
            let key = shared_key("email", email);
            if let Some(verdict) = shared.charge(&key).await {
                verdict?;
                return Ok(EmailCharge {
                    on: ChargedOn::Shared(shared),
                    key,
                });
            }
        }
        let Some(l) = &self.local else {
            return Ok(EmailCharge {
                on: ChargedOn::Nothing,
                key: String::new(),
            });
        };
        l.per_email.charge(email)?;
        Ok(EmailCharge {
            on: ChargedOn::Local(&l.per_email),
            key: email.to_owned(),
        })
    }

    /// Where the limits are kept right now.
    pub fn mode(&self) -> LimiterMode {
        match (&self.shared, &self.local) {
            (Some(shared), _) if shared.fallback.load(Ordering::Acquire) => LimiterMode::Fallback,
            (Some(_), _) => LimiterMode::Shared,
            (None, Some(_)) => LimiterMode::Local,
            (None, None) => LimiterMode::Off,
        }
    }

    /// Drops in-memory keys whose budget is full again: they carry no information.
    pub fn forget_idle(&self) {
        if let Some(shared) = &self.shared {
            shared.forget_past_refusals();
        }
        if let Some(l) = &self.local {
            l.per_ip.retain_recent();
            l.per_email
                .forget_full(&mut l.per_email.lock(), Instant::now());
        }
    }

    /// Deletes at most `batch` rows of the shared table whose budget is full
    /// again; returns how many (0 without a shared table).
    pub async fn delete_expired_shared(&self, batch: i64) -> Result<u64, StoreError> {
        match &self.shared {
            Some(shared) => {
                let now_us = shared.clock.now().timestamp_micros();
                shared.table.delete_expired(now_us, batch).await
            }
            None => Ok(0),
        }
    }

    /// Keys remembered in this instance's memory (IPs plus emails, and the
    /// shared table's refusals).
    pub fn len(&self) -> usize {
        let local = self
            .local
            .as_ref()
            .map_or(0, |l| l.per_ip.len() + l.per_email.len());
        let refused = self.shared.as_ref().map_or(0, |s| lock(&s.refused).len());
        local + refused
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

/// A refusal for `wait_us` microseconds (none left: 1 s, see [`seconds_up`]).
fn retry_after_us(wait_us: i64) -> RetryAfter {
    RetryAfter(seconds_up(Duration::from_micros(
        u64::try_from(wait_us).unwrap_or(0),
    )))
}

/// Whole seconds, rounded up, at least 1 (a `Retry-After: 0` invites a tight loop).
fn seconds_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_key_gets_its_budget_then_a_retry_after() {
        let limits = RateLimits::new(3);
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        for _ in 0..3 {
            assert_eq!(limits.check_ip(ip).await, Ok(()));
        }
        let Err(RetryAfter(secs)) = limits.check_ip(ip).await else {
            panic!("the fourth request is refused");
        };
        assert!((1..=20).contains(&secs), "{secs}");
        // Another address has its own budget.
        assert_eq!(
            limits.check_ip(Some(IpAddr::from([10, 0, 0, 2]))).await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn an_ipv6_slash_64_is_one_client() {
        let limits = RateLimits::new(2);
        let ip = |s: &str| Some(s.parse::<IpAddr>().unwrap());
        assert_eq!(limits.check_ip(ip("2001:db8:1:2::1")).await, Ok(()));
        assert_eq!(limits.check_ip(ip("2001:db8:1:2::2")).await, Ok(()));
        assert!(
            limits.check_ip(ip("2001:db8:1:2:ffff::3")).await.is_err(),
            "a third address of the same /64 shares its budget"
        );
        assert_eq!(
            limits.check_ip(ip("2001:db8:1:3::1")).await,
            Ok(()),
            "another /64"
        );
        // An IPv4 address written as IPv4-mapped IPv6 is that IPv4 address.
        assert_eq!(limits.check_ip(ip("10.0.0.9")).await, Ok(()));
        assert_eq!(limits.check_ip(ip("::ffff:10.0.0.9")).await, Ok(()));
        assert!(limits.check_ip(ip("10.0.0.9")).await.is_err());
    }

    #[tokio::test]
    async fn zero_turns_limiting_off() {
        let limits = RateLimits::new(0);
        for _ in 0..1000 {
            assert!(limits.charge_email("a@example.com").await.is_ok());
        }
        assert!(limits.is_empty());
    }

    #[tokio::test]
    async fn attempts_in_flight_count_and_successes_are_given_back() {
        let limits = RateLimits::new(3);
        // Three attempts in flight at once use the whole budget...
        let mut charges = Vec::new();
        for _ in 0..3 {
            charges.push(
                limits
                    .charge_email("a@example.com")
                    .await
                    .expect("within budget"),
            );
        }
        assert!(limits.charge_email("a@example.com").await.is_err());
        // ...and when they succeed, they were never failures.
        for charge in charges {
            charge.refund().await;
        }
        for _ in 0..50 {
            limits
                .charge_email("a@example.com")
                .await
                .expect("successful logins never run out")
                .refund()
                .await;
        }
        // Failures (dropped charges) do count.
        for _ in 0..3 {
            drop(
                limits
                    .charge_email("a@example.com")
                    .await
                    .expect("within budget"),
            );
        }
        let Err(RetryAfter(secs)) = limits.charge_email("a@example.com").await else {
            panic!("the fourth failure is refused");
        };
        assert!((1..=20).contains(&secs), "{secs}");
        // Another email has its own budget.
        assert!(limits.charge_email("b@example.com").await.is_ok());
    }

    #[tokio::test]
    async fn a_flood_of_distinct_keys_is_forgotten_once_their_budgets_refill() {
        // 60,000 a minute: one request back every millisecond.
        let limits = RateLimits::new(60_000);
        for i in 0..20_000u32 {
            let ip = IpAddr::from(i.to_be_bytes());
            assert_eq!(limits.check_ip(Some(ip)).await, Ok(()));
            assert!(
                limits
                    .charge_email(&format!("user{i}@example.com"))
                    .await
                    .is_ok()
            );
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

    #[tokio::test]
    async fn a_database_that_hangs_costs_one_timeout_then_the_stricter_fallback_applies() {
        // A "database" that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let _hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let pool = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(3600))
            .connect_lazy(&format!("postgres://nobody@127.0.0.1:{port}/none"))
            .unwrap();
        let table = crate::store::RateLimitTable::on_pool(pool);
        let limits = RateLimits::shared(4, table, std::sync::Arc::new(crate::clock::SystemClock));
        assert_eq!(limits.mode(), LimiterMode::Shared);
        let ip = Some(IpAddr::from([192, 0, 2, 1]));
        // Without SHARED_TIMEOUT the first request would wait for the pool's
        // hour; with it, the first waits a second and the next go straight
        // to the fallback: 2 a minute (half of 4), then refused, not unlimited.
        let verdicts = tokio::time::timeout(Duration::from_secs(30), async {
            let mut verdicts = Vec::new();
            for _ in 0..3 {
                verdicts.push(limits.check_ip(ip).await.is_ok());
            }
            verdicts
        })
        .await
        .expect("a hung database does not stall the limiter");
        assert_eq!(verdicts, [true, true, false]);
        assert_eq!(limits.mode(), LimiterMode::Fallback);
        // Emails too: one failure budget of 2, then refused.
        drop(limits.charge_email("a@example.com").await.unwrap());
        drop(limits.charge_email("a@example.com").await.unwrap());
        assert!(limits.charge_email("a@example.com").await.is_err());
    }

    #[test]
    fn fallback_budget_is_half_and_never_zero() {
        assert_eq!(fallback_budget(20), 10);
        assert_eq!(fallback_budget(3), 1);
        assert_eq!(fallback_budget(1), 1);
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(seconds_up(Duration::from_millis(1)), 1);
        assert_eq!(seconds_up(Duration::from_millis(2001)), 3);
        assert_eq!(seconds_up(Duration::ZERO), 1);
    }
}
