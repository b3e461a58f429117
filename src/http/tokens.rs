//! Tokens: `POST /login`, `POST /refresh`, `POST /logout`, `POST /logout-all`.
//!
//! Login starts a session; refresh rotates its refresh token (with the reuse
//! grace of API.md); logout and logout-all revoke sessions, in the database and
//! in the in-memory revocation set that the Bearer check reads.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{Authenticated, ClientInfo, JsonObject};
use super::{AppState, resource};
use crate::auth::Role;
use crate::auth::credentials::{check_device_name, normalize_email};
use crate::auth::refresh::{self, RefreshDecision};
use crate::error::{ApiError, ErrorBody};
use crate::store::{NewSession, Session};
use crate::telemetry::{Outcome, RevocationReason};

pub use crate::auth::credentials::MAX_DEVICE_NAME_CHARS;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/login", "POST").route(web::post().to(login)))
        .service(resource("/refresh", "POST").route(web::post().to(refresh)))
        .service(resource("/logout", "POST").route(web::post().to(logout)))
        .service(resource("/logout-all", "POST").route(web::post().to(logout_all)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(value_type = String, format = Password, example = "correct horse battery staple")]
    pub password: SecretStringField,
    /// Shown in the session list, at most 100 characters.
    #[schema(example = "Alice's iPhone", max_length = 100)]
    pub device_name: Option<String>,
}

/// A password or token in a request body: deserialised straight into a
/// `SecretString`, so it never appears in a `Debug` print or a log.
#[derive(Debug, Deserialize)]
#[serde(transparent)]
pub struct SecretStringField(pub SecretString);

#[derive(Debug, Deserialize, ToSchema)]
pub struct RefreshRequest {
    #[schema(value_type = String, format = Password)]
    pub refresh_token: SecretStringField,
}

/// The answer of `/login` and `/refresh`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The HS256 access token, for `Authorization: Bearer`.
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Opaque; good for one `/refresh`.
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    #[schema(example = 2592000)]
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

/// Signs an access token and packs the response for a session at `generation`.
fn token_response(
    state: &AppState,
    session_id: Uuid,
    user_id: Uuid,
    role: Role,
    generation: i64,
    refresh_expires_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<HttpResponse, ApiError> {
    let access = state.tokens.issue(user_id, session_id, role, now)?;
    let body = TokenResponse {
        access_token: access.token,
        token_type: "Bearer",
        expires_in: access.expires_in,
        refresh_token: refresh::mint(state.tokens.keys(), session_id, generation),
        refresh_expires_in: u64::try_from((refresh_expires_at - now).num_seconds()).unwrap_or(0),
        session_id,
    };
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(body))
}

fn add(now: DateTime<Utc>, duration: std::time::Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(duration)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Sign in: check the password, start a session, answer the token pair.
///
/// An unknown email, a malformed email and a wrong password all get the same
/// `401 invalid_credentials`, after the same amount of work.
#[utoipa::path(
    post,
    path = "/login",
    tag = "tokens",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: a new session and its token pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 401, description = "The email or password is wrong", body = ErrorBody, example = json!({"error": "invalid_credentials", "message": "The email or password is wrong"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The password hasher queue is full or the database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The password hasher queue is full or the database is unreachable"})),
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    if let Err(retry) = state.limits.check_ip(client.ip) {
        state.telemetry.login_rate_limited(client.ip, false);
        return Err(retry.into());
    }
    let body = body.0;
    let device_name = check_device_name(body.device_name.as_deref())?;

    // Unknown and malformed emails cost the same verify as a wrong password
    // and get the same answer, so neither the body nor the timing tells which
    // emails have accounts.
    let email = normalize_email(&body.email);
    let limit_key = email
        .clone()
        .unwrap_or_else(|| body.email.trim().to_lowercase());
    if let Err(retry) = state.limits.check_email(&limit_key) {
        state.telemetry.login_rate_limited(client.ip, true);
        return Err(retry.into());
    }
    let user = match &email {
        Some(email) => state.store.find_user_by_email(email).await?,
        None => None,
    };
    let verified = state
        .hasher
        .verify(
            body.password.0,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    let Some(user) = user.filter(|_| verified) else {
        state.telemetry.login_failed(client.ip);
        return Err(ApiError::InvalidCredentials);
    };

    let now = Utc::now();
    let expires_at = add(now, state.sessions.max_lifetime);
    let idle_expires_at = add(now, state.sessions.refresh_ttl).min(expires_at);
    let session = NewSession {
        id: Uuid::new_v4(),
        user_id: user.id,
        device_name,
        user_agent: client.user_agent,
        now,
        idle_expires_at,
        expires_at,
    };
    state.store.create_session(&session).await?;
    state.telemetry.login_succeeded(user.id, session.id);
    token_response(
        &state,
        session.id,
        user.id,
        user.role.0,
        0,
        idle_expires_at,
        now,
    )
}

/// Rotate: spend the refresh token, answer a new pair.
///
/// Sending the same refresh token again within the reuse grace (10 s by
/// default) returns the same new refresh token; any other replay of a spent
/// token revokes the whole session.
#[utoipa::path(
    post,
    path = "/refresh",
    tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The new token pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 401, description = "The refresh token is unknown, expired, revoked or reused: sign in again", body = ErrorBody, example = json!({"error": "invalid_grant", "message": "The refresh token is unknown, expired, revoked or reused: sign in again"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn refresh(
    state: web::Data<AppState>,
    body: JsonObject<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let result = rotate(&state, body.0.refresh_token.0.expose_secret()).await;
    match &result {
        Ok((_, outcome)) => state.telemetry.refreshed(*outcome),
        // Reuse was counted where it was detected.
        Err(ApiError::InvalidGrant) => state.telemetry.refreshed(Outcome::failure),
        Err(_) => {}
    }
    result.map(|(response, _)| response)
}

/// The rotation itself (DESIGN.md): rotate the current token, answer the
/// current one again for a replay of its parent within the grace, revoke the
/// session for any other replay.
async fn rotate(state: &AppState, token: &str) -> Result<(HttpResponse, Outcome), ApiError> {
    // A token we did not mint (malformed, forged, another server's) revokes nothing.
    let Some(presented) = refresh::verify(state.tokens.keys(), token) else {
        return Err(ApiError::InvalidGrant);
    };

    // The common case, the current token of an active session: one statement
    // rotates it (conditionally, so racing refreshes rotate exactly once).
    let now = Utc::now();
    let refresh_expiry = add(now, state.sessions.refresh_ttl);
    if let Some(session) = state
        .store
        .rotate_if_current(
            presented.session_id,
            presented.generation,
            now,
            refresh_expiry,
        )
        .await?
    {
        let response = token_response(
            state,
            session.id,
            session.user_id,
            session.role.0,
            session.generation,
            session.idle_expires_at,
            now,
        )?;
        return Ok((response, Outcome::success));
    }

    // Anything else: read the session and apply the policy. At most a few
    // rounds: a lost race re-reads the session and then always lands on the
    // grace path (or on reuse, if it lost by more than one rotation).
    for _ in 0..3 {
        let now = Utc::now();
        let Some(session) = state.store.find_session(presented.session_id).await? else {
            return Err(ApiError::InvalidGrant);
        };
        if session.revoked_at.is_some() {
            return Err(ApiError::InvalidGrant);
        }
        let decision = refresh::classify(
            presented.generation,
            session.generation,
            session.rotated_at,
            now,
            state.sessions.reuse_grace,
        );
        match decision {
            RefreshDecision::Rotate => {
                if !session.is_active(now) {
                    return Err(ApiError::InvalidGrant);
                }
                let idle_expires_at = add(now, state.sessions.refresh_ttl).min(session.expires_at);
                if state
                    .store
                    .advance_session(session.id, session.generation, now, idle_expires_at)
                    .await?
                {
                    let response = token_response(
                        state,
                        session.id,
                        session.user_id,
                        session.role.0,
                        session.generation + 1,
                        idle_expires_at,
                        now,
                    )?;
                    return Ok((response, Outcome::success));
                }
                // Another request rotated first: look again.
            }
            RefreshDecision::ReturnCurrent => {
                if !session.is_active(now) {
                    return Err(ApiError::InvalidGrant);
                }
                let response = token_response(
                    state,
                    session.id,
                    session.user_id,
                    session.role.0,
                    session.generation,
                    session.idle_expires_at,
                    now,
                )?;
                return Ok((response, Outcome::grace_retry));
            }
            RefreshDecision::Reuse => {
                revoke_for_reuse(state, &session, now).await?;
                return Err(ApiError::InvalidGrant);
            }
            RefreshDecision::Unknown => return Err(ApiError::InvalidGrant),
        }
    }
    Err(ApiError::Unavailable { retry_after: 1 })
}

async fn revoke_for_reuse(
    state: &AppState,
    session: &Session,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    if state.store.revoke_session(session.id, now).await? {
        state.revocations.insert(session.id, now);
        state.telemetry.reuse_detected(session.user_id, session.id);
    }
    Ok(())
}

/// Sign out one session with its refresh token (current or spent). Unknown or
/// already revoked tokens also answer `204`: logout is idempotent.
#[utoipa::path(
    post,
    path = "/logout",
    tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 204, description = "The session is revoked (or the token was unknown)"),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn logout(
    state: web::Data<AppState>,
    body: JsonObject<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    if let Some(presented) =
        refresh::verify(state.tokens.keys(), body.0.refresh_token.0.expose_secret())
    {
        let now = Utc::now();
        if state
            .store
            .revoke_session(presented.session_id, now)
            .await?
        {
            state.revocations.insert(presented.session_id, now);
            state.telemetry.revoked(
                RevocationReason::logout,
                None,
                None,
                &[presented.session_id],
            );
        }
    }
    Ok(HttpResponse::NoContent().finish())
}

/// Sign out every session of the caller, the caller's included.
#[utoipa::path(
    post,
    path = "/logout-all",
    tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session of the user is revoked"),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn logout_all(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let now = Utc::now();
    let revoked = state.store.revoke_all_sessions(caller.0.sub, now).await?;
    let entries: Vec<_> = revoked.iter().map(|id| (*id, now)).collect();
    state.revocations.insert_many(&entries, now);
    // The caller's own session may be gone from the table already; its token
    // must die all the same.
    state.revocations.insert(caller.0.sid, now);
    let user = Some(caller.0.sub);
    state
        .telemetry
        .revoked(RevocationReason::logout_all, user, user, &revoked);
    Ok(HttpResponse::NoContent().finish())
}
