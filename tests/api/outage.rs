//! A database outage: 503 (never 500) while PostgreSQL is unreachable, the
//! Bearer check unaffected, nothing half-written, and recovery with no restart.
//! Needs `TEST_DATABASE_URL`; the database is reached through a TCP proxy the
//! test cuts and restores.

use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, assert_error, spawn_app_with};
use crate::support::{TcpProxy, eventually, fresh_postgres_database, require_postgres, socket_of};

#[tokio::test]
async fn the_service_answers_503_during_a_database_outage_and_recovers_by_itself() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let proxy = TcpProxy::start(socket_of(&database_url)).await;
    let via_proxy = proxy.url_for(&database_url);
    let app = spawn_app_with(&[
        ("DATABASE_URL", via_proxy.as_str()),
        ("DATABASE_ACQUIRE_TIMEOUT", "1"),
    ])
    .await;
    let login = app.new_login().await;

    proxy.down();
    let readyz = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert!(readyz.headers().contains_key("retry-after"));
    assert_error(readyz, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = app.login(&login.email, PASSWORD).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = app.refresh(&login.refresh_token).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    let r = app.register("someone@example.com", PASSWORD).await;
    assert_error(r, StatusCode::SERVICE_UNAVAILABLE, "unavailable").await;
    // The Bearer check needs no database.
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);

    proxy.up();
    let ready = eventually(Duration::from_secs(15), || async {
        let r = app.client.get(app.url("/readyz")).send().await.unwrap();
        r.status() == StatusCode::OK
    })
    .await;
    assert!(ready.is_some(), "ready again without a restart");
    // Nothing was half-written: the refresh token that met the outage was not
    // spent, and the session rotates from where it was.
    let next = app.refresh_ok(&login).await;
    assert_eq!(app.generation(login.session_id).await, 1);
    assert_eq!(app.me(&next.access_token).await.status(), StatusCode::OK);
    app.login_ok(&login.email, PASSWORD).await;
    assert_eq!(
        app.register("someone@example.com", PASSWORD).await.status(),
        StatusCode::CREATED
    );
}
