//! The account: `POST /register`, `GET /me`, `POST /password`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::extract::{Authenticated, ClientInfo, JsonObject};
use super::tokens::SecretStringField;
use super::{AppState, resource};
use crate::auth::Role;
use crate::auth::credentials::{check_password_policy, normalize_email};
use crate::error::{ApiError, ErrorBody};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/register", "POST").route(web::post().to(register)))
        .service(resource("/me", "GET").route(web::get().to(me)))
        .service(resource("/password", "POST").route(web::post().to(change_password)));
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct RegisterRequest {
    /// Trimmed, Unicode NFKC, lower-cased, and compared in that form; at most
    /// 254 bytes after normalisation; exactly one `@` and a dotted domain; no
    /// control, format (zero-width, BOM, bidi) or other invisible characters.
    #[schema(example = "alice@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// Unicode NFKC before counting and hashing (every keyboard's spelling of
    /// the same password works); at least 8 characters (code points) and at
    /// most 1024 bytes; no composition rules; a common password is refused
    /// (`422 weak_password`).
    // No `min_length` in the schema: the 8 characters are counted after NFKC,
    // which can lengthen a string (`¼` is three), so the raw length decides nothing.
    #[schema(value_type = String, format = Password, example = "correct horse battery staple", max_length = 1024)]
    pub password: SecretStringField,
}

/// A registered user.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    pub created_at: DateTime<Utc>,
}

/// Create an account. The email is stored trimmed and lowercased.
#[utoipa::path(
    post,
    path = "/register",
    tag = "account",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account is created", body = UserResponse),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 409, description = "This email is already registered", body = ErrorBody, example = json!({"error": "email_taken", "message": "This email is already registered"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 422, description = "invalid_email (not local@domain, over 254 bytes) or weak_password (under 8 characters, over 1024 bytes, or common)", body = ErrorBody, example = json!({"error": "weak_password", "message": "the password is too common; choose another one"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The password hasher queue is full or the database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The password hasher queue is full or the database is unreachable"})),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    let body = body.0;
    let email = normalize_email(&body.email).ok_or(ApiError::InvalidEmail)?;
    check_password_policy(body.password.0.expose_secret())?;
    let hash = state.hasher.hash(body.password.0).await?;
    let user = state
        .store
        .create_user(&email, &hash, state.clock.now())
        .await?;
    state.telemetry.registered(user.id);
    Ok(HttpResponse::Created().json(UserResponse {
        id: user.id,
        email: user.email,
        role: user.role.0,
        created_at: user.created_at,
    }))
}

/// Who the token says the caller is; read from the token alone.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user_id: Uuid,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    pub session_id: Uuid,
    /// When the access token expires.
    pub expires_at: DateTime<Utc>,
}

#[utoipa::path(
    get,
    path = "/me",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller, from the access token alone", body = MeResponse),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
    )
)]
pub async fn me(caller: Authenticated) -> HttpResponse {
    let claims = caller.0;
    HttpResponse::Ok().json(MeResponse {
        user_id: claims.sub,
        role: claims.role,
        session_id: claims.sid,
        expires_at: claims.expires_at(),
    })
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    pub current_password: SecretStringField,
    /// The same rules as at registration.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    pub new_password: SecretStringField,
}

/// Change the password: every other session of the user is revoked; the
/// caller's session keeps working.
#[utoipa::path(
    post,
    path = "/password",
    tag = "account",
    security(("bearer" = [])),
    request_body = ChangePasswordRequest,
    responses(
        (status = 204, description = "Changed; every other session is revoked"),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 401, description = "invalid_credentials (the current password is wrong), or a Bearer failure (missing_token, invalid_token)", body = ErrorBody, example = json!({"error": "invalid_credentials", "message": "the email or password is wrong"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 422, description = "The new password is too short, too long or too common", body = ErrorBody, example = json!({"error": "weak_password", "message": "The new password is too short, too long or too common"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The password hasher queue is full or the database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The password hasher queue is full or the database is unreachable"})),
    )
)]
pub async fn change_password(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<ChangePasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    let body = body.0;
    let claims = caller.0;
    let user = state.store.find_user(claims.sub).await?;
    let verified = state
        .hasher
        .verify(
            body.current_password.0,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;
    let Some(user) = user.filter(|_| verified) else {
        state.telemetry.password_change_refused(claims.sub);
        return Err(ApiError::InvalidCredentials);
    };
    check_password_policy(body.new_password.0.expose_secret())?;
    let hash = state.hasher.hash(body.new_password.0).await?;
    state
        .sessions
        .change_password(&user, &hash, Some(claims.sid))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
