//! Load generator for revocations over HTTP, against a server that is already
//! running (see `benches/backends.sh`). Seeds sessions itself, through the
//! server's database and key (no argon2: one user, sessions inserted in one
//! statement, their first refresh tokens minted with the server's key), then:
//!
//! - `fanout`: opens `--subscribers` `GET /revocations` event streams, logs
//!   `--logouts` sessions out one after the other and, for each, times from
//!   the logout's answer to the moment the last subscriber read its
//!   `revoked` event. Prints p50/p99/max of that delay and the server's RSS
//!   before and after the subscribers connected (`--server-pid`).
//! - `logouts`: first logs `--preload` sessions out through `POST /logout`
//!   (the API's own path, so the server remembers that many revocations),
//!   then times `--logouts` more at `--concurrency`, and prints logouts/s and
//!   the server's RSS before and after the preload. `--extra` seeds that many
//!   more sessions that stay signed in (a baseline with the same table size).
//!
//! ```sh
//! cargo bench --bench revocations_load -- fanout --url http://127.0.0.1:18080 \
//!     --database-url sqlite:///tmp/x/auth.db --secret "$JWT_SECRET" --service-key "$KEY" \
//!     --subscribers 1000 --logouts 50 --server-pid "$PID"
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use auth_api::auth::{Keyring, refresh};
use auth_api::store::{PoolSettings, Store};
use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use uuid::Uuid;

#[derive(Default)]
struct Args {
    command: String,
    url: String,
    database_url: String,
    secret: String,
    service_key: String,
    subscribers: usize,
    logouts: usize,
    preload: usize,
    extra: usize,
    settle: f64,
    concurrency: usize,
    server_pid: Option<u32>,
}

fn parse_args() -> Args {
    let mut args = Args {
        subscribers: 1000,
        logouts: 50,
        concurrency: 32,
        settle: 0.5,
        ..Args::default()
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "fanout" | "logouts" => args.command = flag.clone(),
            "--url" => args.url = value(),
            "--database-url" => args.database_url = value(),
            "--secret" => args.secret = value(),
            "--service-key" => args.service_key = value(),
            "--subscribers" => args.subscribers = value().parse().expect("--subscribers N"),
            "--logouts" => args.logouts = value().parse().expect("--logouts N"),
            "--preload" => args.preload = value().parse().expect("--preload N"),
            "--extra" => args.extra = value().parse().expect("--extra N"),
            "--settle" => args.settle = value().parse().expect("--settle SECONDS"),
            "--concurrency" => args.concurrency = value().parse().expect("--concurrency N"),
            "--server-pid" => args.server_pid = Some(value().parse().expect("--server-pid PID")),
            // `cargo bench` passes --bench; ignore anything else of the harness.
            _ => {}
        }
    }
    assert!(
        !args.command.is_empty()
            && !args.url.is_empty()
            && !args.database_url.is_empty()
            && !args.secret.is_empty(),
        "usage: revocations_load fanout|logouts --url URL --database-url URL --secret KEY \
         [--service-key KEY --subscribers N] [--preload N --extra N --settle SECONDS --concurrency N] [--logouts N] [--server-pid PID]"
    );
    args
}

/// `n` active sessions of a new user, inserted in one statement; returns a
/// refresh token for each (generation 0, minted with the server's key).
async fn seed_sessions(args: &Args, n: usize) -> Vec<String> {
    let store = Store::connect(
        &SecretString::from(args.database_url.clone()),
        &PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(30),
        },
    )
    .await
    .expect("the database");
    let now = Utc::now();
    let email = format!("revocations-{}@example.com", Uuid::new_v4().simple());
    // Never logs in: the hash only has to be a string.
    let user = store
        .create_user(&email, "$argon2id$unused", now)
        .await
        .expect("a user");
    store.close().await;
    let later = now + chrono::Duration::days(30);
    assert!(
        args.database_url.starts_with("sqlite:"),
        "seeding is written for SQLite"
    );
    let pool = sqlx::SqlitePool::connect(&args.database_url)
        .await
        .expect("sqlite");
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO sessions (id, user_id, generation, device_name, user_agent, created_at, \
         rotated_at, last_used_at, idle_expires_at, expires_at) \
         SELECT randomblob(16), $2, 0, 'bench', NULL, $3, $3, $3, $4, $4 FROM n",
    )
    .bind(i64::try_from(n).expect("n fits"))
    .bind(user.id)
    .bind(now)
    .bind(later)
    .execute(&pool)
    .await
    .expect("sessions");
    let ids: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(user.id)
        .fetch_all(&pool)
        .await
        .expect("session ids");
    pool.close().await;
    let keys = Keyring::new(&SecretString::from(args.secret.clone()), &[]);
    ids.into_iter()
        .map(|id| refresh::mint(&keys, id, 0))
        .collect()
}

fn rss_kib(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1000.0
}

async fn logout(client: &reqwest::Client, url: &str, token: &str) -> bool {
    matches!(
        client.post(url).json(&json!({"refresh_token": token})).send().await,
        Ok(r) if r.status() == reqwest::StatusCode::NO_CONTENT
    )
}

/// The session id of a refresh token (its first 16 bytes, base64url).
fn session_of(token: &str) -> Uuid {
    use base64::Engine;
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .expect("a refresh token");
    Uuid::from_slice(&raw[..16]).expect("a session id")
}

async fn fanout(args: Args) {
    assert!(!args.service_key.is_empty(), "fanout needs --service-key");
    let tokens = seed_sessions(&args, args.logouts).await;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("a client");
    let before = rss_kib(args.server_pid);
    let (arrivals, mut arrived) = mpsc::unbounded_channel::<(Uuid, Instant)>();
    let ready = Arc::new(AtomicUsize::new(0));
    for _ in 0..args.subscribers {
        let (client, url, key, arrivals, ready) = (
            client.clone(),
            format!("{}/revocations", args.url),
            args.service_key.clone(),
            arrivals.clone(),
            ready.clone(),
        );
        tokio::spawn(async move {
            let mut response = client
                .get(url)
                .bearer_auth(key)
                .header("accept", "text/event-stream")
                .send()
                .await
                .expect("the feed answers");
            assert!(response.status().is_success(), "{}", response.status());
            let mut buffer = String::new();
            let mut synced = false;
            while let Ok(Some(chunk)) = response.chunk().await {
                let now = Instant::now();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    if block.contains("event: snapshot") && !synced {
                        synced = true;
                        ready.fetch_add(1, Ordering::Relaxed);
                    }
                    if !block.contains("event: revoked") {
                        continue;
                    }
                    let data = block
                        .lines()
                        .find_map(|line| line.strip_prefix("data:"))
                        .map(str::trim)
                        .unwrap_or_default();
                    let event: Value = serde_json::from_str(data).expect("a JSON event");
                    if let Some(id) = event["session_id"].as_str().and_then(|s| s.parse().ok()) {
                        let _ = arrivals.send((id, now));
                    }
                }
            }
        });
    }
    let connecting = Instant::now();
    while ready.load(Ordering::Relaxed) < args.subscribers {
        assert!(
            connecting.elapsed() < Duration::from_secs(60),
            "only {} of {} subscribers got their snapshot",
            ready.load(Ordering::Relaxed),
            args.subscribers
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connected_in = connecting.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(args.server_pid);

    let url = format!("{}/logout", args.url);
    let mut delays = Vec::new();
    for token in &tokens {
        let session = session_of(token);
        assert!(logout(&client, &url, token).await, "a logout");
        let answered = Instant::now();
        let mut last = answered;
        let mut count = 0;
        while count < args.subscribers {
            let (id, at) = tokio::time::timeout(Duration::from_secs(10), arrived.recv())
                .await
                .expect("every subscriber hears of the logout within 10 s")
                .expect("subscribers alive");
            if id == session {
                count += 1;
                last = last.max(at);
            }
        }
        delays.push(last.saturating_duration_since(answered));
    }
    delays.sort();
    println!(
        "fanout: {} subscribers (all synced in {:.2} s), {} logouts: logout answer -> last \
         subscriber's event p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        args.subscribers,
        connected_in.as_secs_f64(),
        delays.len(),
        percentile(&delays, 0.50),
        percentile(&delays, 0.99),
        percentile(&delays, 1.0),
    );
    if let (Some(before), Some(after)) = (before, after) {
        println!(
            "fanout: server RSS {:.1} MiB before the subscribers, {:.1} MiB with them: {:.1} KiB per subscriber",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / args.subscribers as f64
        );
    }
}

/// Logs every token out at `concurrency`; returns (logouts per second, failures).
async fn logout_all(
    client: &reqwest::Client,
    url: &str,
    tokens: Vec<String>,
    concurrency: usize,
) -> (f64, usize) {
    let tokens = Arc::new(tokens);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (client, url, tokens, next, failed) = (
            client.clone(),
            url.to_owned(),
            tokens.clone(),
            next.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(token) = tokens.get(i) else { break };
                if !logout(&client, &url, token).await {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for task in tasks {
        task.await.expect("a worker");
    }
    let rate = tokens.len() as f64 / start.elapsed().as_secs_f64();
    (rate, failed.load(Ordering::Relaxed))
}

async fn logouts(args: Args) {
    // `--extra` sessions stay signed in: a baseline with as many sessions in
    // the database as a preloaded run, so only the remembered revocations differ.
    let mut tokens = seed_sessions(&args, args.preload + args.logouts + args.extra).await;
    tokens.truncate(args.preload + args.logouts);
    let measured = tokens.split_off(args.preload);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .expect("a client");
    let url = format!("{}/logout", args.url);
    let before = rss_kib(args.server_pid);
    if !tokens.is_empty() {
        let (rate, failed) = logout_all(&client, &url, tokens, args.concurrency).await;
        println!(
            "logouts: preloaded {} revocations through POST /logout at {rate:.0}/s, failures: {failed}",
            args.preload
        );
    }
    // A pause between the preload and the measure (a server that forgets
    // revocations after a second has forgotten the preload by then).
    tokio::time::sleep(Duration::from_secs_f64(args.settle)).await;
    let after = rss_kib(args.server_pid);
    let (rate, failed) = logout_all(&client, &url, measured, args.concurrency).await;
    println!(
        "logouts: {rate:.0} logouts/s after {} preloaded logouts ({} logouts, concurrency {}), failures: {failed}",
        args.preload, args.logouts, args.concurrency
    );
    if let (Some(before), Some(after), true) = (before, after, args.preload > 0) {
        println!(
            "logouts: server RSS {:.1} MiB before the preload, {:.1} MiB after: {:.0} bytes per remembered revocation",
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 * 1024.0 / args.preload as f64
        );
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    match args.command.as_str() {
        "fanout" => fanout(args).await,
        _ => logouts(args).await,
    }
}
