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
