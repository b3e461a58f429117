//! Typed configuration, read once at start from the environment (and `.env`).
//!
//! Every variable of the table in `API.md` lives here with its default. A bad
//! value stops the start with a [`ConfigError`] that names the variable and the
//! reason, never the value itself (it may be a secret).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

/// Minimum length, in bytes, of an HS256 key (RFC 7518 §3.2: at least the hash size).
pub const MIN_SECRET_BYTES: usize = 32;

/// A configuration error: which variable, and why. Never carries the value.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    pub(crate) fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// Everything the service needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`; may hold a password, so it is secret.
    pub database_url: SecretString,
    pub bind_addr: SocketAddr,
    pub jwt: JwtConfig,
    pub sessions: SessionConfig,
    pub passwords: PasswordConfig,
    pub accounts: AccountConfig,
    /// Requests per minute per client IP (and failed logins per email); 0 = off.
    pub auth_rate_limit: u32,
    pub trust_forwarded_for: bool,
    /// `METRICS_PUBLIC`: serve `/metrics` to any client, not only to loopback
    /// and private-network addresses.
    pub metrics_public: bool,
    /// Database pool size and the time a request waits for a connection.
    pub db_max_connections: u32,
    pub db_acquire_timeout: Duration,
    /// HTTP worker threads (each runs its own async executor).
    pub http_workers: usize,
    /// A request whose head or body has not arrived this long after it began
    /// is answered `408` and its connection closed (slow-client defence).
    pub http_request_timeout: Duration,
    /// Open connections one client address may hold (IPv6: one /64); more are
    /// closed at accept. Not applied with `TRUST_FORWARDED_FOR`: every
    /// connection then comes from the proxy.
    pub http_max_connections_per_ip: usize,
    /// `MAIL_URL` (or `MAIL_URL_FILE`), `MAIL_FROM`, `MAIL_MAX_ATTEMPTS`.
    pub mail: crate::mail::MailConfig,
    /// Service keys of `GET /revocations` (`BACKEND_API_KEYS`); none: the route answers 404.
    pub backend_api_keys: Vec<SecretString>,
    /// The revocation feed sends a comment line at least this often
    /// (`REVOCATIONS_KEEPALIVE`, 1 to 15 s: API.md promises one every 15 s).
    pub revocations_keepalive: Duration,
}

/// The algorithm of the access tokens (`JWT_ALGORITHM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 under `JWT_SECRET` (the default).
    Hs256,
    /// ECDSA P-256 under `JWT_PRIVATE_KEY_FILE`.
    Es256,
    /// Ed25519 under `JWT_PRIVATE_KEY_FILE`.
    EdDsa,
}

/// Keys and claims of the access tokens.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// `None`: use (or create) the key file in the data folder. In every mode
    /// the refresh-token MAC keys are derived from it.
    pub secret: Option<SecretString>,
    pub previous_secrets: Vec<SecretString>,
    pub algorithm: JwtAlgorithm,
    /// ES256/EdDSA: the PEM PKCS#8 signing key; `None`: generated into the data folder.
    pub private_key_file: Option<PathBuf>,
    /// ES256/EdDSA: PEM public (or private) keys also accepted and published.
    pub extra_public_key_files: Vec<PathBuf>,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
    pub access_ttl: Duration,
}

/// Lifetimes of sessions and refresh tokens.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A refresh token unused for this long expires (each rotation starts a new one).
    pub refresh_ttl: Duration,
    /// A session ends this long after login, whatever the rotations.
    pub max_lifetime: Duration,
    /// How long the parent of the current refresh token may still be replayed.
    pub reuse_grace: Duration,
    /// Ended sessions are deleted this long after they end.
    pub retention: Duration,
    /// How often the housekeeping task deletes a batch of ended sessions.
    pub cleanup_interval: Duration,
    /// Active sessions per user; a login beyond it revokes the least recently used.
    pub max_per_user: u32,
}

/// The account lifecycle: verification, reset and email-change mails.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// Refuse `/login` (`403 email_not_verified`) until the email is verified.
    pub require_email_verification: bool,
    /// Named in mails.
    pub app_name: String,
    /// Mailed links are this plus `?purpose=…&token=…`.
    pub app_link_url: String,
    /// How long a mailed token or code lives.
    pub mail_code_ttl: Duration,
}

/// Bounds on the password hasher (argon2id is ~19 MiB and tens of ms per hash).
#[derive(Debug, Clone)]
pub struct PasswordConfig {
    /// Hashes running at once; each holds ~19 MiB.
    pub concurrency: usize,
    /// Hash requests waiting for a hashing thread before answering 503.
    pub queue: usize,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|key| std::env::var(key).ok())
    }

    /// Reads from any lookup function, so tests can build a configuration
    /// without touching the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |key: &'static str| get(key).filter(|v| !v.trim().is_empty());
        let secret_or_file = |key: &'static str, file_key: &'static str, empty_file_ok: bool| {
            secret_var(&get, key, file_key, empty_file_ok)
        };

        let (database_url, database_url_var) =
            match secret_or_file("DATABASE_URL", "DATABASE_URL_FILE", false)? {
                Some((url, from)) if !url.trim().is_empty() => (url, from),
                _ => ("sqlite://data/auth.db".to_owned(), "DATABASE_URL"),
            };
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                database_url_var,
                "must start with sqlite:// or postgres://",
            ));
        }

        let bind_addr = var("BIND_ADDR")
            .unwrap_or_else(|| "127.0.0.1:8080".into())
            .parse()
            .map_err(|_| ConfigError::new("BIND_ADDR", "must be an address like 127.0.0.1:8080"))?;

        let secret = match secret_or_file("JWT_SECRET", "JWT_SECRET_FILE", false)? {
            Some((s, from)) if !s.is_empty() => Some(secret_key(from, s)?),
            _ => None,
        };
        let previous_secrets =
            secret_or_file("JWT_PREVIOUS_SECRETS", "JWT_PREVIOUS_SECRETS_FILE", true)?
                .filter(|(list, _)| !list.trim().is_empty())
                .map(|(list, from)| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|s| secret_key(from, s.to_owned()))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();

        let seconds =
            |key: &'static str, default: u64, min: u64| -> Result<Duration, ConfigError> {
                match var(key) {
                    None => Ok(Duration::from_secs(default)),
                    Some(v) => match v.trim().parse::<u64>() {
                        Ok(n) if n >= min => Ok(Duration::from_secs(n)),
                        _ => Err(ConfigError::new(
                            key,
                            format!("must be a whole number of seconds, at least {min}"),
                        )),
                    },
                }
            };
        let number = |key: &'static str, default: u64, min: u64| -> Result<u64, ConfigError> {
            match var(key) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= min => Ok(n),
                    _ => Err(ConfigError::new(
                        key,
                        format!("must be a whole number, at least {min}"),
                    )),
                },
            }
        };

        let algorithm = match var("JWT_ALGORITHM").as_deref().map(str::trim) {
            None => JwtAlgorithm::Hs256,
            Some(v) if v.eq_ignore_ascii_case("HS256") => JwtAlgorithm::Hs256,
            Some(v) if v.eq_ignore_ascii_case("ES256") => JwtAlgorithm::Es256,
            Some(v) if v.eq_ignore_ascii_case("EdDSA") => JwtAlgorithm::EdDsa,
            Some(_) => {
                return Err(ConfigError::new(
                    "JWT_ALGORITHM",
                    "must be HS256, ES256 or EdDSA",
                ));
            }
        };
        let private_key_file = var("JWT_PRIVATE_KEY_FILE").map(|v| PathBuf::from(v.trim()));
        let extra_public_key_files: Vec<PathBuf> = var("JWT_EXTRA_PUBLIC_KEY_FILES")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default();
        if algorithm == JwtAlgorithm::Hs256 {
            // A key file with HS256 means the operator believes tokens are
            // signed with it: say so rather than silently sign with the secret.
            for (key, set) in [
                ("JWT_PRIVATE_KEY_FILE", private_key_file.is_some()),
                (
                    "JWT_EXTRA_PUBLIC_KEY_FILES",
                    !extra_public_key_files.is_empty(),
                ),
            ] {
                if set {
                    return Err(ConfigError::new(
                        key,
                        "is only used with JWT_ALGORITHM=ES256 or EdDSA (JWT_ALGORITHM is HS256)",
                    ));
                }
            }
        }

        let jwt = JwtConfig {
            secret,
            previous_secrets,
            algorithm,
            private_key_file,
            extra_public_key_files,
            issuer: var("JWT_ISSUER").unwrap_or_else(|| "auth-api".into()),
            audience: var("JWT_AUDIENCE").unwrap_or_else(|| "mobile".into()),
            leeway: seconds("JWT_LEEWAY", 30, 0)?,
            access_ttl: seconds("ACCESS_TOKEN_TTL", 900, 1)?,
        };
        let sessions = SessionConfig {
            refresh_ttl: seconds("REFRESH_TOKEN_TTL", 2_592_000, 1)?,
            max_lifetime: seconds("SESSION_MAX_LIFETIME", 7_776_000, 1)?,
            reuse_grace: seconds("REFRESH_REUSE_GRACE", 120, 0)?,
            retention: seconds("SESSION_RETENTION", 7 * 86_400, 0)?,
            cleanup_interval: seconds("SESSION_CLEANUP_INTERVAL", 60, 1)?,
            max_per_user: u32::try_from(number("MAX_SESSIONS_PER_USER", 100, 1)?)
                .map_err(|_| ConfigError::new("MAX_SESSIONS_PER_USER", "is too large"))?,
        };
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let passwords = PasswordConfig {
            concurrency: usize::try_from(number("PASSWORD_HASH_CONCURRENCY", cores as u64, 1)?)
                .unwrap_or(cores),
            queue: usize::try_from(number("PASSWORD_HASH_QUEUE", 1024, 1)?).unwrap_or(1024),
        };

        let flag = |key: &'static str, default: bool| -> Result<bool, ConfigError> {
            match var(key).as_deref().map(str::trim) {
                None => Ok(default),
                Some(v) if ["true", "1", "yes"].contains(&v.to_ascii_lowercase().as_str()) => {
                    Ok(true)
                }
                Some(v) if ["false", "0", "no"].contains(&v.to_ascii_lowercase().as_str()) => {
                    Ok(false)
                }
                Some(_) => Err(ConfigError::new(key, "must be true or false")),
            }
        };
        let app_link_url = var("APP_LINK_URL").unwrap_or_else(|| "http://localhost:8080/".into());
        let app_link_url = app_link_url.trim().to_owned();
        // The link carries a token: refuse anything but an absolute http(s)
        // URL with no query or fragment of its own, so `?purpose=…` is the query.
        if !(app_link_url.starts_with("https://") || app_link_url.starts_with("http://"))
            || app_link_url.contains(['?', '#'])
        {
            return Err(ConfigError::new(
                "APP_LINK_URL",
                "must be an http:// or https:// URL with no query or fragment",
            ));
        }
        let accounts = AccountConfig {
            require_email_verification: flag("REQUIRE_EMAIL_VERIFICATION", false)?,
            app_name: var("APP_NAME")
                .map(|v| v.trim().to_owned())
                .unwrap_or_else(|| "auth-api".into()),
            app_link_url,
            mail_code_ttl: seconds("MAIL_CODE_TTL", 1800, 60)?,
        };

        let auth_rate_limit = u32::try_from(number("AUTH_RATE_LIMIT", 20, 0)?)
            .map_err(|_| ConfigError::new("AUTH_RATE_LIMIT", "is too large"))?;
        let trust_forwarded_for = match var("TRUST_FORWARDED_FOR").as_deref().map(str::trim) {
            None => false,
            Some(v) if ["true", "1", "yes"].contains(&v.to_ascii_lowercase().as_str()) => true,
            Some(v) if ["false", "0", "no"].contains(&v.to_ascii_lowercase().as_str()) => false,
            Some(_) => {
                return Err(ConfigError::new(
                    "TRUST_FORWARDED_FOR",
                    "must be true or false",
                ));
            }
        };
        let metrics_public = flag("METRICS_PUBLIC", false)?;
        let db_max_connections = u32::try_from(number("DATABASE_MAX_CONNECTIONS", 10, 1)?)
            .map_err(|_| ConfigError::new("DATABASE_MAX_CONNECTIONS", "is too large"))?;
        let db_acquire_timeout = seconds("DATABASE_ACQUIRE_TIMEOUT", 3, 1)?;
        let http_workers =
            usize::try_from(number("HTTP_WORKERS", cores as u64, 1)?).unwrap_or(cores);
        let http_request_timeout = seconds("HTTP_REQUEST_TIMEOUT", 10, 1)?;
        let http_max_connections_per_ip =
            usize::try_from(number("HTTP_MAX_CONNECTIONS_PER_IP", 256, 1)?)
                .map_err(|_| ConfigError::new("HTTP_MAX_CONNECTIONS_PER_IP", "is too large"))?;

        let mail = crate::mail::MailConfig {
            target: match secret_or_file("MAIL_URL", "MAIL_URL_FILE", false)? {
                Some((url, from)) => {
                    crate::mail::parse_mail_url(&url).map_err(|e| ConfigError::new(from, e))?
                }
                None => crate::mail::parse_mail_url(crate::mail::DEFAULT_MAIL_URL)
                    .map_err(|e| ConfigError::new("MAIL_URL", e))?,
            },
            from: crate::mail::parse_mail_from(
                var("MAIL_FROM")
                    .as_deref()
                    .unwrap_or(crate::mail::DEFAULT_MAIL_FROM),
            )
            .map_err(|e| ConfigError::new("MAIL_FROM", e))?,
            max_attempts: u32::try_from(number("MAIL_MAX_ATTEMPTS", 10, 1)?)
                .map_err(|_| ConfigError::new("MAIL_MAX_ATTEMPTS", "is too large"))?,
            tls_ca_file: var("MAIL_TLS_CA_FILE").map(|v| PathBuf::from(v.trim())),
        };
        if mail.tls_ca_file.is_some()
            && !matches!(&mail.target, crate::mail::MailTarget::Smtp(url)
                if url.tls() != crate::mail::SmtpTls::None)
        {
            return Err(ConfigError::new(
                "MAIL_TLS_CA_FILE",
                "needs a MAIL_URL with TLS (smtps:// or smtp://…?tls=required)",
            ));
        }
        let backend_api_keys = secret_or_file("BACKEND_API_KEYS", "BACKEND_API_KEYS_FILE", true)?
            .filter(|(list, _)| !list.trim().is_empty())
            .map(|(list, from)| {
                list.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| secret_key(from, s.to_owned()))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let revocations_keepalive = seconds("REVOCATIONS_KEEPALIVE", 15, 1)?;
        if revocations_keepalive > Duration::from_secs(15) {
            return Err(ConfigError::new(
                "REVOCATIONS_KEEPALIVE",
                "must be at most 15 seconds (API.md: a comment line at least every 15 s)",
            ));
        }

        Ok(Self {
            database_url: SecretString::from(database_url),
            bind_addr,
            jwt,
            sessions,
            passwords,
            accounts,
            auth_rate_limit,
            trust_forwarded_for,
            metrics_public,
            db_max_connections,
            db_acquire_timeout,
            http_workers,
            http_request_timeout,
            http_max_connections_per_ip,
            mail,
            backend_api_keys,
            revocations_keepalive,
        })
    }

    /// `"sqlite"` or `"postgres"`: what the logs may say about the database.
    pub fn database_kind(&self) -> &'static str {
        if self.database_url.expose_secret().starts_with("sqlite:") {
            "sqlite"
        } else {
            "postgres"
        }
    }

    /// Where the generated key file lives: beside the SQLite file, else `data/`.
    pub fn data_dir(&self) -> PathBuf {
        let url = self.database_url.expose_secret();
        if let Some(rest) = url.strip_prefix("sqlite:") {
            let path = rest.trim_start_matches("//");
            let path = path.split('?').next().unwrap_or(path);
            if !path.is_empty() && path != ":memory:" {
                if let Some(parent) = std::path::Path::new(path)
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                {
                    return parent.to_path_buf();
                }
                return PathBuf::from(".");
            }
        }
        PathBuf::from("data")
    }
}

/// A secret variable, given either directly (`key`) or as the content of the
/// file named by `file_key` (Docker and Kubernetes secrets), less its
/// trailing newline. Returns the value and the variable it came from, so
/// later errors name the one the operator set. Both set is an error, and so
/// is an unreadable file, or an empty one unless `empty_file_ok`.
fn secret_var(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    file_key: &'static str,
    empty_file_ok: bool,
) -> Result<Option<(String, &'static str)>, ConfigError> {
    let direct = get(key).filter(|v| !v.is_empty());
    let file = get(file_key).filter(|v| !v.trim().is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            key,
            format!("set either {key} or {file_key}, not both"),
        )),
        (Some(value), None) => Ok(Some((value, key))),
        (None, None) => Ok(None),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path.trim()).map_err(|e| {
                ConfigError::new(file_key, format!("cannot read the file ({})", e.kind()))
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_owned();
            if value.is_empty() && !empty_file_ok {
                return Err(ConfigError::new(file_key, "the file is empty"));
            }
            Ok(Some((value, file_key)))
        }
    }
}

fn secret_key(var: &'static str, value: String) -> Result<SecretString, ConfigError> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::new(
            var,
            format!("each key must be at least {MIN_SECRET_BYTES} bytes (got a shorter one)"),
        ));
    }
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = config(&[]).expect("defaults are valid");
        assert_eq!(c.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_kind(), "sqlite");
        assert_eq!(c.data_dir(), PathBuf::from("data"));
        assert_eq!(c.jwt.issuer, "auth-api");
        assert_eq!(c.jwt.audience, "mobile");
        assert_eq!(c.jwt.leeway, Duration::from_secs(30));
        assert_eq!(c.jwt.access_ttl, Duration::from_secs(900));
        assert_eq!(c.sessions.refresh_ttl, Duration::from_secs(2_592_000));
        assert_eq!(c.sessions.max_lifetime, Duration::from_secs(7_776_000));
        assert_eq!(c.sessions.reuse_grace, Duration::from_secs(120));
        assert_eq!(c.sessions.max_per_user, 100);
        assert_eq!(c.auth_rate_limit, 20);
        assert!(!c.trust_forwarded_for);
        assert!(c.jwt.secret.is_none());
        assert_eq!(c.jwt.algorithm, JwtAlgorithm::Hs256);
        assert!(c.jwt.private_key_file.is_none());
        assert!(c.jwt.extra_public_key_files.is_empty());
        assert_eq!(c.http_request_timeout, Duration::from_secs(10));
        assert_eq!(c.http_max_connections_per_ip, 256);
        assert!(!c.accounts.require_email_verification);
        assert_eq!(c.accounts.app_name, "auth-api");
        assert_eq!(c.accounts.app_link_url, "http://localhost:8080/");
        assert_eq!(c.accounts.mail_code_ttl, Duration::from_secs(1800));
    }

    #[test]
    fn account_settings_are_read_and_checked() {
        let c = config(&[
            ("REQUIRE_EMAIL_VERIFICATION", "true"),
            ("APP_NAME", "Acme"),
            ("APP_LINK_URL", "https://acme.example/auth"),
            ("MAIL_CODE_TTL", "600"),
        ])
        .unwrap();
        assert!(c.accounts.require_email_verification);
        assert_eq!(c.accounts.app_name, "Acme");
        assert_eq!(c.accounts.app_link_url, "https://acme.example/auth");
        assert_eq!(c.accounts.mail_code_ttl, Duration::from_secs(600));
        for (var, value) in [
            ("REQUIRE_EMAIL_VERIFICATION", "maybe"),
            ("APP_LINK_URL", "acme.example"),
            ("APP_LINK_URL", "https://acme.example/?x=1"),
            ("MAIL_CODE_TTL", "5"),
        ] {
            assert_eq!(config(&[(var, value)]).unwrap_err().var, var);
        }
    }

    #[test]
    fn slow_client_limits_are_read_and_must_be_positive() {
        let c = config(&[
            ("HTTP_REQUEST_TIMEOUT", "3"),
            ("HTTP_MAX_CONNECTIONS_PER_IP", "16"),
        ])
        .unwrap();
        assert_eq!(c.http_request_timeout, Duration::from_secs(3));
        assert_eq!(c.http_max_connections_per_ip, 16);
        // Zero would mean "no time at all" and "no connection at all", not "off".
        for var in ["HTTP_REQUEST_TIMEOUT", "HTTP_MAX_CONNECTIONS_PER_IP"] {
            assert_eq!(config(&[(var, "0")]).unwrap_err().var, var);
            assert_eq!(config(&[(var, "-1")]).unwrap_err().var, var);
        }
    }

    #[test]
    fn the_algorithm_and_its_key_files_are_read() {
        let c = config(&[
            ("JWT_ALGORITHM", "ES256"),
            ("JWT_PRIVATE_KEY_FILE", "/run/secrets/jwt.pem"),
            (
                "JWT_EXTRA_PUBLIC_KEY_FILES",
                "/keys/next.pem, /keys/old.pem,",
            ),
        ])
        .unwrap();
        assert_eq!(c.jwt.algorithm, JwtAlgorithm::Es256);
        assert_eq!(
            c.jwt.private_key_file,
            Some(PathBuf::from("/run/secrets/jwt.pem"))
        );
        assert_eq!(
            c.jwt.extra_public_key_files,
            [
                PathBuf::from("/keys/next.pem"),
                PathBuf::from("/keys/old.pem")
            ]
        );
        for (value, expected) in [
            ("EdDSA", JwtAlgorithm::EdDsa),
            ("eddsa", JwtAlgorithm::EdDsa),
            ("HS256", JwtAlgorithm::Hs256),
        ] {
            let c = config(&[("JWT_ALGORITHM", value)]).unwrap();
            assert_eq!(c.jwt.algorithm, expected);
        }
    }

    #[test]
    fn an_unknown_algorithm_or_a_key_file_with_hs256_is_refused() {
        for alg in ["RS256", "none", "HS512"] {
            let err = config(&[("JWT_ALGORITHM", alg)]).unwrap_err();
            assert_eq!(err.var, "JWT_ALGORITHM");
        }
        let err = config(&[("JWT_PRIVATE_KEY_FILE", "/k.pem")]).unwrap_err();
        assert_eq!(err.var, "JWT_PRIVATE_KEY_FILE");
        assert!(!err.to_string().contains("/k.pem"));
        let err = config(&[
            ("JWT_ALGORITHM", "HS256"),
            ("JWT_EXTRA_PUBLIC_KEY_FILES", "/k.pem"),
        ])
        .unwrap_err();
        assert_eq!(err.var, "JWT_EXTRA_PUBLIC_KEY_FILES");
    }

    #[test]
    fn a_short_secret_is_refused_and_named_without_its_value() {
        let err = config(&[("JWT_SECRET", "too-short-secret")]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET");
        assert!(!err.to_string().contains("too-short-secret"));
    }

    #[test]
    fn a_short_previous_secret_is_refused() {
        let err = config(&[(
            "JWT_PREVIOUS_SECRETS",
            "0123456789abcdef0123456789abcdef,short",
        )])
        .unwrap_err();
        assert_eq!(err.var, "JWT_PREVIOUS_SECRETS");
    }

    #[test]
    fn bad_numbers_name_their_variable() {
        for var in [
            "JWT_LEEWAY",
            "ACCESS_TOKEN_TTL",
            "REFRESH_TOKEN_TTL",
            "SESSION_MAX_LIFETIME",
            "REFRESH_REUSE_GRACE",
            "AUTH_RATE_LIMIT",
            "MAX_SESSIONS_PER_USER",
            "HTTP_REQUEST_TIMEOUT",
            "HTTP_MAX_CONNECTIONS_PER_IP",
        ] {
            let err = config(&[(var, "soon")]).unwrap_err();
            assert_eq!(err.var, var);
        }
        assert_eq!(
            config(&[("ACCESS_TOKEN_TTL", "0")]).unwrap_err().var,
            "ACCESS_TOKEN_TTL"
        );
        assert_eq!(
            config(&[("BIND_ADDR", "nowhere")]).unwrap_err().var,
            "BIND_ADDR"
        );
        assert_eq!(
            config(&[("DATABASE_URL", "mysql://x")]).unwrap_err().var,
            "DATABASE_URL"
        );
        assert_eq!(
            config(&[("TRUST_FORWARDED_FOR", "maybe")]).unwrap_err().var,
            "TRUST_FORWARDED_FOR"
        );
    }

    /// A file with this content, kept while the returned folder lives.
    fn secret_file(content: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, content).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn secrets_are_read_from_the_files_their_file_variables_name() {
        let key = "a-secret-from-a-mounted-file-0123456789";
        let previous_list =
            "previous-secret-number-one-0123456789,previous-secret-number-two-0123456789";
        let (_d1, secret_path) = secret_file(&format!("{key}\n"));
        let (_d2, previous_path) = secret_file(&format!("{previous_list}\r\n"));
        let (_d3, url_path) = secret_file("postgres://auth:p%40ss@db/auth\n");
        let c = config(&[
            ("JWT_SECRET_FILE", &secret_path),
            ("JWT_PREVIOUS_SECRETS_FILE", &previous_path),
            ("DATABASE_URL_FILE", &url_path),
        ])
        .unwrap();
        assert_eq!(c.jwt.secret.unwrap().expose_secret(), key);
        let previous: Vec<_> = c
            .jwt
            .previous_secrets
            .iter()
            .map(|s| s.expose_secret().to_owned())
            .collect();
        assert_eq!(previous.join(","), previous_list);
        assert_eq!(
            c.database_url.expose_secret(),
            "postgres://auth:p%40ss@db/auth"
        );
    }

    #[test]
    fn only_the_trailing_newline_of_a_secret_file_is_removed() {
        let (_d, path) = secret_file(" spaces-are-part-of-this-key-0123456789 \n\n");
        let c = config(&[("JWT_SECRET_FILE", &path)]).unwrap();
        assert_eq!(
            c.jwt.secret.unwrap().expose_secret(),
            " spaces-are-part-of-this-key-0123456789 "
        );
    }

    #[test]
    fn a_variable_and_its_file_variant_together_are_refused() {
        let (_d, path) = secret_file("a-secret-from-a-mounted-file-0123456789");
        for (var, file_var, value) in [
            (
                "JWT_SECRET",
                "JWT_SECRET_FILE",
                "0123456789abcdef0123456789abcdef",
            ),
            (
                "JWT_PREVIOUS_SECRETS",
                "JWT_PREVIOUS_SECRETS_FILE",
                "0123456789abcdef0123456789abcdef",
            ),
            ("DATABASE_URL", "DATABASE_URL_FILE", "sqlite://x.db"),
        ] {
            let err = config(&[(var, value), (file_var, &path)]).unwrap_err();
            assert_eq!(err.var, var);
            assert!(err.reason.contains(file_var), "{err}");
            assert!(!err.to_string().contains(value), "{err}");
        }
    }

    #[test]
    fn an_unreadable_or_empty_secret_file_is_refused_naming_the_file_variable() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing").display().to_string();
        for file_var in [
            "JWT_SECRET_FILE",
            "JWT_PREVIOUS_SECRETS_FILE",
            "DATABASE_URL_FILE",
        ] {
            let err = config(&[(file_var, &missing)]).unwrap_err();
            assert_eq!(err.var, file_var);
            assert!(!err.to_string().contains(&missing), "{err}");
        }
        let folder = dir.path().display().to_string();
        assert_eq!(
            config(&[("JWT_SECRET_FILE", &folder)]).unwrap_err().var,
            "JWT_SECRET_FILE"
        );
        let (_d, empty) = secret_file("\n");
        assert_eq!(
            config(&[("JWT_SECRET_FILE", &empty)]).unwrap_err().var,
            "JWT_SECRET_FILE"
        );
        assert_eq!(
            config(&[("DATABASE_URL_FILE", &empty)]).unwrap_err().var,
            "DATABASE_URL_FILE"
        );
        // No previous keys is a valid list (a rotation just finished).
        let c = config(&[("JWT_PREVIOUS_SECRETS_FILE", &empty)]).unwrap();
        assert!(c.jwt.previous_secrets.is_empty());
    }

    #[test]
    fn a_bad_value_in_a_secret_file_names_the_file_variable_not_the_value() {
        let (_d, path) = secret_file("too-short-secret\n");
        let err = config(&[("JWT_SECRET_FILE", &path)]).unwrap_err();
        assert_eq!(err.var, "JWT_SECRET_FILE");
        assert!(!err.to_string().contains("too-short-secret"));
        let (_d, path) = secret_file("mysql://root:hunter2@db/auth");
        let err = config(&[("DATABASE_URL_FILE", &path)]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL_FILE");
        assert!(!err.to_string().contains("hunter2"));
    }

    #[test]
    fn the_data_folder_follows_the_sqlite_file() {
        let c = config(&[("DATABASE_URL", "sqlite:///var/lib/auth/auth.db?mode=rwc")]).unwrap();
        assert_eq!(c.data_dir(), PathBuf::from("/var/lib/auth"));
        let c = config(&[("DATABASE_URL", "postgres://u:p@h/db")]).unwrap();
        assert_eq!(c.database_kind(), "postgres");
        assert_eq!(c.data_dir(), PathBuf::from("data"));
    }

    #[test]
    fn backend_api_keys_are_a_list_of_long_keys_from_the_variable_or_its_file() {
        let (one, two) = (
            "backend-key-number-one-0123456789abcdef",
            "backend-key-number-two-0123456789abcdef",
        );
        assert!(config(&[]).unwrap().backend_api_keys.is_empty());
        let c = config(&[("BACKEND_API_KEYS", &format!(" {one}, {two},"))]).unwrap();
        let keys: Vec<_> = c
            .backend_api_keys
            .iter()
            .map(|k| k.expose_secret().to_owned())
            .collect();
        assert_eq!(keys, [one, two]);

        let (_d, path) = secret_file(&format!("{one},{two}\n"));
        let c = config(&[("BACKEND_API_KEYS_FILE", &path)]).unwrap();
        assert_eq!(c.backend_api_keys.len(), 2);

        // One short key refuses the start, naming the variable, never the value.
        let err = config(&[("BACKEND_API_KEYS", &format!("{one},short-key"))]).unwrap_err();
        assert_eq!(err.var, "BACKEND_API_KEYS");
        assert!(!err.to_string().contains("short-key"), "{err}");
        assert!(!err.to_string().contains(one), "{err}");
        let (_d, path) = secret_file("short-key\n");
        let err = config(&[("BACKEND_API_KEYS_FILE", &path)]).unwrap_err();
        assert_eq!(err.var, "BACKEND_API_KEYS_FILE");
        assert!(!err.to_string().contains("short-key"), "{err}");
        let err =
            config(&[("BACKEND_API_KEYS", one), ("BACKEND_API_KEYS_FILE", &path)]).unwrap_err();
        assert_eq!(err.var, "BACKEND_API_KEYS");
    }

    #[test]
    fn the_feed_keep_alive_is_at_most_the_contracts_fifteen_seconds() {
        assert_eq!(
            config(&[]).unwrap().revocations_keepalive,
            Duration::from_secs(15)
        );
        assert_eq!(
            config(&[("REVOCATIONS_KEEPALIVE", "1")])
                .unwrap()
                .revocations_keepalive,
            Duration::from_secs(1)
        );
        for bad in ["0", "16", "soon"] {
            assert_eq!(
                config(&[("REVOCATIONS_KEEPALIVE", bad)]).unwrap_err().var,
                "REVOCATIONS_KEEPALIVE"
            );
        }
    }
}
