//! Common client mistakes get the contract's code (unchanged: clients switch
//! on it) and a message that names the mistake, never echoing a secret.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, assert_error, spawn_app};

#[tokio::test]
async fn an_access_token_sent_to_refresh_is_named_as_such() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let body = assert_error(
        app.refresh(&login.access_token).await,
        StatusCode::UNAUTHORIZED,
        "invalid_grant",
    )
    .await;
    assert_eq!(body["reason"], "invalid");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("access token"), "{message}");
    assert!(!message.contains("sign in again"), "{message}");
    // The session is untouched: its refresh token still works.
    app.refresh_ok(&login).await;
}

#[tokio::test]
async fn a_refresh_token_in_quotes_or_with_a_newline_is_named_as_such() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for wrapped in [
        format!("\"{}\"", login.refresh_token),
        format!("{}\n", login.refresh_token),
        format!("{}\\n", login.refresh_token),
    ] {
        let body = assert_error(
            app.refresh(&wrapped).await,
            StatusCode::UNAUTHORIZED,
            "invalid_grant",
        )
        .await;
        assert_eq!(body["reason"], "invalid");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("quotes or whitespace"), "{message}");
        assert!(!message.contains(&login.refresh_token));
    }
    app.refresh_ok(&login).await;
}

#[tokio::test]
async fn another_scheme_or_a_bare_token_is_still_missing_token_but_says_why() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app.me_with_authorization("Token abc").await;
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Token scheme"), "{message}");
    assert!(message.contains("Bearer <token>"), "{message}");

    let body = assert_error(
        app.me_with_authorization(login.access_token.as_str()).await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("Bearer <token>"), "{message}");
    assert!(!message.contains(&login.access_token[..20]), "{message}");

    // A long first word could be a credential: not echoed.
    let body = assert_error(
        app.me_with_authorization(format!("{} x", login.access_token))
            .await,
        StatusCode::UNAUTHORIZED,
        "missing_token",
    )
    .await;
    assert!(!body["message"].as_str().unwrap().contains("eyJ"));

    // No header at all: the usual message.
    let response = app.client.get(app.url("/me")).send().await.unwrap();
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
    assert!(body["message"].as_str().unwrap().contains("required"));
}

#[tokio::test]
async fn a_bearer_token_in_quotes_is_named_as_such() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app
        .me_with_authorization(format!("Bearer \"{}\"", login.access_token))
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("quotes or whitespace"), "{message}");
    assert!(challenge.contains("quotes or whitespace"), "{challenge}");
}

#[tokio::test]
async fn a_trailing_slash_404_names_the_path_without_it() {
    let app = spawn_app().await;
    let body = assert_error(
        app.post_json("/login/", &json!({})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("/login "), "{message}");
    assert!(message.contains("trailing slash"), "{message}");
    let body = assert_error(
        app.client.get(app.url("/nowhere/")).send().await.unwrap(),
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(body["message"], "not found");
}

#[tokio::test]
async fn a_field_of_the_wrong_type_is_named() {
    let app = spawn_app().await;
    let body = assert_error(
        app.post_json("/login", &json!({"email": 12345678, "password": PASSWORD}))
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("email"), "{message}");
    assert!(message.contains("expected a string"), "{message}");
    assert!(!message.contains("12345678"), "{message}");
    // A password of the wrong type is named, its value never echoed.
    let body = assert_error(
        app.post_json(
            "/login",
            &json!({"email": "a@example.com", "password": ["hunter2hunter2"]}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("password"), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    // Optional fields too.
    let body = assert_error(
        app.post_json(
            "/login",
            &json!({"email": "a@example.com", "password": PASSWORD, "device_name": 7}),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    assert!(body["message"].as_str().unwrap().contains("device_name"));
}

#[tokio::test]
async fn a_wrong_current_password_says_password_not_email() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let body = assert_error(
        app.change_password(
            &login.access_token,
            "not the password 1",
            "a brand new passphrase",
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
    let message = body["message"].as_str().unwrap();
    assert_eq!(message, "the current password is wrong");
}
