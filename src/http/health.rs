//! Probes: `GET /healthz` (the process runs) and `GET /readyz` (the database answers).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::error::ApiError;

/// How long `/readyz` waits for the database before saying it is not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Liveness: answers while the process runs, touching nothing.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    responses((status = 200, description = "The process runs", body = Status))
)]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Status { status: "ok" })
}

/// Readiness: `200` when the database answers, `503 unavailable` otherwise.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses(
        (status = 200, description = "The database answers", body = Status),
    )
)]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(())) => Ok(HttpResponse::Ok().json(Status { status: "ok" })),
        Ok(Err(e)) => {
            log::warn!("readiness check failed: {e}");
            Err(ApiError::Unavailable { retry_after: 1 })
        }
        Err(_) => {
            log::warn!("readiness check timed out");
            Err(ApiError::Unavailable { retry_after: 1 })
        }
    }
}

/// Prometheus metrics: requests and latency by route and status, logins,
/// refreshes, reuse detections, revocations, hashes in flight and queued,
/// database pool usage, the rate limiter's state (shared or fallback). No user data. Expose it to your monitoring only: it
/// is not in the app-facing document.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use crate::limits::LimiterMode;
    use crate::telemetry::Telemetry;
    let t = &state.telemetry;
    Telemetry::set(&t.hashes_in_flight, state.hasher.in_flight());
    Telemetry::set(&t.hashes_queued, state.hasher.queued());
    let (open, idle) = state.store.pool_stats();
    Telemetry::set(&t.db_connections, open as usize);
    Telemetry::set(&t.db_connections_idle, idle);
    Telemetry::set(&t.revocations_remembered, state.revocations.len());
    Telemetry::set(&t.rate_limiter_keys, state.limits.len());
    let mode = state.limits.mode();
    Telemetry::set(
        &t.rate_limiter_shared,
        usize::from(mode == LimiterMode::Shared),
    );
    Telemetry::set(
        &t.rate_limiter_fallback,
        usize::from(mode == LimiterMode::Fallback),
    );
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(t.render())
}
