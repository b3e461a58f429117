//! Administration: `POST /admin/users/{id}/revoke-sessions`.
//!
//! There is deliberately no API to grant the admin role: it is given with the
//! binary's `admin grant` subcommand, by whoever runs the service.

use actix_web::{HttpResponse, web};
use chrono::Utc;
use uuid::Uuid;

use super::extract::Admin;
use super::{AppState, resource};
use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/admin/users/{id}/revoke-sessions", "POST")
            .route(web::post().to(revoke_user_sessions)),
    );
}

/// Revoke every session of a user. The role is checked (by the [`Admin`]
/// extractor) before anything else, so a non-admin learns nothing about ids.
pub async fn revoke_user_sessions(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let user_id = path.into_inner();
    if state.store.find_user(user_id).await?.is_none() {
        return Err(ApiError::NotFound);
    }
    let now = Utc::now();
    let revoked = state.store.revoke_all_sessions(user_id, now).await?;
    let entries: Vec<_> = revoked.iter().map(|id| (*id, now)).collect();
    state.revocations.insert_many(&entries, now);
    log::warn!(
        "audit: admin revoked sessions admin={} user={user_id} sessions_revoked={}",
        admin.0.sub,
        revoked.len()
    );
    Ok(HttpResponse::NoContent().finish())
}
