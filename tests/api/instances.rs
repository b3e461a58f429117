//! Several instances on one PostgreSQL database: two (or three) real server
//! processes of the binary. These tests need `TEST_DATABASE_URL` (`.ci/run`
//! sets it); on a SQLite-only run they say so and return.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Login, PASSWORD, login_from_body, unique_email};
use crate::support::{
    ServerProcess, TcpProxy, eventually, fresh_postgres_database, require_postgres, socket_of,
};

const SECRET: &str = "shared-secret-of-every-instance-0123456789";

/// Within this long of the revoking response, every instance refuses the token (API.md).
const REVOCATION_REACH: Duration = Duration::from_secs(2);

struct Cluster {
    a: ServerProcess,
    b: ServerProcess,
    client: reqwest::Client,
    database_url: String,
}

async fn cluster(extra: &[(&str, &str)]) -> Option<Cluster> {
    let base = crate::support::postgres_base()?;
    let database_url = fresh_postgres_database(&base).await;
    let mut vars = vec![
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", SECRET),
    ];
    vars.extend_from_slice(extra);
    let a = ServerProcess::start(&vars).await;
    let b = ServerProcess::start(&vars).await;
    Some(Cluster {
        a,
        b,
        client: reqwest::Client::new(),
        database_url,
    })
}

impl Cluster {
    async fn post(&self, server: &ServerProcess, path: &str, body: Value) -> reqwest::Response {
        self.client
            .post(server.url(path))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    async fn refresh(&self, server: &ServerProcess, token: &str) -> reqwest::Response {
        self.post(server, "/refresh", json!({"refresh_token": token}))
            .await
    }

    /// The shared database, opened as the store the servers use.
    async fn store(&self) -> auth_api::store::Store {
        auth_api::store::Store::connect(
            &secrecy::SecretString::from(self.database_url.clone()),
            &auth_api::store::PoolSettings {
                max_connections: 1,
                acquire_timeout: Duration::from_secs(5),
            },
        )
        .await
        .unwrap()
    }

    async fn new_login(&self, server: &ServerProcess) -> Login {
        let email = unique_email();
        let r = self
            .post(
                server,
                "/register",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::CREATED);
        self.login(server, &email).await
    }

    async fn login(&self, server: &ServerProcess, email: &str) -> Login {
        let r = self
            .post(
                server,
                "/login",
                json!({"email": email, "password": PASSWORD}),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK);
        login_from_body(email, r.json().await.unwrap())
    }

    async fn me_status(&self, server: &ServerProcess, token: &str) -> StatusCode {
        self.client
            .get(server.url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// Asserts the token dies on `server` within the contract's 2 seconds.
    async fn assert_refused_soon(&self, server: &ServerProcess, token: &str, what: &str) {
        let took = eventually(REVOCATION_REACH, || async {
            self.me_status(server, token).await == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(
            took.is_some(),
            "{what}: the other instance still accepts the token after 2 s"
        );
    }
}

#[tokio::test]
async fn an_access_token_from_one_instance_is_accepted_by_the_other() {
    let _ = require_postgres!();
    let c = cluster(&[]).await.unwrap();
    let login = c.new_login(&c.a).await;
    assert_eq!(c.me_status(&c.b, &login.access_token).await, StatusCode::OK);
    // And a refresh on B of a session started on A works.
    let r = c.refresh(&c.b, &login.refresh_token).await;
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn concurrent_refreshes_on_both_instances_rotate_once_per_round() {
    let _ = require_postgres!();
    let c = cluster(&[]).await.unwrap();
    let mut token = c.new_login(&c.a).await.refresh_token;
    let store = c.store().await;
    let session_id = auth_api::auth::refresh::verify(
        &auth_api::auth::Keyring::new(&secrecy::SecretString::from(SECRET.to_owned()), &[]),
        &token,
    )
    .unwrap()
    .session_id;

    for round in 1..=10 {
        let calls = (0..8).map(|i| {
            let server = if i % 2 == 0 { &c.a } else { &c.b };
            c.post(server, "/refresh", json!({"refresh_token": token}))
        });
        let responses = futures::future::join_all(calls).await;
        let mut successors = std::collections::HashSet::new();
        for r in responses {
            assert_eq!(r.status(), StatusCode::OK, "round {round}");
            let body: Value = r.json().await.unwrap();
            successors.insert(body["refresh_token"].as_str().unwrap().to_owned());
        }
        assert_eq!(
            successors.len(),
            1,
            "round {round}: one successor for everyone"
        );
        let generation = store
            .find_session(session_id)
            .await
            .unwrap()
            .unwrap()
            .generation;
        assert_eq!(generation, round, "round {round}: rotated exactly once");
        token = successors.into_iter().next().unwrap();
    }
}

#[tokio::test]
async fn a_replay_after_the_grace_on_one_instance_revokes_a_session_rotated_on_the_other() {
    let _ = require_postgres!();
    let c = cluster(&[("REFRESH_REUSE_GRACE", "1")]).await.unwrap();
    let login = c.new_login(&c.a).await;
    let r = c.refresh(&c.a, &login.refresh_token).await;
    let next = login_from_body(&login.email, r.json().await.unwrap());
    tokio::time::sleep(Duration::from_millis(2100)).await;

    let r = c.refresh(&c.b, &login.refresh_token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = c.refresh(&c.a, &next.refresh_token).await;
    assert_eq!(
        r.status(),
        StatusCode::UNAUTHORIZED,
        "the successor is dead on A too"
    );
    c.assert_refused_soon(&c.a, &next.access_token, "reuse detected on B")
        .await;
}

#[tokio::test]
async fn every_kind_of_revocation_reaches_the_other_instance_within_two_seconds() {
    let _ = require_postgres!();
    let c = cluster(&[("REFRESH_REUSE_GRACE", "0")]).await.unwrap();

    // logout on A
    let login = c.new_login(&c.a).await;
    assert_eq!(c.me_status(&c.b, &login.access_token).await, StatusCode::OK);
    c.post(
        &c.a,
        "/logout",
        json!({"refresh_token": login.refresh_token}),
    )
    .await;
    c.assert_refused_soon(&c.b, &login.access_token, "logout")
        .await;

    // logout-all on A
    let login = c.new_login(&c.a).await;
    let other = c.login(&c.b, &login.email).await;
    c.client
        .post(c.a.url("/logout-all"))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .unwrap();
    c.assert_refused_soon(&c.b, &other.access_token, "logout-all")
        .await;

    // session delete on A
    let login = c.new_login(&c.a).await;
    let tablet = c.login(&c.a, &login.email).await;
    let r = c
        .client
        .delete(c.a.url(&format!("/sessions/{}", tablet.session_id)))
        .bearer_auth(&login.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    c.assert_refused_soon(&c.b, &tablet.access_token, "session delete")
        .await;

    // password change on A
    let login = c.new_login(&c.a).await;
    let tablet = c.login(&c.a, &login.email).await;
    let r = c
        .client
        .post(c.a.url("/password"))
        .bearer_auth(&login.access_token)
        .json(&json!({"current_password": PASSWORD, "new_password": "another long passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    c.assert_refused_soon(&c.b, &tablet.access_token, "password change")
        .await;

    // admin revoke on A
    let admin = c.new_login(&c.a).await;
    let store = c.store().await;
    store
        .set_role(
            &admin.email,
            auth_api::auth::Role::Admin,
            chrono::Utc::now(),
        )
        .await
        .unwrap();
    let admin = c.login(&c.a, &admin.email).await;
    let victim = c.new_login(&c.b).await;
    let r = c
        .client
        .post(c.a.url(&format!("/admin/users/{}/revoke-sessions", victim.user_id)))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    c.assert_refused_soon(&c.b, &victim.access_token, "admin revoke")
        .await;

    // reuse detected on A
    let login = c.new_login(&c.b).await;
    c.refresh(&c.a, &login.refresh_token).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = c.refresh(&c.a, &login.refresh_token).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    c.assert_refused_soon(&c.b, &login.access_token, "reuse detected")
        .await;
}

#[tokio::test]
async fn a_revocation_missed_while_disconnected_is_caught_on_reconnect() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let proxy = TcpProxy::start(socket_of(&database_url)).await;
    let via_proxy = proxy.url_for(&database_url);
    let a = ServerProcess::start(&[("DATABASE_URL", &database_url), ("JWT_SECRET", SECRET)]).await;
    let b = ServerProcess::start(&[
        ("DATABASE_URL", &via_proxy),
        ("JWT_SECRET", SECRET),
        ("DATABASE_ACQUIRE_TIMEOUT", "1"),
    ])
    .await;
    let c = Cluster {
        a,
        b,
        client: reqwest::Client::new(),
        database_url,
    };
    let login = c.new_login(&c.a).await;
    assert_eq!(c.me_status(&c.b, &login.access_token).await, StatusCode::OK);

    proxy.down(); // B loses its database, and its notification feed
    tokio::time::sleep(Duration::from_millis(300)).await;
    c.post(
        &c.a,
        "/logout",
        json!({"refresh_token": login.refresh_token}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        c.me_status(&c.b, &login.access_token).await,
        StatusCode::OK,
        "B cannot know yet: the notification was lost"
    );

    proxy.up();
    let took = eventually(Duration::from_secs(10), || async {
        c.me_status(&c.b, &login.access_token).await == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        took.is_some(),
        "B reloaded revocations after reconnecting:\n{}",
        c.b.log()
    );
}

#[tokio::test]
async fn instances_starting_at_once_migrate_safely() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let vars = [
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", SECRET),
    ];
    let (a, b, c) = tokio::join!(
        ServerProcess::start(&vars),
        ServerProcess::start(&vars),
        ServerProcess::start(&vars)
    );
    let client = reqwest::Client::new();
    for server in [&a, &b, &c] {
        let r = client.get(server.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{}", server.log());
    }
}
