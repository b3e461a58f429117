//! Secrets never reach the logs: the whole flow with logging at `debug`,
//! then a search of everything the process wrote.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::ServerProcess;

const SECRET: &str = "log-leak-test-secret-Zq8vN3xK0pLm7tR2";
const PASSWORD: &str = "hunter2-is-not-my-password";
const NEW_PASSWORD: &str = "my-next-passphrase-Wv93";
const WRONG_PASSWORD: &str = "a-wrong-guess-Hq71";

#[tokio::test]
async fn no_password_token_or_secret_appears_in_debug_logs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", SECRET),
        ("RUST_LOG", "debug"),
        ("REFRESH_REUSE_GRACE", "0"),
    ])
    .await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value, token: Option<&str>| {
        let mut request = client.post(server.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let email = "leaky@example.com";
    let credentials = json!({"email": email, "password": PASSWORD});

    assert_eq!(
        post("/register", credentials.clone(), None)
            .await
            .unwrap()
            .status(),
        StatusCode::CREATED
    );
    let wrong = json!({"email": email, "password": WRONG_PASSWORD});
    assert_eq!(
        post("/login", wrong, None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let login: Value = post("/login", credentials.clone(), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    client
        .get(server.url("/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    client
        .get(server.url("/sessions"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    let next: Value = post("/refresh", json!({"refresh_token": refresh}), None)
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let next_access = next["access_token"].as_str().unwrap().to_owned();
    let next_refresh = next["refresh_token"].as_str().unwrap().to_owned();
    // A malformed body that contains a password, and a mistyped one.
    let mistyped = json!({"email": email, "password": 12345678987654321u64});
    post("/login", mistyped, None).await.unwrap();
    client
        .post(server.url("/login"))
        .header("content-type", "application/json")
        .body(format!(
            "{{\"email\": \"{email}\", \"password\": \"{PASSWORD}\""
        ))
        .send()
        .await
        .unwrap();
    let change = json!({"current_password": PASSWORD, "new_password": NEW_PASSWORD});
    assert_eq!(
        post("/password", change, Some(&next_access))
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    post("/refresh", json!({"refresh_token": refresh}), None)
        .await
        .unwrap(); // reuse detected
    post("/logout", json!({"refresh_token": next_refresh}), None)
        .await
        .unwrap();
    client
        .get(server.url("/me"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let log = server.log();
    if std::env::var("SHOW_LOG").is_ok() {
        eprintln!("{log}");
    }
    assert!(log.contains("DEBUG"), "logging ran at debug:\n{log}");
    assert!(log.contains("audit: login succeeded"), "{log}");
    assert!(log.contains("audit: refresh token reuse detected"), "{log}");
    // How late the replay came, so an operator can tell a late phone from a thief.
    assert!(
        log.contains("replayed_after=") && log.contains("generations_behind=1"),
        "{log}"
    );
    // One audit line per security event, with ids.
    for event in [
        "audit: user registered user=",
        "audit: login failed ip=127.0.0.1",
        "audit: password changed user=",
    ] {
        assert!(log.contains(event), "no {event:?} line in:\n{log}");
    }
    let forbidden = [
        ("the password", PASSWORD),
        ("the new password", NEW_PASSWORD),
        ("a wrong password", WRONG_PASSWORD),
        ("the mistyped password", "12345678987654321"),
        ("the JWT secret", SECRET),
        ("an access token", &access),
        (
            "an access token's signature",
            access.rsplit('.').next().unwrap(),
        ),
        ("the second access token", &next_access),
        ("a refresh token", &refresh),
        ("the second refresh token", &next_refresh),
        ("the Authorization header", "Bearer ey"),
        ("the email of a failed login", "leaky@example.com\" "),
    ];
    for (what, needle) in forbidden {
        assert!(!log.contains(needle), "{what} appears in the log:\n{log}");
    }
    assert!(
        !log.to_lowercase().contains("authorization:"),
        "a header dump in the log:\n{log}"
    );
}
