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

/// The JSON body of every error (API.md, "Conventions").
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case code clients switch on.
    #[schema(example = "invalid_request")]
    pub error: &'static str,
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
    /// `allow` names the methods the resource serves; the `Allow` header
    /// adds `HEAD` wherever it lists `GET`, since HEAD is answered wherever
    /// GET is (API.md; `crate::http::head`).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
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
    #[error("{}", refusal_message(*.0))]
    InvalidGrant(RefreshRefusal),
    #[error("the code or link is not valid: wrong, used, expired or replaced by a newer mail")]
    InvalidCode,
    #[error("the email address is not verified; a new verification mail was sent")]
    EmailNotVerified,
    #[error("this account is disabled")]
    AccountDisabled,

    #[error("an access token is required (Authorization: Bearer <token>)")]
    MissingToken,
    #[error("{0}")]
    InvalidToken(TokenError),
    #[error("this action needs the admin role")]
    InsufficientRole,
}

impl ApiError {
    /// The stable code of API.md.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::NotFound => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::RequestTimeout => "request_timeout",
            ApiError::TooManyRequests { .. } => "too_many_requests",
            ApiError::Unavailable { .. } => "unavailable",
            ApiError::Internal(_) => "internal_error",
            ApiError::EmailTaken => "email_taken",
            ApiError::InvalidEmail => "invalid_email",
            ApiError::WeakPassword(_) => "weak_password",
            ApiError::InvalidCredentials => "invalid_credentials",
            ApiError::InvalidGrant(_) => "invalid_grant",
            ApiError::InvalidCode => "invalid_code",
            ApiError::EmailNotVerified => "email_not_verified",
            ApiError::AccountDisabled => "account_disabled",
            ApiError::MissingToken => "missing_token",
            ApiError::InvalidToken(_) => "invalid_token",
            ApiError::InsufficientRole => "insufficient_role",
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
        match self {
            ApiError::InvalidRequest(_) | ApiError::InvalidCode => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::EmailTaken => StatusCode::CONFLICT,
            ApiError::InvalidEmail | ApiError::WeakPassword(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::InvalidCredentials
            | ApiError::InvalidGrant(_)
            | ApiError::MissingToken
            | ApiError::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientRole | ApiError::EmailNotVerified | ApiError::AccountDisabled => {
                StatusCode::FORBIDDEN
            }
        }
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
            if let ApiError::Internal(e) = self {
                log::error!("{status} {}: {e:#}", self.code());
            } else {
                log::warn!("{status} {}{chain}", self.code());
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
            ApiError::MissingToken => {
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
                log::warn!("database unavailable: {e}");
                ApiError::unavailable()
            }
            StoreError::Other(e) => ApiError::Internal(anyhow::Error::new(e).context("database")),
        }
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
            let response = ApiError::MethodNotAllowed { allow }.error_response();
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
                ApiError::MethodNotAllowed { allow: "GET" },
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
