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
