//! Refresh rotation, the reuse grace, late duplicates, reuse detection, races
//! and lifetimes, and the `reason` of every refusal. Time passes by moving the
//! app's clock, never by sleeping.

use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::helpers::{assert_error, spawn_app, spawn_app_with};

/// Asserts a `401 invalid_grant` with this `reason`.
pub async fn assert_refused(response: Response, reason: &str) {
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    assert_eq!(body["reason"], reason, "reason in {body}");
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_issues_a_new_access_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app.refresh(&login.refresh_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 900);
    assert_eq!(body["session_id"], login.session_id.to_string());
    assert_ne!(body["refresh_token"], login.refresh_token.as_str());
    assert_ne!(body["access_token"], login.access_token.as_str());
    assert_eq!(app.generation(login.session_id).await, 1);

    let next = crate::helpers::login_from_body(&login.email, body);
    assert_eq!(app.me(&next.access_token).await.status(), StatusCode::OK);
    // The chain goes on.
    let third = app.refresh_ok(&next).await;
    assert_eq!(app.generation(login.session_id).await, 2);
    assert_eq!(third.session_id, login.session_id);
}

#[tokio::test]
async fn a_replay_of_the_parent_within_the_grace_returns_the_same_successor() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let first = app.refresh_ok(&login).await;
    let retry = app.refresh_ok(&login).await;
    assert_eq!(
        retry.refresh_token, first.refresh_token,
        "the same refresh token"
    );
    assert_eq!(app.generation(login.session_id).await, 1, "rotated once");
    assert_eq!(app.me(&retry.access_token).await.status(), StatusCode::OK);
    // The successor is still the current token and rotates normally.
    let next = app.refresh_ok(&first).await;
    assert_ne!(next.refresh_token, first.refresh_token);
    assert_eq!(app.generation(login.session_id).await, 2);
}

#[tokio::test]
async fn a_replay_after_the_grace_revokes_the_whole_session() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let successor = app.refresh_ok(&login).await;
    app.advance(121);

    let replay = app.refresh(&login.refresh_token).await;
    assert_refused(replay, "reuse_detected").await;
    // The successor fails too, and so do the session's access tokens.
    let response = app.refresh(&successor.refresh_token).await;
    assert_refused(response, "revoked").await;
    let response = app.me(&successor.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    let response = app.me(&login.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    assert!(
        app.session(login.session_id)
            .await
            .unwrap()
            .revoked_at
            .is_some()
    );
}

#[tokio::test]
async fn the_default_grace_is_two_minutes() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let first = app.refresh_ok(&login).await;
    // A phone that lost the answer in a tunnel and retries 119 s later gets
    // the very same successor.
    app.advance(119);
    let retry = app.refresh_ok(&login).await;
    assert_eq!(retry.refresh_token, first.refresh_token);
    assert_eq!(app.generation(login.session_id).await, 1);
}

#[tokio::test]
async fn a_late_duplicate_within_the_grace_is_superseded_and_revokes_nothing() {
    let app = spawn_app().await;
    let g0 = app.new_login().await;
    let g1 = app.refresh_ok(&g0).await;
    let g2 = app.refresh_ok(&g1).await;
    app.advance(60);

    // An older token than the parent: superseded.
    assert_refused(app.refresh(&g0.refresh_token).await, "superseded").await;
    // The parent, its successor never presented: the same successor again.
    assert_eq!(app.refresh_ok(&g1).await.refresh_token, g2.refresh_token);
    // Once the successor was presented, the parent is a late duplicate too.
    let g3 = app.refresh_ok(&g2).await;
    assert_refused(app.refresh(&g1.refresh_token).await, "superseded").await;
    // Nothing was revoked: the app's current tokens work.
    assert_eq!(app.me(&g3.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&g3).await;
    assert_eq!(app.generation(g0.session_id).await, 4);
}

#[tokio::test]
async fn an_older_token_past_the_grace_revokes_the_session() {
    let app = spawn_app().await;
    let g0 = app.new_login().await;
    let g1 = app.refresh_ok(&g0).await;
    let g2 = app.refresh_ok(&g1).await;
    app.advance(121);

    let replay = app.refresh(&g0.refresh_token).await;
    assert_refused(replay, "reuse_detected").await;
    let response = app.refresh(&g2.refresh_token).await;
    assert_refused(response, "revoked").await;
    let response = app.me(&g2.access_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
}

#[tokio::test]
async fn reuse_detection_leaves_the_users_other_sessions_alone_and_a_new_login_works() {
    let app = spawn_app().await;
    let stolen = app.new_login().await;
    let other = app.login_ok(&stolen.email, crate::helpers::PASSWORD).await;
    app.refresh_ok(&stolen).await;
    app.advance(121);
    assert_refused(app.refresh(&stolen.refresh_token).await, "reuse_detected").await;

    assert_eq!(app.me(&other.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&other).await;
    let again = app.login_ok(&stolen.email, crate::helpers::PASSWORD).await;
    assert_eq!(app.me(&again.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn malformed_and_forged_refresh_tokens_are_refused_and_revoke_nothing() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let token = login.refresh_token.clone();
    let mut tampered = token.clone().into_bytes();
    let last = tampered.len() - 1;
    tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    // A genuine-looking token for this very session, minted under another key.
    let other_keys = auth_api::auth::Keyring::new(
        &secrecy::SecretString::from("some-other-server-key-of-32-bytes-or-more".to_owned()),
        &[],
    );
    let forged = auth_api::auth::refresh::mint(&other_keys, login.session_id, 0);
    let forged_next = auth_api::auth::refresh::mint(&other_keys, login.session_id, 5);

    for bad in [
        "",
        "x",
        "not a token at all",
        tampered.as_str(),
        forged.as_str(),
        forged_next.as_str(),
        &token[..token.len() - 1],
        &format!("{token}A"),
        &"A".repeat(10_000),
    ] {
        let response = app.refresh(bad).await;
        assert_refused(response, "invalid").await;
    }
    // The real session is untouched: its token still rotates, its access token still works.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
    app.refresh_ok(&login).await;
}

#[tokio::test]
async fn racing_refreshes_with_one_token_all_succeed_with_one_successor() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let responses =
        futures::future::join_all((0..16).map(|_| app.refresh(&login.refresh_token))).await;
    let mut successors = std::collections::HashSet::new();
    for response in responses {
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        successors.len(),
        1,
        "every caller got the same refresh token"
    );
    assert_eq!(
        app.generation(login.session_id).await,
        1,
        "the session rotated exactly once"
    );
}

#[tokio::test]
async fn a_refresh_token_unused_for_the_idle_ttl_expires() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(login.body["refresh_expires_in"], 2_592_000);
    app.advance(2_592_000);
    let response = app.refresh(&login.refresh_token).await;
    assert_refused(response, "expired").await;
}

#[tokio::test]
async fn each_rotation_starts_a_new_idle_period() {
    let app = spawn_app().await;
    let mut current = app.new_login().await;
    // Four rotations, 10 days apart: 40 days in all, past one idle TTL.
    for _ in 0..4 {
        app.advance(10 * 86_400);
        current = app.refresh_ok(&current).await;
        assert_eq!(current.body["refresh_expires_in"], 2_592_000);
    }
}

#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime_whatever_the_rotations() {
    let app = spawn_app().await;
    let mut current = app.new_login().await;
    // Rotated every 29 days (within the idle TTL) for 87 days...
    for _ in 0..3 {
        app.advance(29 * 86_400);
        current = app.refresh_ok(&current).await;
    }
    // ...refresh_expires_in never promises more than the session has left...
    let left = current.body["refresh_expires_in"].as_u64().unwrap();
    assert!((3 * 86_400 - 10..=3 * 86_400).contains(&left), "{left}");
    // ...and at 90 days the session ends.
    app.advance(3 * 86_400);
    let response = app.refresh(&current.refresh_token).await;
    assert_refused(response, "expired").await;
}

#[tokio::test]
async fn a_refresh_token_of_an_ended_session_is_refused_as_revoked() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let response = app.refresh(&login.refresh_token).await;
    assert_refused(response, "revoked").await;
}

#[tokio::test]
async fn a_refresh_token_of_a_deleted_session_is_invalid() {
    let app = spawn_app_with(&[("SESSION_RETENTION", "0")]).await;
    let login = app.new_login().await;
    app.logout(&login.refresh_token).await;
    app.advance(1);
    app.state.sessions.delete_ended(100).await.unwrap();
    assert!(app.session(login.session_id).await.is_none());
    let response = app.refresh(&login.refresh_token).await;
    assert_refused(response, "invalid").await;
}

#[tokio::test]
async fn the_database_never_holds_a_usable_refresh_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let next = app.refresh_ok(&login).await;
    // Every column of the session row, as text: none is (or contains) a token.
    let session = app.session(login.session_id).await.unwrap();
    let row = format!("{session:?}");
    for token in [&login.refresh_token, &next.refresh_token] {
        assert!(!row.contains(token.as_str()));
        assert!(!row.contains(&token[..20]));
    }
    // What the row does hold (id and generation) mints nothing without the server key.
    let keys_of_a_thief = auth_api::auth::Keyring::new(
        &secrecy::SecretString::from("a-thief-guessing-the-key-0123456789".to_owned()),
        &[],
    );
    let guess = auth_api::auth::refresh::mint(&keys_of_a_thief, session.id, session.generation);
    assert_eq!(app.refresh(&guess).await.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(app.generation(login.session_id).await, 1);
}

#[tokio::test]
async fn refresh_tokens_issued_under_a_previous_key_still_refresh() {
    let old = "the-previous-server-secret-0123456789";
    let before = spawn_app_with(&[("JWT_SECRET", old)]).await;
    let login = before.new_login().await;
    // The same database, restarted with a new key and the old one as previous.
    let after = spawn_app_with(&[
        ("DATABASE_URL", before.config_database_url().as_str()),
        ("JWT_SECRET", "the-new-server-secret-0123456789-abcdef"),
        ("JWT_PREVIOUS_SECRETS", old),
    ])
    .await;
    let next = after.refresh_ok(&login).await;
    assert_eq!(after.me(&next.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        crate::helpers::decode_header(&next.access_token)["kid"],
        auth_api::auth::keys::key_id(b"the-new-server-secret-0123456789-abcdef")
    );
    // The old access token verifies on the new server too.
    assert_eq!(after.me(&login.access_token).await.status(), StatusCode::OK);
}
