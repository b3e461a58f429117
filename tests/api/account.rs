//! `GET /account` and `DELETE /account`.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{PASSWORD, assert_error, login_from_body, spawn_app};

#[tokio::test]
async fn the_account_is_read_from_the_database() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    let account = app.account(&login.access_token).await;
    assert_eq!(account["id"], login.user_id.to_string());
    assert_eq!(account["email"], email);
    assert_eq!(account["email_verified"], false);
    assert_eq!(account["role"], "user");
    assert!(account["created_at"].is_string());
    let keys: Vec<_> = account.as_object().unwrap().keys().cloned().collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    // A role granted since the token was issued shows at once (unlike /me).
    app.make_admin(&email).await;
    assert_eq!(app.account(&login.access_token).await["role"], "admin");
}

#[tokio::test]
async fn the_account_needs_a_bearer_token() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/account")).send().await.unwrap();
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
}

async fn delete(app: &crate::helpers::TestApp, token: &str, password: &str) -> reqwest::Response {
    app.send_json(
        Method::DELETE,
        "/account",
        Some(token),
        &json!({"password": password}),
    )
    .await
}

#[tokio::test]
async fn deleting_needs_the_password() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = delete(&app, &login.access_token, "not the password").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.me(&login.access_token)
        .await
        .error_for_status()
        .unwrap();
    app.login_ok(&login.email, PASSWORD).await;
}

#[tokio::test]
async fn deleting_ends_every_session_erases_the_account_and_frees_the_email() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let phone = app.login_ok(&email, PASSWORD).await;
    let laptop = app.login_ok(&email, PASSWORD).await;

    let response = delete(&app, &phone.access_token, PASSWORD).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for login in [&phone, &laptop] {
        let response = app.me(&login.access_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let response = app.refresh(&login.refresh_token).await;
        let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
        assert_eq!(body["reason"], "revoked");
        // The session rows keep no device data.
        let session = app
            .session(login.session_id)
            .await
            .expect("kept as a revocation record");
        assert!(session.revoked_at.is_some());
        assert_eq!(session.user_agent, None);
        assert_eq!(session.device_name, None);
    }
    let response = app.login(&email, PASSWORD).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    assert!(
        app.state
            .store
            .find_user(phone.user_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        app.state
            .store
            .find_user_by_email(&email)
            .await
            .unwrap()
            .is_none()
    );

    // A notice to the old address, and nothing else: the registration's
    // verification mail is dropped with the account (its address erased).
    let mails = app.mails_to(&email).await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].subject.contains("deleted"), "{}", mails[0].subject);
    assert!(mails[0].body.contains("was deleted"), "{}", mails[0].body);
    assert!(!mails[0].body.contains("token="));

    // The email registers again: a new account, a new id.
    let response = app.register(&email, "another good passphrase").await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_ne!(body["id"], phone.user_id.to_string());
    app.login_ok(&email, "another good passphrase").await;
}

#[tokio::test]
async fn a_pending_reset_dies_with_the_account() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    let mail = app.last_mail(&email).await;
    let login = app.login_ok(&email, PASSWORD).await;
    assert_eq!(
        delete(&app, &login.access_token, PASSWORD).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": "a brand new passphrase"}),
        )
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_code").await;
}

#[tokio::test]
async fn a_login_racing_a_deletion_opens_no_session_that_outlives_it() {
    let app = spawn_app().await;
    for _ in 0..6 {
        let email = app.new_user().await;
        let first = app.login_ok(&email, PASSWORD).await;
        let (login, deleted) = tokio::join!(
            app.login(&email, PASSWORD),
            delete(&app, &first.access_token, PASSWORD)
        );
        assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
        if login.status() == StatusCode::OK {
            let login = login_from_body(&email, login.json().await.unwrap());
            let response = app.refresh(&login.refresh_token).await;
            let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
            assert_eq!(body["reason"], "revoked");
        } else {
            assert_error(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
    }
}
