use std::sync::atomic::Ordering;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    JWT_SECRET, PASSWORD, assert_error, decode_claims, decode_header, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn login_answers_the_token_response_with_no_store() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let response = app.login(&email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let keys: std::collections::BTreeSet<_> = body.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        keys,
        [
            "access_token",
            "expires_in",
            "refresh_expires_in",
            "refresh_token",
            "session_id",
            "token_type"
        ]
        .into_iter()
        .map(String::from)
        .collect()
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["refresh_expires_in"], 2_592_000);
    let refresh = body["refresh_token"].as_str().unwrap();
    assert!(refresh.len() >= 22, "at least 128 bits");
    assert!(
        refresh
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
}

#[tokio::test]
async fn the_access_token_has_the_contract_header_and_claims() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let header = decode_header(&login.access_token);
    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["typ"], "JWT");
    assert_eq!(
        header["kid"],
        auth_api::auth::keys::key_id(JWT_SECRET.as_bytes())
    );

    let claims = decode_claims(&login.access_token);
    assert_eq!(claims["iss"], "auth-api");
    assert_eq!(claims["aud"], "mobile");
    assert_eq!(claims["sub"], login.user_id.to_string());
    assert_eq!(claims["sid"], login.session_id.to_string());
    assert_eq!(claims["role"], "user");
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(claims["nbf"].as_i64().unwrap(), iat);
    assert_eq!(claims["exp"].as_i64().unwrap(), iat + 900);
    assert!((iat - chrono::Utc::now().timestamp()).abs() < 60);
    assert!(
        claims["jti"]
            .as_str()
            .unwrap()
            .parse::<uuid::Uuid>()
            .is_ok()
    );
}

#[tokio::test]
async fn every_token_has_a_unique_jti() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let a = app.login_ok(&email, PASSWORD).await;
    let b = app.login_ok(&email, PASSWORD).await;
    let c = app.refresh_ok(&b).await;
    let jtis: std::collections::HashSet<_> = [&a, &b, &c]
        .iter()
        .map(|l| {
            decode_claims(&l.access_token)["jti"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(jtis.len(), 3);
    assert_ne!(a.session_id, b.session_id, "each login is a session");
}

#[tokio::test]
async fn issuer_audience_and_ttl_follow_the_configuration() {
    let app = spawn_app_with(&[
        ("JWT_ISSUER", "https://auth.example"),
        ("JWT_AUDIENCE", "ios-app"),
        ("ACCESS_TOKEN_TTL", "120"),
    ])
    .await;
    let login = app.new_login().await;
    let claims = decode_claims(&login.access_token);
    assert_eq!(claims["iss"], "https://auth.example");
    assert_eq!(claims["aud"], "ios-app");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
    assert_eq!(login.body["expires_in"], 120);
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn wrong_password_unknown_email_and_malformed_email_get_the_same_401() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let mut bodies = Vec::new();
    for (email, password) in [
        (email.as_str(), "not the right password"),
        ("nobody-here@example.com", PASSWORD),
        ("not an email", PASSWORD),
        ("", PASSWORD),
    ] {
        let response = app.login(email, password).await;
        assert!(!response.headers().contains_key("www-authenticate"));
        bodies.push(assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "identical bodies: {bodies:?}"
    );
}

#[tokio::test]
async fn unknown_and_malformed_emails_still_spend_one_password_verify() {
    // Timing is not asserted (no timed tests); what makes it similar is that
    // every path runs exactly one argon2 verify, which the hasher counts.
    let app = spawn_app().await;
    let verifications = || {
        app.state
            .hasher
            .stats()
            .verifications
            .load(Ordering::Relaxed)
    };
    for email in ["nobody-here@example.com", "not an email"] {
        let before = verifications();
        let response = app.login(email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(verifications(), before + 1, "{email}");
    }
}

#[tokio::test]
async fn device_name_and_user_agent_are_recorded_with_the_session() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let long_agent = "A".repeat(1000);
    let response = app
        .client
        .post(app.url("/login"))
        .header("user-agent", &long_agent)
        .json(&json!({"email": email, "password": PASSWORD, "device_name": "Alice's iPhone"}))
        .send()
        .await
        .unwrap();
    let login = crate::helpers::login_from_body(&email, response.json().await.unwrap());
    let session = app.session(login.session_id).await.unwrap();
    assert_eq!(session.device_name.as_deref(), Some("Alice's iPhone"));
    let agent = session.user_agent.unwrap();
    assert!(
        agent.len() < 1000 && agent.len() >= 100,
        "truncated: {}",
        agent.len()
    );
}

#[tokio::test]
async fn a_device_name_over_100_characters_is_a_400() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let response = app.login_from(&email, PASSWORD, &"d".repeat(101)).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    let response = app.login_from(&email, PASSWORD, &"é".repeat(100)).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_burst_of_300_logins_queues_and_succeeds() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let logins = (0..300).map(|_| app.login(&email, PASSWORD));
    let statuses: Vec<_> = futures::future::join_all(logins)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
}

#[tokio::test]
async fn a_full_hashing_queue_answers_503_with_retry_after() {
    let app = spawn_app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE", "1"),
    ])
    .await;
    let email = app.new_user().await;
    let responses = futures::future::join_all((0..20).map(|_| app.login(&email, PASSWORD))).await;
    let mut busy = 0;
    for response in responses {
        match response.status() {
            StatusCode::OK => {}
            StatusCode::SERVICE_UNAVAILABLE => {
                busy += 1;
                let retry: u64 = response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(retry >= 1);
                assert_error(response, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert!(busy > 0, "some logins found the queue full");
    // And once the burst is over, logins work again.
    app.login_ok(&email, PASSWORD).await;
}
