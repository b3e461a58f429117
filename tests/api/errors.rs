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
        (reqwest::Method::POST, "/me", "GET, HEAD"),
        (reqwest::Method::POST, "/healthz", "GET, HEAD"),
        (reqwest::Method::HEAD, "/login", "POST"),
        (reqwest::Method::GET, "/logout-all", "POST"),
    ] {
        let head = method == reqwest::Method::HEAD;
        let response = app
            .client
            .request(method, app.url(path))
            .send()
            .await
            .unwrap();
        assert_eq!(response.headers()["allow"], allow, "{path}");
        if head {
            // A HEAD answer has no body to check.
            assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
            continue;
        }
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

/// What a `HEAD` got, checked against a `GET` of the same request: the same
/// status and headers, no body, and the `Content-Length` the body would have
/// had (RFC 9110 §9.3.2; not for `/metrics`, which changes with every call).
async fn head_like_get(
    app: &crate::helpers::TestApp,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, reqwest::header::HeaderMap) {
    let mut get = app.client.get(app.url(path));
    let mut head = app.client.head(app.url(path));
    if let Some(token) = token {
        get = get.bearer_auth(token);
        head = head.bearer_auth(token);
    }
    let get = get.send().await.unwrap();
    let head = head.send().await.unwrap();
    let (status, headers) = (head.status(), head.headers().clone());
    assert_eq!(status, get.status(), "HEAD {path}");
    for name in ["content-type", "cache-control", "www-authenticate", "allow"] {
        assert_eq!(
            headers.get(name),
            get.headers().get(name),
            "{name} of HEAD {path}"
        );
    }
    let get_body = get.bytes().await.unwrap();
    assert!(
        head.bytes().await.unwrap().is_empty(),
        "HEAD {path} has a body"
    );
    if path != "/metrics" {
        assert_eq!(
            headers["content-length"].to_str().unwrap(),
            get_body.len().to_string(),
            "content-length of HEAD {path}"
        );
    }
    (status, headers)
}

#[tokio::test]
async fn head_me_with_a_token_is_a_200_without_a_body() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let (status, headers) = head_like_get(&app, "/me", Some(&login.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
}

#[tokio::test]
async fn head_me_without_a_token_is_a_401_with_the_challenge() {
    let app = spawn_app().await;
    let (status, headers) = head_like_get(&app, "/me", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(headers["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn head_is_answered_wherever_get_is() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for path in [
        "/healthz",
        "/readyz",
        "/openapi.json",
        "/docs",
        "/docs/swagger-ui.css",
        "/docs/swagger-initializer.js",
        "/metrics",
    ] {
        let (status, _) = head_like_get(&app, path, None).await;
        assert_eq!(status, StatusCode::OK, "HEAD {path}");
    }
    let (status, _) = head_like_get(&app, "/sessions", Some(&login.access_token)).await;
    assert_eq!(status, StatusCode::OK);
    // The metrics (and the access log) still say HEAD.
    let metrics = crate::metrics::scrape(&app).await;
    assert!(
        metrics.contains(r#"method="HEAD",route="/healthz",status="200""#),
        "{metrics}"
    );
    // Where GET is not answered, neither is HEAD.
    let (status, _) = head_like_get(&app, "/no/such/path", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let head = app.client.head(app.url("/logout")).send().await.unwrap();
    assert_eq!(head.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(head.headers()["allow"], "POST");
}

#[tokio::test]
async fn a_head_answer_sends_no_body_on_the_wire() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = spawn_app().await;
    let address = app.address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"HEAD /healthz HTTP/1.1\r\nHost: auth\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete head");
    assert!(head.starts_with("HTTP/1.1 200"), "{text}");
    assert!(head.contains("content-length: 15"), "{text}");
    assert_eq!(body, "", "no body after the head");
}

#[tokio::test]
async fn the_405_on_me_lists_get_and_head() {
    let app = spawn_app().await;
    let response = app.client.put(app.url("/me")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, HEAD");
    assert_error(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}
