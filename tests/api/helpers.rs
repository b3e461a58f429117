//! `spawn_app()`: the real application, in process, on a random port, with a
//! fresh database of its own, so tests run in parallel and never collide.
//!
//! SQLite by default (a temp folder per test). With `TEST_DATABASE_URL` set to
//! a PostgreSQL server URL, each test gets a fresh database created on that
//! server instead, so the same suite pins both backends.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix_web::web;
use auth_api::clock::ShiftedClock;
use auth_api::config::Config;
use auth_api::http::AppState;
use auth_api::startup::Application;
use reqwest::{Response, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";
/// The key every test app signs with (so tests can forge and inspect tokens).
pub const JWT_SECRET: &str = "test-secret-0123456789-abcdefghijklmnopqrstuvwxyz";

/// A running application and a client for it.
pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub config: Config,
    /// The app's clock: tests move it forward instead of sleeping.
    pub clock: Arc<ShiftedClock>,
    /// Keeps the SQLite folder alive for the test's duration.
    _dir: Option<tempfile::TempDir>,
    /// Where this app's mails go unless the test set `MAIL_URL` (each mail an
    /// `.eml` file), so tests never write into the checkout's `data/mail`.
    pub mail_dir: tempfile::TempDir,
}

/// A logged-in user: the answer of `/login`.
#[derive(Debug, Clone)]
pub struct Login {
    pub user_id: Uuid,
    pub email: String,
    pub access_token: String,
    pub refresh_token: String,
    pub session_id: Uuid,
    pub body: Value,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

static NEXT_EMAIL: AtomicU64 = AtomicU64::new(0);

/// A unique email for this test process.
pub fn unique_email() -> String {
    format!(
        "user{}-{}@example.com",
        NEXT_EMAIL.fetch_add(1, Ordering::Relaxed),
        &Uuid::new_v4().simple().to_string()[..8]
    )
}

/// Spawns the app with extra environment variables (over the test defaults).
pub async fn spawn_app_with(vars: &[(&str, &str)]) -> TestApp {
    let (database_url, dir) = fresh_database().await;
    let mail_dir = tempfile::tempdir().expect("a temp folder");
    let mut env: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url),
        ("BIND_ADDR".into(), "127.0.0.1:0".into()),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        ("HTTP_WORKERS".into(), "1".into()),
        ("AUTH_RATE_LIMIT".into(), "0".into()),
        // Every test client is 127.0.0.1, and the flood tests open hundreds
        // of connections at once; the cap has its own tests (slow_clients).
        ("HTTP_MAX_CONNECTIONS_PER_IP".into(), "100000".into()),
        (
            "MAIL_URL".into(),
            format!("file://{}", mail_dir.path().display()),
        ),
    ]);
    for (k, v) in vars {
        env.insert((*k).into(), (*v).into());
    }
    let config = Config::from_lookup(|k| env.get(k).cloned()).expect("valid test configuration");
    let listener = std::net::TcpListener::bind(config.bind_addr).expect("a free port");
    let clock = Arc::new(ShiftedClock::default());
    let app = Application::build_with_clock(config.clone(), listener, clock.clone())
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("auth-api-tests/1.0")
            .build()
            .expect("a client"),
        state,
        config,
        clock,
        _dir: dir,
        mail_dir,
    }
}

/// A database no other test uses: a temp SQLite file, or a new PostgreSQL
/// database when `TEST_DATABASE_URL` names a server.
pub async fn fresh_database() -> (String, Option<tempfile::TempDir>) {
    match crate::support::postgres_base() {
        Some(base) => (crate::support::fresh_postgres_database(&base).await, None),
        None => {
            let dir = tempfile::tempdir().expect("a temp folder");
            let url = format!("sqlite://{}/auth.db", dir.path().display());
            (url, Some(dir))
        }
    }
}

/// Asserts the status and the error code of a JSON error answer; returns the body.
pub async fn assert_error(response: Response, status: StatusCode, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type}"
    );
    let body: Value = response.json().await.expect("a JSON error body");
    assert_eq!(body["error"], code, "error code in {body}");
    assert!(body["message"].is_string(), "message in {body}");
    body
}

/// Every test also checks the contract of the generated clients: no answer
/// of its app carried an error code its route does not document.
impl Drop for TestApp {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            assert_eq!(
                self.state.telemetry.undocumented_errors.get(),
                0,
                "the app answered an error code its route does not document \
                 (see the server log; add it to the route in src/http/routes.rs)"
            );
        }
    }
}

impl TestApp {
    /// Moves the app's clock forward: time passes at once for sessions,
    /// refresh tokens and access-token expiry.
    pub fn advance(&self, seconds: u64) {
        self.clock.advance(Duration::from_secs(seconds));
    }

    /// The app's "now" (moved by [`TestApp::advance`]).
    pub fn clock_now(&self) -> chrono::DateTime<chrono::Utc> {
        auth_api::clock::Clock::now(self.clock.as_ref())
    }

    /// The database this app uses (to start a second server on it).
    pub fn config_database_url(&self) -> String {
        secrecy::ExposeSecret::expose_secret(&self.config.database_url).to_owned()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn register(&self, email: &str, password: &str) -> Response {
        self.post_json("/register", &json!({"email": email, "password": password}))
            .await
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post_json("/login", &json!({"email": email, "password": password}))
            .await
    }

    pub async fn login_from(&self, email: &str, password: &str, device: &str) -> Response {
        self.post_json(
            "/login",
            &json!({"email": email, "password": password, "device_name": device}),
        )
        .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> Response {
        self.post_json("/refresh", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn logout(&self, refresh_token: &str) -> Response {
        self.post_json("/logout", &json!({"refresh_token": refresh_token}))
            .await
    }

    pub async fn logout_all(&self, access_token: &str) -> Response {
        self.client
            .post(self.url("/logout-all"))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn me(&self, access_token: &str) -> Response {
        self.get_with_token("/me", access_token).await
    }

    pub async fn sessions(&self, access_token: &str) -> Response {
        self.get_with_token("/sessions", access_token).await
    }

    pub async fn delete_session(&self, access_token: &str, id: &str) -> Response {
        self.client
            .delete(self.url(&format!("/sessions/{id}")))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request sent")
    }

    pub async fn change_password(&self, access_token: &str, current: &str, new: &str) -> Response {
        self.client
            .post(self.url("/password"))
            .bearer_auth(access_token)
            .json(&json!({"current_password": current, "new_password": new}))
            .send()
            .await
            .expect("request sent")
    }

    pub async fn admin_revoke(&self, access_token: &str, user_id: &str) -> Response {
        self.client
            .post(self.url(&format!("/admin/users/{user_id}/revoke-sessions")))
            .bearer_auth(access_token)
            .send()
            .await
            .expect("request sent")
    }

    /// Registers a fresh user and returns its email.
    pub async fn new_user(&self) -> String {
        let email = unique_email();
        let response = self.register(&email, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        email
    }

    /// Logs in (asserting success) and returns the token pair.
    pub async fn login_ok(&self, email: &str, password: &str) -> Login {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), StatusCode::OK, "login of {email}");
        login_from_body(email, response.json().await.expect("token response"))
    }

    /// A new user, logged in once.
    pub async fn new_login(&self) -> Login {
        let email = self.new_user().await;
        self.login_ok(&email, PASSWORD).await
    }

    /// Refreshes (asserting success) and returns the new pair.
    pub async fn refresh_ok(&self, login: &Login) -> Login {
        let response = self.refresh(&login.refresh_token).await;
        assert_eq!(response.status(), StatusCode::OK, "refresh");
        login_from_body(&login.email, response.json().await.expect("token response"))
    }

    /// The session's row, if it still exists.
    pub async fn session(&self, session_id: Uuid) -> Option<auth_api::store::Session> {
        self.state
            .store
            .find_session(session_id)
            .await
            .expect("store answers")
    }

    /// The session's stored generation (how many times it rotated).
    pub async fn generation(&self, session_id: Uuid) -> i64 {
        self.session(session_id)
            .await
            .expect("session exists")
            .generation
    }

    /// `GET /me` with a raw `Authorization` header value.
    pub async fn me_with_authorization(
        &self,
        value: impl TryInto<reqwest::header::HeaderValue, Error: std::fmt::Debug>,
    ) -> Response {
        let value = value.try_into().expect("a header value");
        self.client
            .get(self.url("/me"))
            .header("authorization", value)
            .send()
            .await
            .expect("request sent")
    }

    /// Makes this email an admin, as the `admin grant` subcommand does.
    pub async fn make_admin(&self, email: &str) {
        let found = self
            .state
            .store
            .set_role(email, auth_api::auth::Role::Admin, chrono::Utc::now())
            .await
            .expect("store answers");
        assert!(found);
    }
}

/// A grant mail's link token and code, read from its body.
#[derive(Debug, Clone)]
pub struct Mailed {
    pub token: String,
    pub code: String,
    pub subject: String,
    pub body: String,
}

impl TestApp {
    /// The mails queued for `to`, oldest first (read from the outbox), each
    /// with its text readable: opened with the app's keys while pending
    /// (the outbox holds it sealed), read from its delivered `.eml` once sent
    /// (the outbox then holds nothing).
    pub async fn mails_to(&self, to: &str) -> Vec<auth_api::store::QueuedMail> {
        let mut mails = self
            .state
            .store
            .outbox_for(to)
            .await
            .expect("store answers");
        for mail in &mut mails {
            mail.body = self.mail_text(mail);
        }
        mails
    }

    /// The plain text of an outbox row (see [`TestApp::mails_to`]); empty
    /// for a mail given up.
    pub fn mail_text(&self, mail: &auth_api::store::QueuedMail) -> String {
        outbox_text(self.state.tokens.keys(), self.mail_dir.path(), mail)
    }

    /// The newest mail queued for `to`, with its token and code.
    pub async fn last_mail(&self, to: &str) -> Mailed {
        let mails = self.mails_to(to).await;
        let mail = mails.last().expect("a mail was queued");
        parse_mail(&mail.subject, &mail.body)
    }

    /// A request with a Bearer token and a JSON body.
    pub async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send().await.expect("request sent")
    }

    /// `POST` with a Bearer token and no body.
    pub async fn post_with_token(&self, path: &str, token: &str) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("request sent")
    }

    /// `POST /password/forgot`, asserting the one answer it gives.
    pub async fn forgot_ok(&self, email: &str) {
        let response = self
            .post_json("/password/forgot", &json!({"email": email}))
            .await;
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"status": "accepted"}));
    }

    /// The account as `GET /account` shows it.
    pub async fn account(&self, access_token: &str) -> Value {
        let response = self.get_with_token("/account", access_token).await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.unwrap()
    }
}

/// The plain text of an outbox row of a server with `keys` delivering to the
/// folder `mail_dir`: its sealed body opened while pending, its `.eml` once
/// sent, empty once given up.
pub fn outbox_text(
    keys: &auth_api::auth::Keyring,
    mail_dir: &std::path::Path,
    mail: &auth_api::store::QueuedMail,
) -> String {
    if !mail.body.is_empty() {
        return auth_api::auth::mail_seal::open(keys, &mail.recipient, &mail.body)
            .expect("a pending body opens with the server's keys");
    }
    std::fs::read(mail_dir.join(format!("{}.eml", mail.id)))
        .map(|eml| eml_text(&eml))
        .unwrap_or_default()
}

/// The decoded text of a delivered `.eml` (7bit, quoted-printable or base64).
pub fn eml_text(eml: &[u8]) -> String {
    let eml = String::from_utf8_lossy(eml).replace("\r\n", "\n");
    let (head, body) = eml.split_once("\n\n").unwrap_or((&eml, ""));
    let encoding = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("Content-Transfer-Encoding")
                .then(|| v.trim().to_ascii_lowercase())
        })
        .unwrap_or_default();
    match encoding.as_str() {
        "quoted-printable" => String::from_utf8(
            quoted_printable::decode(body, quoted_printable::ParseMode::Robust)
                .expect("quoted-printable"),
        )
        .expect("utf-8"),
        "base64" => {
            use base64::Engine;
            let joined: String = body.split_whitespace().collect();
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(joined)
                    .expect("base64"),
            )
            .expect("utf-8")
        }
        _ => body.to_owned(),
    }
}

/// Reads the token (from the link) and the code out of a grant mail.
pub fn parse_mail(subject: &str, body: &str) -> Mailed {
    let token = body
        .split("&token=")
        .nth(1)
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    let code = body
        .split("type this code in the app: ")
        .nth(1)
        .map(|rest| rest.chars().take(6).collect())
        .unwrap_or_default();
    Mailed {
        token,
        code,
        subject: subject.to_owned(),
        body: body.to_owned(),
    }
}

pub fn login_from_body(email: &str, body: Value) -> Login {
    let access_token = body["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned();
    let claims = decode_claims(&access_token);
    Login {
        user_id: claims["sub"].as_str().unwrap().parse().unwrap(),
        email: email.to_owned(),
        access_token,
        refresh_token: body["refresh_token"]
            .as_str()
            .expect("refresh_token")
            .to_owned(),
        session_id: body["session_id"].as_str().unwrap().parse().unwrap(),
        body,
    }
}

/// The claims of a JWT, read without verification (for assertions only).
pub fn decode_claims(token: &str) -> Value {
    decode_part(token, 1)
}

/// The header of a JWT, read without verification.
pub fn decode_header(token: &str) -> Value {
    decode_part(token, 0)
}

fn decode_part(token: &str, index: usize) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(index).expect("a JWT part");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON")
}

/// A well-formed code that is not `right`.
pub fn wrong_code(right: &str) -> &'static str {
    if right == "000000" {
        "000001"
    } else {
        "000000"
    }
}

impl TestApp {
    /// The code attempts counted against `user` for `purpose` over the code
    /// budget's window (what the service sums before comparing a code).
    pub async fn code_attempts(&self, user: Uuid, purpose: &str) -> i64 {
        let since =
            self.clock_now() - chrono::Duration::hours(auth_api::accounts::CODE_BUDGET_HOURS);
        self.state
            .store
            .code_attempts(user, purpose, since)
            .await
            .expect("store answers")
    }
}
