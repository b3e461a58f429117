//! Hostile input over HTTP: arbitrary bytes and arbitrary JSON at every body,
//! arbitrary Authorization headers and paths. Never a 5xx, never a panic.

use proptest::prelude::*;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::TestRunner;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::spawn_app_with;

/// `n` samples of a proptest strategy (deterministic per run).
fn samples<S: Strategy>(strategy: S, n: usize) -> Vec<S::Value> {
    let mut runner = TestRunner::deterministic();
    (0..n)
        .map(|_| strategy.new_tree(&mut runner).unwrap().current())
        .collect()
}

fn json_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        ".{0,300}".prop_map(Value::String),
        "[a-z]{1,10}@[a-z]{1,10}\\.[a-z]{2,3}".prop_map(Value::String),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_scalar().prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::hash_map("[a-z_]{1,16}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Objects with the fields the endpoints expect, holding anything at all.
fn field_soup() -> impl Strategy<Value = Value> {
    let keys = prop_oneof![
        Just("email"),
        Just("password"),
        Just("device_name"),
        Just("refresh_token"),
        Just("current_password"),
        Just("new_password"),
    ];
    proptest::collection::hash_map(keys, json_value(), 0..5)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()))
}

#[tokio::test]
async fn arbitrary_bodies_never_cause_a_server_error() {
    let app = spawn_app_with(&[]).await;
    let login = app.new_login().await;
    let raw = samples(proptest::collection::vec(any::<u8>(), 0..3000), 40);
    let soups = samples(field_soup(), 60);
    let values = samples(json_value(), 30);

    for path in ["/register", "/login", "/refresh", "/logout", "/password"] {
        for body in &raw {
            let response = app
                .client
                .post(app.url(path))
                .bearer_auth(&login.access_token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert!(
                response.status().as_u16() < 500,
                "{path} with raw bytes: {}",
                response.status()
            );
        }
        for body in soups.iter().chain(&values) {
            let response = app
                .client
                .post(app.url(path))
                .bearer_auth(&login.access_token)
                .json(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            assert!(status.as_u16() < 500, "{path} with {body}: {status}");
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                assert!(
                    answer["error"].is_string(),
                    "{path}: a JSON error for {body}"
                );
            }
        }
    }
}

#[tokio::test]
async fn arbitrary_authorization_headers_and_paths_never_cause_a_server_error() {
    let app = spawn_app_with(&[]).await;
    let headers = samples(proptest::collection::vec(any::<u8>(), 0..600), 150);
    for header in headers {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&header) else {
            continue;
        };
        let response = app.me_with_authorization(value).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
    let segments = samples("[A-Za-z0-9%._~-]{0,80}", 100);
    for segment in segments {
        for path in [
            format!("/sessions/{segment}"),
            format!("/admin/users/{segment}/revoke-sessions"),
            format!("/{segment}"),
        ] {
            let response = app.client.delete(app.url(&path)).send().await.unwrap();
            assert!(
                response.status().as_u16() < 500,
                "{path}: {}",
                response.status()
            );
        }
    }
}
