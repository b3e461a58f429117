//! The operator's log: one request id on every line a request causes (the
//! access line, the audit lines, a 5xx's cause), sent back as `X-Request-Id`;
//! a database outage logged once, with its cause. Runs the real binary, whose
//! log format is the one operators read.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{JWT_SECRET, PASSWORD};
use crate::support::{
    ServerProcess, TcpProxy, eventually, fresh_postgres_database, require_postgres, socket_of,
};

async fn lines_with(server: &ServerProcess, needle: &str, at_least: usize) -> Vec<String> {
    let mut found = Vec::new();
    eventually(Duration::from_secs(5), || {
        found = server
            .log()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect();
        let enough = found.len() >= at_least;
        async move { enough }
    })
    .await;
    found
}

#[tokio::test]
async fn one_request_id_is_on_the_access_line_and_the_audit_line() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/auth.db", dir.path().display());
    let server = ServerProcess::start(&[
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", JWT_SECRET),
        ("RUST_LOG", "info"),
    ])
    .await;
    let client = reqwest::Client::new();
    let login = |password: &'static str| {
        client
            .post(server.url("/login"))
            .json(&json!({"email": "nobody@example.com", "password": password}))
            .send()
    };
    let first = login(PASSWORD).await.unwrap();
    let second = login(PASSWORD).await.unwrap();
    assert_eq!(first.status(), StatusCode::UNAUTHORIZED);
    let id = first.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, second.headers()["x-request-id"].to_str().unwrap());
    let tagged = format!("request_id={id}");
    let lines = lines_with(&server, &tagged, 2).await;
    assert_eq!(lines.len(), 2, "{}", server.log());
    assert!(
        lines.iter().any(|l| l.contains("audit: login failed")),
        "{lines:?}"
    );
    assert!(
        lines.iter().any(|l| l.contains("POST /login 401")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_client_cannot_choose_its_request_id_unless_behind_a_trusted_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/auth.db", dir.path().display());
    let vars = [
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", JWT_SECRET),
    ];
    let direct = ServerProcess::start(&vars).await;
    let client = reqwest::Client::new();
    let id_of = |server: &ServerProcess, sent: &'static str| {
        client
            .get(server.url("/healthz"))
            .header("x-request-id", sent)
            .send()
    };
    let r = id_of(&direct, "proxy-42").await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "proxy-42");
    drop(direct);
    let behind_proxy =
        ServerProcess::start(&[vars[0], vars[1], ("TRUST_FORWARDED_FOR", "true")]).await;
    let r = id_of(&behind_proxy, "proxy-42").await.unwrap();
    assert_eq!(r.headers()["x-request-id"], "proxy-42");
    // One that could forge a log line is replaced.
    let r = id_of(&behind_proxy, "a b=c").await.unwrap();
    assert_ne!(r.headers()["x-request-id"], "a b=c");
}

#[tokio::test]
async fn a_database_outage_is_logged_once_with_its_cause_and_the_request_id() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let proxy = TcpProxy::start(socket_of(&database_url)).await;
    let via_proxy = proxy.url_for(&database_url);
    let server = ServerProcess::start(&[
        ("DATABASE_URL", via_proxy.as_str()),
        ("DATABASE_ACQUIRE_TIMEOUT", "1"),
        ("JWT_SECRET", JWT_SECRET),
    ])
    .await;
    let client = reqwest::Client::new();
    proxy.down();
    let mut ids = Vec::new();
    for _ in 0..3 {
        let r = client
            .post(server.url("/login"))
            .json(&json!({"email": "someone@example.com", "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        ids.push(r.headers()["x-request-id"].to_str().unwrap().to_owned());
    }
    let lines = lines_with(&server, "answering 503 unavailable", 1).await;
    assert_eq!(lines.len(), 1, "{}", server.log());
    let line = &lines[0];
    let cause = line
        .split("answering 503 unavailable: ")
        .nth(1)
        .unwrap_or_default();
    assert!(cause.len() > 10, "the cause is logged: {line}");
    assert!(line.contains(&format!("request_id={}", ids[0])), "{line}");
    // No second, causeless line per refused request.
    assert!(
        !server.log().contains("503 Service Unavailable"),
        "{}",
        server.log()
    );
    proxy.up();
}
