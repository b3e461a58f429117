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

/// Whether `log` holds `code` as a number of its own (not inside a longer
/// run of digits, letters or a decimal, where six digits occur by chance).
fn holds_code(log: &str, code: &str) -> bool {
    log.match_indices(code).any(|(at, _)| {
        let before = log[..at].chars().next_back();
        let after = log[at + code.len()..].chars().next();
        let free = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '.'));
        free(before) && free(after)
    })
}

#[tokio::test]
async fn no_mailed_code_or_token_appears_in_debug_logs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let mail_url = format!("file://{}/mail", dir.path().display());
    let server = ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", SECRET),
        ("RUST_LOG", "debug"),
        ("MAIL_URL", mail_url.as_str()),
    ])
    .await;
    let store = auth_api::store::Store::connect(
        &secrecy::SecretString::from(url.clone()),
        &auth_api::store::PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let client = reqwest::Client::new();
    let post = |path: &str, body: Value, token: Option<&str>| {
        let mut request = client.post(server.url(path)).json(&body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let keys = auth_api::auth::Keyring::new(&secrecy::SecretString::from(SECRET), &[]);
    let mut secrets: Vec<(String, String)> = Vec::new();
    let mut last_mail = async |to: &str| {
        let mails = store.outbox_for(to).await.unwrap();
        let mail = mails.last().expect("a mail");
        let text = crate::helpers::outbox_text(&keys, &dir.path().join("mail"), mail);
        let parsed = crate::helpers::parse_mail(&mail.subject, &text);
        secrets.push((parsed.token.clone(), parsed.code.clone()));
        parsed
    };
    let email = "mailed@example.com";
    let new_email = "mailed-new@example.com";
    let credentials = json!({"email": email, "password": PASSWORD});
    post("/register", credentials.clone(), None).await.unwrap();
    let verify = last_mail(email).await;
    // A wrong code, then the right one.
    let wrong = if verify.code == "000000" {
        "000001"
    } else {
        "000000"
    };
    post(
        "/email/verify",
        json!({"email": email, "code": wrong}),
        None,
    )
    .await
    .unwrap();
    let status = post(
        "/email/verify",
        json!({"email": email, "code": verify.code}),
        None,
    )
    .await
    .unwrap()
    .status();
    assert_eq!(status, StatusCode::NO_CONTENT);

    post("/password/forgot", json!({"email": email}), None)
        .await
        .unwrap();
    let reset = last_mail(email).await;
    let body = json!({"token": reset.token, "new_password": NEW_PASSWORD});
    assert_eq!(
        post("/password/reset", body.clone(), None)
            .await
            .unwrap()
            .status(),
        StatusCode::NO_CONTENT
    );
    // Spent: refused, and the refusal logs no token either.
    post("/password/reset", body, None).await.unwrap();

    let login: Value = post(
        "/login",
        json!({"email": email, "password": NEW_PASSWORD}),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let access = login["access_token"].as_str().unwrap().to_owned();
    let change = json!({"new_email": new_email, "password": NEW_PASSWORD});
    post("/email/change", change, Some(&access)).await.unwrap();
    let confirm = last_mail(new_email).await;
    let status = post(
        "/email/change/confirm",
        json!({"code": confirm.code}),
        Some(&access),
    )
    .await
    .unwrap()
    .status();
    assert_eq!(status, StatusCode::NO_CONTENT);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let log = server.log();
    if std::env::var("SHOW_LOG").is_ok() {
        eprintln!("{log}");
    }
    assert!(log.contains("audit: email verified"), "{log}");
    assert!(log.contains("audit: password reset"), "{log}");
    assert!(log.contains("audit: email changed"), "{log}");
    assert_eq!(secrets.len(), 3);
    for (token, code) in &secrets {
        assert_eq!(token.len(), 43);
        assert!(
            !log.contains(token.as_str()),
            "a mailed token in the log:\n{log}"
        );
        assert!(
            !holds_code(&log, code),
            "a mailed code {code} in the log:\n{log}"
        );
    }
    assert!(!log.contains(&format!("password\":\"{NEW_PASSWORD}")));
    assert!(!log.contains(NEW_PASSWORD), "the new password in the log");
}
