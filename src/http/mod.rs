//! The HTTP layer: one file per resource, each with its `routes()`, plus the
//! extractors every handler shares. Handlers extract, call the services
//! ([`Sessions`] for anything that starts, rotates or ends a session) and
//! [`crate::auth`], and answer; they never write SQL nor write the revocation
//! set (the Bearer check and the feed, [`revocations`], only read it), and
//! errors leave through [`ApiError`].

pub mod account;
pub mod admin;
pub mod deadline;
pub mod docs;
pub mod extract;
pub mod head;
pub mod health;
pub mod keys;
pub mod lifecycle;
pub mod request_id;
pub mod revocations;
pub mod routes;
pub mod sessions;
pub mod tokens;
pub mod verify;

use std::sync::Arc;

use actix_web::{HttpResponse, web};

use crate::accounts::Accounts;
use crate::auth::{AccessTokens, PasswordHasher, RevocationSet, ServiceKeys};
use crate::clock::SharedClock;
use crate::error::ApiError;
use crate::limits::{RateLimits, RetryAfter};
use crate::sessions::Sessions;
use crate::store::Store;

/// What every handler may use. Built once at start, shared by all workers.
#[derive(Debug)]
pub struct AppState {
    /// Users (accounts); sessions are reached only through [`AppState::sessions`].
    pub store: Store,
    pub sessions: Arc<Sessions>,
    /// The account lifecycle (registration, verification, reset, email
    /// change, deletion, disable).
    pub accounts: Accounts,
    pub tokens: Arc<AccessTokens>,
    pub hasher: Arc<PasswordHasher>,
    /// Read by the Bearer check; written only by the sessions service and the
    /// feed from other instances.
    pub revocations: Arc<RevocationSet>,
    /// The backends' keys for `GET /revocations` (none: the route is off).
    pub service_keys: ServiceKeys,
    /// The revocation feed's keep-alive period (`REVOCATIONS_KEEPALIVE`).
    pub feed_keepalive: std::time::Duration,
    /// Turns `true` when the server starts a graceful shutdown: feed streams
    /// end at once instead of holding the shutdown up.
    pub closing: tokio::sync::watch::Sender<bool>,
    pub limits: RateLimits,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    pub clock: SharedClock,
    pub trust_forwarded_for: bool,
    /// `/metrics` for any client (`METRICS_PUBLIC`), else only for internal addresses.
    pub metrics_public: bool,
}

/// The one serializer of every timestamp in every body: RFC 3339, UTC, with
/// exactly three fraction digits (`2026-11-27T17:00:00.123Z`), whatever the
/// stored precision (nanoseconds) or the token's (seconds). One fixed form
/// suits every client's decoder (Swift's `.iso8601` with fractional seconds
/// wants one). Use as `#[serde(serialize_with = "crate::http::timestamp")]`.
pub fn timestamp<S: serde::Serializer>(
    at: &chrono::DateTime<chrono::Utc>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// The schema of `role`: one of the roles, as the token carries it.
pub(crate) fn role_schema() -> utoipa::openapi::Object {
    use crate::auth::Role;
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some([Role::User.as_str(), Role::Admin.as_str()]))
        .examples([Role::User.as_str()])
        .build()
}

/// The schema of `token_type`: always `Bearer` (RFC 6750).
pub(crate) fn token_type_schema() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(["Bearer"]))
        .build()
}

impl From<RetryAfter> for ApiError {
    fn from(RetryAfter(retry_after): RetryAfter) -> Self {
        ApiError::TooManyRequests { retry_after }
    }
}

/// Every route of the API, from the one list ([`routes::ROUTES`]).
pub fn routes(cfg: &mut web::ServiceConfig) {
    routes::configure(cfg);
}

/// A resource that answers `405` with `Allow` (and a JSON body) for any method
/// it does not serve, instead of actix's empty default. A `GET` resource
/// answers `HEAD` too ([`head`]), and its `Allow` says so.
pub(crate) fn resource(path: &str, allow: String) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || {
        let allow = allow.clone();
        async move { Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow }) }
    }))
}

/// The answer for a path no route matches; when the path without its
/// trailing slash is a route, the message says so.
pub async fn not_found(req: actix_web::HttpRequest) -> Result<HttpResponse, ApiError> {
    let without_slash = req.path().strip_suffix('/').filter(|p| !p.is_empty());
    match without_slash.and_then(|path| routes::ROUTES.iter().find(|r| r.path == path)) {
        Some(route) => Err(ApiError::NotFoundDidYouMean(route.path)),
        None => Err(ApiError::NotFound),
    }
}
