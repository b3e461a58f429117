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

/// API.md, "No session outlives the credential it was opened with": logins
/// with the old password keep arriving, a few in flight at a time, before,
/// during and after a password change. Whatever each answered, none may hold
/// a working session once the change has answered.
#[tokio::test]
async fn no_login_that_raced_a_password_change_keeps_a_session() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    let app = crate::helpers::spawn_app_with(&[("MAX_SESSIONS_PER_USER", "1000")]).await;
    let owner = app.new_login().await;
    let email = owner.email.clone();

    let changed = Arc::new(AtomicBool::new(false));
    let racers = {
        let (client, url, email, changed) = (
            app.client.clone(),
            app.url("/login"),
            email.clone(),
            changed.clone(),
        );
        tokio::spawn(async move {
            // As many in flight as the hasher has threads, so each login's
            // window between reading the user and opening its session stays
            // short and some of them straddle the change.
            let in_flight = Arc::new(tokio::sync::Semaphore::new(2));
            let mut logins = Vec::new();
            let mut after_change = 0;
            while after_change < 20 {
                if changed.load(Ordering::Relaxed) {
                    after_change += 1;
                }
                let permit = in_flight.clone().acquire_owned().await.unwrap();
                let (client, url, email) = (client.clone(), url.clone(), email.clone());
                logins.push(tokio::spawn(async move {
                    let response = client
                        .post(url)
                        .json(&serde_json::json!({"email": email, "password": PASSWORD}))
                        .send()
                        .await
                        .unwrap();
                    drop(permit);
                    let status = response.status();
                    (status, response.json::<serde_json::Value>().await.unwrap())
                }));
            }
            futures::future::join_all(logins).await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = app
        .change_password(&owner.access_token, PASSWORD, NEW_PASSWORD)
        .await;
    changed.store(true, Ordering::Relaxed);
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let results = racers.await.unwrap();

    let mut signed_in = Vec::new();
    let mut refused = 0;
    for result in results {
        let (status, body) = result.unwrap();
        match status {
            StatusCode::OK => signed_in.push(crate::helpers::login_from_body(&email, body)),
            StatusCode::UNAUTHORIZED => {
                assert_eq!(body["error"], "invalid_credentials");
                refused += 1;
            }
            other => panic!("a racing login answered {other}: {body}"),
        }
    }
    let mut survivors = 0;
    for login in &signed_in {
        let me = app.me(&login.access_token).await.status();
        let refresh = app.refresh(&login.refresh_token).await.status();
        if me == StatusCode::OK || refresh == StatusCode::OK {
            survivors += 1;
        }
    }
    eprintln!(
        "{} logins raced a password change: {} answered 200, {refused} 401, {survivors} kept a session",
        signed_in.len() + refused,
        signed_in.len()
    );
    assert!(refused > 0, "some logins came after the change");
    assert_eq!(
        survivors, 0,
        "sessions opened under the old password survived"
    );
    // The owner's own session, which made the change, goes on.
    assert_eq!(app.me(&owner.access_token).await.status(), StatusCode::OK);
    app.login_ok(&email, NEW_PASSWORD).await;
}

/// Two changes checked against the same old password (the owner's, and an
/// attacker's who knows it) cannot both win: the second finds the credential
/// changed and writes nothing.
#[tokio::test]
async fn of_two_racing_password_changes_exactly_one_wins() {
    let app = spawn_app().await;
    let owner = app.new_login().await;
    let attacker = app.login_ok(&owner.email, PASSWORD).await;
    let (a, b) = tokio::join!(
        app.change_password(&owner.access_token, PASSWORD, "the owner's new passphrase"),
        app.change_password(
            &attacker.access_token,
            PASSWORD,
            "the attacker's passphrase"
        ),
    );
    let statuses = [a.status(), b.status()];
    let wins: Vec<bool> = statuses
        .iter()
        .map(|s| *s == StatusCode::NO_CONTENT)
        .collect();
    assert_eq!(
        wins.iter().filter(|w| **w).count(),
        1,
        "exactly one change wins: {statuses:?}"
    );
    let loser = if wins[0] { b } else { a };
    assert_error(loser, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    // Only the winner's password signs in, and only the winner's session lives.
    let (winner_password, other_password, winner, other) = if wins[0] {
        (
            "the owner's new passphrase",
            "the attacker's passphrase",
            &owner,
            &attacker,
        )
    } else {
        (
            "the attacker's passphrase",
            "the owner's new passphrase",
            &attacker,
            &owner,
        )
    };
    app.login_ok(&owner.email, winner_password).await;
    assert_eq!(
        app.login(&owner.email, other_password).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(app.me(&winner.access_token).await.status(), StatusCode::OK);
    assert_eq!(
        app.me(&other.access_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}
