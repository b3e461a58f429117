//! The caller's sessions (devices): `GET /sessions`, `DELETE /sessions/{id}`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::Authenticated;
use crate::error::ApiError;

/// One active session: one login on one device.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub id: Uuid,
    /// Always sent; `null` when the login named none.
    #[schema(required = true, example = "Alice's iPhone")]
    pub device_name: Option<String>,
    /// Always sent; `null` when the login had no `User-Agent`.
    #[schema(required = true, example = "MyApp/2.1 (iPhone; iOS 18.1)")]
    pub user_agent: Option<String>,
    #[serde(serialize_with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
    /// The last login or refresh.
    #[serde(serialize_with = "super::timestamp")]
    pub last_used_at: DateTime<Utc>,
    /// The absolute end of the session.
    #[serde(serialize_with = "super::timestamp")]
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
