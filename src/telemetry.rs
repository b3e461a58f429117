//! What the service tells its operator: Prometheus metrics and audit log lines.
//!
//! Every security event (login, reuse detected, revocation, password change,
//! admin action) goes through one [`Telemetry`] method, which writes one audit
//! line (user and session ids, never a secret) and counts it, so the log and
//! the metrics cannot disagree.
//!
//! Metrics hold no user data: labels are routes, methods, statuses, outcomes.

use std::net::IpAddr;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use uuid::Uuid;

/// Replay ages, in seconds: from just past a grace to a month.
const REUSE_AGE_BUCKETS: [f64; 8] = [
    120.0,
    300.0,
    900.0,
    3600.0,
    21_600.0,
    86_400.0,
    604_800.0,
    2_592_000.0,
];

/// Latency buckets, in seconds: from a Bearer check (sub-millisecond) to a
/// queued login (hundreds of milliseconds).
const LATENCY_BUCKETS: [f64; 14] = [
    0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: Outcome,
}

/// The outcome of a login or refresh.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)] // label values are snake_case on purpose
pub enum Outcome {
    success,
    failure,
    /// A refresh answered with the current token within the reuse grace.
    grace_retry,
    /// A spent refresh token replayed outside the grace: the session was revoked.
    reuse_detected,
    /// A late duplicate within the grace: refused, nothing revoked.
    superseded,
    /// A refresh token past its idle TTL or its session's lifetime.
    expired,
    /// A refresh token of an ended session.
    revoked,
    /// A refresh token we did not mint, or of no known session.
    invalid,
    rate_limited,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: RevocationReason,
}

/// Why sessions were revoked.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum RevocationReason {
    logout,
    logout_all,
    session_delete,
    password_change,
    admin,
    reuse_detected,
    /// The user's least recently used session, beyond MAX_SESSIONS_PER_USER.
    session_cap,
    /// A password set through a mailed reset token or code.
    password_reset,
    /// An admin (API or command line) disabled the account.
    account_disabled,
    /// The user deleted the account.
    account_deleted,
}

/// The metrics registry and every metric the service keeps.
#[derive(Debug)]
pub struct Telemetry {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    logins: Family<OutcomeLabels, Counter>,
    refreshes: Family<OutcomeLabels, Counter>,
    revocations: Family<ReasonLabels, Counter>,
    password_changes: Counter,
    registrations: Counter,
    /// How long after the session's latest rotation a spent refresh token was
    /// replayed, when reuse was detected: minutes say a phone came back late,
    /// days say a copied token.
    reuse_replay_age: Histogram,
    /// Connections closed at accept for being over `HTTP_MAX_CONNECTIONS_PER_IP`
    /// (counted by [`crate::connections::ConnectionLimits`]).
    pub connections_refused: Counter,
    /// Error answers whose code their route does not document: a bug, always
    /// zero (the tests and the contract run check it).
    pub undocumented_errors: Counter,
    /// Revocation feed (`GET /revocations`) streams open now, and streams
    /// ended because their subscriber fell too far behind.
    pub feed_subscribers: Gauge,
    pub feed_dropped: Counter,
    /// Gauges read from their sources at scrape time.
    pub hashes_in_flight: Gauge,
    pub hashes_queued: Gauge,
    pub db_connections: Gauge,
    pub db_connections_idle: Gauge,
    pub revocations_remembered: Gauge,
    pub rate_limiter_keys: Gauge,
    /// 1 while the rate limits live in the table every instance shares.
    pub rate_limiter_shared: Gauge,
    /// 1 while the shared table cannot be reached and this instance limits
    /// alone, at the stricter fallback budget.
    pub rate_limiter_fallback: Gauge,
    /// Mails sent, retried, given up (counted by the mail sender).
    pub mail: crate::mail::sender::MailMetrics,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    pub fn new() -> Self {
        Self::with_mails_queued(Counter::default())
    }

    /// As [`Telemetry::new`], counting queued mails with `mails_queued` (the
    /// store's counter: mails are queued by store methods, see `store::outbox`).
    pub fn with_mails_queued(mails_queued: Counter) -> Self {
        let mut registry = Registry::with_prefix("auth");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RequestLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS)
        });
        let logins = Family::<OutcomeLabels, Counter>::default();
        let refreshes = Family::<OutcomeLabels, Counter>::default();
        let revocations = Family::<ReasonLabels, Counter>::default();
        let (password_changes, registrations) = (Counter::default(), Counter::default());
        let reuse_replay_age = Histogram::new(REUSE_AGE_BUCKETS);
        let connections_refused = Counter::default();
        let undocumented_errors = Counter::default();
        let gauges: [Gauge; 8] = Default::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, route and status",
            latency.clone(),
        );
        registry.register("logins", "Login attempts by outcome", logins.clone());
        registry.register(
            "refreshes",
            "Refresh attempts by outcome",
            refreshes.clone(),
        );
        registry.register(
            "sessions_revoked",
            "Sessions revoked, by reason",
            revocations.clone(),
        );
        registry.register(
            "password_changes",
            "Password changes",
            password_changes.clone(),
        );
        registry.register("registrations", "Accounts created", registrations.clone());
        registry.register(
            "refresh_reuse_replay_age_seconds",
            "When reuse was detected: seconds between the session's latest rotation and the replay",
            reuse_replay_age.clone(),
        );
        registry.register(
            "http_connections_refused",
            "Connections closed at accept: their address held HTTP_MAX_CONNECTIONS_PER_IP already",
            connections_refused.clone(),
        );
        registry.register(
            "undocumented_errors",
            "Error answers whose code the OpenAPI document does not list for their route (a bug)",
            undocumented_errors.clone(),
        );
        let feed_subscribers = Gauge::default();
        let feed_dropped = Counter::default();
        registry.register(
            "revocation_feed_subscribers",
            "Revocation feed streams (GET /revocations) open now",
            feed_subscribers.clone(),
        );
        registry.register(
            "revocation_feed_dropped",
            "Revocation feed streams ended because the subscriber fell too far behind",
            feed_dropped.clone(),
        );
        let [
            in_flight,
            queued,
            conns,
            idle,
            remembered,
            limiter,
            shared,
            fallback,
        ] = gauges;
        registry.register(
            "password_hashes_in_flight",
            "argon2 hashes running now",
            in_flight.clone(),
        );
        registry.register(
            "password_hashes_queued",
            "argon2 hashes waiting for a thread",
            queued.clone(),
        );
        registry.register(
            "db_pool_connections",
            "Database connections open",
            conns.clone(),
        );
        registry.register(
            "db_pool_connections_idle",
            "Database connections idle",
            idle.clone(),
        );
        registry.register(
            "revocations_remembered",
            "Revoked sessions kept in memory for the Bearer check",
            remembered.clone(),
        );
        registry.register(
            "rate_limiter_keys",
            "Client IPs and emails the rate limiter tracks in this instance's memory",
            limiter.clone(),
        );
        registry.register(
            "rate_limiter_shared",
            "1 while rate limits are counted in the table every instance shares (PostgreSQL)",
            shared.clone(),
        );
        registry.register(
            "rate_limiter_fallback",
            "1 while the shared rate-limit table cannot be reached: this instance limits alone, at half the budget",
            fallback.clone(),
        );
        let mail = crate::mail::sender::MailMetrics::default();
        registry.register(
            "mails_queued",
            "Mails written to the outbox by this instance",
            mails_queued,
        );
        registry.register(
            "mails_sent",
            "Mails delivered (accepted by the SMTP server, or written to the mail folder)",
            mail.sent.clone(),
        );
        registry.register(
            "mail_attempts_retried",
            "Failed delivery attempts that will be retried after a backoff",
            mail.retried.clone(),
        );
        registry.register(
            "mails_failed",
            "Mails given up: MAIL_MAX_ATTEMPTS failed attempts, or an invalid address",
            mail.failed.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            logins,
            refreshes,
            revocations,
            password_changes,
            registrations,
            reuse_replay_age,
            connections_refused,
            undocumented_errors,
            feed_subscribers,
            feed_dropped,
            hashes_in_flight: in_flight,
            hashes_queued: queued,
            db_connections: conns,
            db_connections_idle: idle,
            revocations_remembered: remembered,
            rate_limiter_keys: limiter,
            rate_limiter_shared: shared,
            rate_limiter_fallback: fallback,
            mail,
        }
    }

    /// Counts one HTTP request. `route` is the matched pattern (never the raw
    /// path, which could carry ids), so the label set stays small.
    pub fn observe_request(&self, method: &str, route: Option<&str>, status: u16, took: Duration) {
        let labels = RequestLabels {
            method: method_label(method),
            route: route_label(route),
            status,
        };
        self.latency
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
        self.requests.get_or_create(&labels).inc();
    }

    /// The registry in the OpenMetrics text format Prometheus scrapes.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    // ----- audit events: one log line and one count each -----

    pub fn registered(&self, user: Uuid) {
        self.registrations.inc();
        log::info!("audit: user registered user={user}");
    }

    pub fn login_succeeded(&self, user: Uuid, session: Uuid) {
        self.count_login(Outcome::success);
        log::info!("audit: login succeeded user={user} session={session}");
    }

    /// A failed login. The email is not logged (it may be a typo of a password,
    /// and it tells an attacker's targets); the client address is.
    pub fn login_failed(&self, ip: Option<IpAddr>) {
        self.count_login(Outcome::failure);
        log::warn!("audit: login failed ip={}", ip_text(ip));
    }

    pub fn login_rate_limited(&self, ip: Option<IpAddr>, per_email: bool) {
        self.count_login(Outcome::rate_limited);
        let what = if per_email {
            "too many attempts for one email"
        } else {
            "too many requests from one address"
        };
        log::warn!("audit: login refused, {what} ip={}", ip_text(ip));
    }

    fn count_login(&self, outcome: Outcome) {
        self.logins.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn refreshed(&self, outcome: Outcome) {
        self.refreshes
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A spent refresh token was replayed outside the grace: the session is
    /// revoked. The line says how long after the session's latest rotation
    /// the replay came and how many generations behind the token was, so an
    /// operator can tell a phone that came back late from a thief.
    pub fn reuse_detected(
        &self,
        user: Uuid,
        session: Uuid,
        since_latest_rotation: chrono::Duration,
        generations_behind: i64,
    ) {
        self.revoked_count(RevocationReason::reuse_detected, 1);
        self.reuse_replay_age
            .observe(since_latest_rotation.num_milliseconds() as f64 / 1000.0);
        log::warn!(
            "audit: refresh token reuse detected, session revoked user={user} session={session} \
             replayed_after={}s generations_behind={generations_behind}",
            since_latest_rotation.num_seconds()
        );
    }

    /// Sessions revoked by `actor` (the user, or an admin) for `reason`.
    pub fn revoked(
        &self,
        reason: RevocationReason,
        actor: Option<Uuid>,
        user: Option<Uuid>,
        sessions: &[Uuid],
    ) {
        if sessions.is_empty() {
            return;
        }
        self.revoked_count(reason, sessions.len() as u64);
        let list = sessions
            .iter()
            .map(Uuid::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let reason_text = format!("{reason:?}");
        match actor {
            Some(actor)
                if matches!(
                    reason,
                    RevocationReason::admin | RevocationReason::account_disabled
                ) =>
            {
                log::warn!(
                    "audit: sessions revoked reason={reason_text} admin={actor} user={} sessions={list}",
                    user.map_or_else(|| "-".into(), |u| u.to_string())
                )
            }
            _ => log::info!(
                "audit: sessions revoked reason={reason_text} user={} sessions={list}",
                user.or(actor).map_or_else(|| "-".into(), |u| u.to_string())
            ),
        }
    }

    fn revoked_count(&self, reason: RevocationReason, n: u64) {
        self.revocations
            .get_or_create(&ReasonLabels { reason })
            .inc_by(n);
    }

    /// An event of the account lifecycle (verification, reset, email change,
    /// deletion, disable): one audit line. Never carries a code, a token or
    /// an email address.
    pub fn account_event(&self, event: &'static str, user: Uuid) {
        log::info!("audit: {event} user={user}");
    }

    pub fn password_changed(&self, user: Uuid) {
        self.password_changes.inc();
        log::info!("audit: password changed user={user}");
    }

    /// A login whose password check passed, refused because the credential
    /// changed (password change, disable, deletion) before its session was opened.
    /// Not counted here: the login handler counts it as the failed login it is.
    pub fn login_raced_credential_change(&self, user: Uuid) {
        log::warn!("audit: login refused, the credential changed during the login user={user}");
    }

    pub fn password_change_refused(&self, user: Uuid) {
        log::warn!("audit: password change refused (wrong current password) user={user}");
    }

    /// Sets a gauge from a counter of another module.
    pub fn set(gauge: &Gauge, value: usize) {
        gauge.set(i64::try_from(value).unwrap_or(i64::MAX));
    }
}

fn ip_text(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "-".into(), |ip| ip.to_string())
}

fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "POST" => "POST",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        _ => "other",
    }
}

fn route_label(pattern: Option<&str>) -> &'static str {
    crate::http::routes::label(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_by_route_pattern_never_by_raw_path() {
        let t = Telemetry::new();
        t.observe_request("GET", Some("/sessions/{id}"), 404, Duration::from_millis(2));
        t.observe_request(
            "GET",
            Some("/sessions/6f1c1f0e-8a61-4a8e"),
            404,
            Duration::from_millis(2),
        );
        let text = t.render();
        assert!(
            text.contains(
                r#"auth_http_requests_total{method="GET",route="/sessions/{id}",status="404"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"route="unmatched""#));
        assert!(!text.contains("6f1c1f0e"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn audit_events_are_counted() {
        let t = Telemetry::new();
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        t.login_succeeded(user, session);
        t.login_failed(None);
        t.reuse_detected(user, session, chrono::Duration::seconds(300), 2);
        t.refreshed(Outcome::reuse_detected);
        t.revoked(
            RevocationReason::logout_all,
            Some(user),
            Some(user),
            &[session, Uuid::new_v4()],
        );
        let text = t.render();
        assert!(
            text.contains(r#"auth_logins_total{outcome="success"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"auth_logins_total{outcome="failure"} 1"#));
        assert!(text.contains(r#"auth_refreshes_total{outcome="reuse_detected"} 1"#));
        assert!(
            text.contains(r#"auth_refresh_reuse_replay_age_seconds_bucket{le="300.0"} 1"#),
            "{text}"
        );
        assert!(text.contains(r#"auth_refresh_reuse_replay_age_seconds_bucket{le="120.0"} 0"#));
        assert!(text.contains(r#"auth_sessions_revoked_total{reason="logout_all"} 2"#));
        assert!(text.contains(r#"auth_sessions_revoked_total{reason="reuse_detected"} 1"#));
    }
}
