//! `/verify`: forward authentication for the app's gateways (nginx
//! `auth_request`, Traefik ForwardAuth, Envoy `ext_authz`, Caddy
//! `forward_auth`).
//!
//! It is the Bearer check of every protected route ([`check_bearer`]: the
//! token alone and the in-memory revocation set, no database, no await)
//! answering with headers instead of a body, so a gateway enforces a
//! revocation as soon as this instance knows of it. Any method and any path
//! under `/verify/` are answered alike, because gateways forward the original
//! request's method and often its path; the body is never read (the route
//! list, `super::routes`, serves it for every method).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};

use super::AppState;
use super::extract::check_bearer;
use crate::auth::Role;
use crate::error::ApiError;

pub const USER_ID: HeaderName = HeaderName::from_static("x-auth-user-id");
pub const SESSION_ID: HeaderName = HeaderName::from_static("x-auth-session-id");
pub const ROLE: HeaderName = HeaderName::from_static("x-auth-role");
pub const EMAIL_VERIFIED: HeaderName = HeaderName::from_static("x-auth-email-verified");

/// The role a `?role=` parameter asks for. `None`: no requirement.
///
/// Parsed by hand from the raw query (no allocation on the hot path). A role
/// value we do not know is the gateway's configuration error, answered `400`
/// rather than silently ignored (ignoring it would let every caller through a
/// rule meant to restrict). Values are compared as sent: `admin` and `user`
/// need no percent-encoding.
fn required_role(query: &str) -> Result<Option<Role>, ApiError> {
    let mut required = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if key != "role" {
            continue;
        }
        let role: Role = value
            .parse()
            .map_err(|_| ApiError::InvalidRequest("role must be admin or user".to_owned()))?;
        // Repeated: the strictest wins.
        if required != Some(Role::Admin) {
            required = Some(role);
        }
    }
    Ok(required)
}

/// A role `/verify?role=` can require.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RequiredRole {
    Admin,
    User,
}

/// Forward auth for gateways: is this access token good?
#[utoipa::path(
    get,
    path = "/verify",
    tag = "backends",
    security(("bearer" = [])),
    params(
        ("role" = inline(Option<RequiredRole>), Query, description = "Require this role: `admin` (or `user`, which every valid token has). Any other value is `400 invalid_request`."),
    ),
    responses(
        (status = 200, description = "The token is valid and its session not revoked. Any method (POST, PUT, DELETE, HEAD, TRACE or any other) and any path under `/verify/` answer the same; the request body is ignored. Empty body.",
            headers(
                ("X-Auth-User-Id" = uuid::Uuid, description = "The user id (`sub`)"),
                ("X-Auth-Session-Id" = uuid::Uuid, description = "The session id (`sid`)"),
                ("X-Auth-Role" = String, description = "`user` or `admin`"),
                ("X-Auth-Email-Verified" = String, description = "`true` or `false`"),
                ("Cache-Control" = String, description = "`no-store`"),
            )),
    )
)]
pub async fn verify(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let required = required_role(req.query_string())?;
    let claims = check_bearer(
        req.headers().get(actix_web::http::header::AUTHORIZATION),
        &state.tokens,
        &state.revocations,
    )?;
    if required == Some(Role::Admin) && claims.role != Role::Admin {
        return Err(ApiError::InsufficientRole);
    }
    let mut user = uuid::Uuid::encode_buffer();
    let mut session = uuid::Uuid::encode_buffer();
    let user = claims.sub.hyphenated().encode_lower(&mut user);
    let session = claims.sid.hyphenated().encode_lower(&mut session);
    // Cache-Control: no-store comes with every answer (startup's DefaultHeaders).
    Ok(HttpResponse::Ok()
        .insert_header((USER_ID, header_value(user)))
        .insert_header((SESSION_ID, header_value(session)))
        .insert_header((ROLE, HeaderValue::from_static(claims.role.as_str())))
        .insert_header((
            EMAIL_VERIFIED,
            HeaderValue::from_static(if claims.email_verified {
                "true"
            } else {
                "false"
            }),
        ))
        .finish())
}

/// A UUID's text is always a valid header value.
fn header_value(text: &str) -> HeaderValue {
    HeaderValue::from_str(text).unwrap_or(HeaderValue::from_static(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_role_parameter_is_admin_user_or_absent() {
        assert_eq!(required_role("").ok(), Some(None));
        assert_eq!(required_role("x=1&y").ok(), Some(None));
        assert_eq!(required_role("role=admin").ok(), Some(Some(Role::Admin)));
        assert_eq!(required_role("a=b&role=user").ok(), Some(Some(Role::User)));
        assert_eq!(
            required_role("role=admin&role=user").ok(),
            Some(Some(Role::Admin))
        );
        for bad in [
            "role=root",
            "role=",
            "role",
            "role=Admin",
            "role=user&role=x",
        ] {
            assert!(
                matches!(required_role(bad), Err(ApiError::InvalidRequest(_))),
                "{bad}"
            );
        }
    }
}
