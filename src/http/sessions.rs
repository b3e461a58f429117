//! The caller's sessions (devices): `GET /sessions`, `DELETE /sessions/{id}`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::Authenticated;
use super::{AppState, resource};
use crate::error::{ApiError, ErrorBody};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/sessions", "GET").route(web::get().to(list_sessions)))
        .service(resource("/sessions/{id}", "DELETE").route(web::delete().to(delete_session)));
}

/// One active session: one login on one device.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    #[schema(example = "Alice's iPhone")]
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    /// The last login or refresh.
    pub last_used_at: DateTime<Utc>,
    /// The absolute end of the session.
    pub expires_at: DateTime<Utc>,
    /// True for the session of the token that made this call.
    pub current: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
}

/// The caller's active sessions, newest first.
#[utoipa::path(
    get,
    path = "/sessions",
    tag = "sessions",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Active sessions only (not revoked, not expired)", body = SessionList),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = state
        .sessions
        .list(caller.0.sub)
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == caller.0.sid,
            id: s.id,
            device_name: s.device_name,
            user_agent: s.user_agent,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            expires_at: s.expires_at,
        })
        .collect();
    Ok(HttpResponse::Ok().json(SessionList { sessions }))
}

/// Sign out one of the caller's sessions. Anything that is not an active
/// session of the caller (someone else's, unknown, already revoked) is `404`.
#[utoipa::path(
    delete,
    path = "/sessions/{id}",
    tag = "sessions",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The session id")),
    responses(
        (status = 204, description = "The session is revoked"),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 404, description = "Not an active session of the caller", body = ErrorBody, example = json!({"error": "not_found", "message": "Not an active session of the caller"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn delete_session(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    if !state
        .sessions
        .end_one(caller.0.sub, path.into_inner())
        .await?
    {
        return Err(ApiError::NotFound);
    }
    Ok(HttpResponse::NoContent().finish())
}
