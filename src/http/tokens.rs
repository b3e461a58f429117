//! Tokens: `POST /login`, `POST /refresh`, `POST /logout`, `POST /logout-all`.
//!
//! Thin: each handler checks its input and calls the sessions service, which
//! starts, rotates and ends sessions (and keeps the revocation set, the audit
//! line and the metrics in step).

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::AppState;
use super::extract::{Authenticated, ClientInfo, JsonObject};
use crate::auth::access::{is_wrapped_token, looks_like_access_token};
use crate::auth::credentials::{check_device_name, normalize_email};
use crate::error::ApiError;
use crate::sessions::{Device, TokenPair};
use crate::telemetry::{Outcome, RevocationReason};

pub use crate::auth::credentials::MAX_DEVICE_NAME_CHARS;

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    #[schema(example = "alice@example.com")]
    pub email: String,
    #[schema(value_type = String, format = Password, example = "correct horse battery staple")]
    pub password: SecretStringField,
    /// Shown in the session list: at most 100 characters, no control, format
    /// or bidi characters (`400 invalid_request` naming the field).
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
    /// The `refresh_token` of the latest `/login` or `/refresh` answer.
    // Not `format: password`: Swagger UI would pre-fill "********" and the
    // call would fail; a refresh token is pasted, not typed.
    #[schema(value_type = String)]
    pub refresh_token: SecretStringField,
}

/// The answer of `/login` and `/refresh`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWS), for `Authorization: Bearer <access_token>`.
    pub access_token: String,
    #[schema(schema_with = super::token_type_schema)]
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

impl From<TokenPair> for TokenResponse {
    fn from(pair: TokenPair) -> Self {
        TokenResponse {
            access_token: pair.access_token,
            token_type: "Bearer",
            expires_in: pair.expires_in,
            refresh_token: pair.refresh_token,
            refresh_expires_in: pair.refresh_expires_in,
            session_id: pair.session_id,
        }
    }
}

/// `200` with the pair; never cached (RFC 6749 §5.1).
fn token_response(pair: TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::PRAGMA, "no-cache"))
        .json(TokenResponse::from(pair))
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
    )
)]
pub async fn login(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    if let Err(retry) = state.limits.check_ip(client.ip).await {
        state.telemetry.login_rate_limited(client.ip, false);
        return Err(retry.into());
    }
    let body = body.0;
    let device_name = check_device_name(body.device_name.as_deref())?;

    // Unknown and malformed emails cost the same verify as a wrong password
    // and get the same answer, so neither the body nor the timing tells which
    // emails have accounts.
    let email = normalize_email(&body.email);
    // Malformed emails share one budget: they never have an account, and
    // keying on them as typed would let a flood of distinct garbage grow the
    // limiter without bound.
    let limit_key = email.as_deref().unwrap_or(MALFORMED_EMAIL_KEY);
    // Charged before the password check so that guesses in flight count.
    let attempt = match state.limits.charge_email(limit_key).await {
        Ok(attempt) => attempt,
        Err(retry) => {
            state.telemetry.login_rate_limited(client.ip, true);
            return Err(retry.into());
        }
    };
    let device = Device {
        name: device_name,
        user_agent: client.user_agent,
    };
    match sign_in(&state, email.as_deref(), body.password.0, device).await {
        // A wrong password (or a credential changed under the login) is a
        // failure: the charge stays.
        Err(ApiError::InvalidCredentials) => {
            state.telemetry.login_failed(client.ip);
            Err(ApiError::InvalidCredentials)
        }
        // A success never counts against its email, and neither does an
        // attempt the service could not judge (a full hasher queue, a
        // database outage): the user did nothing wrong.
        result => {
            attempt.refund().await;
            result.map(token_response)
        }
    }
}

/// The budget key of every login attempt with a malformed email.
// Never a normalised email: those have no whitespace.
const MALFORMED_EMAIL_KEY: &str = "malformed email";

/// Checks the password (one verify, even for unknown and malformed emails)
/// and opens a session.
async fn sign_in(
    state: &AppState,
    email: Option<&str>,
    password: SecretString,
    device: Device,
) -> Result<TokenPair, ApiError> {
    let user = match email {
        Some(email) => state.store.find_user_by_email(email).await?,
        None => None,
    };
    let verified = state
        .hasher
        .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
        .await?;
    let Some(user) = user.filter(|_| verified) else {
        return Err(ApiError::InvalidCredentials);
    };
    // Only after the right password: a disabled or unverified account.
    state.accounts.check_sign_in(&user).await?;
    Ok(state.sessions.start(&user, device).await?)
}

/// Rotate: spend the refresh token, answer a new pair.
///
/// Sending the same refresh token again within the reuse grace (120 s by
/// default), while its successor was never used, returns the same new refresh
/// token; an older token within the grace is refused as `superseded` and
/// revokes nothing; a spent token past the grace revokes the whole session.
#[utoipa::path(
    post,
    path = "/refresh",
    tag = "tokens",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "The new token pair", body = TokenResponse, headers(("Cache-Control" = String, description = "no-store"))),
    )
)]
pub async fn refresh(
    state: web::Data<AppState>,
    body: JsonObject<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.refresh_token.0;
    // Mistakes an app can fix, named (still `invalid_grant`, reason
    // `invalid`): nothing is looked up, nothing revoked.
    let mistake = if looks_like_access_token(token.expose_secret()) {
        Some(
            "refresh_token holds an access token; send the refresh_token of the /login or /refresh answer",
        )
    } else if is_wrapped_token(token.expose_secret()) {
        Some("the refresh token is wrapped in quotes or whitespace; send it alone, as issued")
    } else {
        None
    };
    if let Some(mistake) = mistake {
        // Counted like any invalid token the service looked up.
        state.telemetry.refreshed(Outcome::invalid);
        return Err(ApiError::RefreshTokenMistake(mistake));
    }
    let pair = state.sessions.rotate(token.expose_secret()).await?;
    Ok(token_response(pair))
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
    )
)]
pub async fn logout(
    state: web::Data<AppState>,
    body: JsonObject<RefreshRequest>,
) -> Result<HttpResponse, ApiError> {
    let token = body.0.refresh_token.0;
    // A silent 204 here would leave the session alive for 30 days while the
    // app believes it signed out.
    if looks_like_access_token(token.expose_secret()) {
        return Err(ApiError::InvalidRequest(
            "refresh_token holds an access token; send the refresh token to sign out".into(),
        ));
    }
    state
        .sessions
        .end_by_refresh_token(token.expose_secret())
        .await?;
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
    )
)]
pub async fn logout_all(
    state: web::Data<AppState>,
    caller: Authenticated,
) -> Result<HttpResponse, ApiError> {
    let claims = caller.0;
    state
        .sessions
        .end_all(
            claims.sub,
            RevocationReason::logout_all,
            None,
            Some(claims.sid),
        )
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
