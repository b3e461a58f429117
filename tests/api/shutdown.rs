//! Graceful shutdown: on SIGTERM the server stops accepting, finishes the
//! requests in flight (logins included), closes the database and exits 0.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::PASSWORD;
use crate::support::ServerProcess;

#[tokio::test]
async fn sigterm_finishes_in_flight_logins_then_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let mut server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", "shutdown-test-secret-0123456789abcdef"),
        // One hash at a time, so the logins below are still running at SIGTERM.
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("RUST_LOG", "info"),
    ])
    .await;
    let client = reqwest::Client::new();
    let body = json!({"email": "bye@example.com", "password": PASSWORD});
    let r = client
        .post(server.url("/register"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);

    let logins: Vec<_> = (0..8)
        .map(|_| {
            let request = client.post(server.url("/login")).json(&body).send();
            tokio::spawn(request)
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(60)).await;
    server.terminate();

    for login in logins {
        let response = login
            .await
            .unwrap()
            .expect("an answer, not a dropped connection");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let status = server
        .wait_exit(Duration::from_secs(25))
        .await
        .expect("exits in time");
    assert!(status.success(), "exit status {status:?}\n{}", server.log());
    assert!(server.log().contains("server stopped"), "{}", server.log());
    // New connections are refused once it is gone.
    assert!(client.get(server.url("/healthz")).send().await.is_err());
}
