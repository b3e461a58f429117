//! Logout and logout-all, and revocation reaching access tokens at once.

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, assert_error, spawn_app};

#[tokio::test]
async fn logout_revokes_the_session_its_refresh_and_its_access_tokens() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app.logout(&login.refresh_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    let response = app.refresh(&login.refresh_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    let response = app.me(&login.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn logout_with_a_spent_token_of_the_session_revokes_it_too() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let next = app.refresh_ok(&login).await;
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.refresh(&next.refresh_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.me(&next.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_is_idempotent_and_answers_204_for_unknown_tokens() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.logout("no-such-token").await.status(),
        StatusCode::NO_CONTENT
    );
}

#[tokio::test]
async fn logout_without_a_refresh_token_is_a_400() {
    let app = spawn_app().await;
    let response = app.post_json("/logout", &serde_json::json!({})).await;
    assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
}

#[tokio::test]
async fn logout_leaves_the_users_other_sessions_working() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;
    app.logout(&phone.refresh_token).await;
    assert_eq!(app.me(&tablet.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&tablet).await;
}

#[tokio::test]
async fn logout_all_revokes_every_session_of_the_user_and_only_theirs() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;
    let stranger = app.new_login().await;

    let response = app.logout_all(&tablet.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);

    for login in [&phone, &tablet] {
        let response = app.me(&login.access_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
        let response = app.refresh(&login.refresh_token).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    }
    assert_eq!(
        app.me(&stranger.access_token).await.status(),
        StatusCode::OK
    );
    app.refresh_ok(&stranger).await;

    // Signing in again afterwards works.
    let again = app.login_ok(&phone.email, PASSWORD).await;
    assert_eq!(app.me(&again.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn revocations_survive_a_restart_of_the_server() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    app.logout(&login.refresh_token).await;
    // A second server on the same database (as after a restart) loads recent
    // revocations at start, so the still-unexpired access token stays dead.
    let restarted =
        crate::helpers::spawn_app_with(&[("DATABASE_URL", app.config_database_url().as_str())])
            .await;
    let response = restarted.me(&login.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn logout_with_an_access_token_is_a_400_that_says_to_send_the_refresh_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app.logout(&login.access_token).await;
    let body = assert_error(response, StatusCode::BAD_REQUEST, "invalid_request").await;
    assert!(
        body["message"].as_str().unwrap().contains("refresh token"),
        "{body}"
    );
    assert!(!body.to_string().contains(&login.access_token));
    // Nothing was signed out; the right token does it.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.me(&login.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn logout_with_a_spent_then_the_current_token_counts_one_revocation() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let next = app.refresh_ok(&login).await;
    // The spent token signs the session out; the current one then finds it ended.
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        app.logout(&next.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let text = crate::metrics::scrape(&app).await;
    assert!(
        text.contains(r#"auth_sessions_revoked_total{reason="logout"} 1"#),
        "{text}"
    );
    assert_eq!(
        app.me(&next.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
