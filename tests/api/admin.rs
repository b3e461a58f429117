//! The admin route and the role check.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, assert_error, decode_claims, spawn_app};

#[tokio::test]
async fn an_admin_revokes_every_session_of_a_user() {
    let app = spawn_app().await;
    let admin_email = app.new_user().await;
    app.make_admin(&admin_email).await;
    let admin = app.login_ok(&admin_email, PASSWORD).await;
    assert_eq!(decode_claims(&admin.access_token)["role"], "admin");
    let victim = app.new_login().await;
    let victim_tablet = app.login_ok(&victim.email, PASSWORD).await;

    let response = app
        .admin_revoke(&admin.access_token, &victim.user_id.to_string())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for login in [&victim, &victim_tablet] {
        let response = app.me(&login.access_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let response = app.refresh(&login.refresh_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    }
    assert_eq!(app.me(&admin.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_non_admin_gets_403_and_changes_nothing() {
    let app = spawn_app().await;
    let mallory = app.new_login().await;
    let victim = app.new_login().await;
    for target in [
        victim.user_id.to_string(),
        uuid::Uuid::new_v4().to_string(),
        "not-a-uuid".into(),
    ] {
        let response = app.admin_revoke(&mallory.access_token, &target).await;
        assert_error(response, StatusCode::FORBIDDEN, "insufficient_role").await;
    }
    assert_eq!(app.me(&victim.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&victim).await;
}

#[tokio::test]
async fn revoking_an_unknown_user_is_a_404() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.make_admin(&email).await;
    let admin = app.login_ok(&email, PASSWORD).await;
    let response = app
        .admin_revoke(&admin.access_token, &uuid::Uuid::new_v4().to_string())
        .await;
    assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn a_role_change_takes_effect_at_the_next_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    app.make_admin(&login.email).await;
    // The current token still says user...
    assert_eq!(decode_claims(&login.access_token)["role"], "user");
    let id = login.user_id.to_string();
    assert_eq!(
        app.admin_revoke(&login.access_token, &id).await.status(),
        StatusCode::FORBIDDEN
    );
    // ...the next one, from a refresh, says admin.
    let next = app.refresh_ok(&login).await;
    assert_eq!(decode_claims(&next.access_token)["role"], "admin");
}

async fn admin_login(app: &crate::helpers::TestApp) -> crate::helpers::Login {
    let email = app.new_user().await;
    app.make_admin(&email).await;
    app.login_ok(&email, PASSWORD).await
}

#[tokio::test]
async fn an_admin_finds_a_user_by_email() {
    let app = spawn_app().await;
    let admin = admin_login(&app).await;
    let user = app.new_login().await;
    app.login_ok(&user.email, PASSWORD).await;
    let path = format!("/admin/users?email={}", user.email.to_uppercase());
    let response = app.get_with_token(&path, &admin.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["id"], user.user_id.to_string());
    assert_eq!(body["email"], user.email);
    assert_eq!(body["email_verified"], false);
    assert_eq!(body["role"], "user");
    assert_eq!(body["disabled"], false);
    assert!(body["created_at"].is_string());
    assert_eq!(body["active_sessions"], 2);
    assert_eq!(body.as_object().unwrap().len(), 7, "{body}");
}

#[tokio::test]
async fn finding_a_user_needs_the_admin_role_and_an_existing_email() {
    let app = spawn_app().await;
    let user = app.new_login().await;
    let path = format!("/admin/users?email={}", user.email);
    let response = app.get_with_token(&path, &user.access_token).await;
    assert_error(response, StatusCode::FORBIDDEN, "insufficient_role").await;
    let admin = admin_login(&app).await;
    for path in [
        "/admin/users?email=nobody@example.com",
        "/admin/users?email=garbage",
    ] {
        let response = app.get_with_token(path, &admin.access_token).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    let response = app
        .get_with_token("/admin/users", &admin.access_token)
        .await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn a_disabled_account_is_refused_with_the_right_password_and_loses_its_sessions() {
    let app = spawn_app().await;
    let user = app.new_login().await;
    let tablet = app.login_ok(&user.email, PASSWORD).await;
    app.state.accounts.disable(&user.email, None).await.unwrap();

    for login in [&user, &tablet] {
        let response = app.me(&login.access_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let response = app.refresh(&login.refresh_token).await;
        let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
        assert_eq!(body["reason"], "revoked");
    }
    let response = app.login(&user.email, PASSWORD).await;
    assert_error(response, StatusCode::FORBIDDEN, "account_disabled").await;
    // A wrong password learns nothing about the account's state.
    let response = app.login(&user.email, "not the password").await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;

    let admin = admin_login(&app).await;
    let path = format!("/admin/users?email={}", user.email);
    let body: serde_json::Value = app
        .get_with_token(&path, &admin.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["disabled"], true);
    assert_eq!(body["active_sessions"], 0);

    app.state.accounts.enable(&user.email).await.unwrap();
    app.login_ok(&user.email, PASSWORD).await;
}

#[tokio::test]
async fn a_login_racing_a_disable_opens_no_session() {
    let app = spawn_app().await;
    for _ in 0..6 {
        let email = app.new_user().await;
        let (login, disabled) = tokio::join!(
            app.login(&email, PASSWORD),
            app.state.accounts.disable(&email, None)
        );
        disabled.unwrap();
        match login.status() {
            StatusCode::OK => {
                let login = crate::helpers::login_from_body(&email, login.json().await.unwrap());
                let response = app.refresh(&login.refresh_token).await;
                let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
                assert_eq!(body["reason"], "revoked");
            }
            StatusCode::FORBIDDEN => {
                assert_error(login, StatusCode::FORBIDDEN, "account_disabled").await;
            }
            _ => {
                assert_error(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
            }
        }
    }
}
