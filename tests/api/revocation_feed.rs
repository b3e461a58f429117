//! `GET /revocations`: the revocation feed for the app's backends, behind a
//! service key. JSON snapshot, or Server-Sent Events: a snapshot, then each
//! revocation as it happens, keep-alives, slow subscribers dropped, fresh
//! snapshots on reconnect, across instances on PostgreSQL.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::helpers::{TestApp, assert_error, spawn_app, spawn_app_with};
use crate::support::{ServerProcess, eventually, fresh_postgres_database, require_postgres};

const KEY: &str = "backend-service-key-0123456789-abcdefghij";
const OTHER_KEY: &str = "another-backend-key-0123456789-abcdefghij";

/// An event of the stream: `name` is `comment` for a `:` line.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
}

impl Event {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }
}

/// A Server-Sent Events reader over a streaming response.
struct Sse {
    response: reqwest::Response,
    buffer: String,
}

impl Sse {
    async fn open(client: &reqwest::Client, url: &str, key: &str) -> Self {
        let response = client
            .get(url)
            .bearer_auth(key)
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event or comment. The timeout only keeps a broken build
    /// from hanging the suite.
    async fn next(&mut self) -> Event {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: "message".into(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(comment) = line.strip_prefix(':') {
                        event.name = "comment".into();
                        event.data = comment.trim().into();
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.into();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data.push_str(data);
                    }
                }
                return event;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(15), self.response.chunk())
                .await
                .expect("an event in time")
                .expect("the stream is readable")
                .expect("the stream goes on");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next `revoked` event, past keep-alives.
    async fn next_revoked(&mut self) -> Value {
        loop {
            let event = self.next().await;
            match event.name.as_str() {
                "comment" => continue,
                "revoked" => return event.json(),
                other => panic!("unexpected event {other}: {}", event.data),
            }
        }
    }

    async fn snapshot(&mut self) -> Vec<Value> {
        let event = self.next().await;
        assert_eq!(event.name, "snapshot", "the first event");
        event.json()["revoked"].as_array().unwrap().clone()
    }
}

async fn feed_app() -> TestApp {
    spawn_app_with(&[("BACKEND_API_KEYS", &format!("{OTHER_KEY},{KEY}"))]).await
}

impl TestApp {
    async fn revocations_as(
        &self,
        method: Method,
        authorization: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self.client.request(method, self.url("/revocations"));
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        request.send().await.unwrap()
    }

    async fn subscribe(&self) -> Sse {
        Sse::open(&self.client, &self.url("/revocations"), KEY).await
    }

    fn feed_dropped(&self) -> u64 {
        self.state.telemetry.feed_dropped.get()
    }

    fn feed_subscribers(&self) -> i64 {
        self.state.telemetry.feed_subscribers.get()
    }
}

fn sessions_in(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|r| r["session_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn without_service_keys_the_route_does_not_exist() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for method in [Method::GET, Method::POST, Method::HEAD] {
        let response = app
            .revocations_as(method.clone(), Some(&format!("Bearer {KEY}")))
            .await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{method}");
    }
    let response = app
        .revocations_as(Method::GET, Some(&format!("Bearer {}", login.access_token)))
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn no_key_a_wrong_key_or_an_access_token_is_refused_with_a_bearer_challenge() {
    let app = feed_app().await;
    let login = app.new_login().await;
    let access = format!("Bearer {}", login.access_token);
    let wrong = format!("Bearer {KEY}x");
    for authorization in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer "),
        Some(wrong.as_str()),
        Some(access.as_str()),
    ] {
        let response = app.revocations_as(Method::GET, authorization).await;
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{authorization:?}: {challenge}"
        );
        let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        assert!(!body.to_string().contains(KEY));
    }
    // Either configured key works.
    for key in [KEY, OTHER_KEY] {
        let response = app
            .revocations_as(Method::GET, Some(&format!("Bearer {key}")))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = app
        .revocations_as(Method::POST, Some(&format!("Bearer {KEY}")))
        .await;
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn without_event_stream_accept_the_snapshot_is_json() {
    let app = feed_app().await;
    let (revoked, alive) = (app.new_login().await, app.new_login().await);
    assert_eq!(
        app.logout(&revoked.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );

    let response = app
        .revocations_as(Method::GET, Some(&format!("Bearer {KEY}")))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let list = body["revoked"].as_array().unwrap();
    assert_eq!(sessions_in(list), [revoked.session_id.to_string()]);
    assert!(!sessions_in(list).contains(&alive.session_id.to_string()));
    let entry = &list[0];
    assert_eq!(entry["user_id"], revoked.user_id.to_string());
    let at = chrono::DateTime::parse_from_rfc3339(entry["revoked_at"].as_str().unwrap()).unwrap();
    let forget =
        chrono::DateTime::parse_from_rfc3339(entry["forget_after"].as_str().unwrap()).unwrap();
    // At least the access-token lifetime plus the leeway (900 + 30 s).
    assert!(forget - at >= chrono::Duration::seconds(930), "{entry}");

    // Past forget_after, the entry is no longer in the snapshot.
    app.advance(936);
    let body: Value = app
        .revocations_as(Method::GET, Some(&format!("Bearer {KEY}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["revoked"], serde_json::json!([]));
}

#[tokio::test]
async fn the_stream_starts_with_the_snapshot_then_tells_each_revocation() {
    let app = feed_app().await;
    let before = app.new_login().await;
    app.logout(&before.refresh_token).await;
    let (later, other) = (app.new_login().await, app.new_login().await);

    let mut feed = app.subscribe().await;
    assert_eq!(
        sessions_in(&feed.snapshot().await),
        [before.session_id.to_string()]
    );

    assert_eq!(
        app.logout(&later.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let event = feed.next_revoked().await;
    assert_eq!(event["session_id"], later.session_id.to_string());
    assert_eq!(event["user_id"], later.user_id.to_string());
    assert!(event["revoked_at"].is_string() && event["forget_after"].is_string());

    // Another way to end sessions: logout-all of another user.
    assert_eq!(
        app.logout_all(&other.access_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let event = feed.next_revoked().await;
    assert_eq!(event["session_id"], other.session_id.to_string());
}

#[tokio::test]
async fn a_keep_alive_comment_comes_when_nothing_happens() {
    let app = spawn_app_with(&[("BACKEND_API_KEYS", KEY), ("REVOCATIONS_KEEPALIVE", "1")]).await;
    let mut feed = app.subscribe().await;
    feed.snapshot().await;
    let event = feed.next().await;
    assert_eq!(event.name, "comment");
    assert_eq!(event.data, "keep-alive");
    let event = feed.next().await;
    assert_eq!(event.name, "comment", "and again");
}

#[tokio::test]
async fn head_answers_the_head_of_the_stream_without_a_stream() {
    let app = feed_app().await;
    let response = app
        .client
        .head(app.url("/revocations"))
        .bearer_auth(KEY)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(app.feed_subscribers(), 0, "no subscriber was opened");
}

#[tokio::test]
async fn open_streams_are_counted_and_a_closed_one_is_uncounted() {
    let app = spawn_app_with(&[("BACKEND_API_KEYS", KEY), ("REVOCATIONS_KEEPALIVE", "1")]).await;
    let mut feed = app.subscribe().await;
    feed.snapshot().await;
    assert_eq!(app.feed_subscribers(), 1);
    let text = crate::metrics::scrape(&app).await;
    assert!(
        text.contains("auth_revocation_feed_subscribers 1"),
        "{text}"
    );
    assert!(
        text.contains("auth_revocation_feed_dropped_total 0"),
        "{text}"
    );

    drop(feed);
    // Noticed when the next keep-alive cannot be written.
    let gone = eventually(Duration::from_secs(10), || async {
        app.feed_subscribers() == 0
    })
    .await;
    assert!(gone.is_some(), "the closed stream is still counted");
    assert_eq!(app.feed_dropped(), 0, "a client that left was not dropped");
}

#[tokio::test]
async fn a_subscriber_that_reads_nothing_is_dropped_while_others_keep_getting_events() {
    let app = spawn_app_with(&[("BACKEND_API_KEYS", KEY), ("REVOCATIONS_KEEPALIVE", "1")]).await;
    let mut reader = app.subscribe().await;
    reader.snapshot().await;

    // A subscriber that sends its request and then never reads a byte, with
    // a small receive window so its buffers fill soon.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let address = app.address.trim_start_matches("http://").parse().unwrap();
    let mut stuck = socket.connect(address).await.unwrap();
    stuck
        .write_all(
            format!(
                "GET /revocations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n\
                 Accept: text/event-stream\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let both = eventually(Duration::from_secs(10), || async {
        app.feed_subscribers() == 2
    })
    .await;
    assert!(both.is_some());

    // Revocations in rounds; the reader takes every one of them each round.
    // The stuck subscriber's socket buffers take megabytes first; once they
    // are full it is dropped after two keep-alive periods (2 s here).
    let user = Uuid::new_v4();
    let started = std::time::Instant::now();
    while app.feed_dropped() == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the stuck subscriber was never dropped"
        );
        let batch: Vec<Uuid> = (0..100).map(|_| Uuid::new_v4()).collect();
        let now = app.state.clock.now();
        let entries: Vec<_> = batch.iter().map(|id| (*id, user, now)).collect();
        app.state.revocations.insert_many(&entries, now);
        for id in &batch {
            assert_eq!(reader.next_revoked().await["session_id"], id.to_string());
        }
    }
    assert_eq!(app.feed_dropped(), 1);
    let one = eventually(Duration::from_secs(10), || async {
        app.feed_subscribers() == 1
    })
    .await;
    assert!(one.is_some(), "the dropped stream is uncounted");
    let text = crate::metrics::scrape(&app).await;
    assert!(
        text.contains("auth_revocation_feed_dropped_total 1"),
        "{text}"
    );

    // The reader still hears of revocations.
    let login = app.new_login().await;
    app.logout(&login.refresh_token).await;
    assert_eq!(
        reader.next_revoked().await["session_id"],
        login.session_id.to_string()
    );
    drop(stuck);
}

#[tokio::test]
async fn a_subscriber_that_falls_too_far_behind_is_dropped() {
    let app = feed_app().await;
    let mut feed = app.subscribe().await;
    feed.snapshot().await;
    // More revocations at once than a subscriber may be behind.
    let now = app.state.clock.now();
    let burst: Vec<_> = (0..4 * auth_api::auth::revocations::FEED_CAPACITY)
        .map(|_| (Uuid::new_v4(), Uuid::new_v4(), now))
        .collect();
    app.state.revocations.insert_many(&burst, now);

    // It gets what fitted, then the stream ends.
    let mut received = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(15), feed.response.chunk())
            .await
            .expect("the stream ends in time")
        {
            Ok(Some(chunk)) => received += chunk.len(),
            Ok(None) => break,
            Err(e) => panic!("the stream should end cleanly: {e}"),
        }
    }
    assert!(received > 0);
    assert_eq!(app.feed_dropped(), 1);
}

#[tokio::test]
async fn a_reconnection_gets_a_fresh_snapshot_with_what_it_missed() {
    let app = feed_app().await;
    let mut feed = app.subscribe().await;
    assert!(feed.snapshot().await.is_empty());
    drop(feed);

    let missed = app.new_login().await;
    app.logout(&missed.refresh_token).await;

    let mut feed = app.subscribe().await;
    assert_eq!(
        sessions_in(&feed.snapshot().await),
        [missed.session_id.to_string()]
    );
}

#[tokio::test]
async fn a_graceful_shutdown_ends_the_streams_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", "feed-shutdown-test-secret-0123456789abcdef"),
        ("BACKEND_API_KEYS", KEY),
        ("RUST_LOG", "info"),
    ])
    .await;
    let client = reqwest::Client::new();
    let mut feed = Sse::open(&client, &server.url("/revocations"), KEY).await;
    feed.snapshot().await;

    server.terminate();
    // The stream ends with its terminating chunk, not a connection cut at
    // the shutdown timeout.
    let end = tokio::time::timeout(Duration::from_secs(15), feed.response.chunk())
        .await
        .expect("the stream ends before the shutdown timeout");
    assert!(matches!(end, Ok(None)), "{end:?}");
    let status = server
        .wait_exit(Duration::from_secs(25))
        .await
        .expect("exits");
    assert!(status.success(), "{}", server.log());
}

#[tokio::test]
async fn a_subscriber_on_one_instance_hears_of_a_logout_on_another_within_two_seconds() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let vars = [
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", "shared-secret-of-every-instance-0123456789"),
        ("BACKEND_API_KEYS", KEY),
    ];
    let a = ServerProcess::start(&vars).await;
    let b = ServerProcess::start(&vars).await;
    let client = reqwest::Client::new();
    let email = crate::helpers::unique_email();
    let body = serde_json::json!({"email": email, "password": crate::helpers::PASSWORD});
    let r = client
        .post(a.url("/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let r = client
        .post(a.url("/login"))
        .json(&body)
        .send()
        .await
        .unwrap();
    let login = crate::helpers::login_from_body(&email, r.json().await.unwrap());

    let mut feed = Sse::open(&client, &b.url("/revocations"), KEY).await;
    assert!(feed.snapshot().await.is_empty());

    let r = client
        .post(a.url("/logout"))
        .json(&serde_json::json!({"refresh_token": login.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let revoked_at = std::time::Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(2), feed.next_revoked())
        .await
        .expect("B's subscriber hears of A's logout within 2 s (API.md)");
    assert!(revoked_at.elapsed() <= Duration::from_secs(2));
    assert_eq!(event["session_id"], login.session_id.to_string());
    assert_eq!(event["user_id"], login.user_id.to_string());

    // And B's own snapshot has it too.
    let snapshot: Value = client
        .get(b.url("/revocations"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        sessions_in(snapshot["revoked"].as_array().unwrap()),
        [login.session_id.to_string()]
    );
}
