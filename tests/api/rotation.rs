//! Rolling key rotation with two real instances on one PostgreSQL database,
//! following the README's procedure for each mode: announce the new key
//! everywhere, then sign with it, then retire the old one, restarting the
//! instances one after the other at every step. Signed-in apps keep calling
//! and refreshing on both instances, their tokens crossing between them at
//! every moment, including the mixed ones (one instance restarted, the other
//! not yet): no request of theirs may fail.

use std::time::Duration;

use auth_api::auth::asymmetric::{Algorithm, SigningKey};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Login, PASSWORD, login_from_body, unique_email};
use crate::support::{ServerProcess, fresh_postgres_database, require_postgres};

const OLD_SECRET: &str = "the-old-secret-of-every-instance-0123456789";
const NEW_SECRET: &str = "the-new-secret-of-every-instance-9876543210";

/// Two instances behind an imaginary load balancer, and the apps signed in.
struct Rollout {
    database_url: String,
    servers: [Option<ServerProcess>; 2],
    client: reqwest::Client,
    apps: Vec<Login>,
    /// An access token of the key being retired, kept to check the retirement.
    old_key_token: Option<String>,
    /// Requests made by the apps, all of which succeeded.
    requests: usize,
}

impl Rollout {
    async fn start(database_url: String, vars: &[(&str, String)]) -> Self {
        let a = start(&database_url, vars).await;
        let b = start(&database_url, vars).await;
        Self {
            database_url,
            servers: [Some(a), Some(b)],
            client: reqwest::Client::new(),
            apps: Vec::new(),
            old_key_token: None,
            requests: 0,
        }
    }

    fn server(&self, i: usize) -> &ServerProcess {
        self.servers[i].as_ref().expect("running")
    }

    /// Stops instance `i` gracefully and starts it again with `vars`.
    async fn restart(&mut self, i: usize, vars: &[(&str, String)]) {
        let mut old = self.servers[i].take().expect("running");
        old.terminate();
        assert!(old.wait_exit(Duration::from_secs(10)).await.is_some());
        self.servers[i] = Some(start(&self.database_url, vars).await);
    }

    async fn sign_in(&mut self, on: usize) {
        let email = unique_email();
        let server = self.server(on);
        let r = self
            .client
            .post(server.url("/register"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        let r = self
            .client
            .post(server.url("/login"))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let login = login_from_body(&email, r.json().await.unwrap());
        self.apps.push(login);
    }

    async fn me(&self, on: usize, token: &str) -> StatusCode {
        self.client
            .get(self.server(on).url("/me"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    }

    /// What every signed-in app does, whatever the rollout's moment: call
    /// both instances with its access token, refresh on one, call both with
    /// the new access token, refresh on the other. Nothing may fail.
    async fn apps_keep_working(&mut self, moment: &str) {
        for n in 0..self.apps.len() {
            for round in 0..2 {
                let app = self.apps[n].clone();
                for on in 0..2 {
                    let status = self.me(on, &app.access_token).await;
                    assert_eq!(
                        status,
                        StatusCode::OK,
                        "{moment}: app {n}'s access token on instance {on}:\n{}",
                        self.server(on).log()
                    );
                }
                let on = (n + round) % 2;
                let r = self
                    .client
                    .post(self.server(on).url("/refresh"))
                    .json(&json!({"refresh_token": app.refresh_token}))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: Value = r.json().await.unwrap();
                assert_eq!(
                    status,
                    StatusCode::OK,
                    "{moment}: app {n}'s refresh on instance {on}: {body}"
                );
                self.apps[n] = login_from_body(&app.email, body);
                self.requests += 3;
            }
        }
    }

    /// The kids instance `i` publishes.
    async fn published_kids(&self, i: usize) -> Vec<String> {
        let set: Value = self
            .client
            .get(self.server(i).url("/.well-known/jwks.json"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    }

    /// The `kid` of the app's current access token.
    fn signing_kid(&self) -> String {
        crate::helpers::decode_header(&self.apps[0].access_token)["kid"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Restarts both instances, one after the other, with `vars`; the apps
    /// work before, between and after.
    async fn roll(&mut self, step: &str, vars: &[(&str, String)]) {
        self.restart(0, vars).await;
        self.apps_keep_working(&format!("{step}, A restarted, B not yet"))
            .await;
        self.restart(1, vars).await;
        self.apps_keep_working(&format!("{step}, both restarted"))
            .await;
    }
}

async fn start(database_url: &str, vars: &[(&str, String)]) -> ServerProcess {
    let mut all: Vec<(&str, &str)> = vec![("DATABASE_URL", database_url)];
    all.extend(vars.iter().map(|(k, v)| (*k, v.as_str())));
    ServerProcess::start(&all).await
}

/// HS256: add the new secret to `JWT_PREVIOUS_SECRETS` everywhere, then make
/// it `JWT_SECRET` with the old one as previous, then drop the old one.
#[tokio::test]
async fn an_hs256_secret_rotates_during_rolling_restarts_without_a_failed_request() {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let secret = |current: &str, previous: &str| {
        vec![
            ("JWT_SECRET", current.to_owned()),
            ("JWT_PREVIOUS_SECRETS", previous.to_owned()),
        ]
    };
    let mut rollout = Rollout::start(database_url, &secret(OLD_SECRET, "")).await;
    rollout.sign_in(0).await;
    rollout.sign_in(1).await;
    rollout.apps_keep_working("before").await;
    let old_kid = auth_api::auth::keys::key_id(OLD_SECRET.as_bytes());
    let new_kid = auth_api::auth::keys::key_id(NEW_SECRET.as_bytes());
    assert_eq!(rollout.signing_kid(), old_kid);
    rollout.old_key_token = Some(rollout.apps[0].access_token.clone());

    // 1. Accept the new secret everywhere (it signs nothing yet).
    rollout
        .roll("1. new secret accepted", &secret(OLD_SECRET, NEW_SECRET))
        .await;
    assert_eq!(rollout.signing_kid(), old_kid);
    // 2. Sign with it, the old one still accepted. Between the restarts, A
    //    signs with the new secret and B with the old: refresh tokens minted
    //    by A under the new secret refresh on B, which has it as previous.
    rollout
        .roll("2. new secret signs", &secret(NEW_SECRET, OLD_SECRET))
        .await;
    assert_eq!(rollout.signing_kid(), new_kid);
    // 3. Once no token of the old secret is still needed, retire it.
    rollout
        .roll("3. old secret retired", &secret(NEW_SECRET, ""))
        .await;
    assert_eq!(rollout.signing_kid(), new_kid);
    assert_eq!(
        rollout
            .me(0, rollout.old_key_token.as_deref().unwrap())
            .await,
        StatusCode::UNAUTHORIZED,
        "a token of the retired secret is refused"
    );
    assert!(rollout.requests >= 6 * 2 * 2 * 3);
}

/// ES256/EdDSA: announce the new key (`JWT_EXTRA_PUBLIC_KEY_FILES`), swap
/// `JWT_PRIVATE_KEY_FILE` (the old key announced as retired), then retire it.
/// `JWT_SECRET` does not change: refresh tokens are untouched.
async fn asymmetric_rotation(alg: Algorithm) {
    let base = require_postgres!();
    let database_url = fresh_postgres_database(&base).await;
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    let mut kids = Vec::new();
    for name in ["old", "new"] {
        let pem = SigningKey::generate_pem(alg).unwrap();
        let key = SigningKey::from_pem(alg, &pem).unwrap();
        let private = dir.path().join(format!("{name}.pem"));
        let public = dir.path().join(format!("{name}.pub.pem"));
        std::fs::write(&private, &pem).unwrap();
        std::fs::write(&public, key.public().to_pem()).unwrap();
        paths.push((private.display().to_string(), public.display().to_string()));
        kids.push(key.public().kid().to_owned());
    }
    let ((old_private, old_public), (new_private, new_public)) =
        (paths[0].clone(), paths[1].clone());
    let (old_kid, new_kid) = (kids[0].clone(), kids[1].clone());
    let keys = |private: &str, extra: &str| {
        vec![
            ("JWT_SECRET", OLD_SECRET.to_owned()),
            ("JWT_ALGORITHM", alg.name().to_owned()),
            ("JWT_PRIVATE_KEY_FILE", private.to_owned()),
            ("JWT_EXTRA_PUBLIC_KEY_FILES", extra.to_owned()),
        ]
    };

    let mut rollout = Rollout::start(database_url, &keys(&old_private, "")).await;
    rollout.sign_in(0).await;
    rollout.sign_in(1).await;
    rollout.apps_keep_working("before").await;
    assert_eq!(rollout.signing_kid(), old_kid);
    rollout.old_key_token = Some(rollout.apps[0].access_token.clone());

    // 1. Announce: published and accepted everywhere, signing nothing yet.
    rollout
        .roll("1. new key announced", &keys(&old_private, &new_public))
        .await;
    for i in 0..2 {
        assert_eq!(
            rollout.published_kids(i).await,
            [old_kid.clone(), new_kid.clone()]
        );
    }
    assert_eq!(rollout.signing_kid(), old_kid);
    // 2. Swap: sign with the new key, the old one published as retired.
    rollout
        .roll("2. new key signs", &keys(&new_private, &old_public))
        .await;
    for i in 0..2 {
        assert_eq!(
            rollout.published_kids(i).await,
            [new_kid.clone(), old_kid.clone()]
        );
    }
    assert_eq!(rollout.signing_kid(), new_kid);
    // 3. Retire, once the old key's tokens have expired.
    rollout
        .roll("3. old key retired", &keys(&new_private, ""))
        .await;
    for i in 0..2 {
        assert_eq!(rollout.published_kids(i).await, vec![new_kid.clone()]);
    }
    assert_eq!(
        rollout
            .me(1, rollout.old_key_token.as_deref().unwrap())
            .await,
        StatusCode::UNAUTHORIZED,
        "a token of the retired key is refused"
    );
}

#[tokio::test]
async fn an_es256_key_rotates_during_rolling_restarts_without_a_failed_request() {
    asymmetric_rotation(Algorithm::Es256).await;
}

#[tokio::test]
async fn an_eddsa_key_rotates_during_rolling_restarts_without_a_failed_request() {
    asymmetric_rotation(Algorithm::EdDsa).await;
}
