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
/// database pool usage, the rate limiter's state (shared or fallback). No
/// user data, but counters read around one's own request tell things (the
/// mail counters around a `/password/forgot` say whether an address has an
/// account), so only internal clients get them: loopback and private-network
/// addresses (the client's, behind a trusted proxy), unless `METRICS_PUBLIC`.
/// Anyone else gets `404`, as if there were no such route. Not in the
/// app-facing document.
pub async fn metrics(
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let client = super::extract::client_ip(&req, state.trust_forwarded_for);
    if !state.metrics_public && !client.is_some_and(is_internal) {
        return Err(ApiError::NotFound);
    }
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
    Ok(HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(t.render()))
}

/// Loopback, private (RFC 1918, IPv6 unique local) and link-local addresses:
/// where a monitoring system scrapes from, never an app on the internet.
fn is_internal(ip: std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_loopback_private_and_link_local_addresses_are_internal() {
        let internal = |s: &str| super::is_internal(s.parse().unwrap());
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.9",
            "192.168.1.1",
            "169.254.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(internal(ip), "{ip}");
        }
        for ip in [
            "203.0.113.9",
            "8.8.8.8",
            "172.32.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!internal(ip), "{ip}");
        }
    }
}
