//! The mailed flows of the account lifecycle: `POST /password/forgot`,
//! `POST /password/reset`, `POST /email/verification`, `POST /email/verify`,
//! `POST /email/change`, `POST /email/change/confirm`.
//!
//! Thin: each handler checks the shape of its input, charges the per-IP
//! limit, and calls the accounts service. Tokens and codes arrive as secrets
//! (never in a `Debug` print or a log), are spent only here, by `POST`: a mail
//! scanner that opens a link spends nothing (the link is for the app, which
//! posts the token).

use actix_web::{HttpResponse, web};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{Authenticated, ClientInfo, JsonObject};
use super::tokens::SecretStringField;
use super::{AppState, resource};
use crate::accounts::Presented;
use crate::error::{ApiError, ErrorBody};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/password/forgot", "POST").route(web::post().to(forgot_password)))
        .service(resource("/password/reset", "POST").route(web::post().to(reset_password)))
        .service(resource("/email/verification", "POST").route(web::post().to(resend_verification)))
        .service(resource("/email/verify", "POST").route(web::post().to(verify_email)))
        .service(resource("/email/change", "POST").route(web::post().to(change_email)))
        .service(
            resource("/email/change/confirm", "POST").route(web::post().to(confirm_email_change)),
        );
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ForgotPasswordRequest {
    #[schema(example = "alice@example.com", format = Email, max_length = 254)]
    pub email: String,
}

/// The answer of `/password/forgot`, the same whether or not the email has an account.
#[derive(Debug, Serialize, ToSchema)]
pub struct AcceptedResponse {
    #[schema(example = "accepted")]
    pub status: &'static str,
}

/// Ask for a password reset mail (a link and a 6-digit code). The answer,
/// and its timing, are the same whether or not the email has an account; a
/// mail is queued only when it has, at most 5 an hour per address.
#[utoipa::path(
    post,
    path = "/password/forgot",
    tag = "account",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted (a mail is queued if the email has an account)", body = AcceptedResponse),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 422, description = "The email is not a valid address", body = ErrorBody, example = json!({"error": "invalid_email", "message": "the email address is not valid"})),
        (status = 429, description = "Too many requests from this client; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn forgot_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<ForgotPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    state.accounts.forgot_password(&body.0.email).await?;
    Ok(HttpResponse::Accepted().json(AcceptedResponse { status: "accepted" }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ResetPasswordRequest {
    /// The token of the mailed link; or send `email` and `code`.
    #[schema(value_type = Option<String>, format = Password)]
    pub token: Option<SecretStringField>,
    #[schema(example = "alice@example.com")]
    pub email: Option<String>,
    /// The 6-digit code of the mail, with `email`.
    #[schema(value_type = Option<String>, format = Password, example = "123456")]
    pub code: Option<SecretStringField>,
    /// The same rules as at registration.
    #[schema(value_type = String, format = Password, max_length = 1024)]
    pub new_password: SecretStringField,
}

/// Set a new password with a mailed token, or the email and the mailed
/// code. Every session of the account is revoked.
#[utoipa::path(
    post,
    path = "/password/reset",
    tag = "account",
    request_body = ResetPasswordRequest,
    responses(
        (status = 204, description = "The password is set; every session is revoked; the token and code are spent"),
        (status = 400, description = "invalid_code (unknown, spent, expired or replaced, or a wrong code: the 5th wrong code ends the mail's code and link), or invalid_request (send either token, or email and code)", body = ErrorBody, example = json!({"error": "invalid_code", "message": "the code or link is not valid: wrong, used, expired or replaced by a newer mail"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 422, description = "The new password is too short, too long or too common", body = ErrorBody, example = json!({"error": "weak_password", "message": "the password is too common; choose another one"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The password hasher queue is full or the database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The password hasher queue is full or the database is unreachable"})),
    )
)]
pub async fn reset_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    let body = body.0;
    let presented = by_email(&state, &body.token, &body.email, &body.code).await?;
    match presented {
        Some(presented) => {
            state
                .accounts
                .reset_password(presented, body.new_password.0)
                .await?
        }
        None => return Err(ApiError::InvalidCode),
    }
    Ok(HttpResponse::NoContent().finish())
}

/// The grant a `{"token"}` or `{"email","code"}` body presents; `None` for
/// a code with an email that has no account (answered as a wrong code).
async fn by_email<'a>(
    state: &AppState,
    token: &'a Option<SecretStringField>,
    email: &Option<String>,
    code: &'a Option<SecretStringField>,
) -> Result<Option<Presented<'a>>, ApiError> {
    match (token, email, code) {
        (Some(token), None, None) => Ok(Some(Presented::Token(token.0.expose_secret()))),
        (None, Some(email), Some(code)) => {
            Ok(state
                .accounts
                .user_for_code(email)
                .await?
                .map(|user| Presented::Code {
                    user,
                    code: code.0.expose_secret(),
                }))
        }
        _ => Err(ApiError::InvalidRequest(
            "send either token, or email and code".into(),
        )),
    }
}

/// Queue a new verification mail for the caller's email; a no-op when it
/// is verified already.
#[utoipa::path(
    post,
    path = "/email/verification",
    tag = "account",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "A verification mail is queued (or the email is verified already)"),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 429, description = "Too many requests from this client, or this address had 5 mails in the last hour; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "too many requests; retry later"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn resend_verification(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    state.accounts.resend_verification(caller.0.sub).await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct VerifyEmailRequest {
    /// The token of the mailed link; or send `email` and `code`.
    #[schema(value_type = Option<String>, format = Password)]
    pub token: Option<SecretStringField>,
    #[schema(example = "alice@example.com")]
    pub email: Option<String>,
    /// The 6-digit code of the mail, with `email`.
    #[schema(value_type = Option<String>, format = Password, example = "123456")]
    pub code: Option<SecretStringField>,
}

/// Verify the email with the mailed token, or the email and the mailed
/// code. Access tokens issued from now on (login, refresh) say
/// `email_verified: true`.
#[utoipa::path(
    post,
    path = "/email/verify",
    tag = "account",
    request_body = VerifyEmailRequest,
    responses(
        (status = 204, description = "The email is verified"),
        (status = 400, description = "invalid_code (unknown, spent, expired or replaced, or a wrong code: the 5th wrong code ends it), or invalid_request (send either token, or email and code)", body = ErrorBody, example = json!({"error": "invalid_code", "message": "the code or link is not valid: wrong, used, expired or replaced by a newer mail"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn verify_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    let body = body.0;
    let Some(presented) = by_email(&state, &body.token, &body.email, &body.code).await? else {
        return Err(ApiError::InvalidCode);
    };
    state.accounts.verify_email(presented).await?;
    Ok(HttpResponse::NoContent().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangeEmailRequest {
    #[schema(example = "alice@example.org", format = Email, max_length = 254)]
    pub new_email: String,
    /// The account's current password.
    #[schema(value_type = String, format = Password)]
    pub password: SecretStringField,
}

/// Ask to change the caller's email: a mail with a link and a code goes to
/// the new address, a notice to the old one; nothing changes until the new
/// address is confirmed.
#[utoipa::path(
    post,
    path = "/email/change",
    tag = "account",
    security(("bearer" = [])),
    request_body = ChangeEmailRequest,
    responses(
        (status = 202, description = "The confirmation mail is queued"),
        (status = 400, description = "Malformed JSON, or a missing or mistyped field", body = ErrorBody, example = json!({"error": "invalid_request", "message": "Malformed JSON, or a missing or mistyped field"})),
        (status = 401, description = "invalid_credentials (the password is wrong), or a Bearer failure (missing_token, invalid_token)", body = ErrorBody, example = json!({"error": "invalid_credentials", "message": "the email or password is wrong"})),
        (status = 409, description = "The new email is registered already (or is the current one)", body = ErrorBody, example = json!({"error": "email_taken", "message": "this email is already registered"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 422, description = "The new email is not a valid address", body = ErrorBody, example = json!({"error": "invalid_email", "message": "the email address is not valid"})),
        (status = 429, description = "Too many requests from this client, or the new address had 5 mails in the last hour", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "too many requests; retry later"})),
        (status = 503, description = "The password hasher queue is full or the database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The password hasher queue is full or the database is unreachable"})),
    )
)]
pub async fn change_email(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<ChangeEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    let body = body.0;
    state
        .accounts
        .request_email_change(caller.0.sub, &body.new_email, body.password.0)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ConfirmEmailChangeRequest {
    /// The token of the link mailed to the new address; or send `code`.
    #[schema(value_type = Option<String>, format = Password)]
    pub token: Option<SecretStringField>,
    /// The 6-digit code mailed to the new address.
    #[schema(value_type = Option<String>, format = Password, example = "123456")]
    pub code: Option<SecretStringField>,
}

/// Confirm the caller's email change with the token or the code mailed to
/// the new address: the account's email becomes the new one, verified, and
/// a notice goes to the old address.
#[utoipa::path(
    post,
    path = "/email/change/confirm",
    tag = "account",
    security(("bearer" = [])),
    request_body = ConfirmEmailChangeRequest,
    responses(
        (status = 204, description = "The email is changed and verified"),
        (status = 400, description = "invalid_code (unknown, spent, expired, replaced, another account's, or a wrong code: the 5th wrong code ends it), or invalid_request (send either token or code)", body = ErrorBody, example = json!({"error": "invalid_code", "message": "the code or link is not valid: wrong, used, expired or replaced by a newer mail"})),
        (status = 401, description = "Missing, malformed, expired, revoked or wrongly-signed access token (RFC 6750 challenge in WWW-Authenticate)", body = ErrorBody, headers(("WWW-Authenticate" = String, description = "Bearer challenge, with error=\"invalid_token\" when a token was sent")), example = json!({"error": "invalid_token", "message": "the token has expired"})),
        (status = 409, description = "The new email was registered by someone else meanwhile", body = ErrorBody, example = json!({"error": "email_taken", "message": "this email is already registered"})),
        (status = 413, description = "The body is over 16 KiB", body = ErrorBody, example = json!({"error": "payload_too_large", "message": "The body is over 16 KiB"})),
        (status = 415, description = "The body is not application/json", body = ErrorBody, example = json!({"error": "unsupported_media_type", "message": "The body is not application/json"})),
        (status = 429, description = "Too many requests; retry after Retry-After seconds", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "too_many_requests", "message": "Too many requests; retry after Retry-After seconds"})),
        (status = 503, description = "The database is unreachable", body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before retrying")), example = json!({"error": "unavailable", "message": "The database is unreachable"})),
    )
)]
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<ConfirmEmailChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip)?;
    let body = body.0;
    let user = caller.0.sub;
    let presented = match (&body.token, &body.code) {
        (Some(token), None) => Presented::Token(token.0.expose_secret()),
        (None, Some(code)) => Presented::Code {
            user,
            code: code.0.expose_secret(),
        },
        _ => {
            return Err(ApiError::InvalidRequest("send either token or code".into()));
        }
    };
    state.accounts.confirm_email_change(user, presented).await?;
    Ok(HttpResponse::NoContent().finish())
}
