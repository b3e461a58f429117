//! Administration: `POST /admin/users/{id}/revoke-sessions`.
//!
//! There is deliberately no API to grant the admin role: it is given with the
//! binary's `admin grant` subcommand, by whoever runs the service.

use actix_web::{HttpResponse, web};
use uuid::Uuid;

use super::extract::Admin;
use super::{AppState, resource};
use crate::error::{ApiError, ErrorBody};
use crate::telemetry::RevocationReason;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/admin/users/{id}/revoke-sessions", "POST")
            .route(web::post().to(revoke_user_sessions)),
    );
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
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 403, description = "The token's role is not admin", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer error=\"insufficient_scope\"")), example = json!({"error": "insufficient_role", "message": "this action needs the admin role"})),
        (status = 404, description = "No such user", body = ErrorBody, example = json!({"error": "not_found", "message": "No such user"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
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
