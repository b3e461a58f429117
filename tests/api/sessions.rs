//! The caller's sessions: listing and signing one out.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{PASSWORD, assert_error, spawn_app};

async fn list(app: &crate::helpers::TestApp, token: &str) -> Vec<Value> {
    let response = app.sessions(token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    body["sessions"].as_array().unwrap().clone()
}

#[tokio::test]
async fn sessions_lists_the_active_sessions_newest_first_with_current_marked() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    let phone = app.login_from(&email, PASSWORD, "Phone").await;
    let phone = crate::helpers::login_from_body(&email, phone.json().await.unwrap());
    let tablet = app.login_from(&email, PASSWORD, "Tablet").await;
    let tablet = crate::helpers::login_from_body(&email, tablet.json().await.unwrap());

    let sessions = list(&app, &phone.access_token).await;
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["device_name"], "Tablet");
    assert_eq!(sessions[1]["device_name"], "Phone");
    assert_eq!(sessions[0]["id"], tablet.session_id.to_string());
    assert_eq!(sessions[0]["current"], false);
    assert_eq!(sessions[1]["current"], true);
    for s in &sessions {
        for field in [
            "id",
            "device_name",
            "user_agent",
            "created_at",
            "last_used_at",
            "expires_at",
            "current",
        ] {
            assert!(s.get(field).is_some(), "{field} in {s}");
        }
        assert!(
            s["user_agent"].is_string(),
            "the client's User-Agent is recorded"
        );
    }
}

#[tokio::test]
async fn last_used_at_moves_on_refresh() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let before = list(&app, &login.access_token).await[0]["last_used_at"].clone();
    app.advance(60);
    let next = app.refresh_ok(&login).await;
    let after = list(&app, &next.access_token).await[0]["last_used_at"].clone();
    let parse = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    assert!(parse(&after) > parse(&before));
}

#[tokio::test]
async fn revoked_sessions_are_not_listed() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;
    app.logout(&tablet.refresh_token).await;
    let sessions = list(&app, &phone.access_token).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], phone.session_id.to_string());
}

#[tokio::test]
async fn expired_sessions_are_not_listed() {
    let app = spawn_app().await;
    let old = app.new_login().await;
    app.advance(2_592_000);
    let fresh = app.login_ok(&old.email, PASSWORD).await;
    let sessions = list(&app, &fresh.access_token).await;
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0]["id"], fresh.session_id.to_string());
}

#[tokio::test]
async fn deleting_a_session_signs_that_device_out() {
    let app = spawn_app().await;
    let phone = app.new_login().await;
    let tablet = app.login_ok(&phone.email, PASSWORD).await;

    let response = app
        .delete_session(&phone.access_token, &tablet.session_id.to_string())
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let response = app.me(&tablet.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let response = app.refresh(&tablet.refresh_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    // The caller's own session is untouched.
    assert_eq!(app.me(&phone.access_token).await.status(), StatusCode::OK);
    assert_eq!(list(&app, &phone.access_token).await.len(), 1);
}

#[tokio::test]
async fn deleting_someone_elses_unknown_or_revoked_session_is_a_404() {
    let app = spawn_app().await;
    let alice = app.new_login().await;
    let bob = app.new_login().await;
    let alice_other = app.login_ok(&alice.email, PASSWORD).await;
    app.logout(&alice_other.refresh_token).await;

    for id in [
        bob.session_id.to_string(),
        uuid::Uuid::new_v4().to_string(),
        alice_other.session_id.to_string(),
    ] {
        let response = app.delete_session(&alice.access_token, &id).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
    // Bob cannot see Alice's sessions, and his session survived her attempt.
    let bobs = list(&app, &bob.access_token).await;
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["id"], bob.session_id.to_string());
    assert_eq!(app.me(&bob.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_session_id_is_a_404_not_a_500() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    for id in ["not-a-uuid", "1", "%00", "' OR 1=1 --"] {
        let response = app.delete_session(&login.access_token, id).await;
        assert_error(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_login_beyond_the_session_cap_revokes_the_least_recently_used_session() {
    let app = crate::helpers::spawn_app_with(&[("MAX_SESSIONS_PER_USER", "3")]).await;
    let oldest = app.new_login().await;
    let second = app.login_ok(&oldest.email, PASSWORD).await;
    let third = app.login_ok(&oldest.email, PASSWORD).await;
    // The oldest login is used most recently; the second is now the least.
    app.advance(60);
    let oldest = app.refresh_ok(&oldest).await;
    app.advance(60);
    let third = app.refresh_ok(&third).await;
    app.advance(60);

    let fourth = app.login_ok(&oldest.email, PASSWORD).await;
    let sessions = list(&app, &fourth.access_token).await;
    let mut listed: Vec<&str> = sessions.iter().map(|s| s["id"].as_str().unwrap()).collect();
    listed.sort_unstable();
    let mut expected = [
        oldest.session_id.to_string(),
        third.session_id.to_string(),
        fourth.session_id.to_string(),
    ];
    expected.sort_unstable();
    assert_eq!(listed, expected);
    // The evicted session is dead at once, access and refresh token alike.
    let response = app.me(&second.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let response = app.refresh(&second.refresh_token).await;
    crate::refresh::assert_refused(response, "revoked").await;
    for live in [&oldest, &third, &fourth] {
        assert_eq!(app.me(&live.access_token).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn concurrent_logins_beyond_the_cap_all_succeed_and_leave_the_cap() {
    // Each login beyond the cap evicts the least recently used sessions; many
    // at once evict overlapping sets, which must neither fail a login (a
    // deadlock between two evictions would be a 500) nor leave more than the cap.
    let app = crate::helpers::spawn_app_with(&[("MAX_SESSIONS_PER_USER", "2")]).await;
    let email = app.new_user().await;
    let statuses: Vec<StatusCode> =
        futures::future::join_all((0..60).map(|_| app.login(&email, PASSWORD)))
            .await
            .into_iter()
            .map(|r| r.status())
            .collect();
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let login = app.login_ok(&email, PASSWORD).await;
    let sessions: Value = app
        .sessions(&login.access_token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        sessions["sessions"].as_array().unwrap().len(),
        2,
        "{sessions}"
    );
}
