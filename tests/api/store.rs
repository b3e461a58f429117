//! The store's own promises, on whichever database the suite runs against:
//! which constraint means what, and the conditional session start.

use auth_api::store::{NewSession, StoreError};
use chrono::Utc;
use uuid::Uuid;

use crate::helpers::{PASSWORD, spawn_app};

fn new_session(user: &auth_api::store::User, id: Uuid) -> NewSession {
    let now = Utc::now();
    NewSession {
        id,
        user_id: user.id,
        credential_version: user.credential_version,
        device_name: None,
        user_agent: None,
        now,
        idle_expires_at: now + chrono::Duration::days(30),
        expires_at: now + chrono::Duration::days(90),
    }
}

#[tokio::test]
async fn only_the_users_email_index_means_email_taken() {
    let app = spawn_app().await;
    let store = &app.state.store;
    let email = app.new_user().await;
    let user = store.find_user_by_email(&email).await.unwrap().unwrap();

    let again = store.create_user(&email, "$argon2id$x", Utc::now()).await;
    assert!(matches!(again, Err(StoreError::EmailTaken)), "{again:?}");

    // Another unique violation (a session id used twice) is not a taken email.
    let id = Uuid::new_v4();
    assert!(store.create_session(&new_session(&user, id)).await.unwrap());
    let duplicate = store.create_session(&new_session(&user, id)).await;
    assert!(
        matches!(duplicate, Err(StoreError::Other(_))),
        "{duplicate:?}"
    );
}

#[tokio::test]
async fn a_session_starts_only_under_the_current_credential_version() {
    let app = spawn_app().await;
    let store = &app.state.store;
    let login = app.new_login().await;
    let seen = store
        .find_user_by_email(&login.email)
        .await
        .unwrap()
        .unwrap();

    app.change_password(&login.access_token, PASSWORD, "another long passphrase")
        .await;
    let now_user = store.find_user(seen.id).await.unwrap().unwrap();
    assert_eq!(now_user.credential_version, seen.credential_version + 1);

    let stale = new_session(&seen, Uuid::new_v4());
    assert!(!store.create_session(&stale).await.unwrap());
    assert!(store.find_session(stale.id).await.unwrap().is_none());
    let current = new_session(&now_user, Uuid::new_v4());
    assert!(store.create_session(&current).await.unwrap());
}

#[tokio::test]
async fn stored_emails_are_normalised_once_and_collisions_are_reported_not_fatal() {
    use auth_api::auth::credentials::normalize_email;
    let app = spawn_app().await;
    let store = &app.state.store;
    // The start already ran the upgrade on the empty database: it is recorded.
    assert!(auth_api::upgrade::run(store).await.unwrap().is_none());

    // Accounts as version 1 stored them: trimmed and lower-cased only.
    let now = Utc::now();
    let tag = Uuid::new_v4().simple().to_string();
    let decomposed = format!("cafe\u{301}-{tag}@example.com");
    let precomposed = format!("caf\u{e9}-{tag}@example.com");
    let fullwidth = format!("\u{ff41}lice-{tag}@example.com");
    let hidden = format!("bob\u{200b}-{tag}@example.com");
    let first = store
        .create_user(&decomposed, "$argon2id$x", now)
        .await
        .unwrap();
    let second = store
        .create_user(&precomposed, "$argon2id$x", now)
        .await
        .unwrap();
    let wide = store
        .create_user(&fullwidth, "$argon2id$x", now)
        .await
        .unwrap();
    let invisible = store
        .create_user(&hidden, "$argon2id$x", now)
        .await
        .unwrap();

    let report = store.normalize_emails(normalize_email).await.unwrap();
    assert_eq!(report.rewritten, 1, "{report:?}");
    assert_eq!(report.collisions, vec![(first.id, second.id)]);
    assert_eq!(report.invalid, vec![invisible.id]);
    let found = store
        .find_user_by_email(&format!("alice-{tag}@example.com"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, wide.id);
    // Nothing was lost: the colliding and the invalid accounts are as they were.
    assert_eq!(
        store.find_user(first.id).await.unwrap().unwrap().email,
        decomposed
    );
    assert_eq!(
        store.find_user(invisible.id).await.unwrap().unwrap().email,
        hidden
    );
    // Running it again changes nothing more.
    let again = store.normalize_emails(normalize_email).await.unwrap();
    assert_eq!(again.rewritten, 0);
}
