//! Test fixtures beyond `spawn_app`: PostgreSQL databases, real server
//! processes of the binary, and a TCP proxy that can cut the database off.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_auth-api");

/// The PostgreSQL server of `TEST_DATABASE_URL`, if the run has one. A run
/// that sets `TEST_REQUIRE_POSTGRES` (CI's PostgreSQL pass) fails here rather
/// than skipping, so a missing server can never pass for a green run.
pub fn postgres_base() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL")
        .ok()
        .filter(|url| url.starts_with("postgres"));
    assert!(
        url.is_some() || std::env::var_os("TEST_REQUIRE_POSTGRES").is_none(),
        "TEST_REQUIRE_POSTGRES is set but TEST_DATABASE_URL names no PostgreSQL server"
    );
    url
}

/// How old a test database of this prefix must be before a later run drops it
/// (longer than any run, so a concurrent run's databases are never touched).
const STALE_TEST_DATABASE: i64 = 6 * 3600;

/// Drops this prefix's test databases created more than
/// [`STALE_TEST_DATABASE`] ago, and those named before names carried a time
/// (a uuid right after the prefix). A database still in use is left alone.
async fn drop_stale_test_databases(conn: &mut sqlx::PgConnection, prefix: &str, now: i64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE starts_with(datname, $1)")
            .bind(prefix)
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let rest = &name[prefix.len()..];
        let created = rest
            .split_once('_')
            .and_then(|(secs, _)| secs.parse::<i64>().ok());
        let stale = match created {
            Some(created) => now - created > STALE_TEST_DATABASE,
            None => rest.len() == 32 && rest.bytes().all(|b| b.is_ascii_hexdigit()),
        };
        if stale {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\""))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// Skips (with a note) a test that only means something on PostgreSQL; fails
/// instead when the run requires PostgreSQL (see [`postgres_base`]).
macro_rules! require_postgres {
    () => {
        match $crate::support::postgres_base() {
            Some(url) => url,
            None => {
                eprintln!("skipped: needs PostgreSQL (set TEST_DATABASE_URL; .ci/run does)");
                return;
            }
        }
    };
}
pub(crate) use require_postgres;

/// A fresh, empty PostgreSQL database on the server of `base`; returns its URL.
///
/// Named `<prefix><unix seconds>_<random>`. Tests never drop their own (a
/// failed test's database is worth a look), so the first call of each run
/// drops those of its prefix older than [`STALE_TEST_DATABASE`]: without that,
/// local runs (~1,000 databases each, ~7 MB apiece) filled the disk.
pub async fn fresh_postgres_database(base: &str) -> String {
    use sqlx::Connection;
    let prefix = std::env::var("TEST_DATABASE_PREFIX").unwrap_or_else(|_| "authtest_".into());
    let now = chrono::Utc::now().timestamp();
    let name = format!(
        "{prefix}{now}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let mut conn = sqlx::PgConnection::connect(base)
        .await
        .expect("PostgreSQL reachable");
    static CLEANED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if !CLEANED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        drop_stale_test_databases(&mut conn, &prefix, now).await;
    }
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create a test database");
    let _ = conn.close().await;
    let (server, _) = base.rsplit_once('/').expect("a URL ending in /database");
    format!("{server}/{name}")
}

/// A running `auth-api` process, killed when dropped.
pub struct ServerProcess {
    pub address: String,
    child: Child,
    _log: tempfile::NamedTempFile,
    /// The default mail folder (each test server its own, never `data/mail`).
    _mail: tempfile::TempDir,
}

impl ServerProcess {
    /// Starts the binary with a clean environment plus `vars`, and waits until
    /// `/healthz` answers.
    pub async fn start(vars: &[(&str, &str)]) -> Self {
        Self::start_command(Command::new(BIN), vars).await
    }

    /// As [`ServerProcess::start`], with the process's open-file limit (soft
    /// and hard) set to `limit`, as a small container or a default shell gives.
    pub async fn start_with_open_file_limit(limit: u32, vars: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new("/bin/sh");
        cmd.args(["-c", r#"ulimit -n "$1" && exec "$0""#, BIN])
            .arg(limit.to_string());
        Self::start_command(cmd, vars).await
    }

    async fn start_command(mut cmd: Command, vars: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let mail = tempfile::tempdir().unwrap();
        cmd.env_clear()
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("HTTP_WORKERS", "1")
            .env("AUTH_RATE_LIMIT", "0")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap());
        if !vars.iter().any(|(k, _)| k.starts_with("MAIL_URL")) {
            cmd.env("MAIL_URL", format!("file://{}", mail.path().display()));
        }
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the binary starts");
        let server = Self {
            address: format!("http://127.0.0.1:{port}"),
            child,
            _log: log,
            _mail: mail,
        };
        let client = reqwest::Client::new();
        for _ in 0..200 {
            if let Ok(r) = client.get(server.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server did not start:\n{}", server.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends SIGTERM, as an orchestrator does to stop a container.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let start = std::time::Instant::now();
        while start.elapsed() < within {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// What the process logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log.path()).unwrap_or_default()
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TCP proxy to `upstream` that the test can take down (cutting every open
/// connection and refusing new ones) and bring back up.
pub struct TcpProxy {
    pub port: u16,
    up: Arc<Mutex<bool>>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(Mutex::new(true));
        let connections: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (up2, conns2) = (up.clone(), connections.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*up2.lock().unwrap() {
                    drop(client); // down: hang up at once
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                conns2.lock().unwrap().push(task);
            }
        });
        Self {
            port,
            up,
            connections,
            accept,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        *self.up.lock().unwrap() = false;
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        *self.up.lock().unwrap() = true;
    }

    /// `url` with its host and port replaced by this proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").unwrap();
        let (authority, path) = rest.split_once('/').unwrap();
        let userinfo = authority
            .rsplit_once('@')
            .map(|(u, _)| format!("{u}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}127.0.0.1:{}/{path}", self.port)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.down();
        self.accept.abort();
    }
}

/// The host:port of a PostgreSQL URL, resolved.
pub fn socket_of(url: &str) -> SocketAddr {
    let rest = url.split_once("://").unwrap().1;
    let authority = rest.split('/').next().unwrap();
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let hostport = if hostport.contains(':') {
        hostport.to_owned()
    } else {
        format!("{hostport}:5432")
    };
    std::net::ToSocketAddrs::to_socket_addrs(&hostport)
        .unwrap()
        .next()
        .unwrap()
}

/// Polls until `check` holds, for at most `within`; returns how long it took.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> Option<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = std::time::Instant::now();
    while start.elapsed() <= within {
        if check().await {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    None
}
