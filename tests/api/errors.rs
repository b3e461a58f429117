//! The generic errors of API.md: every one is JSON with the right status.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{assert_error, spawn_app};

#[tokio::test]
async fn an_unknown_path_is_a_json_404() {
    let app = spawn_app().await;
    let response = app
        .client
        .get(app.url("/no/such/path"))
        .send()
        .await
        .unwrap();
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_wrong_method_is_a_json_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        (reqwest::Method::GET, "/login", "POST"),
        (reqwest::Method::PUT, "/register", "POST"),
        (reqwest::Method::DELETE, "/refresh", "POST"),
        (reqwest::Method::POST, "/me", "GET"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (reqwest::Method::GET, "/logout-all", "POST"),
    ] {
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{path}");
        assert_error(
            response,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    for path in ["/register", "/login", "/refresh", "/logout"] {
        let response = app
            .client
            .post(app.url(path))
            .header("content-type", "application/json")
            .body("{\"email\": ")
            .send()
            .await
            .unwrap();
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn missing_or_mistyped_fields_are_a_400() {
    let app = spawn_app().await;
    for (path, body) in [
        ("/register", json!({"email": "a@example.com"})),
        (
            "/register",
            json!({"email": 42, "password": "long enough pw"}),
        ),
        ("/login", json!({"password": "whatever123"})),
        (
            "/login",
            json!({"email": "a@example.com", "password": ["x"]}),
        ),
        ("/refresh", json!({})),
        ("/refresh", json!({"refresh_token": 12})),
        ("/logout", json!({"token": "x"})),
        ("/login", json!([1, 2, 3])),
    ] {
        let response = app.post_json(path, &body).await;
        assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    }
}

#[tokio::test]
async fn a_mistyped_password_is_not_echoed_in_the_error() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/login",
            &json!({"email": "a@example.com", "password": 987654321987u64}),
        )
        .await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(!body.to_string().contains("987654321987"));
}

#[tokio::test]
async fn a_body_over_16_kib_is_a_413() {
    let app = spawn_app().await;
    let body = json!({"email": "a@example.com", "password": "x".repeat(17 * 1024)});
    let response = app.post_json("/register", &body).await;
    assert_error(response, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large").await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut request = app
            .client
            .post(app.url("/login"))
            .body("email=a@example.com&password=whatever");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        assert_error(
            response,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
    }
}

#[tokio::test]
async fn responses_carry_the_security_headers() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert!(!response.headers().contains_key("server"));
}

#[tokio::test]
async fn a_body_that_is_json_but_not_an_object_is_a_400() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    // serde would read `["token"]` as a struct; the contract says objects only.
    for body in [
        json!([login.refresh_token]),
        json!([login.email, crate::helpers::PASSWORD]),
        json!("a string"),
        json!(42),
        json!(null),
    ] {
        for path in ["/register", "/login", "/refresh", "/logout"] {
            let response = app.post_json(path, &body).await;
            let error = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
            assert_eq!(
                error["message"], "the request body must be a JSON object",
                "{path} {body}"
            );
        }
    }
    // The array did not log the session out.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
}
