//! Administration: `GET /admin/users?email=`, `POST /admin/users/{id}/revoke-sessions`.
//!
//! There is deliberately no API to grant the admin role: it is given with the
//! binary's `admin grant` subcommand, by whoever runs the service.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::AppState;
use super::extract::Admin;
use crate::auth::Role;
use crate::error::ApiError;
use crate::telemetry::RevocationReason;

#[derive(Debug, Deserialize, IntoParams)]
pub struct FindUserQuery {
    /// The account's email, in any spelling that normalises to it.
    pub email: String,
}

/// An account, as an admin sees it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminUserResponse {
    pub id: Uuid,
    #[schema(example = "alice@example.com")]
    pub email: String,
    pub email_verified: bool,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    /// Disabled accounts cannot sign in (`403 account_disabled`).
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
    /// Sessions neither revoked nor expired.
    pub active_sessions: i64,
}

/// Find an account by email. The role is checked first, so a non-admin
/// learns nothing about which emails exist.
#[utoipa::path(
    get,
    path = "/admin/users",
    tag = "admin",
    security(("bearer" = [])),
    params(FindUserQuery),
    responses(
        (status = 200, description = "The account", body = AdminUserResponse),
    )
)]
pub async fn find_user(
    _admin: Admin,
    state: web::Data<AppState>,
    query: web::Query<FindUserQuery>,
) -> Result<HttpResponse, ApiError> {
    let found = state.accounts.find_by_email(&query.email).await?;
    let user = found.user;
    Ok(HttpResponse::Ok().json(AdminUserResponse {
        id: user.id,
        email_verified: user.email_verified(),
        disabled: user.disabled_at.is_some(),
        email: user.email,
        role: user.role.0,
        created_at: user.created_at,
        active_sessions: found.active_sessions,
    }))
}

/// Revoke every session of a user. The role is checked (by the [`Admin`]
/// extractor) before anything else, so a non-admin learns nothing about ids.
#[utoipa::path(
    post,
    path = "/admin/users/{id}/revoke-sessions",
    tag = "admin",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "The user id")),
    responses(
        (status = 204, description = "Every session of the user is revoked"),
    )
)]
pub async fn revoke_user_sessions(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    if state.store.find_user(user_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    state
        .sessions
        .end_all(user_id, RevocationReason::admin, Some(admin.0.sub), None)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
