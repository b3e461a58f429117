//! [`ApiError`]: every error the API answers, and the only place where an error
//! becomes a status, a `{"error","message"}` body and headers.
//!
//! Variants are HTTP meanings with the stable codes of API.md. `From` impls let
//! handlers use `?` on store and hasher results. 5xx causes are logged here with
//! their chain and answered opaquely: no detail of a failure reaches a client,
//! and no message ever carries a password or a token.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::accounts::AccountError;
use crate::auth::credentials::{DeviceNameError, WeakPassword};
use crate::auth::{HashError, TokenError};
use crate::sessions::{RefreshRefusal, SessionError};
use crate::store::StoreError;

/// Seconds a client should wait after a `503` from a saturated hasher or a database outage.
pub const RETRY_AFTER_UNAVAILABLE: u64 = 1;

/// Every stable error code of API.md: what clients switch on.
///
/// The one list of codes, each with its status ([`ErrorCode::status`]) and a
/// line for the document ([`ErrorCode::meaning`]). The OpenAPI document gives
/// each response an enum of the codes its route can answer
/// (`crate::openapi`), so a generated client switches on typed codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidRequest,
    InvalidCode,
    MissingToken,
    InvalidToken,
    InvalidCredentials,
    InvalidGrant,
    InsufficientRole,
    EmailNotVerified,
    AccountDisabled,
    NotFound,
    MethodNotAllowed,
    RequestTimeout,
    EmailTaken,
    PayloadTooLarge,
    UnsupportedMediaType,
    InvalidEmail,
    WeakPassword,
    TooManyRequests,
    InternalError,
    Unavailable,
}

impl ErrorCode {
    /// Every code, in status order (the document lists them so).
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidCode,
        ErrorCode::MissingToken,
        ErrorCode::InvalidToken,
        ErrorCode::InvalidCredentials,
        ErrorCode::InvalidGrant,
        ErrorCode::InsufficientRole,
        ErrorCode::EmailNotVerified,
        ErrorCode::AccountDisabled,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::RequestTimeout,
        ErrorCode::EmailTaken,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::InvalidEmail,
        ErrorCode::WeakPassword,
        ErrorCode::TooManyRequests,
        ErrorCode::InternalError,
        ErrorCode::Unavailable,
    ];

    /// The code as sent in `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::MissingToken => "missing_token",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::InvalidCredentials => "invalid_credentials",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::InsufficientRole => "insufficient_role",
            ErrorCode::EmailNotVerified => "email_not_verified",
            ErrorCode::AccountDisabled => "account_disabled",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::EmailTaken => "email_taken",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::InvalidEmail => "invalid_email",
            ErrorCode::WeakPassword => "weak_password",
            ErrorCode::TooManyRequests => "too_many_requests",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::Unavailable => "unavailable",
        }
    }

    /// The status every answer with this code has (API.md).
    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidRequest | ErrorCode::InvalidCode => StatusCode::BAD_REQUEST,
            ErrorCode::MissingToken
            | ErrorCode::InvalidToken
            | ErrorCode::InvalidCredentials
            | ErrorCode::InvalidGrant => StatusCode::UNAUTHORIZED,
            ErrorCode::InsufficientRole
            | ErrorCode::EmailNotVerified
            | ErrorCode::AccountDisabled => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorCode::EmailTaken => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::InvalidEmail | ErrorCode::WeakPassword => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// One line for the document: when the code is answered, what to do.
    pub fn meaning(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => {
                "`invalid_request`: malformed JSON, a missing field or a field of the wrong type (the message names it)"
            }
            ErrorCode::InvalidCode => {
                "`invalid_code`: the code or token is unknown, spent or expired"
            }
            ErrorCode::MissingToken => {
                "`missing_token`: no `Authorization: Bearer <token>` header (another scheme counts as none)"
            }
            ErrorCode::InvalidToken => {
                "`invalid_token`: the access token is malformed, expired, revoked or wrongly signed; refresh, then retry"
            }
            ErrorCode::InvalidCredentials => {
                "`invalid_credentials`: the password (or email) is wrong"
            }
            ErrorCode::InvalidGrant => {
                "`invalid_grant`: the refresh token was refused; `reason` says why (sign in again unless `superseded`)"
            }
            ErrorCode::InsufficientRole => {
                "`insufficient_role`: the token's role is not allowed here"
            }
            ErrorCode::EmailNotVerified => "`email_not_verified`: verify the email first",
            ErrorCode::AccountDisabled => "`account_disabled`: the account is disabled",
            ErrorCode::NotFound => "`not_found`: no such resource",
            ErrorCode::MethodNotAllowed => {
                "`method_not_allowed`: the path does not serve this method (see `Allow`)"
            }
            ErrorCode::RequestTimeout => {
                "`request_timeout`: the request did not arrive in time; nothing was done, send it again"
            }
            ErrorCode::EmailTaken => "`email_taken`: this email is already registered",
            ErrorCode::PayloadTooLarge => "`payload_too_large`: the body is over 16 KiB",
            ErrorCode::UnsupportedMediaType => {
                "`unsupported_media_type`: the body is not `application/json`"
            }
            ErrorCode::InvalidEmail => {
                "`invalid_email`: not one email address (one `@`, a dotted domain, at most 254 bytes, nothing invisible)"
            }
            ErrorCode::WeakPassword => {
                "`weak_password`: under 8 characters, over 1024 bytes, or too common"
            }
            ErrorCode::TooManyRequests => {
                "`too_many_requests`: rate limited; retry after `Retry-After` seconds"
            }
            ErrorCode::InternalError => {
                "`internal_error`: a fault of the service (no detail given)"
            }
            ErrorCode::Unavailable => {
                "`unavailable`: the service is busy or its database unreachable; retry after `Retry-After` seconds"
            }
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The JSON body of every error (API.md, "Conventions").
// Its schema in the document is written per response by `crate::openapi`
// (an enum of the route's codes); this derive only keeps handlers that still
// name it in an annotation compiling.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code clients switch on.
    #[schema(value_type = String, example = "invalid_request")]
    pub error: ErrorCode,
    /// Text for humans; may change.
    #[schema(example = "the request body is not valid JSON")]
    pub message: String,
    /// Why, where API.md names reasons: on `invalid_grant` from `/refresh`,
    /// one of `expired`, `revoked`, `reuse_detected`, `superseded`, `invalid`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "expired")]
    pub reason: Option<&'static str>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidRequest(String),
    #[error("not found")]
    NotFound,
    /// A path no route matches but a route would without its trailing slash.
    #[error("no such path; did you mean {0} (without the trailing slash)?")]
    NotFoundDidYouMean(&'static str),
    /// `allow` names the methods the resource serves; the `Allow` header
    /// adds `HEAD` wherever it lists `GET`, since HEAD is answered wherever
    /// GET is (API.md; `crate::http::head`).
    #[error("method not allowed")]
    MethodNotAllowed { allow: String },
    #[error("the request body is larger than 16 KiB")]
    PayloadTooLarge,
    #[error("the request body must be application/json")]
    UnsupportedMediaType,
    /// The request's body did not arrive within `HTTP_REQUEST_TIMEOUT`.
    #[error("the request took too long to arrive; send it again")]
    RequestTimeout,
    #[error("too many requests; retry later")]
    TooManyRequests { retry_after: u64 },
    #[error("the service is busy or its database is unreachable; retry later")]
    Unavailable { retry_after: u64 },
    #[error("internal error")]
    Internal(#[source] anyhow::Error),

    #[error("this email is already registered")]
    EmailTaken,
    #[error("the email address is not valid")]
    InvalidEmail,
    #[error("{0}")]
    WeakPassword(WeakPassword),
    #[error("the email or password is wrong")]
    InvalidCredentials,
    /// `invalid_credentials` where only a password was sent (`/password`).
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("{}", refusal_message(*.0))]
    InvalidGrant(RefreshRefusal),
    /// `invalid_grant` with reason `invalid` for a mistake of the app the
    /// message can name (an access token sent as the refresh token, a token
    /// in quotes): nothing was looked up.
    #[error("{0}")]
    RefreshTokenMistake(&'static str),
    #[error("the code or link is not valid: wrong, used, expired or replaced by a newer mail")]
    InvalidCode,
    #[error("the email address is not verified; a new verification mail was sent")]
    EmailNotVerified,
    #[error("this account is disabled")]
    AccountDisabled,

    #[error("an access token is required (Authorization: Bearer <token>)")]
    MissingToken,
    /// An `Authorization` header of another scheme, or a bare token: still
    /// `missing_token` (RFC 6750 §3.1: no Bearer credentials were sent), with
    /// a message that says what was wrong. `scheme` is named only when it is a
    /// short word (never a token sent without a scheme).
    #[error("{}", not_bearer_message(.scheme.as_deref()))]
    NotBearer { scheme: Option<String> },
    #[error("{0}")]
    InvalidToken(TokenError),
    #[error("this action needs the admin role")]
    InsufficientRole,
}

impl ApiError {
    /// The stable code of API.md.
    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            ApiError::NotFound | ApiError::NotFoundDidYouMean(_) => ErrorCode::NotFound,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            ApiError::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            ApiError::RequestTimeout => ErrorCode::RequestTimeout,
            ApiError::TooManyRequests { .. } => ErrorCode::TooManyRequests,
            ApiError::Unavailable { .. } => ErrorCode::Unavailable,
            ApiError::Internal(_) => ErrorCode::InternalError,
            ApiError::EmailTaken => ErrorCode::EmailTaken,
            ApiError::InvalidEmail => ErrorCode::InvalidEmail,
            ApiError::WeakPassword(_) => ErrorCode::WeakPassword,
            ApiError::InvalidCredentials | ApiError::WrongPassword => ErrorCode::InvalidCredentials,
            ApiError::InvalidGrant(_) | ApiError::RefreshTokenMistake(_) => ErrorCode::InvalidGrant,
            ApiError::InvalidCode => ErrorCode::InvalidCode,
            ApiError::EmailNotVerified => ErrorCode::EmailNotVerified,
            ApiError::AccountDisabled => ErrorCode::AccountDisabled,
            ApiError::MissingToken | ApiError::NotBearer { .. } => ErrorCode::MissingToken,
            ApiError::InvalidToken(_) => ErrorCode::InvalidToken,
            ApiError::InsufficientRole => ErrorCode::InsufficientRole,
        }
    }

    fn unavailable() -> Self {
        ApiError::Unavailable {
            retry_after: RETRY_AFTER_UNAVAILABLE,
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code().status()
    }

    fn error_response(&self) -> HttpResponse {
        let status = self.status_code();
        if status.is_server_error() {
            // The cause chain goes to the operator's log, never to the client.
            let mut chain = String::new();
            let mut source = std::error::Error::source(self);
            while let Some(cause) = source {
                chain.push_str(": ");
                chain.push_str(&cause.to_string());
                source = cause.source();
            }
            match self {
                ApiError::Internal(e) => log::error!("{status} {}: {e:#}", self.code()),
                // A 503's cause is logged where it is known, once per outage
                // ([`log_outage`], the readiness probe); a full hasher queue
                // shows in the metrics. A line per refused request would bury it.
                ApiError::Unavailable { .. } => {}
                _ => log::warn!("{status} {}{chain}", self.code()),
            }
        }
        let mut response = HttpResponse::build(status);
        // Errors are never cached (an error for one token must not be served for another).
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        match self {
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header((header::ALLOW, with_head(allow)));
            }
            ApiError::RequestTimeout => {
                // The rest of a slow body may still be on its way: the
                // connection cannot be reused, and closing it is what frees
                // the slot a slow client was holding.
                response.force_close();
            }
            ApiError::TooManyRequests { retry_after } | ApiError::Unavailable { retry_after } => {
                response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
            }
            ApiError::MissingToken | ApiError::NotBearer { .. } => {
                // RFC 6750 §3.1: no error code when the request had no credentials.
                response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
            }
            ApiError::InvalidToken(reason) => {
                let challenge =
                    format!("Bearer error=\"invalid_token\", error_description=\"{reason}\"");
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.insert_header((header::WWW_AUTHENTICATE, value));
                }
            }
            ApiError::InsufficientRole => {
                response.insert_header((
                    header::WWW_AUTHENTICATE,
                    "Bearer error=\"insufficient_scope\", error_description=\"this action needs the admin role\"",
                ));
            }
            _ => {}
        }
        let message = if let ApiError::Internal(_) = self {
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let reason = match self {
            ApiError::InvalidGrant(refusal) => Some(refusal.as_str()),
            ApiError::RefreshTokenMistake(_) => Some(RefreshRefusal::Invalid.as_str()),
            _ => None,
        };
        response.json(ErrorBody {
            error: self.code(),
            message,
            reason,
        })
    }
}

/// An `Allow` list with `HEAD` right after `GET` when it lists `GET` and not `HEAD`.
fn with_head(allow: &str) -> String {
    let methods: Vec<&str> = allow.split(',').map(str::trim).collect();
    if !methods.contains(&"GET") || methods.contains(&"HEAD") {
        return allow.to_owned();
    }
    let mut listed = Vec::with_capacity(methods.len() + 1);
    for method in methods {
        listed.push(method);
        if method == "GET" {
            listed.push("HEAD");
        }
    }
    listed.join(", ")
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::EmailTaken => ApiError::EmailTaken,
            StoreError::Unavailable(e) => {
                log_outage(&e);
                ApiError::unavailable()
            }
            StoreError::Other(e) => ApiError::Internal(anyhow::Error::new(e).context("database")),
        }
    }
}

/// An error and its causes, `: `-separated, for a log line (a `Display`
/// alone often says only "database unavailable").
pub fn with_causes(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Seconds between two lines about one database outage.
const OUTAGE_LOG_EVERY_SECS: u64 = 60;

/// Logs a database outage once, with its cause, then at most once a minute
/// while it lasts, with how many requests were refused meanwhile: every
/// request of an outage fails the same way, and a line each would flood the
/// log with one cause.
fn log_outage(cause: &dyn std::fmt::Display) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST_LINE: AtomicU64 = AtomicU64::new(0);
    static REFUSED_SINCE: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let last = LAST_LINE.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= OUTAGE_LOG_EVERY_SECS
        && LAST_LINE
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let refused = REFUSED_SINCE.swap(0, Ordering::Relaxed);
        if refused == 0 {
            log::warn!("database unavailable, answering 503 unavailable: {cause}");
        } else {
            log::warn!(
                "database unavailable, answering 503 unavailable \
                 ({refused} more request(s) refused since the last line): {cause}"
            );
        }
    } else {
        REFUSED_SINCE.fetch_add(1, Ordering::Relaxed);
    }
}

impl From<SessionError> for ApiError {
    fn from(err: SessionError) -> Self {
        match err {
            SessionError::Refused(refusal) => ApiError::InvalidGrant(refusal),
            // The password was right, but not the current one any more.
            SessionError::CredentialChanged => ApiError::InvalidCredentials,
            SessionError::Contended => ApiError::unavailable(),
            SessionError::Store(e) => e.into(),
            SessionError::Signing(e) => e.into(),
        }
    }
}

fn not_bearer_message(scheme: Option<&str>) -> String {
    match scheme {
        Some(scheme) => format!(
            "no Bearer token: this Authorization header uses the {scheme} scheme; \
             send the access token as `Authorization: Bearer <token>`"
        ),
        None => "no Bearer token: the Authorization header must be `Bearer <token>` \
                 (the word Bearer, a space, then the access token)"
            .to_owned(),
    }
}

impl From<AccountError> for ApiError {
    fn from(err: AccountError) -> Self {
        match err {
            AccountError::InvalidCode => ApiError::InvalidCode,
            AccountError::EmailNotVerified => ApiError::EmailNotVerified,
            AccountError::AccountDisabled => ApiError::AccountDisabled,
            AccountError::InvalidCredentials => ApiError::InvalidCredentials,
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::InvalidEmail => ApiError::InvalidEmail,
            // The hourly cap per address: the window is an hour long.
            AccountError::TooManyMails => ApiError::TooManyRequests {
                retry_after: MAIL_CAP_RETRY_AFTER,
            },
            AccountError::NotFound => ApiError::NotFound,
            AccountError::WeakPassword(e) => e.into(),
            AccountError::Hash(e) => e.into(),
            AccountError::Session(e) => e.into(),
            AccountError::Store(e) => e.into(),
        }
    }
}

/// `Retry-After` when an address had its mails for the hour: the cap counts
/// the last hour, so a few minutes may do; an hour always does.
const MAIL_CAP_RETRY_AFTER: u64 = 3600;

/// What an app should do, per reason (API.md, "Why a refresh failed").
fn refusal_message(refusal: RefreshRefusal) -> &'static str {
    match refusal {
        RefreshRefusal::Expired => "the refresh token has expired; sign in again",
        RefreshRefusal::Revoked => "the session has ended; sign in again",
        RefreshRefusal::ReuseDetected => {
            "this refresh token was used before; the session is revoked, sign in again"
        }
        RefreshRefusal::Superseded => {
            "a newer refresh token replaced this one; keep using the newest (you are still signed in)"
        }
        RefreshRefusal::Invalid => "the refresh token is not valid; sign in again",
    }
}

impl From<HashError> for ApiError {
    fn from(err: HashError) -> Self {
        match err {
            HashError::Busy => ApiError::unavailable(),
            HashError::Failed(reason) => {
                ApiError::Internal(anyhow::anyhow!("password hashing: {reason}"))
            }
        }
    }
}

impl From<WeakPassword> for ApiError {
    fn from(err: WeakPassword) -> Self {
        ApiError::WeakPassword(err)
    }
}

/// A bad `device_name` is a malformed request; the message names the field.
impl From<DeviceNameError> for ApiError {
    fn from(err: DeviceNameError) -> Self {
        ApiError::InvalidRequest(err.to_string())
    }
}

impl From<TokenError> for ApiError {
    fn from(err: TokenError) -> Self {
        ApiError::InvalidToken(err)
    }
}

impl From<jsonwebtoken::errors::Error> for ApiError {
    fn from(err: jsonwebtoken::errors::Error) -> Self {
        ApiError::Internal(anyhow::Error::new(err).context("signing an access token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::body::MessageBody;

    fn body_of(err: ApiError) -> (StatusCode, serde_json::Value) {
        let response = err.error_response();
        let status = response.status();
        let bytes = response.into_body().try_into_bytes().expect("a body");
        (status, serde_json::from_slice(&bytes).expect("JSON"))
    }

    #[test]
    fn an_internal_error_says_nothing_of_its_cause() {
        let cause = anyhow::anyhow!("connection to postgres://admin:hunter2@db failed");
        let (status, body) = body_of(ApiError::Internal(cause));
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            body,
            serde_json::json!({"error": "internal_error", "message": "internal error"})
        );
    }

    #[test]
    fn allow_lists_head_wherever_it_lists_get() {
        for (allow, header) in [
            ("GET", "GET, HEAD"),
            ("GET, DELETE", "GET, HEAD, DELETE"),
            ("POST", "POST"),
            ("GET, HEAD", "GET, HEAD"),
        ] {
            let response = ApiError::MethodNotAllowed {
                allow: allow.into(),
            }
            .error_response();
            assert_eq!(
                response.headers().get(header::ALLOW).map(|v| v.as_bytes()),
                Some(header.as_bytes()),
                "{allow}"
            );
        }
    }

    #[test]
    fn a_request_timeout_closes_the_connection() {
        let response = ApiError::RequestTimeout.error_response();
        assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
        assert_eq!(
            response.head().connection_type(),
            actix_web::http::ConnectionType::Close
        );
        let (_, body) = body_of(ApiError::RequestTimeout);
        assert_eq!(body["error"], "request_timeout");
    }

    #[test]
    fn every_error_has_its_contract_status_and_code() {
        for (err, status, code) in [
            (ApiError::InvalidRequest("x".into()), 400, "invalid_request"),
            (ApiError::NotFound, 404, "not_found"),
            (
                ApiError::MethodNotAllowed {
                    allow: "GET".into(),
                },
                405,
                "method_not_allowed",
            ),
            (ApiError::PayloadTooLarge, 413, "payload_too_large"),
            (ApiError::RequestTimeout, 408, "request_timeout"),
            (
                ApiError::UnsupportedMediaType,
                415,
                "unsupported_media_type",
            ),
            (
                ApiError::TooManyRequests { retry_after: 3 },
                429,
                "too_many_requests",
            ),
            (ApiError::Unavailable { retry_after: 1 }, 503, "unavailable"),
            (ApiError::EmailTaken, 409, "email_taken"),
            (ApiError::InvalidEmail, 422, "invalid_email"),
            (
                ApiError::WeakPassword(WeakPassword::Common),
                422,
                "weak_password",
            ),
            (ApiError::InvalidCredentials, 401, "invalid_credentials"),
            (
                ApiError::InvalidGrant(RefreshRefusal::Expired),
                401,
                "invalid_grant",
            ),
            (ApiError::MissingToken, 401, "missing_token"),
            (
                ApiError::InvalidToken(TokenError::Expired),
                401,
                "invalid_token",
            ),
            (ApiError::InsufficientRole, 403, "insufficient_role"),
            // Mistakes named in the message keep the contract's code.
            (ApiError::NotFoundDidYouMean("/login"), 404, "not_found"),
            (ApiError::WrongPassword, 401, "invalid_credentials"),
            (
                ApiError::RefreshTokenMistake("an access token"),
                401,
                "invalid_grant",
            ),
            (
                ApiError::NotBearer {
                    scheme: Some("Token".into()),
                },
                401,
                "missing_token",
            ),
        ] {
            let (got, body) = body_of(err);
            assert_eq!(got.as_u16(), status, "{code}");
            assert_eq!(body["error"], code);
            assert!(body["message"].is_string());
            assert_eq!(body.get("reason").is_some(), code == "invalid_grant");
        }
    }

    #[test]
    fn invalid_grant_says_why() {
        for (refusal, reason) in [
            (RefreshRefusal::Expired, "expired"),
            (RefreshRefusal::Revoked, "revoked"),
            (RefreshRefusal::ReuseDetected, "reuse_detected"),
            (RefreshRefusal::Superseded, "superseded"),
            (RefreshRefusal::Invalid, "invalid"),
        ] {
            let (status, body) = body_of(ApiError::InvalidGrant(refusal));
            assert_eq!(status, StatusCode::UNAUTHORIZED);
            assert_eq!(body["error"], "invalid_grant");
            assert_eq!(body["reason"], reason);
        }
    }
}
