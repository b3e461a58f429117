//! The binary itself: first start with nothing set up, configuration errors,
//! and the admin subcommand.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;

use crate::helpers::{PASSWORD, assert_error, decode_claims, spawn_app_with};

const BIN: &str = env!("CARGO_BIN_EXE_auth-api");

/// The binary with a clean environment (no inherited configuration), in `dir`.
fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    cmd
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the server in `dir` with no configuration but a port, and waits
/// for `/healthz`. Returns the process and its base URL.
async fn start(dir: &Path) -> (std::process::Child, String) {
    let port = free_port();
    let mut child = command(dir)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("HTTP_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await {
            if r.status() == StatusCode::OK {
                return (child, base);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    panic!(
        "the server did not answer /healthz; it logged:\n{}",
        stop(child).await
    );
}

/// SIGTERM (a graceful stop); returns what the server logged.
async fn stop(mut child: std::process::Child) -> String {
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        err
    })
    .await
    .unwrap()
}

/// Starts the server in `dir`, stops it, and returns what it logged.
async fn start_and_stop(dir: &Path) -> String {
    let (child, _) = start(dir).await;
    stop(child).await
}

#[tokio::test]
async fn every_file_and_folder_the_first_start_creates_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let (child, base) = start(dir.path()).await;
    // A write, so the WAL and its index exist too.
    let response = reqwest::Client::new()
        .post(format!("{base}/register"))
        .json(&serde_json::json!({"email": "first@example.com", "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    let data = dir.path().join("data");
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    let modes = [
        (".", mode(".")),
        ("auth.db", mode("auth.db")),
        ("auth.db-wal", mode("auth.db-wal")),
        ("auth.db-shm", mode("auth.db-shm")),
        ("jwt_secret", mode("jwt_secret")),
    ];
    stop(child).await;
    assert_eq!(
        modes,
        [
            (".", 0o700),
            ("auth.db", 0o600),
            ("auth.db-wal", 0o600),
            ("auth.db-shm", 0o600),
            ("jwt_secret", 0o600),
        ]
    );
}

#[tokio::test]
async fn the_first_start_creates_the_database_and_a_private_key_and_warns_once() {
    let dir = tempfile::tempdir().unwrap();
    let first = start_and_stop(dir.path()).await;
    assert!(dir.path().join("data/auth.db").exists());
    let key_file = dir.path().join("data/jwt_secret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert!(key.trim().len() >= 32);
    assert_eq!(first.matches("JWT_SECRET is not set").count(), 1, "{first}");
    assert!(!first.contains(key.trim()), "the key is never logged");

    let second = start_and_stop(dir.path()).await;
    assert!(!second.contains("JWT_SECRET is not set"), "{second}");
    assert_eq!(
        std::fs::read_to_string(&key_file).unwrap(),
        key,
        "the key is kept"
    );
}

#[test]
fn a_short_jwt_secret_stops_the_start_naming_the_variable_not_the_value() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .env("JWT_SECRET", "shortsecret123")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("JWT_SECRET"), "{stderr}");
    assert!(!stderr.contains("shortsecret123"), "{stderr}");
    assert!(!dir.path().join("data").exists(), "nothing was created");
}

#[test]
fn a_bad_setting_stops_the_start_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path())
        .env("ACCESS_TOKEN_TTL", "fifteen minutes")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ACCESS_TOKEN_TTL"));
}

#[test]
fn help_lists_the_subcommands() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    for word in [
        "serve",
        "migrate",
        "admin",
        "healthcheck",
        "hash-cost",
        "openapi",
    ] {
        assert!(text.contains(word), "{text}");
    }
}

#[tokio::test]
async fn admin_grant_gives_the_role_at_the_next_token_and_revoke_takes_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let email = app.new_user().await;
    let before = app.login_ok(&email, PASSWORD).await;

    let run = |args: &[&str]| {
        command(dir.path())
            .env("DATABASE_URL", &url)
            .args(args)
            .output()
            .unwrap()
    };
    let output = run(&["admin", "grant", &email.to_uppercase()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let after = app.refresh_ok(&before).await;
    assert_eq!(decode_claims(&after.access_token)["role"], "admin");

    let output = run(&["admin", "demote", &email]);
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("admin revoke-sessions"), "{said}");
    let demoted = app.refresh_ok(&after).await;
    assert_eq!(decode_claims(&demoted.access_token)["role"], "user");

    // The old name still works, and says it is old.
    run(&["admin", "grant", &email]);
    let output = run(&["admin", "revoke", &email]);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("admin demote"));
    let demoted = app.refresh_ok(&demoted).await;
    assert_eq!(decode_claims(&demoted.access_token)["role"], "user");

    let output = run(&["admin", "grant", "nobody@example.com"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("no account"));
}

#[test]
fn migrate_applies_the_migrations_and_exits() {
    let dir = tempfile::tempdir().unwrap();
    let output = command(dir.path()).arg("migrate").output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("data/auth.db").exists());
}

#[tokio::test]
async fn healthcheck_exits_zero_while_the_server_answers_and_non_zero_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let server = crate::support::ServerProcess::start(&[
        ("DATABASE_URL", url.as_str()),
        ("JWT_SECRET", "healthcheck-secret-0123456789abcdefgh"),
    ])
    .await;
    let bind = server.address.trim_start_matches("http://").to_owned();
    let probe = |args: &[&str], bind: &str| {
        command(dir.path())
            .env("BIND_ADDR", bind)
            .arg("healthcheck")
            .args(args)
            .output()
            .unwrap()
    };
    assert!(probe(&[], &bind).status.success());
    assert!(probe(&["--ready"], &bind).status.success());
    // 0.0.0.0 (a container's bind address) is probed on loopback.
    let port = bind.rsplit_once(':').unwrap().1;
    assert!(probe(&[], &format!("0.0.0.0:{port}")).status.success());
    drop(server);
    assert!(!probe(&[], &bind).status.success());
}

#[test]
fn the_openapi_subcommand_prints_the_committed_document() {
    let output = Command::new(BIN)
        .arg("openapi")
        .env_clear()
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        include_str!("../../openapi/openapi.json"),
        "regenerate with `cargo run --release -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn settings_are_read_from_a_dot_env_file_too() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(".env"), "ACCESS_TOKEN_TTL=not-a-number\n").unwrap();
    let output = command(dir.path()).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("ACCESS_TOKEN_TTL"));
}

#[tokio::test]
async fn admin_find_disable_enable_and_revoke_sessions_work_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/auth.db", dir.path().display());
    let app = spawn_app_with(&[("DATABASE_URL", url.as_str())]).await;
    let email = app.new_user().await;
    let login = app.login_ok(&email, PASSWORD).await;
    let run = |args: &[&str]| {
        let output = command(dir.path())
            .env("DATABASE_URL", &url)
            .env("JWT_SECRET", crate::helpers::JWT_SECRET)
            .args(args)
            .output()
            .unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (ok, out, err) = run(&["admin", "find", &email.to_uppercase()]);
    assert!(ok, "{err}");
    assert!(out.contains(&login.user_id.to_string()), "{out}");
    assert!(out.contains("active_sessions: 1"), "{out}");
    assert!(out.contains("disabled:        false"), "{out}");

    let (ok, out, err) = run(&["admin", "revoke-sessions", &email]);
    assert!(ok, "{err}");
    assert!(out.contains("1 session(s) revoked"), "{out}");
    // The running server hears of it (on SQLite too: it polls) within 2 s.
    refused_within_two_seconds(&app, &login.access_token).await;
    let response = app.refresh(&login.refresh_token).await;
    let body = assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    assert_eq!(body["reason"], "revoked");

    let second = app.login_ok(&email, PASSWORD).await;
    let (ok, out, err) = run(&["admin", "disable", &email]);
    assert!(ok, "{err}");
    assert!(out.contains("disabled"), "{out}");
    let response = app.login(&email, PASSWORD).await;
    assert_error(response, StatusCode::FORBIDDEN, "account_disabled").await;
    let response = app.refresh(&second.refresh_token).await;
    assert_error(response, StatusCode::UNAUTHORIZED, "invalid_grant").await;
    refused_within_two_seconds(&app, &second.access_token).await;

    let (ok, _, err) = run(&["admin", "enable", &email]);
    assert!(ok, "{err}");
    app.login_ok(&email, PASSWORD).await;

    for action in ["find", "disable", "enable", "revoke-sessions"] {
        let (ok, _, err) = run(&["admin", action, "nobody@example.com"]);
        assert!(!ok);
        assert!(err.contains("no account"), "{err}");
    }
}

/// Polls `/me` with `token` until it is refused (`401 invalid_token`): API.md
/// promises that within 2 s of a revocation, wherever it was made.
async fn refused_within_two_seconds(app: &crate::helpers::TestApp, token: &str) {
    let started = std::time::Instant::now();
    loop {
        let response = app.me(token).await;
        if response.status() == StatusCode::UNAUTHORIZED {
            assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
            return;
        }
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the access token of a session revoked from the command line still works after 2 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
