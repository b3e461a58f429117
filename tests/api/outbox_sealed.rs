//! The outbox at rest (API.md, "Mail"; DESIGN.md): a database copy holds no
//! live token or code. Bodies are sealed while pending, blanked once sent or
//! given up; the sender opens them with the current or a previous key, and
//! gives up, without panicking, on one it cannot open.

use std::time::Duration;

use auth_api::auth::Keyring;
use auth_api::auth::mail_seal;
use auth_api::store::{NewMail, QueuedMail};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::json;

use crate::helpers::{JWT_SECRET, TestApp, eml_text, spawn_app, spawn_app_with, unique_email};
use crate::support::eventually;

/// An SMTP port nobody listens on: every attempt fails and is retried, so
/// the mail stays pending (sealed) for the test to look at.
const NOWHERE: &str = "smtp://127.0.0.1:1";
const NEW_PASSWORD: &str = "a brand new passphrase";
const OLD_SECRET: &str = "an-old-secret-rotated-out-0123456789-abcdefgh";

/// Runs `$body` with `$conn` bound to a connection of either backend.
macro_rules! on_conn {
    ($url:expr, $conn:ident => $body:expr) => {{
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        let url: &str = $url;
        if url.starts_with("postgres") {
            let mut $conn = sqlx::postgres::PgConnectOptions::from_str(url)
                .unwrap()
                .connect()
                .await
                .unwrap();
            $body
        } else {
            let mut $conn = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .unwrap()
                .create_if_missing(true)
                .connect()
                .await
                .unwrap();
            $body
        }
    }};
}

/// Runs `query` with text `binds` on the app's database, straight through
/// sqlx (not the store): what someone with a copy of the database reads.
async fn raw_sql(app: &TestApp, query: &str, binds: &[&str]) -> Vec<String> {
    on_conn!(&app.config_database_url(), conn => {
        let mut q = sqlx::query_scalar::<_, String>(query);
        for b in binds {
            q = q.bind(*b);
        }
        q.fetch_all(&mut conn).await.unwrap()
    })
}

/// The raw `body` column of every mail to `to`, oldest first.
async fn raw_bodies(app: &TestApp, to: &str) -> Vec<String> {
    raw_sql(
        app,
        "SELECT body FROM mail_outbox WHERE recipient = $1 ORDER BY created_at, id",
        &[to],
    )
    .await
}

async fn rows(app: &TestApp, to: &str) -> Vec<QueuedMail> {
    app.state.store.outbox_for(to).await.unwrap()
}

async fn wait_rows(app: &TestApp, to: &str, check: impl Fn(&[QueuedMail]) -> bool) {
    let done = eventually(Duration::from_secs(30), || {
        let store = app.state.store.clone();
        let check = &check;
        async move { check(&store.outbox_for(to).await.unwrap()) }
    })
    .await;
    assert!(done.is_some(), "outbox: {:#?}", rows(app, to).await);
}

fn keys(secret: &str) -> Keyring {
    Keyring::new(&SecretString::from(secret), &[])
}

#[tokio::test]
async fn a_pending_reset_mail_holds_neither_its_token_nor_its_code() {
    let app = spawn_app_with(&[("MAIL_URL", NOWHERE)]).await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    // What the user would receive (opened with the app's keys).
    let mail = app.last_mail(&email).await;
    assert!(mail.subject.contains("reset"), "{}", mail.subject);
    assert_eq!(mail.code.len(), 6);
    assert!(mail.token.len() > 20);

    let bodies = raw_bodies(&app, &email).await;
    assert_eq!(bodies.len(), 2, "verification, then reset");
    for body in &bodies {
        assert!(body.starts_with("v1."), "{body}");
        assert!(!body.contains("token="), "{body}");
        assert!(!body.contains("code"), "{body}");
        assert!(!body.contains(&mail.token), "{body}");
        assert!(!body.contains(&mail.code), "{body}");
    }
    // Bound to its recipient: moved to another address, it no longer opens.
    let keys = keys(JWT_SECRET);
    let reset = &bodies[1];
    assert!(mail_seal::open(&keys, &email, reset).is_ok());
    assert!(mail_seal::open(&keys, "attacker@example.com", reset).is_err());
}

#[tokio::test]
async fn a_sent_mail_is_blanked_and_its_token_arrives_in_the_eml() {
    let app = spawn_app().await;
    let email = app.new_user().await;
    app.forgot_ok(&email).await;
    wait_rows(&app, &email, |m| {
        m.len() == 2 && m.iter().all(|m| m.sent_at.is_some())
    })
    .await;
    assert_eq!(raw_bodies(&app, &email).await, ["", ""]);

    // The delivered file carries the link and code; they work.
    let reset = &rows(&app, &email).await[1];
    let eml = std::fs::read(app.mail_dir.path().join(format!("{}.eml", reset.id))).unwrap();
    let text = eml_text(&eml);
    let mail = crate::helpers::parse_mail(&reset.subject, &text);
    assert!(text.contains("?purpose=reset&token="), "{text}");
    assert_eq!(mail.code.len(), 6, "{text}");
    let response = app
        .post_json(
            "/password/reset",
            &json!({"token": mail.token, "new_password": NEW_PASSWORD}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn a_mail_sealed_before_a_secret_rotation_is_delivered_after_it() {
    // The instance now signs with a new secret and keeps the old one as a
    // previous secret; the mail was sealed by the old one.
    let app = spawn_app_with(&[
        ("JWT_SECRET", "the-new-secret-after-rotation-0123456789-xyz"),
        ("JWT_PREVIOUS_SECRETS", OLD_SECRET),
    ])
    .await;
    let to = unique_email();
    let mail = NewMail {
        to: to.clone(),
        subject: "Sealed before".into(),
        body: mail_seal::seal(&keys(OLD_SECRET), &to, "your code is 246810\n"),
    };
    app.state
        .store
        .enqueue_mail(&mail, app.clock_now())
        .await
        .unwrap();
    wait_rows(&app, &to, |m| {
        m[0].sent_at.is_some() || m[0].failed_at.is_some()
    })
    .await;
    let row = &rows(&app, &to).await[0];
    assert!(row.sent_at.is_some(), "{row:?}");
    assert_eq!(row.body, "");
    let eml = std::fs::read(app.mail_dir.path().join(format!("{}.eml", row.id))).unwrap();
    assert!(eml_text(&eml).contains("your code is 246810"));
}

#[tokio::test]
async fn a_body_that_cannot_be_opened_is_given_up_not_panicked_on() {
    let app = spawn_app().await;
    let later = app.clock_now() + chrono::Duration::days(1);
    // Sealed under a key this instance does not have (rotated out).
    let stranger = unique_email();
    let queued = NewMail {
        to: stranger.clone(),
        subject: "Unknown key".into(),
        body: mail_seal::seal(&keys(OLD_SECRET), &stranger, "code 111111"),
    };
    app.state.store.enqueue_mail(&queued, later).await.unwrap();
    // Sealed rightly, then altered at rest: one byte flipped, and a body
    // replaced by clear text (as a row from before sealing would be).
    let (flipped, clear) = (unique_email(), unique_email());
    for to in [&flipped, &clear] {
        let queued = NewMail {
            to: to.clone(),
            subject: "Altered".into(),
            body: mail_seal::seal(&keys(JWT_SECRET), to, "code 222222"),
        };
        app.state.store.enqueue_mail(&queued, later).await.unwrap();
    }
    let mut body = raw_bodies(&app, &flipped).await.remove(0).into_bytes();
    let middle = body.len() / 2;
    body[middle] = if body[middle] == b'A' { b'B' } else { b'A' };
    let body = String::from_utf8(body).unwrap();
    let update = "UPDATE mail_outbox SET body = $1 WHERE recipient = $2 RETURNING body";
    raw_sql(&app, update, &[&body, &flipped]).await;
    raw_sql(&app, update, &["token=abc code 222222", &clear]).await;

    app.advance(2 * 86_400);
    app.state.store.wake_mail_sender();
    for (to, class) in [
        (&stranger, "opens under no accepted key"),
        (&flipped, "opens under no accepted key"),
        (&clear, "malformed"),
    ] {
        wait_rows(&app, to, |m| m[0].failed_at.is_some()).await;
        let row = &rows(&app, to).await[0];
        assert_eq!(row.attempts, 1, "given up at once: {row:?}");
        assert_eq!(row.body, "", "{row:?}");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(error.starts_with("unreadable: "), "{error}");
        assert!(error.contains(class), "{error}");
        assert!(!error.contains("code"), "{error}");
        assert!(!app.mail_dir.path().join(format!("{}.eml", row.id)).exists());
    }

    // The sender lives on: the next good mail goes out.
    let good = unique_email();
    let queued = NewMail {
        to: good.clone(),
        subject: "Fine".into(),
        body: mail_seal::seal(app.state.tokens.keys(), &good, "all well"),
    };
    app.state
        .store
        .enqueue_mail(&queued, app.clock_now())
        .await
        .unwrap();
    wait_rows(&app, &good, |m| m[0].sent_at.is_some()).await;
}

#[tokio::test]
async fn upgrading_leaves_no_body_written_in_clear() {
    let (url, _dir) = crate::helpers::fresh_database().await;
    let folder = if url.starts_with("postgres") {
        "postgres"
    } else {
        "sqlite"
    };
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(folder);
    // The schema as the previous version left it, with its clear bodies.
    let mut before = sqlx::migrate::Migrator::new(path).await.unwrap();
    before.migrations = std::borrow::Cow::Owned(
        before
            .migrations
            .iter()
            .filter(|m| m.version < 9)
            .cloned()
            .collect(),
    );
    let to = unique_email();
    let now = chrono::Utc::now();
    let sealed = mail_seal::seal(&keys(JWT_SECRET), &to, "code 333333");
    let rows = [
        ("sent", "code 111111", Some(now)),
        ("pending in clear", "code 222222", None),
        ("pending sealed", sealed.as_str(), None),
    ];
    on_conn!(&url, conn => {
        before.run(&mut conn).await.unwrap();
        for (i, (subject, body, sent_at)) in rows.iter().enumerate() {
            sqlx::query(
                "INSERT INTO mail_outbox (id, recipient, subject, body, created_at, attempts, \
                 next_attempt_at, sent_at) VALUES ($1, $2, $3, $4, $5, 0, $5, $6)",
            )
            .bind(uuid::Uuid::new_v4())
            .bind(&to)
            .bind(*subject)
            .bind(*body)
            .bind(now + chrono::Duration::seconds(i as i64))
            .bind(*sent_at)
            .execute(&mut conn)
            .await
            .unwrap();
        }
    });

    let store = auth_api::store::Store::connect(
        &SecretString::from(url.clone()),
        &auth_api::store::PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let after = store.outbox_for(&to).await.unwrap();
    assert_eq!(after.len(), 3);
    assert_eq!(after[0].body, "", "a sent body is blanked");
    assert_eq!(after[1].body, "", "a pending clear body is dropped");
    assert!(after[1].failed_at.is_some());
    assert!(
        after[1]
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("unreadable: ")),
        "{:?}",
        after[1].last_error
    );
    assert_eq!(after[2].body, sealed.as_str(), "a sealed body stays");
    assert!(after[2].failed_at.is_none());
    store.close().await;
}
