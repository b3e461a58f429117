//! The caller's sessions (devices): `GET /sessions`, `DELETE /sessions/{id}`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::Authenticated;
use super::{AppState, resource};
use crate::error::ApiError;

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
pub async fn list_sessions(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let sessions = state
        .store
        .list_active_sessions(caller.0.sub, Utc::now())
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
pub async fn delete_session(
    state: web::Data<AppState>,
    caller: Authenticated,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let now = Utc::now();
    if !state
        .store
        .revoke_user_session(caller.0.sub, id, now)
        .await?
    {
        return Err(ApiError::NotFound);
    }
    state.revocations.insert(id, now);
    log::info!("audit: session revoked user={} session={id}", caller.0.sub);
    Ok(HttpResponse::NoContent().finish())
}
