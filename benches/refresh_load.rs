//! Load generator for `POST /refresh` over HTTP: many independent sessions,
//! each rotating its own chain of refresh tokens as fast as the server
//! answers, against a server that is already running (see `benches/load.sh`).
//!
//! It seeds the database itself, through the same store the server uses: one
//! user, `--chains` sessions whose first refresh tokens it mints with the
//! server's key, and `--filler` more sessions so the table has the size under
//! test (refresh cost at 10 thousand against 1 million sessions).
//!
//! ```sh
//! cargo bench --bench refresh_load -- --url http://127.0.0.1:18080 \
//!     --database-url sqlite:///tmp/x/auth.db --secret "$JWT_SECRET" --chains 64 --seconds 10
//! ```
//!
//! Prints one line: rotations per second, failures, latency percentiles.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use auth_api::auth::{Keyring, refresh};
use auth_api::store::{NewSession, PoolSettings, Store};
use chrono::Utc;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

struct Args {
    url: String,
    database_url: String,
    secret: String,
    chains: usize,
    seconds: u64,
    filler: u64,
}

fn parse_args() -> Args {
    let mut args = Args {
        url: String::new(),
        database_url: String::new(),
        secret: String::new(),
        chains: 64,
        seconds: 10,
        filler: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value(),
            "--database-url" => args.database_url = value(),
            "--secret" => args.secret = value(),
            "--chains" => args.chains = value().parse().expect("--chains N"),
            "--seconds" => args.seconds = value().parse().expect("--seconds N"),
            "--filler" => args.filler = value().parse().expect("--filler N"),
            // `cargo bench` passes --bench; ignore anything else of the harness.
            _ => {}
        }
    }
    assert!(
        !args.url.is_empty() && !args.database_url.is_empty() && !args.secret.is_empty(),
        "usage: refresh_load --url URL --database-url URL --secret KEY [--chains N] [--seconds N] [--filler N]"
    );
    args
}

/// Adds `n` active sessions for `user` in one statement.
async fn seed_filler(database_url: &str, user: Uuid, n: u64) {
    if n == 0 {
        return;
    }
    let now = Utc::now();
    let later = now + chrono::Duration::days(30);
    if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url)
            .await
            .expect("sqlite");
        sqlx::query(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
             INSERT INTO sessions (id, user_id, generation, device_name, user_agent, created_at, \
             rotated_at, last_used_at, idle_expires_at, expires_at) \
             SELECT randomblob(16), $2, 0, 'filler', NULL, $3, $3, $3, $4, $4 FROM n",
        )
        .bind(i64::try_from(n).expect("n fits"))
        .bind(user)
        .bind(now)
        .bind(later)
        .execute(&pool)
        .await
        .expect("filler sessions");
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(database_url).await.expect("postgres");
        sqlx::query(
            "INSERT INTO sessions (id, user_id, generation, device_name, user_agent, created_at, \
             rotated_at, last_used_at, idle_expires_at, expires_at) \
             SELECT gen_random_uuid(), $2, 0, 'filler', NULL, $3, $3, $3, $4, $4 \
             FROM generate_series(1, $1)",
        )
        .bind(i64::try_from(n).expect("n fits"))
        .bind(user)
        .bind(now)
        .bind(later)
        .execute(&pool)
        .await
        .expect("filler sessions");
        sqlx::query("ANALYZE sessions")
            .execute(&pool)
            .await
            .expect("analyze");
        pool.close().await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = parse_args();
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
    let email = format!("load-{}@example.com", Uuid::new_v4().simple());
    // Never logs in: the hash only has to be a string.
    let user = store
        .create_user(&email, "$argon2id$unused", now)
        .await
        .expect("a user");
    let seeding = Instant::now();
    seed_filler(&args.database_url, user.id, args.filler).await;
    let keys = Keyring::new(&SecretString::from(args.secret.clone()), &[]);
    let mut tokens = Vec::with_capacity(args.chains);
    for _ in 0..args.chains {
        let session = NewSession {
            id: Uuid::new_v4(),
            user_id: user.id,
            credential_version: user.credential_version,
            device_name: Some("load".into()),
            user_agent: None,
            now,
            idle_expires_at: now + chrono::Duration::days(30),
            expires_at: now + chrono::Duration::days(90),
        };
        assert!(store.create_session(&session).await.expect("a session"));
        tokens.push(refresh::mint(&keys, session.id, 0));
    }
    store.close().await;
    let seeded_in = seeding.elapsed();

    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.chains)
        .build()
        .expect("a client");
    let url = format!("{}/refresh", args.url);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for token in tokens {
        let (client, url, stop, ok, failed) = (
            client.clone(),
            url.clone(),
            stop.clone(),
            ok.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut token = token;
            let mut latencies = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .json(&json!({"refresh_token": token}))
                    .send()
                    .await;
                let next = match response {
                    Ok(r) if r.status().is_success() => r
                        .json::<Value>()
                        .await
                        .ok()
                        .and_then(|body| body["refresh_token"].as_str().map(str::to_owned)),
                    _ => None,
                };
                latencies.push(sent.elapsed());
                match next {
                    Some(next) => {
                        token = next;
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    None => {
                        // A broken chain cannot go on: count it and stop this chain.
                        failed.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                }
            }
            latencies
        }));
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("a chain"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    let rotations = ok.load(Ordering::Relaxed);
    println!(
        "refresh: {:.0} rotations/s ({rotations} in {elapsed:.1} s, {} chains), failures: {}, \
         latency p50 {:.2} ms p99 {:.2} ms, sessions in table: {} (seeded in {:.1} s)",
        rotations as f64 / elapsed,
        args.chains,
        failed.load(Ordering::Relaxed),
        pct(0.50),
        pct(0.99),
        args.filler + args.chains as u64,
        seeded_in.as_secs_f64(),
    );
}
