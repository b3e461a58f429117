//! Rate limits: per client IP on /register, /login, /password, and login
//! attempts per email; 429 with Retry-After; recovery; 0 turns them off.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, TestApp, assert_error, spawn_app_with, unique_email};

async fn login_from_ip(app: &TestApp, ip: &str, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn assert_too_many(response: reqwest::Response) -> u64 {
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    assert_error(response, StatusCode::TOO_MANY_REQUESTS, "too_many_requests").await;
    retry_after
}

#[tokio::test]
async fn logins_from_one_ip_over_the_limit_get_429_with_retry_after() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3")]).await;
    let email = app.new_user().await;
    for _ in 0..2 {
        assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    }
    // /register above spent one request of this IP's budget too.
    assert_too_many(app.login(&email, PASSWORD).await).await;
}

#[tokio::test]
async fn register_and_password_are_limited_per_ip() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "2")]).await;
    let email = app.new_user().await; // 1
    let login = app.login_ok(&email, PASSWORD).await; // 2
    assert_too_many(app.register(&unique_email(), PASSWORD).await).await;
    assert_too_many(
        app.change_password(&login.access_token, PASSWORD, "new long password")
            .await,
    )
    .await;
    // The Bearer routes that hash nothing are not limited.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn failed_logins_are_limited_per_email_whatever_the_ip_and_case() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3"), ("TRUST_FORWARDED_FOR", "true")]).await;
    let email = app.new_user().await;
    let shouting = email.to_uppercase();
    for (i, address) in [&email, &shouting, &email].iter().enumerate() {
        let response =
            login_from_ip(&app, &format!("203.0.113.{i}"), address, "wrong password!").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // Even the right password, from a fresh IP, waits now.
    assert_too_many(login_from_ip(&app, "203.0.113.99", &email, PASSWORD).await).await;
    // Another account is not affected.
    let other = app.new_user().await;
    assert_eq!(
        login_from_ip(&app, "203.0.113.100", &other, PASSWORD)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn unknown_emails_are_limited_the_same_way() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "2"), ("TRUST_FORWARDED_FOR", "true")]).await;
    let ghost = "ghost@example.com";
    for i in 0..2 {
        let response = login_from_ip(&app, &format!("198.51.100.{i}"), ghost, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_too_many(login_from_ip(&app, "198.51.100.50", ghost, PASSWORD).await).await;
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_unless_trusted() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "2")]).await;
    for i in 0..2 {
        let response =
            login_from_ip(&app, &format!("192.0.2.{i}"), &unique_email(), PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    // A new forged address does not buy a new budget: the peer address counts.
    assert_too_many(login_from_ip(&app, "192.0.2.77", &unique_email(), PASSWORD).await).await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_right_most_forwarded_address_counts() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "1"), ("TRUST_FORWARDED_FOR", "true")]).await;
    // The client forged the left entry; the proxy appended the real one.
    let r = login_from_ip(&app, "1.1.1.1, 192.0.2.10", &unique_email(), PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = login_from_ip(&app, "8.8.8.8, 192.0.2.10", &unique_email(), PASSWORD).await;
    assert_too_many(r).await;
    let r = login_from_ip(&app, "192.0.2.11", &unique_email(), PASSWORD).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_limit_recovers_by_itself() {
    // 60 a minute: one request back every second.
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "60")]).await;
    for _ in 0..60 {
        let response = app.register("not-an-email", PASSWORD).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    }
    let retry_after = assert_too_many(app.register("not-an-email", PASSWORD).await).await;
    assert!(retry_after <= 2, "{retry_after}");
    tokio::time::sleep(std::time::Duration::from_secs(retry_after)).await;
    assert_eq!(
        app.register("not-an-email", PASSWORD).await.status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
}

#[tokio::test]
async fn successful_logins_never_count_against_their_email() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3"), ("TRUST_FORWARDED_FOR", "true")]).await;
    let email = app.new_user().await;
    // A user with ten devices signs in ten times in a minute, each from its own address.
    for i in 0..10 {
        let response = login_from_ip(&app, &format!("203.0.113.{i}"), &email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::OK, "login {i}");
    }
    // Failures still count: three, then even the right password waits.
    for i in 10..13 {
        let response =
            login_from_ip(&app, &format!("203.0.113.{i}"), &email, "wrong password!").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_too_many(login_from_ip(&app, "203.0.113.99", &email, PASSWORD).await).await;
}

#[tokio::test]
async fn a_burst_of_guesses_in_flight_cannot_slip_past_the_email_limit() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3"), ("TRUST_FORWARDED_FOR", "true")]).await;
    let email = app.new_user().await;
    // Twenty guesses sent at once, each from its own address: each is charged
    // before its (slow) password check, so only the budget's worth are checked.
    let guesses = (0..20).map(|i| {
        let app = &app;
        let email = &email;
        async move { login_from_ip(app, &format!("198.51.100.{i}"), email, "wrong password!").await }
    });
    let statuses: Vec<StatusCode> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.status())
        .collect();
    let checked = statuses
        .iter()
        .filter(|s| **s == StatusCode::UNAUTHORIZED)
        .count();
    let refused = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((checked, refused), (3, 17), "{statuses:?}");
}

#[tokio::test]
async fn malformed_emails_share_one_budget() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT", "3"), ("TRUST_FORWARDED_FOR", "true")]).await;
    // Distinct garbage does not buy distinct budgets (nor grow the limiter).
    for i in 0..3 {
        let response = login_from_ip(
            &app,
            &format!("198.51.100.{i}"),
            &format!("garbage {i}"),
            PASSWORD,
        )
        .await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    assert_too_many(login_from_ip(&app, "198.51.100.9", "other garbage", PASSWORD).await).await;
    // Real accounts keep their own budgets.
    let email = app.new_user().await;
    let response = login_from_ip(&app, "198.51.100.10", &email, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::OK);
}
