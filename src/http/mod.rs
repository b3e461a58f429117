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
pub mod revocations;
pub mod sessions;
pub mod tokens;
pub mod verify;

use std::sync::Arc;

use actix_web::{HttpResponse, web};

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
    pub sessions: Sessions,
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
}

impl From<RetryAfter> for ApiError {
    fn from(RetryAfter(retry_after): RetryAfter) -> Self {
        ApiError::TooManyRequests { retry_after }
    }
}

/// Every route of the API.
pub fn routes(cfg: &mut web::ServiceConfig) {
    account::routes(cfg);
    tokens::routes(cfg);
    sessions::routes(cfg);
    admin::routes(cfg);
    health::routes(cfg);
    keys::routes(cfg);
    verify::routes(cfg);
    revocations::routes(cfg);
    docs::routes(cfg);
}

/// A resource that answers `405` with `Allow` (and a JSON body) for any method
/// it does not serve, instead of actix's empty default. A `GET` resource
/// answers `HEAD` too ([`head`]), and its `Allow` says so.
pub(crate) fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
}

/// The answer for a path no route matches.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
