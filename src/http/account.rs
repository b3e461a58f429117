//! The account: `POST /register`, `GET /me`, `POST /password`, `GET` and
//! `DELETE /account`.

use actix_web::{HttpResponse, web};
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::{Authenticated, ClientInfo, JsonObject};
use super::tokens::SecretStringField;
use crate::auth::Role;
use crate::auth::credentials::check_password_policy;
use crate::error::ApiError;
use crate::store::User;

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

/// A registered user, as the database holds it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserResponse {
    pub id: Uuid,
    #[schema(example = "alice@example.com")]
    pub email: String,
    /// Whether the email was verified (by a mailed link or code).
    pub email_verified: bool,
    #[schema(value_type = String, example = "user")]
    pub role: Role,
    #[serde(serialize_with = "super::timestamp")]
    pub created_at: DateTime<Utc>,
}

impl From<User> for UserResponse {
    fn from(user: User) -> Self {
        UserResponse {
            id: user.id,
            email_verified: user.email_verified(),
            email: user.email,
            role: user.role.0,
            created_at: user.created_at,
        }
    }
}

/// Create an account. The email is stored trimmed and lowercased; a
/// verification mail (link and code) is queued in the same transaction.
#[utoipa::path(
    post,
    path = "/register",
    tag = "account",
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "The account is created", body = UserResponse),
    )
)]
pub async fn register(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<RegisterRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    let body = body.0;
    let user = state
        .accounts
        .register(&body.email, body.password.0)
        .await?;
    Ok(HttpResponse::Created().json(UserResponse::from(user)))
}

/// The caller's account, read from the database (unlike `/me`).
#[utoipa::path(
    get,
    path = "/account",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The account as the database holds it", body = UserResponse),
    )
)]
pub async fn account(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let user = state.accounts.account(caller.0.sub).await?;
    Ok(HttpResponse::Ok().json(UserResponse::from(user)))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct DeleteAccountRequest {
    /// The account's current password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretStringField,
}

/// Delete the caller's account: every session is revoked, the email, the
/// password hash and the sessions' device names are erased (the email can
/// register again at once), and a notice goes to the old address.
#[utoipa::path(
    delete,
    path = "/account",
    tag = "account",
    security(("bearer" = [])),
    request_body = DeleteAccountRequest,
    responses(
        (status = 204, description = "Deleted; every session is revoked"),
    )
)]
pub async fn delete_account(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<DeleteAccountRequest>,
) -> Result<HttpResponse, ApiError> {
    // A password check, like /password: limited per IP so a stolen access
    // token cannot be used to guess the password at hasher speed.
    state.limits.check_ip(client.ip).await?;
    state
        .accounts
        .delete_account(caller.0.sub, body.0.password.0)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Who the token says the caller is; read from the token alone.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeResponse {
    pub user_id: Uuid,
    #[schema(schema_with = super::role_schema)]
    pub role: Role,
    pub session_id: Uuid,
    /// When the access token expires.
    #[serde(serialize_with = "super::timestamp")]
    pub expires_at: DateTime<Utc>,
}

/// Who the access token says the caller is (no database read).
#[utoipa::path(
    get,
    path = "/me",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller, from the access token alone", body = MeResponse),
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
    /// The password the account has now.
    #[schema(value_type = String, format = Password, example = "correct horse battery staple")]
    pub current_password: SecretStringField,
    /// The same rules as at registration.
    #[schema(value_type = String, format = Password, max_length = 1024, example = "a new and longer passphrase")]
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
        return Err(ApiError::WrongPassword);
    };
    check_password_policy(body.new_password.0.expose_secret())?;
    let hash = state.hasher.hash(body.new_password.0).await?;
    state
        .sessions
        .change_password(&user, &hash, Some(claims.sid))
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
