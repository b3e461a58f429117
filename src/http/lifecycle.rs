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

use super::AppState;
use super::extract::{Authenticated, ClientInfo, JsonObject};
use super::tokens::SecretStringField;
use crate::accounts::Presented;
use crate::error::ApiError;

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
/// mail is queued only when it has, at most 5 reset mails an hour per address.
#[utoipa::path(
    post,
    path = "/password/forgot",
    tag = "account",
    request_body = ForgotPasswordRequest,
    responses(
        (status = 202, description = "Accepted (a mail is queued if the email has an account)", body = AcceptedResponse),
    )
)]
pub async fn forgot_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<ForgotPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    state.accounts.forgot_password(&body.0.email).await?;
    Ok(HttpResponse::Accepted().json(AcceptedResponse { status: "accepted" }))
}

/// What the handler reads: every field optional, so that a wrongly typed
/// one is named in the error; the document shows the alternatives
/// ([`ResetPasswordBody`]).
#[derive(Debug, Deserialize)]
pub struct ResetPasswordRequest {
    /// The token of the mailed link; or send `email` and `code`.
    pub token: Option<SecretStringField>,
    pub email: Option<String>,
    /// The 6-digit code of the mail, with `email`. After 10 wrong codes in a
    /// day every code is refused (`invalid_code`); the link still works.
    pub code: Option<SecretStringField>,
    /// The same rules as at registration.
    pub new_password: SecretStringField,
}

/// Set a new password with a mailed token, or the email and the mailed
/// code. Every session of the account is revoked.
#[utoipa::path(
    post,
    path = "/password/reset",
    tag = "account",
    request_body = ResetPasswordBody,
    responses(
        (status = 204, description = "The password is set; every session is revoked; the token and code are spent"),
    )
)]
pub async fn reset_password(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<ResetPasswordRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
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
    )
)]
pub async fn resend_verification(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    state.accounts.resend_verification(caller.0.sub).await?;
    Ok(HttpResponse::Accepted().finish())
}

/// What the handler reads: every field optional, so that a wrongly typed
/// one is named in the error; the document shows the alternatives
/// ([`VerifyEmailBody`]).
#[derive(Debug, Deserialize)]
pub struct VerifyEmailRequest {
    /// The token of the mailed link; or send `email` and `code`.
    pub token: Option<SecretStringField>,
    pub email: Option<String>,
    /// The 6-digit code of the mail, with `email`.
    pub code: Option<SecretStringField>,
}

/// Verify the email with the mailed token, or the email and the mailed
/// code. Access tokens issued from now on (login, refresh) say
/// `email_verified: true`.
#[utoipa::path(
    post,
    path = "/email/verify",
    tag = "account",
    request_body = VerifyEmailBody,
    responses(
        (status = 204, description = "The email is verified"),
    )
)]
pub async fn verify_email(
    state: web::Data<AppState>,
    client: ClientInfo,
    body: JsonObject<VerifyEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
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
    )
)]
pub async fn change_email(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<ChangeEmailRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
    let body = body.0;
    state
        .accounts
        .request_email_change(caller.0.sub, &body.new_email, body.password.0)
        .await?;
    Ok(HttpResponse::Accepted().finish())
}

/// What the handler reads: every field optional, so that a wrongly typed
/// one is named in the error; the document shows the alternatives
/// ([`ConfirmEmailChangeBody`]).
#[derive(Debug, Deserialize)]
pub struct ConfirmEmailChangeRequest {
    /// The token of the link mailed to the new address; or send `code`.
    pub token: Option<SecretStringField>,
    /// The 6-digit code mailed to the new address.
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
    request_body = ConfirmEmailChangeBody,
    responses(
        (status = 204, description = "The email is changed and verified"),
    )
)]
pub async fn confirm_email_change(
    state: web::Data<AppState>,
    caller: Authenticated,
    client: ClientInfo,
    body: JsonObject<ConfirmEmailChangeRequest>,
) -> Result<HttpResponse, ApiError> {
    state.limits.check_ip(client.ip).await?;
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

// The documented request bodies of the mailed flows: one `oneOf` alternative
// per way to present a grant (the link's token, or the code), each closed
// (`additionalProperties: false`), so a generated client cannot send both.
// Schema only: the handlers read the `*Request` types above, which refuse
// both with `400 invalid_request`.

/// The mailed link's token, or the email and the mailed code; and the new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ResetPasswordBody {
    WithToken(ResetWithToken),
    WithCode(ResetWithCode),
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ResetWithToken {
    /// The token of the mailed link (its `token` parameter).
    token: String,
    /// The same rules as at registration.
    #[schema(format = Password, max_length = 1024)]
    new_password: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct ResetWithCode {
    #[schema(example = "alice@example.com")]
    email: String,
    /// The 6-digit code of the mail. After 10 wrong codes in a day every code
    /// is refused (`invalid_code`); the link still works.
    #[schema(example = "123456")]
    code: String,
    /// The same rules as at registration.
    #[schema(format = Password, max_length = 1024)]
    new_password: String,
}

/// The mailed link's token, or the email and the mailed code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum VerifyEmailBody {
    WithToken(GrantToken),
    WithCode(EmailAndCode),
}

/// The token of a mailed link (its `token` parameter).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct GrantToken {
    token: String,
}

/// An email and the 6-digit code mailed to it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct EmailAndCode {
    #[schema(example = "alice@example.com")]
    email: String,
    #[schema(example = "123456")]
    code: String,
}

/// The token of the link mailed to the new address, or the code.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum ConfirmEmailChangeBody {
    WithToken(GrantToken),
    WithCode(GrantCode),
}

/// The 6-digit code mailed to the new address.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
pub struct GrantCode {
    #[schema(example = "123456")]
    code: String,
}
