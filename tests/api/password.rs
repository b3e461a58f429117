//! Password change.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, assert_error, spawn_app};

const NEW_PASSWORD: &str = "a brand new passphrase";

#[tokio::test]
async fn changing_the_password_keeps_the_caller_and_revokes_every_other_session() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;

    let response = app
        .change_password(&phone.access_token, PASSWORD, NEW_PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    // The caller keeps working: access and refresh.
    assert_eq!(app.me(&phone.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&phone).await;
    // The other device is signed out: access and refresh.
    let response = app.me(&tablet.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let response = app.refresh(&tablet.refresh_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    // The old password stops working at once; the new one works.
    assert_eq!(
        app.login(&phone.email, PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.login_ok(&phone.email, NEW_PASSWORD).await;
}

#[tokio::test]
async fn a_wrong_current_password_is_a_401_and_changes_nothing() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;
    let response = app
        .change_password(&phone.access_token, "not my password", NEW_PASSWORD)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    app.login_ok(&phone.email, PASSWORD).await;
    assert_eq!(app.me(&tablet.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_weak_new_password_is_a_422_and_changes_nothing() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for weak in ["short", "password123", &"x".repeat(1025)] {
        let response = app
            .change_password(&login.access_token, PASSWORD, weak)
            .await;
        assert_error(response, StatusCode::UNPROCESSABLE_ENTITY, "weak_password").await;
    }
    app.login_ok(&login.email, PASSWORD).await;
}

#[tokio::test]
async fn changing_the_password_requires_a_valid_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    app.logout(&login.refresh_token).await;
    let response = app
        .change_password(&login.access_token, PASSWORD, NEW_PASSWORD)
        .await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    app.login_ok(&login.email, PASSWORD).await;
}
