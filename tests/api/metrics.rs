//! GET /metrics: Prometheus text with request, login, refresh, revocation,
//! hasher and pool figures, and no user data.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, TestApp, spawn_app, spawn_app_with};

/// The `/metrics` text (asserting it is served as OpenMetrics).
pub async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    response.text().await.unwrap()
}

pub fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_count_requests_logins_refreshes_and_revocations_without_user_data() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(
        app.login(&login.email, "wrong password!!").await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.me(&login.access_token).await;
    app.me(&login.access_token).await;
    let next = app.refresh_ok(&login).await;
    app.advance(121);
    assert_eq!(
        app.refresh(&login.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    ); // reuse
    let other = app.login_ok(&login.email, PASSWORD).await;
    app.logout(&other.refresh_token).await;

    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"auth_http_requests_total{method="GET",route="/me",status="200"}"#
        ),
        2.0
    );
    assert!(text.contains(r#"auth_http_request_duration_seconds_bucket{le="0.001",method="GET",route="/me",status="200"}"#)
        || text.contains(r#"auth_http_request_duration_seconds_bucket{method="GET",route="/me",status="200",le="0.001"}"#), "{text}");
    assert_eq!(value(&text, r#"auth_logins_total{outcome="success"}"#), 2.0);
    assert_eq!(value(&text, r#"auth_logins_total{outcome="failure"}"#), 1.0);
    assert_eq!(
        value(&text, r#"auth_refreshes_total{outcome="success"}"#),
        1.0
    );
    assert_eq!(
        value(&text, r#"auth_refreshes_total{outcome="reuse_detected"}"#),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"auth_sessions_revoked_total{reason="reuse_detected"}"#
        ),
        1.0
    );
    // The replay came 121 s after the rotation: past the grace, under 5 minutes.
    assert_eq!(
        value(
            &text,
            r#"auth_refresh_reuse_replay_age_seconds_bucket{le="120.0"}"#
        ),
        0.0
    );
    assert_eq!(
        value(
            &text,
            r#"auth_refresh_reuse_replay_age_seconds_bucket{le="300.0"}"#
        ),
        1.0
    );
    assert_eq!(
        value(&text, r#"auth_sessions_revoked_total{reason="logout"}"#),
        1.0
    );
    assert_eq!(value(&text, "auth_registrations_total"), 1.0);
    assert_eq!(value(&text, "auth_password_hashes_in_flight"), 0.0);
    assert_eq!(value(&text, "auth_password_hashes_queued"), 0.0);
    assert!(value(&text, "auth_db_pool_connections") >= 1.0);
    assert_eq!(value(&text, "auth_revocations_remembered"), 2.0);

    // Nothing that identifies a user, a session or a credential.
    for secret in [
        login.email.as_str(),
        &login.user_id.to_string(),
        &login.session_id.to_string(),
        &login.refresh_token,
        &next.access_token[..40],
        PASSWORD,
    ] {
        assert!(!text.contains(secret), "{secret} leaked into /metrics");
    }
}

#[tokio::test]
async fn paths_with_ids_are_counted_under_their_route_pattern() {
    let app = spawn_app_with(&[]).await;
    let login = app.new_login().await;
    let id = uuid::Uuid::new_v4().to_string();
    app.delete_session(&login.access_token, &id).await;
    app.client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    let text = scrape(&app).await;
    assert_eq!(
        value(
            &text,
            r#"auth_http_requests_total{method="DELETE",route="/sessions/{id}",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            r#"auth_http_requests_total{method="GET",route="unmatched",status="404"}"#
        ),
        1.0
    );
    assert!(!text.contains(&id));
}

#[tokio::test]
async fn only_internal_clients_get_metrics_unless_metrics_public() {
    // Behind a trusted proxy the client is the X-Forwarded-For address.
    let get_from = |app: &TestApp, client: &'static str| {
        app.client
            .get(app.url("/metrics"))
            .header("X-Forwarded-For", client)
            .send()
    };
    let app = spawn_app_with(&[("TRUST_FORWARDED_FOR", "true")]).await;
    for internal in ["10.0.0.7", "192.168.3.4", "127.0.0.1", "fd12::1"] {
        let response = get_from(&app, internal).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{internal}");
    }
    for outside in ["203.0.113.9", "2001:db8::5"] {
        let response = get_from(&app, outside).await.unwrap();
        crate::helpers::assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }

    let public =
        spawn_app_with(&[("TRUST_FORWARDED_FOR", "true"), ("METRICS_PUBLIC", "true")]).await;
    let response = get_from(&public, "203.0.113.9").await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
