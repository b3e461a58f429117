//! The flaky-network soak: simulated phones that follow docs/clients.md,
//! behind a proxy that drops requests and answers, resets and delays, in front
//! of real server processes (one on SQLite; two on one PostgreSQL database,
//! requests spread over both). What must hold: no phone is ever signed out,
//! and no answer is a 5xx.
//!
//! Two kinds of phone lose refresh answers. "Immediate" ones retry at once
//! with the same token, as the guide says. "Late" ones are suspended when an
//! answer is lost (a tunnel, the app in the background) and retry with the
//! same token after some time offline, as real phones do: up to 90 s of the
//! default 120 s grace. Times are scaled to the server's configured grace, so
//! CI runs the same story in seconds.
//!
//! CI runs ~25 s per backend. A long run by hand (figures in BENCHMARKS.md):
//! `SOAK_SECONDS=900 SOAK_DEVICES=100 SOAK_GRACE=120 SOAK_ACCESS_TTL=60 \
//!  cargo test --release --test api soak -- --nocapture`

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::flaky::{Faults, FlakyProxy};
use crate::helpers::{PASSWORD, unique_email};
use crate::support::{ServerProcess, fresh_postgres_database, require_postgres};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The soak's shape: durations in seconds.
#[derive(Debug, Clone, Copy)]
struct Plan {
    seconds: u64,
    devices: u64,
    /// The server's REFRESH_REUSE_GRACE.
    grace: u64,
    /// The server's ACCESS_TOKEN_TTL: phones refresh at 80 % of it.
    access_ttl: u64,
}

impl Plan {
    fn from_env() -> Self {
        Self {
            seconds: env_u64("SOAK_SECONDS", 25),
            devices: env_u64("SOAK_DEVICES", 40),
            grace: env_u64("SOAK_GRACE", 8),
            access_ttl: env_u64("SOAK_ACCESS_TTL", 3),
        }
    }

    /// How long a "late" phone stays offline: 15 to 90 s of a 120 s grace.
    fn offline(&self) -> Duration {
        let grace = Duration::from_secs(self.grace);
        grace.mul_f64(rand::thread_rng().gen_range(0.125..0.75))
    }

    /// The guide's timeout on /refresh: well under the grace.
    fn refresh_timeout(&self) -> Duration {
        Duration::from_secs(self.grace)
            .mul_f64(0.2)
            .min(Duration::from_secs(15))
    }
}

#[derive(Debug, Default)]
struct Stats {
    /// Per kind of phone: `[Kind::Immediate, Kind::Late]`.
    refreshes: [AtomicU64; 2],
    lost_refresh_answers: [AtomicU64; 2],
    late_retries: AtomicU64,
    superseded: AtomicU64,
    forced_logouts: AtomicU64,
    server_errors: AtomicU64,
    unexplained: AtomicU64,
    api_calls: AtomicU64,
}

impl Stats {
    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Immediate = 0,
    Late = 1,
}

/// What the phone keeps in its Keychain / Keystore.
struct Stored {
    access: String,
    refresh: String,
    expires_in: u64,
    received: Instant,
}

impl Stored {
    fn from(body: &Value) -> Self {
        Self {
            access: body["access_token"].as_str().unwrap().to_owned(),
            refresh: body["refresh_token"].as_str().unwrap().to_owned(),
            expires_in: body["expires_in"].as_u64().unwrap(),
            received: Instant::now(),
        }
    }

    /// Fresh until 80 % of `expires_in` has passed on the phone's own clock.
    fn is_fresh(&self) -> bool {
        self.received.elapsed() < Duration::from_secs(self.expires_in).mul_f64(0.8)
    }
}

struct Phone<'a> {
    kind: Kind,
    email: String,
    client: reqwest::Client,
    proxy: &'a FlakyProxy,
    plan: Plan,
    stats: &'a Stats,
}

impl Phone<'_> {
    async fn post(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> reqwest::Result<(StatusCode, Value)> {
        let response = self
            .client
            .post(self.proxy.url(path))
            .json(body)
            .timeout(timeout)
            .send()
            .await?;
        let status = response.status();
        let body = response.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    /// Signs in, retrying lost answers (a lost login only leaves a session
    /// that nobody holds).
    async fn sign_in(&self) -> Stored {
        let body = json!({"email": self.email, "password": PASSWORD, "device_name": "soak"});
        loop {
            match self.post("/login", &body, Duration::from_secs(10)).await {
                Ok((StatusCode::OK, body)) => return Stored::from(&body),
                Ok((status, body)) => {
                    self.count_unexpected(status, &body);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    fn count_unexpected(&self, status: StatusCode, body: &Value) {
        if status.is_server_error() {
            self.stats.server_errors.fetch_add(1, Ordering::Relaxed);
        } else {
            eprintln!("soak: unexplained {status} {body}");
            self.stats.unexplained.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The guide's refresh: the same token until an answer arrives; a lost
    /// answer is retried at once, or (a late phone) after a while offline.
    async fn refresh(&self, stored: &mut Stored) {
        let token = stored.refresh.clone();
        let body = json!({"refresh_token": token});
        let mut lost_before = false;
        loop {
            match self
                .post("/refresh", &body, self.plan.refresh_timeout())
                .await
            {
                Ok((StatusCode::OK, answer)) => {
                    self.stats.refreshes[self.kind as usize].fetch_add(1, Ordering::Relaxed);
                    *stored = Stored::from(&answer); // store before use
                    return;
                }
                Ok((StatusCode::UNAUTHORIZED, answer)) if answer["error"] == "invalid_grant" => {
                    if answer["reason"] == "superseded" {
                        // Not a sign-out: the guide re-reads the stored pair,
                        // which another thread or process rotated. These
                        // phones refresh single-flight from one process, so
                        // for them it means the service did not hand the
                        // retry its successor: counted, and must stay 0.
                        self.stats.superseded.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                    eprintln!(
                        "soak: forced logout ({}) of a {:?} phone",
                        answer["reason"], self.kind
                    );
                    self.stats.forced_logouts.fetch_add(1, Ordering::Relaxed);
                    *stored = self.sign_in().await;
                    return;
                }
                Ok((status, answer)) => {
                    self.count_unexpected(status, &answer);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(_) => {
                    self.stats.lost_refresh_answers[self.kind as usize]
                        .fetch_add(1, Ordering::Relaxed);
                    if self.kind == Kind::Late && !lost_before {
                        // Suspended mid-refresh; back online later, the app
                        // retries at once with the token it still holds.
                        self.stats.late_retries.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(self.plan.offline()).await;
                    } else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    lost_before = true;
                }
            }
        }
    }

    /// One API call with the access token: 401 → refresh once → retry once.
    async fn call_api(&self, stored: &mut Stored) {
        for attempt in 0..2 {
            let response = self
                .client
                .get(self.proxy.url("/me"))
                .bearer_auth(&stored.access)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            let Ok(response) = response else {
                return; // lost: the app tries again on its next call
            };
            self.stats.api_calls.fetch_add(1, Ordering::Relaxed);
            match response.status() {
                StatusCode::OK => return,
                StatusCode::UNAUTHORIZED if attempt == 0 => self.refresh(stored).await,
                status => {
                    let body = response.json().await.unwrap_or(Value::Null);
                    self.count_unexpected(status, &body);
                    return;
                }
            }
        }
    }

    async fn live(&self, until: Instant) {
        let mut stored = self.sign_in().await;
        while Instant::now() < until {
            if !stored.is_fresh() {
                self.refresh(&mut stored).await;
            }
            self.call_api(&mut stored).await;
            let pause = rand::thread_rng().gen_range(100..400);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
    }
}

async fn soak(servers: &[ServerProcess], plan: Plan) {
    let upstreams = servers
        .iter()
        .map(|s| s.address.trim_start_matches("http://").parse().unwrap())
        .collect();
    let faults = Faults {
        drop_request: 0.03,
        drop_answer: 0.07,
        reset: 0.03,
        delay: 0.10,
        max_delay: Duration::from_millis(400),
    };
    let proxy = FlakyProxy::start(upstreams, faults).await;
    let stats = Stats::default();
    // Accounts are created straight on the server: the soak is about sessions.
    let direct = reqwest::Client::new();
    let mut phones = Vec::new();
    for i in 0..plan.devices {
        let email = unique_email();
        let response = direct
            .post(servers[0].url("/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        phones.push(Phone {
            kind: if i % 2 == 0 {
                Kind::Immediate
            } else {
                Kind::Late
            },
            email,
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
            proxy: &proxy,
            plan,
            stats: &stats,
        });
    }
    let until = Instant::now() + Duration::from_secs(plan.seconds);
    futures::future::join_all(phones.iter().map(|p| p.live(until))).await;

    let c = &proxy.counts;
    eprintln!(
        "soak: {} instance(s), {} phones, {} s, grace {} s, access TTL {} s; proxy: {} requests, \
         {} dropped, {} answers dropped, {} reset, {} delayed; immediate-retry phones: {} refreshes, \
         {} lost refresh answers; late-retry phones: {} refreshes, {} lost refresh answers, {} came \
         back late; superseded {}, API calls {}, forced logouts {}, 5xx {}, unexplained {}",
        servers.len(),
        plan.devices,
        plan.seconds,
        plan.grace,
        plan.access_ttl,
        Stats::get(&c.requests),
        Stats::get(&c.dropped_requests),
        Stats::get(&c.dropped_answers),
        Stats::get(&c.resets),
        Stats::get(&c.delays),
        Stats::get(&stats.refreshes[0]),
        Stats::get(&stats.lost_refresh_answers[0]),
        Stats::get(&stats.refreshes[1]),
        Stats::get(&stats.lost_refresh_answers[1]),
        Stats::get(&stats.late_retries),
        Stats::get(&stats.superseded),
        Stats::get(&stats.api_calls),
        Stats::get(&stats.forced_logouts),
        Stats::get(&stats.server_errors),
        Stats::get(&stats.unexplained),
    );
    assert_eq!(
        Stats::get(&stats.forced_logouts),
        0,
        "phones were signed out"
    );
    assert_eq!(Stats::get(&stats.server_errors), 0, "5xx answers");
    assert_eq!(Stats::get(&stats.unexplained), 0, "unexplained failures");
    assert_eq!(
        Stats::get(&stats.superseded),
        0,
        "a retry missed its successor"
    );
    // The soak proves something only if refresh answers were actually lost,
    // and late phones actually came back late.
    let refreshes = Stats::get(&stats.refreshes[0]) + Stats::get(&stats.refreshes[1]);
    assert!(refreshes >= plan.devices * 2, "{refreshes} refreshes");
    assert!(Stats::get(&stats.lost_refresh_answers[0]) > 0);
    assert!(Stats::get(&stats.lost_refresh_answers[1]) > 0);
    assert!(Stats::get(&stats.late_retries) > 0);
    for server in servers {
        assert!(!server.log().contains("ERROR"), "{}", server.log());
    }
}

fn server_vars(plan: &Plan) -> Vec<(&'static str, String)> {
    vec![
        ("JWT_SECRET", crate::helpers::JWT_SECRET.to_owned()),
        ("REFRESH_REUSE_GRACE", plan.grace.to_string()),
        ("ACCESS_TOKEN_TTL", plan.access_ttl.to_string()),
        ("JWT_LEEWAY", "0".to_owned()),
        ("HTTP_WORKERS", "2".to_owned()),
    ]
}

fn as_refs<'a>(vars: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    vars.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_on_a_flaky_network_are_never_signed_out_on_sqlite() {
    if crate::support::postgres_base().is_some() && std::env::var_os("SOAK_SECONDS").is_none() {
        eprintln!("the SQLite soak ran in the SQLite pass; this pass soaks PostgreSQL");
        return;
    }
    let plan = Plan::from_env();
    let dir = tempfile::tempdir().unwrap();
    let mut vars = server_vars(&plan);
    vars.push((
        "DATABASE_URL",
        format!("sqlite://{}/auth.db", dir.path().display()),
    ));
    let server = ServerProcess::start(&as_refs(&vars)).await;
    soak(&[server], plan).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn phones_on_a_flaky_network_are_never_signed_out_across_two_instances() {
    let base = require_postgres!();
    let plan = Plan::from_env();
    let database = fresh_postgres_database(&base).await;
    let mut vars = server_vars(&plan);
    vars.push(("DATABASE_URL", database));
    let vars = as_refs(&vars);
    let a = ServerProcess::start(&vars).await;
    let b = ServerProcess::start(&vars).await;
    soak(&[a, b], plan).await;
}
