//! Rate limits shared by several instances on one PostgreSQL database: two
//! real server processes, attempts spread over both limited once (per client
//! IP and per email); a refused key refused again from memory; during a database outage each instance limits alone at
//! the stricter fallback budget (never unlimited), and the shared limit
//! resumes when the database returns; expired rows cleaned in bounded batches.
//! Needs `TEST_DATABASE_URL`; on a SQLite-only run these say so and return.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, assert_error, spawn_app_with, unique_email};
use crate::metrics::value;
use crate::support::{
    ServerProcess, TcpProxy, fresh_postgres_database, require_postgres, socket_of,
};

const SECRET: &str = "shared-secret-of-every-instance-0123456789";

struct Pair {
    a: ServerProcess,
    b: ServerProcess,
    client: reqwest::Client,
}

/// Two instances on `database_url`, trusting `X-Forwarded-For` so that the
/// test can speak from many client addresses.
async fn pair(database_url: &str, extra: &[(&str, &str)]) -> Pair {
    let mut vars = vec![
        ("DATABASE_URL", database_url),
        ("JWT_SECRET", SECRET),
        ("TRUST_FORWARDED_FOR", "true"),
    ];
    vars.extend_from_slice(extra);
    Pair {
        a: ServerProcess::start(&vars).await,
        b: ServerProcess::start(&vars).await,
        client: reqwest::Client::new(),
    }
}

impl Pair {
    /// The instance for the `i`th attempt: A, B, A, B, …
    fn nth(&self, i: usize) -> &ServerProcess {
        if i.is_multiple_of(2) {
            &self.a
        } else {
            &self.b
        }
    }

    async fn post_from(
        &self,
        server: &ServerProcess,
        ip: &str,
        path: &str,
        body: serde_json::Value,
    ) -> reqwest::Response {
        self.client
            .post(server.url(path))
            .header("x-forwarded-for", ip)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    /// A request that is limited per IP and needs no database: a malformed
    /// email is refused (422) right after the limiter, before any query.
    async fn cheap_attempt(&self, server: &ServerProcess, ip: &str) -> StatusCode {
        self.post_from(
            server,
            ip,
            "/register",
            json!({"email": "not-an-email", "password": PASSWORD}),
        )
        .await
        .status()
    }

    async fn login_from(
        &self,
        server: &ServerProcess,
        ip: &str,
        email: &str,
        password: &str,
    ) -> reqwest::Response {
        self.post_from(
            server,
            ip,
            "/login",
            json!({"email": email, "password": password}),
        )
        .await
    }

    async fn metrics(&self, server: &ServerProcess) -> String {
        let r = self
            .client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    /// `(shared, fallback)` gauges of `server`.
    async fn limiter_state(&self, server: &ServerProcess) -> (f64, f64) {
        let text = self.metrics(server).await;
        (
            value(&text, "auth_rate_limiter_shared "),
            value(&text, "auth_rate_limiter_fallback "),
        )
    }
}

async fn assert_too_many(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    retry_after
}

#[tokio::test]
async fn requests_from_one_ip_spread_over_two_instances_are_limited_once() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let p = pair(&database_url, &[("AUTH_RATE_LIMIT", "4")]).await;
    for server in [&p.a, &p.b] {
        assert_eq!(p.limiter_state(server).await, (1.0, 0.0), "shared");
    }
    // Per instance, 4 + 4 would pass; shared, 4 in all.
    for i in 0..4 {
        assert_eq!(
            p.cheap_attempt(p.nth(i), "203.0.113.7").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "attempt {i}"
        );
    }
    for server in [&p.a, &p.b] {
        let r = p
            .post_from(
                server,
                "203.0.113.7",
                "/register",
                json!({"email": "not-an-email", "password": PASSWORD}),
            )
            .await;
        // 4 a minute: one back every 15 s.
        let retry_after = assert_too_many(r).await;
        assert!((1..=15).contains(&retry_after), "{retry_after}");
    }
    // Another address has its own budget, on either instance.
    assert_eq!(
        p.cheap_attempt(&p.b, "203.0.113.8").await,
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn failed_logins_for_one_email_spread_over_two_instances_are_limited_once() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let p = pair(&database_url, &[("AUTH_RATE_LIMIT", "3")]).await;
    let email = unique_email();
    let r = p
        .post_from(
            &p.a,
            "192.0.2.1",
            "/register",
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::CREATED);

    // Successes are refunded wherever they were charged: six in a row, each
    // from its own address, alternating instances, with a budget of three.
    for i in 0..6 {
        let r = p
            .login_from(p.nth(i), &format!("198.51.100.{i}"), &email, PASSWORD)
            .await;
        assert_eq!(r.status(), StatusCode::OK, "login {i}");
    }
    // Failures count once, whichever instance saw them.
    for i in 0..3 {
        let ip = format!("198.51.100.{}", 10 + i);
        let r = p.login_from(p.nth(i), &ip, &email, "wrong password!").await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "failure {i}");
    }
    for (i, server) in [&p.a, &p.b].into_iter().enumerate() {
        let ip = format!("198.51.100.{}", 20 + i);
        assert_too_many(p.login_from(server, &ip, &email, PASSWORD).await).await;
    }

    // A burst of guesses in flight on both instances at once: each is charged
    // before its password check, so only the budget's worth are checked.
    let victim = unique_email();
    let guesses = (0..20).map(|i| {
        let (p, victim) = (&p, &victim);
        async move {
            let ip = format!("203.0.113.{i}");
            p.login_from(p.nth(i), &ip, victim, "wrong password!")
                .await
                .status()
        }
    });
    let statuses = futures::future::join_all(guesses).await;
    let count = |s: StatusCode| statuses.iter().filter(|x| **x == s).count();
    assert_eq!(
        (
            count(StatusCode::UNAUTHORIZED),
            count(StatusCode::TOO_MANY_REQUESTS)
        ),
        (3, 17),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn during_an_outage_each_instance_limits_alone_at_half_the_budget_then_shares_again() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let proxy = TcpProxy::start(socket_of(&database_url)).await;
    let via_proxy = proxy.url_for(&database_url);
    // 4 a minute shared; 2 a minute per instance in fallback.
    let p = pair(
        &via_proxy,
        &[("AUTH_RATE_LIMIT", "4"), ("DATABASE_ACQUIRE_TIMEOUT", "1")],
    )
    .await;
    assert_eq!(p.limiter_state(&p.a).await, (1.0, 0.0));
    // An address over the shared budget, refused by the table on A...
    for i in 0..4 {
        assert_eq!(
            p.cheap_attempt(p.nth(i), "192.0.2.200").await,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }
    assert_eq!(
        p.cheap_attempt(&p.a, "192.0.2.200").await,
        StatusCode::TOO_MANY_REQUESTS
    );

    proxy.down();
    // ...is refused again by A from memory, without a round trip: A has not
    // even noticed the outage yet.
    for _ in 0..3 {
        assert_eq!(
            p.cheap_attempt(&p.a, "192.0.2.200").await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    assert_eq!(
        p.limiter_state(&p.a).await,
        (1.0, 0.0),
        "no statement tried"
    );
    for server in [&p.a, &p.b] {
        // Not unlimited, and not the shared budget either: 2 per instance.
        for i in 0..2 {
            assert_eq!(
                p.cheap_attempt(server, "203.0.113.50").await,
                StatusCode::UNPROCESSABLE_ENTITY,
                "attempt {i} in fallback"
            );
        }
        for _ in 0..3 {
            let r = p
                .post_from(
                    server,
                    "203.0.113.50",
                    "/register",
                    json!({"email": "not-an-email", "password": PASSWORD}),
                )
                .await;
            // 2 a minute: one back every 30 s.
            let retry_after = assert_too_many(r).await;
            assert!((1..=30).contains(&retry_after), "{retry_after}");
        }
        assert_eq!(p.limiter_state(server).await, (0.0, 1.0), "fallback");
        // Logged once per transition, not per request.
        let log = server.log();
        assert_eq!(
            log.matches("shared counters cannot be reached").count(),
            1,
            "{log}"
        );
    }
    // A failed login is charged to the email in fallback too (and the login
    // itself cannot be judged: 503, refunded).
    let r = p
        .login_from(&p.a, "203.0.113.51", &unique_email(), PASSWORD)
        .await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;

    proxy.up();
    // Each instance tries the table again (one request a second) and goes
    // back to the shared limit by itself.
    for server in [&p.a, &p.b] {
        let mut shared = false;
        for i in 0..150 {
            // Fresh addresses: the probes themselves must not be refused.
            let status = p.cheap_attempt(server, &format!("198.51.100.{i}")).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
            if p.limiter_state(server).await == (1.0, 0.0) {
                shared = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(shared, "shared again without a restart:\n{}", server.log());
        assert!(server.log().contains("shared counters answer again"));
    }
    // Shared again: 4 in all over both instances, not 2 + 2 nor 4 + 4.
    for i in 0..4 {
        assert_eq!(
            p.cheap_attempt(p.nth(i), "192.0.2.99").await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "attempt {i}"
        );
    }
    assert_eq!(
        p.cheap_attempt(&p.b, "192.0.2.99").await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn the_shared_table_charges_refunds_and_forgets_in_bounded_batches() {
    let _ = require_postgres!();
    let app = spawn_app_with(&[]).await;
    let table = app.state.store.rate_limit_table().expect("PostgreSQL");
    let now = chrono::Utc::now().timestamp_micros();
    let second = 1_000_000;

    // One request back a second, bursts of three: the upsert says which pass.
    let mut verdicts = Vec::new();
    for _ in 0..4 {
        verdicts.push(table.charge("k", now, second, 3 * second).await.unwrap());
    }
    let allowed: Vec<bool> = verdicts.iter().map(|c| c.allowed).collect();
    assert_eq!(allowed, [true, true, true, false]);
    // A refusal changes nothing; it tells when the next one passes (1 s).
    assert_eq!(verdicts[3].tat_us, verdicts[2].tat_us);
    assert_eq!(verdicts[3].tat_us + second - 3 * second - now, second);
    // A refund gives exactly one back.
    table.refund("k", second).await.unwrap();
    assert!(
        table
            .charge("k", now, second, 3 * second)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !table
            .charge("k", now, second, 3 * second)
            .await
            .unwrap()
            .allowed
    );

    for key in ["a", "b", "c", "d"] {
        table.charge(key, now, second, 3 * second).await.unwrap();
    }
    assert_eq!(table.count().await.unwrap(), 5);
    // Nothing is full again yet.
    assert_eq!(table.delete_expired(now, 2).await.unwrap(), 0);
    // Later, every budget is full: deleted at most two rows per statement.
    let later = now + 10 * second;
    let batches: Vec<u64> = [
        table.delete_expired(later, 2).await.unwrap(),
        table.delete_expired(later, 2).await.unwrap(),
        table.delete_expired(later, 2).await.unwrap(),
        table.delete_expired(later, 2).await.unwrap(),
    ]
    .into();
    assert_eq!(batches, [2, 2, 1, 0]);
    assert_eq!(table.count().await.unwrap(), 0);
}

#[tokio::test]
async fn the_shared_limiter_reads_the_service_clock_and_its_housekeeping_forgets_full_budgets() {
    let _ = require_postgres!();
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "2")]).await;
    let table = app.state.store.rate_limit_table().expect("PostgreSQL");
    for _ in 0..2 {
        let r = app.register("not-an-email", PASSWORD).await;
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    assert_too_many(app.register("not-an-email", PASSWORD).await).await;
    // Within the minute the row carries the budget: housekeeping keeps it.
    assert_eq!(
        app.state.limits.delete_expired_shared(1000).await.unwrap(),
        0
    );
    assert_eq!(table.count().await.unwrap(), 1);

    app.advance(61);
    // The budget is full again: the row carries nothing and is deleted.
    assert_eq!(
        app.state.limits.delete_expired_shared(1000).await.unwrap(),
        1
    );
    assert_eq!(table.count().await.unwrap(), 0);
    assert_eq!(
        app.register("not-an-email", PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}
