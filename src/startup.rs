//! Building and running the application: keys, database, state, routes,
//! middleware and background tasks.
//!
//! [`Application::build`] binds the listener itself (port 0 in tests) and
//! exposes the real port, so the integration tests run the very server
//! `main` runs, in process.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_http::{HttpService, Protocol};
use actix_server::Server;
use actix_service::{ServiceFactory, apply_fn_factory, map_config};
use actix_web::body::MessageBody;
use actix_web::dev::{AppConfig, Extensions, Service, ServiceRequest, ServiceResponse};
use actix_web::middleware::{DefaultHeaders, Logger};
use actix_web::rt::net::TcpStream;
use actix_web::{App, web};
use anyhow::Context;
use secrecy::SecretString;
use tokio::task::JoinHandle;

use crate::accounts::Accounts;
use crate::auth::asymmetric::{
    Algorithm, AsymmetricKeys, SigningKey, VerifyingKey,
    load_or_create_key_file as load_or_create_signing_key_file,
};
use crate::auth::keys::{Keyring, load_or_create_key_file};
use crate::auth::{AccessTokens, PasswordHasher, RevocationSet, ServiceKeys};
use crate::clock::{SharedClock, SystemClock};
use crate::config::{Config, ConfigError, JwtAlgorithm};
use crate::connections::ConnectionLimits;
use crate::http::deadline::{BodyDeadline, HeadDeadline};
use crate::http::head::HeadAsGet;
use crate::http::request_id::RequestIds;
use crate::http::{self, AppState};
use crate::limits::RateLimits;
use crate::sessions::Sessions;
use crate::store::{PoolSettings, Store};

/// How often expired revocations and idle rate-limit keys are pruned (and
/// the shared limiter's expired rows deleted).
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// How many ended sessions one housekeeping tick deletes at most.
const CLEANUP_BATCH: i64 = 1000;
/// At most this many batches of expired rate-limit rows per housekeeping tick.
const LIMITS_CLEANUP_BATCHES: usize = 20;
/// Sent and given-up mails are deleted this long after: long enough to answer
/// "did my mail go out?", short enough that old bodies (codes and tokens,
/// long expired by then) do not pile up.
const MAIL_RETENTION: chrono::Duration = chrono::Duration::days(7);
/// In-flight requests get this long to finish on shutdown.
const SHUTDOWN_TIMEOUT_SECS: u64 = 20;
/// actix-http's own timer on a connection's first head fires this long after
/// ours, as a backstop only.
const HEAD_TIMEOUT_BACKSTOP: Duration = Duration::from_secs(1);
/// How long a closing connection waits for the client to take the last
/// answer (a 408, say) before it is dropped (HttpServer's default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Application {
    /// Resolves the key, connects and migrates the database, binds `config.bind_addr`.
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(config.bind_addr)
            .with_context(|| format!("cannot listen on {} (BIND_ADDR)", config.bind_addr))?;
        Self::build_with_listener(config, listener).await
    }

    /// As [`Application::build`], on a listener the caller bound.
    pub async fn build_with_listener(
        config: Config,
        listener: TcpListener,
    ) -> anyhow::Result<Self> {
        Self::build_with_clock(config, listener, Arc::new(SystemClock)).await
    }

    /// As [`Application::build_with_listener`], on a clock the caller gives
    /// (tests move it forward instead of sleeping).
    pub async fn build_with_clock(
        config: Config,
        listener: TcpListener,
        clock: SharedClock,
    ) -> anyhow::Result<Self> {
        let state = web::Data::new(build_state(&config, clock).await?);
        let port = listener.local_addr()?.port();
        let mut tasks = spawn_housekeeping(state.clone().into_inner(), revocation_memory(&config));
        tasks.push(spawn_mail_sender(&state, &config)?);

        // Behind a proxy (TRUST_FORWARDED_FOR) every connection comes from the
        // proxy's address, so a per-address cap would cap the whole service.
        let limits = (!config.trust_forwarded_for).then(|| {
            ConnectionLimits::new(
                config.http_max_connections_per_ip,
                state.telemetry.connections_refused.clone(),
            )
        });
        let (server, closing) = http_server(listener, state.clone(), &config, limits)?;
        tasks.push(closing);

        Ok(Self {
            port,
            server,
            state,
            tasks,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state, for in-process tests and tools.
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until the server stops (SIGTERM/SIGINT: stop accepting, finish
    /// in-flight requests), then stops the background tasks and closes the database.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        for task in &self.tasks {
            task.abort();
        }
        self.state.store.close().await;
        log::info!("server stopped");
        result
    }
}

/// The HTTP server: actix-web's `App` on actix-http, with the timeouts of
/// `HTTP_REQUEST_TIMEOUT` and, unless `limits` is `None`, the per-address
/// connection cap.
///
/// Built from actix-server and actix-http rather than `HttpServer`, because
/// `HttpServer` cannot refuse a connection: here each accepted connection asks
/// [`ConnectionLimits::admit`] before any byte is read, and one over the cap is
/// closed at once, costing no HTTP buffers. The rest is what `HttpServer`
/// does: workers, graceful shutdown on SIGTERM/SIGINT, keep-alive.
fn http_server(
    listener: TcpListener,
    state: web::Data<AppState>,
    config: &Config,
    limits: Option<Arc<ConnectionLimits>>,
) -> std::io::Result<(Server, JoinHandle<()>)> {
    let builder = actix_server::Server::build();
    let stopping = builder.graceful_shutdown_signal();
    // Long-lived answers (the revocation feed's streams) end when a graceful
    // shutdown starts, so they never make it wait for its timeout.
    let closing = tokio::spawn({
        let stopping = stopping.clone();
        let state = state.clone();
        async move {
            stopping.notified().await;
            state.closing.send_replace(true);
        }
    });
    let local_addr = listener.local_addr()?;
    let request_timeout = config.http_request_timeout;
    let server = builder
        .workers(config.http_workers)
        .shutdown_timeout(SHUTDOWN_TIMEOUT_SECS)
        .listen("auth-api", listener, move || {
            let stopping = stopping.clone();
            let http = HttpService::build()
                // On shutdown, idle keep-alive connections close at once
                // instead of holding the exit for their keep-alive time.
                .graceful_shutdown_signal(move || {
                    let stopping = stopping.clone();
                    async move { stopping.notified().await }
                })
                // Every head has HeadDeadline (below), every body BodyDeadline
                // (in the App). actix's own timer, on the first head only, is
                // a backstop a little later, so that the 408 is ours (JSON).
                .client_request_timeout(request_timeout + HEAD_TIMEOUT_BACKSTOP)
                .on_connect_ext(|io: &HeadDeadline<TcpStream>, data: &mut Extensions| {
                    data.insert(io.phase());
                })
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(local_addr)
                // The AppConfig only supplies a host for URL generation when a
                // request has no Host header; nothing here generates URLs.
                .finish(map_config(app(state.clone(), request_timeout), |_| {
                    AppConfig::default()
                }));
            let limits = limits.clone();
            apply_fn_factory(http, move |io: TcpStream, http: &_| {
                let peer = io.peer_addr().ok();
                let admitted = match (&limits, peer) {
                    (Some(limits), Some(peer)) => limits.admit(peer.ip()).map(Some),
                    // No cap, or no address to count (not expected on TCP).
                    _ => Some(None),
                };
                // Over the cap, `io` is dropped here: the connection is closed
                // before anything is read from it.
                let connection = admitted.map(|slot| {
                    let io = HeadDeadline::new(io, request_timeout);
                    (http.call((io, Protocol::Http1, peer)), slot)
                });
                async move {
                    let Some((connection, slot)) = connection else {
                        return Ok(());
                    };
                    let result = connection.await;
                    drop(slot);
                    result
                }
            })
        })?
        .run();
    Ok((server, closing))
}

/// The application: state, extractor settings, middleware and routes.
fn app(
    state: web::Data<AppState>,
    request_timeout: Duration,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let telemetry = state.telemetry.clone();
    let trust_forwarded_for = state.trust_forwarded_for;
    App::new()
        .app_data(state)
        .app_data(http::extract::json_config())
        .app_data(http::extract::path_config())
        .app_data(http::extract::query_config())
        // HEAD is routed as GET; innermost, so the log and the metrics
        // still say HEAD.
        .wrap(HeadAsGet)
        // Inside DefaultHeaders and the logger, so its 408 gets the headers
        // and a log line like any answer.
        .wrap(BodyDeadline::new(request_timeout))
        .wrap(
            DefaultHeaders::new()
                .add(("X-Content-Type-Options", "nosniff"))
                .add(("Cache-Control", "no-store"))
                .add(("Referrer-Policy", "no-referrer")),
        )
        .wrap(request_logger())
        .wrap_fn(move |req, srv| {
            // Request count and latency by method, route pattern and status.
            let telemetry = telemetry.clone();
            let start = Instant::now();
            let method = req.method().clone();
            let response = srv.call(req);
            async move {
                let response = response.await?;
                let pattern = response.request().match_pattern();
                telemetry.observe_request(
                    method.as_str(),
                    pattern.as_deref(),
                    response.status().as_u16(),
                    start.elapsed(),
                );
                // Every error code must be one its route documents (the
                // generated clients' enums); one that is not is a bug to fix
                // in the route list (src/http/routes.rs).
                if let Some(code) = response
                    .response()
                    .error()
                    .and_then(|e| e.as_error::<crate::error::ApiError>())
                    .map(crate::error::ApiError::code)
                    && !http::routes::may_answer(method.as_str(), pattern.as_deref(), code)
                {
                    telemetry.undocumented_errors.inc();
                    log::error!(
                        "undocumented error code {code} answered to {method} {}: add it to the route's errors",
                        pattern.as_deref().unwrap_or("(unmatched)")
                    );
                }
                Ok(response)
            }
        })
        // Outermost: every line the request causes, the access line
        // included, carries its id.
        .wrap(RequestIds {
            trust_incoming: trust_forwarded_for,
        })
        .configure(http::routes)
        .default_service(web::to(http::not_found))
}

/// Raises this process's soft open-file limit (`RLIMIT_NOFILE`) to its hard
/// limit, and logs what it got. Every connection is a file descriptor, and the
/// usual soft default of 1024 is a few hundred slow clients away from
/// refusing everyone; the hard limit is what the operator allowed. Called by
/// `main` before serving (a process-wide setting, so not in `build`).
pub fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::info!("open-file limit (RLIMIT_NOFILE): {limit}"),
        Err(e) => log::warn!("cannot raise the open-file limit (RLIMIT_NOFILE): {e}"),
    }
}

/// Keys, database, hasher, revocation set and services, ready to serve.
async fn build_state(config: &Config, clock: SharedClock) -> anyhow::Result<AppState> {
    let secret = resolve_secret(config)?;
    let keys = Keyring::new(&secret, &config.jwt.previous_secrets);
    let mut tokens = AccessTokens::new(
        keys,
        &config.jwt.issuer,
        &config.jwt.audience,
        config.jwt.leeway,
        config.jwt.access_ttl,
    )
    .with_clock(clock.clone());
    if let Some(asymmetric) = resolve_asymmetric_keys(config)? {
        tokens = tokens.with_asymmetric_keys(asymmetric);
    }
    let tokens = Arc::new(tokens);
    let algorithm = tokens.algorithm();
    let kid = tokens.current_kid().to_owned();
    let other_keys = match config.jwt.algorithm {
        JwtAlgorithm::Hs256 => config.jwt.previous_secrets.len(),
        _ => tokens.public_keys().len().saturating_sub(1),
    };

    let store = Store::connect(
        &config.database_url,
        &PoolSettings {
            max_connections: config.db_max_connections,
            acquire_timeout: config.db_acquire_timeout,
        },
    )
    .await
    .context("cannot open the database (DATABASE_URL)")?;
    crate::upgrade::run(&store)
        .await
        .context("cannot upgrade the stored data")?;

    // A revoked session's access tokens stay refused across a restart: reload
    // every revocation whose tokens may still be unexpired.
    let keep_for = revocation_memory(config);
    let revocations = Arc::new(RevocationSet::new(keep_for));
    crate::revocation_sync::reload(&store, &revocations, keep_for)
        .await
        .context("cannot load recent revocations")?;

    crate::auth::credentials::preload_common_passwords();
    let hasher = Arc::new(PasswordHasher::new(
        config.passwords.concurrency,
        config.passwords.queue,
    ));

    log::info!(
        "auth-api {} ready: listening on {}, database {}, {algorithm} key id {kid}, \
         {other_keys} other accepted key(s), {} recent revocation(s) loaded",
        env!("CARGO_PKG_VERSION"),
        config.bind_addr,
        store.kind(),
        revocations.len(),
    );

    let telemetry = Arc::new(crate::telemetry::Telemetry::with_mails_queued(
        store.mails_queued_counter(),
    ));
    let sessions = Arc::new(Sessions::new(
        store.clone(),
        tokens.clone(),
        revocations.clone(),
        telemetry.clone(),
        config.sessions.clone(),
        clock.clone(),
    ));
    let accounts = Accounts::new(
        store.clone(),
        sessions.clone(),
        hasher.clone(),
        tokens.clone(),
        telemetry.clone(),
        config.accounts.clone(),
        clock.clone(),
    );
    // On PostgreSQL the limits are shared by every instance (DESIGN.md, Scale).
    let limits = match store.rate_limit_table() {
        Some(table) => RateLimits::shared(config.auth_rate_limit, table, clock.clone()),
        None => RateLimits::new(config.auth_rate_limit),
    };
    Ok(AppState {
        store,
        sessions,
        accounts,
        tokens,
        hasher,
        revocations,
        service_keys: ServiceKeys::new(&config.backend_api_keys),
        feed_keepalive: config.revocations_keepalive,
        closing: tokio::sync::watch::Sender::new(false),
        limits,
        telemetry,
        clock,
        trust_forwarded_for: config.trust_forwarded_for,
        metrics_public: config.metrics_public,
    })
}

/// How long a revocation must be remembered: as long as an access token of
/// the session can still verify (lifetime plus leeway), with a small margin.
fn revocation_memory(config: &Config) -> Duration {
    config.jwt.access_ttl + config.jwt.leeway + Duration::from_secs(5)
}

/// The sessions and accounts services on `store`, for the command line's
/// one-shot admin actions: the same code paths as the server's (the
/// database write, the audit line), with a revocation set of their own that
/// dies with the process. A running server learns of the revocations through
/// PostgreSQL NOTIFY; on SQLite it cannot (see the `admin` subcommand).
pub fn account_services(
    config: &Config,
    store: &Store,
) -> anyhow::Result<(Arc<Sessions>, Accounts)> {
    let clock: SharedClock = Arc::new(SystemClock);
    let secret = resolve_secret(config)?;
    let keys = Keyring::new(&secret, &config.jwt.previous_secrets);
    let tokens = Arc::new(AccessTokens::new(
        keys,
        &config.jwt.issuer,
        &config.jwt.audience,
        config.jwt.leeway,
        config.jwt.access_ttl,
    ));
    let telemetry = Arc::new(crate::telemetry::Telemetry::new());
    let sessions = Arc::new(Sessions::new(
        store.clone(),
        tokens.clone(),
        Arc::new(RevocationSet::new(revocation_memory(config))),
        telemetry.clone(),
        config.sessions.clone(),
        clock.clone(),
    ));
    let accounts = Accounts::new(
        store.clone(),
        sessions.clone(),
        Arc::new(PasswordHasher::new(1, 1)),
        tokens,
        telemetry,
        config.accounts.clone(),
        clock,
    );
    Ok((sessions, accounts))
}

/// `JWT_SECRET`, or the key file in the data folder (created on first start).
fn resolve_secret(config: &Config) -> anyhow::Result<SecretString> {
    if let Some(secret) = &config.jwt.secret {
        return Ok(secret.clone());
    }
    let dir = config.data_dir();
    let (secret, created) = load_or_create_key_file(&dir)
        .with_context(|| format!("cannot read or create the key file in {}", dir.display()))?;
    if created {
        log::warn!(
            "JWT_SECRET is not set: generated a random key in {}/{} (mode 0600). \
             Back it up, apart from the database backups (a database copy alone must not \
             be able to mint or refresh tokens); set JWT_SECRET to manage the key yourself.",
            dir.display(),
            crate::auth::keys::KEY_FILE_NAME
        );
    }
    if config.database_kind() == "postgres" {
        log::warn!(
            "JWT_SECRET is not set with PostgreSQL: every instance must share one key, \
             so set JWT_SECRET on all of them"
        );
    }
    Ok(secret)
}

/// ES256/EdDSA: the signing key (`JWT_PRIVATE_KEY_FILE`, or the key file in
/// the data folder, created on first start) and the other accepted keys
/// (`JWT_EXTRA_PUBLIC_KEY_FILES`). `None` with HS256. Errors name the
/// variable, never a path or a key.
fn resolve_asymmetric_keys(config: &Config) -> anyhow::Result<Option<AsymmetricKeys>> {
    let alg = match config.jwt.algorithm {
        JwtAlgorithm::Hs256 => return Ok(None),
        JwtAlgorithm::Es256 => Algorithm::Es256,
        JwtAlgorithm::EdDsa => Algorithm::EdDsa,
    };
    let read = |var: &'static str, path: &std::path::Path| {
        std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(var, format!("cannot read the file ({})", e.kind())))
    };
    let signing = match &config.jwt.private_key_file {
        Some(path) => {
            let pem = read("JWT_PRIVATE_KEY_FILE", path)?;
            SigningKey::from_pem(alg, &pem)
                .map_err(|e| ConfigError::new("JWT_PRIVATE_KEY_FILE", e.to_string()))?
        }
        None => {
            let dir = config.data_dir();
            let (key, created) = load_or_create_signing_key_file(&dir, alg).with_context(|| {
                format!(
                    "cannot read or create the {alg} key file in {} (or set JWT_PRIVATE_KEY_FILE)",
                    dir.display()
                )
            })?;
            if created {
                log::warn!(
                    "JWT_PRIVATE_KEY_FILE is not set: generated a random {alg} key in {}/{} \
                     (mode 0600). Back it up, apart from the database backups; set JWT_PRIVATE_KEY_FILE \
                     to manage the key yourself.",
                    dir.display(),
                    alg.key_file_name()
                );
            }
            if config.database_kind() == "postgres" {
                log::warn!(
                    "JWT_PRIVATE_KEY_FILE is not set with PostgreSQL: every instance must sign \
                     with one key (or accept the others'), so set JWT_PRIVATE_KEY_FILE on all of them"
                );
            }
            key
        }
    };
    let mut others = Vec::with_capacity(config.jwt.extra_public_key_files.len());
    for (i, path) in config.jwt.extra_public_key_files.iter().enumerate() {
        let var = "JWT_EXTRA_PUBLIC_KEY_FILES";
        let pem = read(var, path)
            .map_err(|e| ConfigError::new(var, format!("file {}: {}", i + 1, e.reason)))?;
        let key = VerifyingKey::from_pem(alg, &pem)
            .map_err(|e| ConfigError::new(var, format!("file {}: {e}", i + 1)))?;
        others.push(key);
    }
    let keys = AsymmetricKeys::new(signing, others)
        .map_err(|e| ConfigError::new("JWT_EXTRA_PUBLIC_KEY_FILES", e.to_string()))?;
    Ok(Some(keys))
}

/// Background work: the revocation feed from other instances; forgetting
/// revocations whose tokens expired; deleting sessions that ended more than
/// the retention period ago, a bounded batch per tick.
fn spawn_housekeeping(state: Arc<AppState>, keep_revocations_for: Duration) -> Vec<JoinHandle<()>> {
    let feed = tokio::spawn(crate::revocation_sync::run(
        state.store.clone(),
        state.revocations.clone(),
        keep_revocations_for,
    ));
    let reload = tokio::spawn(crate::revocation_sync::reload_periodically(
        state.store.clone(),
        state.revocations.clone(),
        keep_revocations_for,
    ));
    let prune_state = state.clone();
    let prune = tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        loop {
            tick.tick().await;
            prune_state.revocations.prune(prune_state.clock.now());
            prune_state.limits.forget_idle();
            delete_expired_limits(&prune_state.limits).await;
        }
    });
    let cleanup = tokio::spawn(async move {
        let mut tick = tokio::time::interval(state.sessions.cleanup_interval());
        loop {
            tick.tick().await;
            match state.sessions.delete_ended(CLEANUP_BATCH).await {
                Ok(0) => {}
                Ok(n) => log::info!("housekeeping: deleted {n} ended session(s)"),
                Err(e) => log::warn!(
                    "housekeeping: cannot delete ended sessions: {}",
                    crate::error::with_causes(&e)
                ),
            }
            if let Err(e) = state.accounts.delete_old_grants(CLEANUP_BATCH).await {
                log::warn!("housekeeping: cannot delete old mail grants: {e}");
            }
            let before = state.clock.now() - MAIL_RETENTION;
            match state
                .store
                .delete_finished_mails(before, CLEANUP_BATCH)
                .await
            {
                Ok(0) => {}
                Ok(n) => log::info!("housekeeping: deleted {n} sent or failed mail(s)"),
                Err(e) => log::warn!("housekeeping: cannot delete finished mails: {e}"),
            }
        }
    });
    vec![feed, reload, prune, cleanup]
}

/// Deletes the shared limiter's rows whose budget is full again, a bounded
/// batch per statement (short locks), a bounded number of batches per tick.
async fn delete_expired_limits(limits: &RateLimits) {
    for _ in 0..LIMITS_CLEANUP_BATCHES {
        match limits.delete_expired_shared(CLEANUP_BATCH).await {
            Ok(n) if n < CLEANUP_BATCH.unsigned_abs() => return,
            Ok(_) => {}
            Err(e) => {
                log::debug!("housekeeping: cannot clean the shared rate limits: {e}");
                return;
            }
        }
    }
}

/// The mail sender (see `mail::sender`). A transport that cannot be set up
/// (a mail folder that cannot be created, an unreadable `MAIL_TLS_CA_FILE`)
/// stops the start.
fn spawn_mail_sender(state: &AppState, config: &Config) -> anyhow::Result<JoinHandle<()>> {
    let mail = &config.mail;
    let transport = crate::mail::Transport::new(mail)?;
    log::info!(
        "mail: delivering to {} from {}, at most {} attempt(s) per mail",
        mail.target,
        mail.from,
        mail.max_attempts
    );
    let sender = crate::mail::MailSender::new(
        state.store.clone(),
        transport,
        state.tokens.clone(),
        mail,
        state.clock.clone(),
        state.telemetry.mail.clone(),
    );
    Ok(tokio::spawn(Arc::new(sender).run()))
}

/// One line per request: client, method, route pattern, status, size and time.
/// Never headers (the `Authorization` header is a credential), never bodies,
/// never the query string.
fn request_logger() -> Logger {
    Logger::new("%a %{method}xi %{route}xi %s %b %Dms request_id=%{x-request-id}i")
        .custom_request_replace("method", |req| req.method().to_string())
        .custom_request_replace("route", |req| {
            req.match_pattern().unwrap_or_else(|| "-".to_owned())
        })
}
