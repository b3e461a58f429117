//! Mail delivery (API.md, "Mail"): the outbox and its background sender,
//! against a real SMTP server (aiosmtpd, `tests/support/smtp_sink.py`) and
//! the file transport.
//!
//! The SMTP tests skip with a note when aiosmtpd is not installed, unless
//! `TEST_REQUIRE_SMTP=1` (`.ci/run` installs it and sets it).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use auth_api::auth::Keyring;
use auth_api::auth::mail_seal;
use auth_api::store::{NewMail, QueuedMail, Store};
use reqwest::StatusCode;
use secrecy::SecretString;

use crate::helpers::{PASSWORD, TestApp, spawn_app_with, unique_email};
use crate::support::{ServerProcess, eventually, fresh_postgres_database, require_postgres};

/// Whether aiosmtpd can be used; panics if `TEST_REQUIRE_SMTP=1` and it cannot.
fn smtp_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import aiosmtpd"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && std::env::var("TEST_REQUIRE_SMTP").is_ok_and(|v| v == "1") {
        panic!("TEST_REQUIRE_SMTP=1 but aiosmtpd is not importable (pip install aiosmtpd)");
    }
    ok
}

/// Returns from the test when no SMTP server can be run.
macro_rules! require_smtp {
    () => {
        if !smtp_available() {
            eprintln!("skipped: needs aiosmtpd (pip install aiosmtpd; .ci/run does)");
            return;
        }
    };
}

/// An aiosmtpd process on a port of its own, writing what it accepts to a folder.
struct SmtpSink {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// The TLS mode, certificate and key, if any (see smtp_sink.py).
    tls: Vec<String>,
}

impl SmtpSink {
    async fn start() -> Self {
        Self::start_with(Vec::new()).await
    }

    /// A server with TLS: `mode` is "starttls" or "implicit".
    async fn start_tls(mode: &str, certs: &TestCertificates) -> Self {
        let path = |p: &Path| p.display().to_string();
        Self::start_with(vec![mode.into(), path(&certs.chain), path(&certs.key)]).await
    }

    async fn start_with(tls: Vec<String>) -> Self {
        let mut sink = Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
            tls,
        };
        sink.up().await;
        sink
    }

    /// Starts the server (again) on its port; returns once it accepts connections.
    async fn up(&mut self) {
        assert!(self.child.is_none(), "already running");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let child = Command::new("python3")
            .arg(script)
            .arg(self.port.to_string())
            .arg(self.dir.path())
            .args(&self.tls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 starts");
        self.child = Some(child);
        let port = self.port;
        let listening = eventually(Duration::from_secs(20), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        assert!(listening.is_some(), "the SMTP server did not start");
    }

    /// Kills the server: connections to its port are refused until [`SmtpSink::up`].
    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every message accepted so far, as received.
    fn messages(&self) -> Vec<String> {
        eml_files(self.dir.path())
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect()
    }
}

impl Drop for SmtpSink {
    fn drop(&mut self) {
        self.down();
    }
}

/// A private CA and a server certificate it signed for 127.0.0.1, made with
/// the openssl command line.
struct TestCertificates {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    chain: PathBuf,
    key: PathBuf,
}

impl TestCertificates {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        std::fs::write(
            at("server.ext"),
            "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1\n\
             extendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n",
        )
        .unwrap();
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("openssl runs (the mail TLS tests need it)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        openssl(
            &[
                &["req", "-x509"],
                &ec[..],
                &[
                    "-keyout",
                    "ca.key",
                    "-out",
                    "ca.pem",
                    "-days",
                    "2",
                    "-subj",
                    "/CN=auth-api test CA",
                    "-addext",
                    "basicConstraints=critical,CA:TRUE",
                    "-addext",
                    "keyUsage=critical,keyCertSign",
                ],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"],
                &ec[..],
                &[
                    "-keyout",
                    "server.key",
                    "-out",
                    "server.csr",
                    "-subj",
                    "/CN=127.0.0.1",
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        Self {
            ca: at("ca.pem"),
            chain: at("server.pem"),
            key: at("server.key"),
            _dir: dir,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn eml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "eml"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// The keys of every test app (and server process) started with the test
/// `JWT_SECRET`: bodies queued by the tests are sealed with them.
fn test_keys() -> Keyring {
    Keyring::new(&SecretString::from(crate::helpers::JWT_SECRET), &[])
}

fn mail(to: &str, n: usize) -> NewMail {
    NewMail {
        to: to.to_owned(),
        subject: format!("Your code {n}"),
        body: mail_seal::seal(
            &test_keys(),
            to,
            &format!("Hello,\n\nyour code is 4711{n:02}.\n"),
        ),
    }
}

/// The header value of `name` in a raw message (first occurrence).
fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

async fn outbox(app: &TestApp, to: &str) -> Vec<QueuedMail> {
    app.state.store.outbox_for(to).await.unwrap()
}

/// Waits until every mail queued for `to` is in a final state or `check` holds.
async fn wait_outbox(app: &TestApp, to: &str, check: impl Fn(&[QueuedMail]) -> bool) {
    let done = eventually(Duration::from_secs(30), || {
        let store = app.state.store.clone();
        let check = &check;
        async move { check(&store.outbox_for(to).await.unwrap()) }
    })
    .await;
    assert!(done.is_some(), "outbox: {:#?}", outbox(app, to).await);
}

async fn metric(app: &TestApp, name: &str) -> u64 {
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_queued_mail_arrives_over_smtp_with_its_sender_subject_and_body() {
    require_smtp!();
    let sink = SmtpSink::start().await;
    let app = spawn_app_with(&[
        ("MAIL_URL", &sink.url()),
        ("MAIL_FROM", "Auth Tests <auth@example.com>"),
    ])
    .await;
    let to = unique_email();

    let queued = mail(&to, 1);
    app.state
        .store
        .enqueue_mail(&queued, app.clock_now())
        .await
        .unwrap();

    let arrived = eventually(Duration::from_secs(30), || async {
        sink.messages().len() == 1
    })
    .await;
    assert!(arrived.is_some(), "no mail arrived");
    let message = &sink.messages()[0];
    assert_eq!(header(message, "X-Envelope-From"), Some("auth@example.com"));
    assert_eq!(header(message, "X-Envelope-To"), Some(to.as_str()));
    assert_eq!(
        header(message, "From"),
        Some("\"Auth Tests\" <auth@example.com>")
    );
    assert_eq!(header(message, "To"), Some(to.as_str()));
    assert_eq!(header(message, "Subject"), Some("Your code 1"));
    assert!(header(message, "Content-Type").is_some_and(|v| v.starts_with("text/plain")));
    assert!(message.contains("your code is 471101."), "{message}");

    wait_outbox(&app, &to, |m| m.len() == 1 && m[0].sent_at.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(row.last_error, None);
    let message_id = header(message, "Message-ID").unwrap();
    assert!(message_id.contains(&row.id.to_string()), "{message_id}");
    assert_eq!(metric(&app, "auth_mails_queued_total").await, 1);
    assert_eq!(metric(&app, "auth_mails_sent_total").await, 1);
}

#[tokio::test]
async fn the_file_transport_writes_each_mail_as_a_private_eml_file() {
    let app = spawn_app_with(&[]).await;
    let folder = app.mail_dir.path().to_owned();
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 2), app.clock_now())
        .await
        .unwrap();
    app.state
        .store
        .enqueue_mail(&mail(&to, 3), app.clock_now())
        .await
        .unwrap();

    let written = eventually(Duration::from_secs(30), || {
        let folder = folder.clone();
        async move { eml_files(&folder).len() == 2 }
    })
    .await;
    assert!(written.is_some(), "files: {:?}", eml_files(&folder));
    let mut subjects = Vec::new();
    for file in eml_files(&folder) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", file.display());
        }
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(header(&text, "From"), Some("no-reply@localhost"));
        assert_eq!(header(&text, "To"), Some(to.as_str()));
        subjects.push(header(&text, "Subject").unwrap().to_owned());
    }
    subjects.sort();
    assert_eq!(subjects, ["Your code 2", "Your code 3"]);
    wait_outbox(&app, &to, |m| m.iter().all(|m| m.sent_at.is_some())).await;
    assert!(!eml_files(&folder).iter().any(|f| f.ends_with(".partial")));
}

#[tokio::test]
async fn a_missing_mail_folder_is_created_private() {
    let root = tempfile::tempdir().unwrap();
    let folder = root.path().join("deep/mail");
    let app = spawn_app_with(&[("MAIL_URL", &format!("file://{}", folder.display()))]).await;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 4), app.clock_now())
        .await
        .unwrap();
    wait_outbox(&app, &to, |m| m.iter().all(|m| m.sent_at.is_some())).await;
    assert_eq!(eml_files(&folder).len(), 1);
}

#[tokio::test]
async fn an_smtp_outage_delays_mail_loses_none_and_sends_none_twice() {
    require_smtp!();
    let mut sink = SmtpSink::start().await;
    let app = spawn_app_with(&[("MAIL_URL", &sink.url())]).await;
    sink.down();
    let to = unique_email();
    for n in 0..5 {
        app.state
            .store
            .enqueue_mail(&mail(&to, n), app.clock_now())
            .await
            .unwrap();
    }

    // Every mail is tried and fails; the service answers meanwhile.
    wait_outbox(&app, &to, |m| {
        m.len() == 5 && m.iter().all(|m| m.attempts >= 1 && m.last_error.is_some())
    })
    .await;
    let email = unique_email();
    assert_eq!(
        app.register(&email, PASSWORD).await.status(),
        StatusCode::CREATED
    );
    assert_eq!(app.login(&email, PASSWORD).await.status(), StatusCode::OK);
    for row in outbox(&app, &to).await {
        assert!(row.sent_at.is_none() && row.failed_at.is_none(), "{row:?}");
        let error = row.last_error.unwrap();
        assert!(error.contains("connection refused"), "{error}");
        assert!(
            !error.contains("4711"),
            "the body leaked into last_error: {error}"
        );
    }
    assert!(metric(&app, "auth_mail_attempts_retried_total").await >= 5);
    assert_eq!(sink.messages().len(), 0);

    // The server returns; the retries come due (the clock moves past the backoff).
    sink.up().await;
    app.advance(601);
    app.state.store.wake_mail_sender();
    wait_outbox(&app, &to, |m| m.iter().all(|m| m.sent_at.is_some())).await;
    // The registration queued its verification mail during the outage too.
    wait_outbox(&app, &email, |m| m.len() == 1 && m[0].sent_at.is_some()).await;
    let messages: Vec<String> = sink
        .messages()
        .into_iter()
        .filter(|m| header(m, "To") == Some(to.as_str()))
        .collect();
    let subjects: HashSet<&str> = messages
        .iter()
        .filter_map(|m| header(m, "Subject"))
        .collect();
    assert_eq!(messages.len(), 5, "each mail once");
    assert_eq!(subjects.len(), 5);
    assert_eq!(metric(&app, "auth_mails_sent_total").await, 6);
    assert_eq!(metric(&app, "auth_mails_failed_total").await, 0);
}

#[tokio::test]
async fn starttls_required_refuses_a_server_that_cannot_upgrade() {
    require_smtp!();
    let sink = SmtpSink::start().await;
    let url = format!("{}?tls=required", sink.url());
    let app = spawn_app_with(&[("MAIL_URL", &url)]).await;
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 5), app.clock_now())
        .await
        .unwrap();

    wait_outbox(&app, &to, |m| m.len() == 1 && m[0].last_error.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert!(row.sent_at.is_none(), "{row:?}");
    assert_eq!(row.attempts, 1);
    let error = row.last_error.as_deref().unwrap();
    assert!(error.starts_with("smtp client"), "{error}");
    assert_eq!(sink.messages().len(), 0, "nothing sent in clear");
    assert_eq!(metric(&app, "auth_mail_attempts_retried_total").await, 1);
    // The service is unaffected.
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_mail_is_given_up_after_mail_max_attempts() {
    // Nothing listens on this port: every attempt is refused.
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let app = spawn_app_with(&[("MAIL_URL", &url), ("MAIL_MAX_ATTEMPTS", "3")]).await;
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 6), app.clock_now())
        .await
        .unwrap();

    for attempt in 1..=3 {
        wait_outbox(&app, &to, |m| {
            m[0].attempts == attempt && m[0].last_error.is_some()
        })
        .await;
        // Past any backoff: the next attempt is due.
        app.advance(601);
        app.state.store.wake_mail_sender();
    }
    wait_outbox(&app, &to, |m| m[0].failed_at.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert_eq!(row.attempts, 3);
    assert!(row.sent_at.is_none());
    assert_eq!(row.body, "", "nothing of a mail given up is kept");
    assert_eq!(metric(&app, "auth_mails_failed_total").await, 1);
    assert_eq!(metric(&app, "auth_mail_attempts_retried_total").await, 2);
    // Given up means given up: more time brings no attempt.
    app.advance(3600);
    app.state.store.wake_mail_sender();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(outbox(&app, &to).await[0].attempts, 3);
}

#[tokio::test]
async fn a_backoff_not_yet_due_is_not_retried() {
    let url = format!("smtp://127.0.0.1:{}", free_port());
    let app = spawn_app_with(&[("MAIL_URL", &url)]).await;
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 7), app.clock_now())
        .await
        .unwrap();
    wait_outbox(&app, &to, |m| m[0].last_error.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert_eq!(row.attempts, 1);
    // The first retry waits 1 s after the attempt; a claim at the attempt's
    // own time takes nothing.
    let early = app
        .state
        .store
        .claim_due_mails(
            row.next_attempt_at - chrono::Duration::milliseconds(1),
            row.next_attempt_at + chrono::Duration::seconds(300),
            10,
            10,
        )
        .await
        .unwrap();
    assert!(early.iter().all(|m| m.id != row.id));
}

#[tokio::test]
async fn a_claimed_mail_is_not_claimed_again_before_its_lease_ends() {
    // The sender of this app delivers to files; the claims below are the
    // test's own, on mails due in the future of the app's clock.
    let app = spawn_app_with(&[]).await;
    let store = &app.state.store;
    let to = unique_email();
    let later = app.clock_now() + chrono::Duration::days(1);
    store.enqueue_mail(&mail(&to, 8), later).await.unwrap();
    let lease_end = later + chrono::Duration::seconds(300);
    let first = store
        .claim_due_mails(later, lease_end, 10, 10)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].attempts, 1);
    let second = store
        .claim_due_mails(later, lease_end, 10, 10)
        .await
        .unwrap();
    assert!(second.is_empty(), "claimed twice: {second:?}");
    // A sender that died: its lease ends and another takes the mail.
    let after = store
        .claim_due_mails(
            lease_end,
            lease_end + chrono::Duration::seconds(300),
            10,
            10,
        )
        .await
        .unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].attempts, 2);
}

#[tokio::test]
async fn two_instances_on_postgres_deliver_each_mail_exactly_once() {
    let base = require_postgres!();
    require_smtp!();
    let database_url = fresh_postgres_database(&base).await;
    let sink = SmtpSink::start().await;
    let smtp = sink.url();
    let vars = [
        ("DATABASE_URL", database_url.as_str()),
        ("JWT_SECRET", crate::helpers::JWT_SECRET),
        ("MAIL_URL", smtp.as_str()),
    ];
    let (a, b) = tokio::join!(ServerProcess::start(&vars), ServerProcess::start(&vars));

    // Queued by a third party (as another instance would): both senders
    // find the mails by polling, and race for them.
    let store = Store::connect(
        &secrecy::SecretString::from(database_url.clone()),
        &auth_api::store::PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let to = unique_email();
    const MAILS: usize = 60;
    for n in 0..MAILS {
        store
            .enqueue_mail(&mail(&to, n), chrono::Utc::now())
            .await
            .unwrap();
    }
    let delivered = eventually(Duration::from_secs(60), || {
        let store = store.clone();
        let to = to.clone();
        async move {
            let rows = store.outbox_for(&to).await.unwrap();
            rows.iter().all(|m| m.sent_at.is_some())
        }
    })
    .await;
    assert!(
        delivered.is_some(),
        "not all delivered:\n{}\n{}",
        a.log(),
        b.log()
    );
    let messages = sink.messages();
    let ids: HashSet<&str> = messages
        .iter()
        .filter_map(|m| header(m, "Message-ID"))
        .collect();
    assert_eq!(ids.len(), MAILS, "every mail arrived");
    assert_eq!(messages.len(), MAILS, "no mail arrived twice");
    for row in store.outbox_for(&to).await.unwrap() {
        assert_eq!(row.attempts, 1, "{row:?}");
    }
    // What the two instances say they sent adds up to the mails, once each.
    let mut sent = 0;
    for server in [&a, &b] {
        let text = reqwest::get(server.url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        sent += text
            .lines()
            .find_map(|l| {
                l.strip_prefix("auth_mails_sent_total ")?
                    .parse::<usize>()
                    .ok()
            })
            .unwrap_or(0);
    }
    assert_eq!(sent, MAILS);
    store.close().await;
}

#[tokio::test]
async fn a_bad_mail_url_stops_the_start_without_showing_its_password() {
    let folder = tempfile::tempdir().unwrap();
    let url_file = folder.path().join("mail_url");
    std::fs::write(
        &url_file,
        "smtp://user:hunter2-secret@mail.example.com:25\n",
    )
    .unwrap();
    let file = url_file.display().to_string();
    for (var, value) in [
        ("MAIL_URL", "http://mail.example.com"),
        (
            "MAIL_URL",
            "smtp://user:hunter2-secret@mail.example.com:587?tls=maybe",
        ),
        ("MAIL_URL", "file://"),
        ("MAIL_URL_FILE", file.as_str()),
        ("MAIL_FROM", "not an address"),
        ("MAIL_MAX_ATTEMPTS", "0"),
        // A CA for a connection without TLS is a mistake.
        ("MAIL_TLS_CA_FILE", "/etc/ssl/ca.pem"),
    ] {
        let err = auth_api::config::Config::from_lookup(|k| (k == var).then(|| value.to_owned()))
            .expect_err(value);
        assert_eq!(err.var, var, "{value}");
        let text = err.to_string();
        assert!(!text.contains("hunter2"), "{text}");
    }

    // The real binary refuses to start, and says which variable.
    let output = Command::new(env!("CARGO_BIN_EXE_auth-api"))
        .current_dir(folder.path())
        .env_clear()
        .env("MAIL_URL", "smtp://user:hunter2-secret@mail.example.com:25")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("MAIL_URL"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "{stderr}");
}

#[tokio::test]
async fn a_good_mail_url_from_a_file_is_logged_redacted() {
    let folder = tempfile::tempdir().unwrap();
    let url_file = folder.path().join("mail_url");
    // Valid, never contacted before a mail is queued.
    std::fs::write(&url_file, "smtps://user:hunter2-secret@127.0.0.1:1\n").unwrap();
    let server = ServerProcess::start(&[
        ("MAIL_URL_FILE", &url_file.display().to_string()),
        ("RUST_LOG", "info"),
        (
            "DATABASE_URL",
            &format!("sqlite://{}/auth.db", folder.path().display()),
        ),
    ])
    .await;
    let log = server.log();
    assert!(log.contains("smtps://user:***@127.0.0.1:1"), "{log}");
    assert!(!log.contains("hunter2"), "{log}");
}

#[tokio::test]
async fn an_invalid_recipient_is_given_up_at_once() {
    let app = spawn_app_with(&[]).await;
    let to = "not an address";
    app.state
        .store
        .enqueue_mail(&mail(to, 9), app.clock_now())
        .await
        .unwrap();
    wait_outbox(&app, to, |m| m[0].failed_at.is_some()).await;
    let row = &outbox(&app, to).await[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(
        row.last_error.as_deref(),
        Some("the recipient's address is not valid")
    );
    assert_eq!(metric(&app, "auth_mails_failed_total").await, 1);
    assert!(eml_files(app.mail_dir.path()).is_empty());
}

#[tokio::test]
async fn finished_mails_are_deleted_after_seven_days_and_pending_ones_never() {
    let app = spawn_app_with(&[("SESSION_CLEANUP_INTERVAL", "1")]).await;
    let store = &app.state.store;
    let (sent, failed, pending) = (unique_email(), "not an address", unique_email());
    store
        .enqueue_mail(&mail(&sent, 10), app.clock_now())
        .await
        .unwrap();
    store
        .enqueue_mail(&mail(failed, 11), app.clock_now())
        .await
        .unwrap();
    // Due in a month: still pending when the others are deleted.
    let later = app.clock_now() + chrono::Duration::days(30);
    store
        .enqueue_mail(&mail(&pending, 12), later)
        .await
        .unwrap();
    wait_outbox(&app, &sent, |m| m[0].sent_at.is_some()).await;
    wait_outbox(&app, failed, |m| m[0].failed_at.is_some()).await;

    // Six days on, nothing is old enough.
    app.advance(6 * 86_400);
    let six_days_on = app.clock_now();
    let deleted = store
        .delete_finished_mails(six_days_on - chrono::Duration::days(7), 1000)
        .await
        .unwrap();
    assert_eq!(deleted, 0);

    // Eight days on, the housekeeping task deletes both finished mails.
    app.advance(2 * 86_400);
    let gone = eventually(Duration::from_secs(30), || async {
        outbox(&app, &sent).await.is_empty() && outbox(&app, failed).await.is_empty()
    })
    .await;
    assert!(gone.is_some(), "finished mails were kept");
    assert_eq!(outbox(&app, &pending).await.len(), 1);
}

/// Delivers one mail over TLS through `url` and checks it arrived intact.
async fn delivered_over_tls(sink: &SmtpSink, url: &str, ca: &Path) {
    let app = spawn_app_with(&[
        ("MAIL_URL", url),
        ("MAIL_TLS_CA_FILE", &ca.display().to_string()),
    ])
    .await;
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 13), app.clock_now())
        .await
        .unwrap();
    wait_outbox(&app, &to, |m| m[0].sent_at.is_some()).await;
    let messages = sink.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(header(&messages[0], "Subject"), Some("Your code 13"));
    assert!(messages[0].contains("your code is 471113."));
}

#[tokio::test]
async fn smtps_delivers_over_tls_to_a_server_whose_certificate_verifies() {
    require_smtp!();
    let certs = TestCertificates::new();
    let sink = SmtpSink::start_tls("implicit", &certs).await;
    let url = format!("smtps://127.0.0.1:{}", sink.port);
    delivered_over_tls(&sink, &url, &certs.ca).await;
}

#[tokio::test]
async fn starttls_required_upgrades_then_delivers() {
    require_smtp!();
    let certs = TestCertificates::new();
    // The server refuses MAIL FROM before STARTTLS: delivery proves the upgrade.
    let sink = SmtpSink::start_tls("starttls", &certs).await;
    let url = format!("smtp://127.0.0.1:{}?tls=required", sink.port);
    delivered_over_tls(&sink, &url, &certs.ca).await;
}

#[tokio::test]
async fn a_certificate_that_does_not_verify_gets_no_mail() {
    require_smtp!();
    let certs = TestCertificates::new();
    let sink = SmtpSink::start_tls("implicit", &certs).await;
    // Without MAIL_TLS_CA_FILE the private CA is unknown: the handshake fails.
    let url = format!("smtps://127.0.0.1:{}", sink.port);
    let app = spawn_app_with(&[("MAIL_URL", &url)]).await;
    let to = unique_email();
    app.state
        .store
        .enqueue_mail(&mail(&to, 14), app.clock_now())
        .await
        .unwrap();
    wait_outbox(&app, &to, |m| m[0].last_error.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert!(row.sent_at.is_none());
    assert!(
        row.last_error.as_deref().unwrap().starts_with("smtp "),
        "{row:?}"
    );
    assert!(sink.messages().is_empty());
}

#[tokio::test]
async fn mail_bodies_and_recipients_never_reach_the_log_even_at_trace() {
    require_smtp!();
    let sink = SmtpSink::start().await;
    let folder = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}/auth.db", folder.path().display());
    let server = ServerProcess::start(&[
        ("DATABASE_URL", database_url.as_str()),
        ("MAIL_URL", &sink.url()),
        ("RUST_LOG", "trace"),
        // The key the test seals its mail with.
        ("JWT_SECRET", crate::helpers::JWT_SECRET),
    ])
    .await;
    // Queued by another process on the same database: the server's sender
    // finds it by polling.
    let store = Store::connect(
        &secrecy::SecretString::from(database_url),
        &auth_api::store::PoolSettings {
            max_connections: 1,
            acquire_timeout: Duration::from_secs(5),
        },
    )
    .await
    .unwrap();
    let to = format!(
        "secret-recipient-{}@example.org",
        uuid::Uuid::new_v4().simple()
    );
    let queued = NewMail {
        to: to.clone(),
        subject: "Your code".into(),
        body: mail_seal::seal(
            &test_keys(),
            &to,
            "Your code is 918273, or open https://app.example/?token=s3cr3t-t0ken-value",
        ),
    };
    store
        .enqueue_mail(&queued, chrono::Utc::now())
        .await
        .unwrap();
    let arrived = eventually(Duration::from_secs(30), || async {
        sink.messages().len() == 1
    })
    .await;
    assert!(arrived.is_some(), "{}", server.log());
    assert!(sink.messages()[0].contains("918273"));
    let logged = eventually(Duration::from_secs(10), || async {
        server.log().contains("mail: sent id=")
    })
    .await;
    let log = server.log();
    assert!(logged.is_some(), "{log}");
    assert!(log.contains("to=*@example.org"), "{log}");
    for secret in ["918273", "s3cr3t-t0ken-value", "secret-recipient"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    store.close().await;
}

#[tokio::test]
async fn a_last_attempt_cut_short_is_given_up_when_its_lease_ends() {
    let app = spawn_app_with(&[("MAIL_MAX_ATTEMPTS", "1")]).await;
    let store = &app.state.store;
    let to = unique_email();
    // Due tomorrow on the app's clock, so only this test's claim takes it:
    // a sender that then stops without recording the attempt.
    let later = app.clock_now() + chrono::Duration::days(1);
    store.enqueue_mail(&mail(&to, 15), later).await.unwrap();
    let lease_end = later + chrono::Duration::seconds(300);
    assert_eq!(
        store
            .claim_due_mails(later, lease_end, 1, 1)
            .await
            .unwrap()
            .len(),
        1
    );

    // Past the lease: the app's sender settles it rather than leave it pending.
    app.advance(86_400 + 301);
    app.state.store.wake_mail_sender();
    wait_outbox(&app, &to, |m| m[0].failed_at.is_some()).await;
    let row = &outbox(&app, &to).await[0];
    assert_eq!(row.attempts, 1);
    assert_eq!(
        row.last_error.as_deref(),
        Some("the sender stopped during the last attempt")
    );
    assert_eq!(row.body, "", "nothing of a mail given up is kept");
    assert!(
        eml_files(app.mail_dir.path()).is_empty(),
        "not sent after all"
    );
    assert_eq!(metric(&app, "auth_mails_failed_total").await, 1);
}
