//! A real nginx (Debian's) in front of a small app, running the very
//! configuration of `docs/backends/nginx.conf` with only its three ports
//! changed: `auth_request` asks `GET /verify`, the app sees who the caller is
//! in `X-Auth-User-Id`, and a token that is missing, bad or revoked never
//! reaches it. Skips when nginx is absent, unless `TEST_REQUIRE_NGINX` is set
//! (`.ci/run` installs nginx and sets it).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::helpers::{Login, PASSWORD, TestApp, assert_error, spawn_app};
use crate::support::eventually;

const DOC_CONFIG: &str = include_str!("../../docs/backends/nginx.conf");

/// The nginx binary, if this machine has one; fails instead of skipping
/// when the run requires nginx.
fn nginx_binary() -> Option<PathBuf> {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file());
    assert!(
        found.is_some() || std::env::var_os("TEST_REQUIRE_NGINX").is_none(),
        "TEST_REQUIRE_NGINX is set but no nginx is installed"
    );
    found
}

macro_rules! require_nginx {
    () => {
        match nginx_binary() {
            Some(path) => path,
            None => {
                eprintln!("skipped: needs nginx (apt-get install nginx; .ci/run does)");
                return;
            }
        }
    };
}

/// The app behind the gateway: answers every request with the
/// `X-Auth-User-Id` it was given, and remembers each request's value.
struct Upstream {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Upstream {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let record = record.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&head);
                    let user = head
                        .lines()
                        .filter_map(|line| line.split_once(':'))
                        .find(|(name, _)| name.eq_ignore_ascii_case("x-auth-user-id"))
                        .map(|(_, value)| value.trim().to_owned())
                        .unwrap_or_default();
                    record.lock().unwrap().push(user.clone());
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{user}",
                        user.len()
                    );
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { port, seen, accept }
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// nginx as the current user in a temporary prefix: one process (no master,
/// so killing the child stops it all), every path under the prefix.
struct Nginx {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(binary: PathBuf, auth_port: u16, app_port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let site = templated(DOC_CONFIG, auth_port, app_port, port);
        std::fs::write(dir.path().join("site.conf"), site).unwrap();
        let prefix = dir.path().display().to_string();
        // The outer file a distribution ships (nginx.conf with its http block)
        // in its smallest form, every path inside the prefix.
        let main = format!(
            "error_log {prefix}/error.log info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n\
               access_log {prefix}/access.log;\n\
               client_body_temp_path {prefix}/body;\n\
               proxy_temp_path {prefix}/proxy;\n\
               fastcgi_temp_path {prefix}/fastcgi;\n\
               uwsgi_temp_path {prefix}/uwsgi;\n\
               scgi_temp_path {prefix}/scgi;\n\
               include {prefix}/site.conf;\n\
             }}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), main).unwrap();
        let child = Command::new(binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(format!("{prefix}/nginx.conf"))
            .arg("-e")
            .arg(format!("{prefix}/error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; master_process off; pid {prefix}/nginx.pid;"
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx starts");
        let mut nginx = Self { child, port, dir };
        let up = eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        if up.is_none() || nginx.child.try_wait().unwrap().is_some() {
            panic!("nginx did not start:\n{}", nginx.error_log());
        }
        nginx
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The doc's configuration with its three ports moved; nothing else.
fn templated(config: &str, auth_port: u16, app_port: u16, listen_port: u16) -> String {
    let mut out = config.to_owned();
    for (from, to) in [
        (
            "server 127.0.0.1:8080;",
            format!("server 127.0.0.1:{auth_port};"),
        ),
        (
            "server 127.0.0.1:3000;",
            format!("server 127.0.0.1:{app_port};"),
        ),
        (
            "listen 127.0.0.1:8000;",
            format!("listen 127.0.0.1:{listen_port};"),
        ),
    ] {
        assert_eq!(
            out.matches(from).count(),
            1,
            "the doc's nginx.conf has `{from}`"
        );
        out = out.replace(from, &to);
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn port_of(app: &TestApp) -> u16 {
    app.address.rsplit_once(':').unwrap().1.parse().unwrap()
}

/// The app, nginx in front of it with the doc's configuration, and a user.
async fn gateway(binary: PathBuf) -> (TestApp, Upstream, Nginx, Login) {
    let app = spawn_app().await;
    let upstream = Upstream::start().await;
    let nginx = Nginx::start(binary, port_of(&app), upstream.port).await;
    let login = app.new_login().await;
    (app, upstream, nginx, login)
}

async fn get(app: &TestApp, url: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.expect("nginx answers")
}

#[tokio::test]
async fn a_valid_token_reaches_the_app_behind_nginx_with_its_user_id() {
    let binary = require_nginx!();
    let (app, upstream, nginx, login) = gateway(binary).await;

    let response = app
        .client
        .get(nginx.url("/orders?page=2"))
        .bearer_auth(&login.access_token)
        // A client cannot speak for someone else: nginx replaces this.
        .header("X-Auth-User-Id", "00000000-0000-0000-0000-000000000000")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), StatusCode::OK, "{}", nginx.error_log());
    assert_eq!(response.text().await.unwrap(), login.user_id.to_string());
    assert_eq!(upstream.requests(), vec![login.user_id.to_string()]);
}

#[tokio::test]
async fn missing_bad_and_revoked_tokens_never_reach_the_app() {
    let binary = require_nginx!();
    let (app, upstream, nginx, login) = gateway(binary).await;
    let url = nginx.url("/orders");

    let response = get(&app, &url, None).await;
    let challenges: Vec<_> = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .collect();
    assert_eq!(challenges, ["Bearer"], "one RFC 6750 challenge");
    assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;

    let mut tampered = login.access_token.clone();
    tampered.push('x');
    for bad in ["not-a-jwt", tampered.as_str()] {
        let response = get(&app, &url, Some(bad)).await;
        let challenges: Vec<_> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .collect();
        assert_eq!(challenges.len(), 1, "one RFC 6750 challenge");
        assert!(challenges[0].to_str().unwrap().contains("invalid_token"));
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }

    assert_eq!(
        get(&app, &url, Some(&login.access_token)).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        app.logout(&login.refresh_token).await.status(),
        StatusCode::NO_CONTENT
    );
    let refused = eventually(Duration::from_secs(2), || async {
        get(&app, &url, Some(&login.access_token)).await.status() == StatusCode::UNAUTHORIZED
    })
    .await;
    assert!(
        refused.is_some(),
        "the logout reached nginx's answers within 2 s"
    );
    let response = get(&app, &url, Some(&login.access_token)).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;

    // Only the one request made while the token was valid got through.
    assert_eq!(upstream.requests(), vec![login.user_id.to_string()]);
}

#[tokio::test]
async fn logout_all_reaches_nginx_for_every_session_of_the_user() {
    let binary = require_nginx!();
    let (app, upstream, nginx, first) = gateway(binary).await;
    let second = app.login_ok(&first.email, PASSWORD).await;
    let url = nginx.url("/orders");

    let response = app.logout_all(&first.access_token).await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for login in [&first, &second] {
        let refused = eventually(Duration::from_secs(2), || async {
            get(&app, &url, Some(&login.access_token)).await.status() == StatusCode::UNAUTHORIZED
        })
        .await;
        assert!(refused.is_some(), "logout-all reached nginx within 2 s");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn admin_paths_need_the_admin_role_at_the_gateway() {
    let binary = require_nginx!();
    let (app, upstream, nginx, login) = gateway(binary).await;
    let url = nginx.url("/admin/reports");

    let response = get(&app, &url, Some(&login.access_token)).await;
    let body: Value = assert_error(response, StatusCode::FORBIDDEN, "insufficient_role").await;
    assert!(body["message"].is_string());
    assert!(
        upstream.requests().is_empty(),
        "a plain user never reached /admin/"
    );

    app.make_admin(&login.email).await;
    let admin = app.login_ok(&login.email, PASSWORD).await;
    let response = get(&app, &url, Some(&admin.access_token)).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(upstream.requests(), vec![login.user_id.to_string()]);
}

#[tokio::test]
async fn when_auth_api_cannot_be_reached_nginx_refuses_and_the_app_is_not_reached() {
    let binary = require_nginx!();
    let app = spawn_app().await;
    let login = app.new_login().await;
    let upstream = Upstream::start().await;
    // Nothing listens where nginx looks for auth-api.
    let nginx = Nginx::start(binary, free_port(), upstream.port).await;

    let response = get(&app, &nginx.url("/orders"), Some(&login.access_token)).await;

    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert!(upstream.requests().is_empty(), "closed, never open");
}
