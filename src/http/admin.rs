//! Administration: `POST /admin/users/{id}/revoke-sessions`.
//!
//! There is deliberately no API to grant the admin role: it is given with the
//! binary's `admin grant` subcommand, by whoever runs the service.

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use super::AppState;
use super::extract::Admin;
use crate::error::ApiError;
use crate::telemetry::RevocationReason;

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
