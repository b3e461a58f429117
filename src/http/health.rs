//! Probes: `GET /healthz` (the process runs) and `GET /readyz` (the database answers).

use std::time::Duration;

use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AppState, resource};
use crate::error::{ApiError, ErrorBody};

/// How long `/readyz` waits for the database before saying it is not ready.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/healthz", "GET").route(web::get().to(healthz)))
        .service(resource("/readyz", "GET").route(web::get().to(readyz)));
}

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
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
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
