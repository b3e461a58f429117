//! The contract the generated clients rely on: every error answer carries a
//! code that its route's response lists in the OpenAPI document (the typed
//! enum a client switches on), and every timestamp has one precision.
//!
//! Every test of the suite also checks the first half as it goes: `TestApp`
//! fails a test whose app answered a code its route does not document
//! (`auth_undocumented_errors_total`, see `helpers`).

use auth_api::http::routes::{Access, Method, ROUTES};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

/// Follows a local `$ref` in the document.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => {
            let mut node = doc;
            for part in reference.trim_start_matches("#/").split('/') {
                node = &node[part];
            }
            resolve(doc, node)
        }
        None => value,
    }
}

/// The codes (and reasons) the document lists for this answer.
fn documented(doc: &Value, method: &str, path: &str, status: u16) -> (Vec<String>, Vec<String>) {
    let answer = &doc["paths"][path][method.to_ascii_lowercase()]["responses"][status.to_string()];
    assert!(
        answer.is_object(),
        "{method} {path} answered {status}, which its operation does not list"
    );
    let schema = resolve(
        doc,
        &resolve(doc, answer)["content"]["application/json"]["schema"],
    );
    let list = |name: &str| -> Vec<String> {
        schema["properties"][name]["enum"]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    (list("error"), list("reason"))
}

/// Sends `request`, and when the answer is an error, asserts its code is in
/// the enum the document gives that route and status. Returns the code.
async fn check(
    app: &TestApp,
    doc: &Value,
    method: &str,
    path: &str,
    request: reqwest::RequestBuilder,
) -> Option<String> {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    if status < 400 {
        return None;
    }
    let body: Value = response.json().await.expect("a JSON error");
    let code = body["error"].as_str().expect("a code").to_owned();
    let (codes, reasons) = documented(doc, method, path, status);
    assert!(
        codes.contains(&code),
        "{method} {path}: {status} {code} is not in {codes:?}"
    );
    if let Some(reason) = body["reason"].as_str() {
        assert!(
            reasons.iter().any(|r| r == reason),
            "{method} {path}: {body}"
        );
    }
    let _ = app;
    Some(code)
}

#[tokio::test]
async fn every_error_a_route_answers_to_common_mistakes_is_in_its_documented_enum() {
    let app = spawn_app().await;
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    let mut seen = Vec::new();
    for route in ROUTES.iter().filter(|r| r.documented) {
        // A fresh session each time: the sweep of `/logout-all` ends the last one.
        let user = app.new_login().await;
        let method = route.method.as_str();
        let path = route.path;
        let concrete = path.replace("{id}", &uuid::Uuid::new_v4().to_string());
        let reqwest_method = match route.method {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Delete => reqwest::Method::DELETE,
        };
        let request = || {
            app.client
                .request(reqwest_method.clone(), app.url(&concrete))
        };
        let with_token = || request().bearer_auth(&user.access_token);
        let mut attempts = vec![
            request(),
            request().header("authorization", "Token abc"),
            request().header("authorization", "Bearer not.a.token"),
            with_token(),
            with_token().json(&json!({})),
            with_token().json(&json!({"email": 1, "password": [], "refresh_token": 7,
                "current_password": {}, "new_password": null, "device_name": 3})),
            with_token()
                .header("content-type", "application/json")
                .body("{\"email\": "),
            with_token()
                .header("content-type", "text/plain")
                .body("hello"),
            with_token()
                .header("content-type", "application/json")
                .body(format!("{{\"email\": \"{}\"}}", "a".repeat(17 * 1024))),
            with_token().json(&json!({"email": "not an email", "password": "short",
                "refresh_token": "nonsense", "current_password": "wrong password 123",
                "new_password": "password"})),
            with_token().json(&json!({"email": crate::helpers::unique_email(),
                "password": "short", "current_password": crate::helpers::PASSWORD,
                "new_password": "short"})),
            with_token().json(
                &json!({"email": user.email, "password": "wrong password 123",
                "refresh_token": user.access_token}),
            ),
        ];
        if path.contains("{id}") {
            attempts.push(
                app.client
                    .request(
                        reqwest_method.clone(),
                        app.url(&path.replace("{id}", "nope")),
                    )
                    .bearer_auth(&user.access_token),
            );
        }
        for attempt in attempts {
            if let Some(code) = check(&app, &doc, method, path, attempt).await {
                seen.push(code);
            }
        }
        if route.access == Access::Admin {
            assert!(seen.iter().any(|c| c == "insufficient_role"), "{path}");
        }
    }
    // The sweep reached the codes clients most often meet.
    for code in [
        "invalid_request",
        "missing_token",
        "invalid_token",
        "unsupported_media_type",
        "payload_too_large",
        "invalid_credentials",
        "invalid_grant",
        "invalid_email",
        "weak_password",
        "not_found",
    ] {
        assert!(seen.iter().any(|c| c == code), "{code} never seen");
    }
}

#[test]
fn every_operation_documents_a_500_and_a_default_error() {
    let doc: Value = serde_json::from_str(COMMITTED).unwrap();
    for route in ROUTES.iter().filter(|r| r.documented) {
        let method = route.method.as_str().to_ascii_lowercase();
        let answers = &doc["paths"][route.path][&method]["responses"];
        assert!(answers["500"].is_object(), "{method} {}", route.path);
        let default = resolve(&doc, &answers["default"]);
        let schema = resolve(&doc, &default["content"]["application/json"]["schema"]);
        let all = schema["properties"]["error"]["enum"].as_array().unwrap();
        for code in ["internal_error", "method_not_allowed", "missing_token"] {
            assert!(all.iter().any(|c| c == code), "{code}");
        }
    }
    for route in ROUTES.iter().filter(|r| !r.documented) {
        assert!(doc["paths"][route.path].is_null(), "{}", route.path);
    }
}

/// RFC 3339, UTC, milliseconds: `2026-11-27T17:00:00.123Z`.
fn assert_millis(value: &Value, what: &str) {
    let text = value.as_str().unwrap_or_else(|| panic!("{what}: {value}"));
    let bytes = text.as_bytes();
    assert_eq!(bytes.len(), 24, "{what}: {text}");
    assert_eq!(&text[19..20], ".", "{what}: {text}");
    assert!(
        bytes[20..23].iter().all(u8::is_ascii_digit),
        "{what}: {text}"
    );
    assert_eq!(&text[23..], "Z", "{what}: {text}");
    assert!(chrono::DateTime::parse_from_rfc3339(text).is_ok(), "{what}");
}

#[tokio::test]
async fn every_timestamp_in_every_body_has_millisecond_precision() {
    let app = spawn_app().await;
    let email = crate::helpers::unique_email();
    let response = app.register(&email, crate::helpers::PASSWORD).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let registered: Value = response.json().await.unwrap();
    assert_millis(&registered["created_at"], "/register created_at");
    let login = app.login_ok(&email, crate::helpers::PASSWORD).await;
    let me: Value = app.me(&login.access_token).await.json().await.unwrap();
    assert_millis(&me["expires_at"], "/me expires_at");
    let sessions: Value = app
        .sessions(&login.access_token)
        .await
        .json()
        .await
        .unwrap();
    let session = &sessions["sessions"][0];
    for field in ["created_at", "last_used_at", "expires_at"] {
        assert_millis(&session[field], field);
    }
    // Always sent, null when unknown (required and nullable in the document).
    assert!(session.get("device_name").is_some(), "{session}");
    assert!(session.get("user_agent").is_some(), "{session}");
}
