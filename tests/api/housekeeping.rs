//! Ended sessions are deleted after the retention period; active ones never.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, spawn_app, spawn_app_with, wrong_code};

#[tokio::test]
async fn cleanup_deletes_ended_sessions_only_and_in_bounded_batches() {
    let app = spawn_app_with(&[("SESSION_CLEANUP_INTERVAL", "3600")]).await;
    let expired = app.new_login().await;
    app.advance(2_592_000);
    let active = app.login_ok(&expired.email, PASSWORD).await;
    let revoked = app.login_ok(&expired.email, PASSWORD).await;
    app.logout(&revoked.refresh_token).await;
    let store = &app.state.store;
    let now = auth_api::clock::Clock::now(&*app.clock) + chrono::Duration::milliseconds(10);

    // Nothing ended before an hour ago: nothing goes.
    assert_eq!(
        store
            .delete_ended_sessions(now - chrono::Duration::hours(1), 1000)
            .await
            .unwrap(),
        0
    );
    // One at a time: the batch bound holds.
    assert_eq!(store.delete_ended_sessions(now, 1).await.unwrap(), 1);
    assert_eq!(store.delete_ended_sessions(now, 1000).await.unwrap(), 1);
    assert_eq!(store.delete_ended_sessions(now, 1000).await.unwrap(), 0);

    assert!(
        store
            .find_session(expired.session_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_session(revoked.session_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_session(active.session_id)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(app.me(&active.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn the_background_task_removes_ended_sessions_by_itself() {
    let app = spawn_app_with(&[
        ("SESSION_RETENTION", "0"),
        ("SESSION_CLEANUP_INTERVAL", "1"),
    ])
    .await;
    let active = app.new_login().await;
    let revoked = app.login_ok(&active.email, PASSWORD).await;
    app.logout(&revoked.refresh_token).await;

    let mut gone = false;
    for _ in 0..50 {
        if app.session(revoked.session_id).await.is_none() {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "the revoked session was deleted");
    assert!(app.session(active.session_id).await.is_some());
    // The revoked session's access token stays refused after its row is gone.
    assert_eq!(
        app.me(&revoked.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    app.refresh_ok(&active).await;
}

#[tokio::test]
async fn old_grants_with_wrong_codes_stay_as_long_as_the_code_budget_counts_them() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let mail = app.last_mail(&login.email).await;
    let body = serde_json::json!({"email": login.email, "code": wrong_code(&mail.code)});
    let response = app.post_json("/email/verify", &body).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    // Past the hourly mail cap, a grant with no wrong code would go: this one stays.
    app.advance(2 * 3600);
    app.state.accounts.delete_old_grants(100).await.unwrap();
    assert_eq!(app.code_attempts(login.user_id, "verify").await, 1);
    // Once the budget's window no longer counts it, it goes too.
    app.advance(24 * 3600);
    assert!(app.state.accounts.delete_old_grants(100).await.unwrap() >= 1);
}
