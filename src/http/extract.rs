//! Extractors: the Bearer check (the hot path), the admin check, the client's
//! address and user agent, and the JSON/path error handlers that turn actix's
//! rejections into the API's JSON errors.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::dev::Payload;
use actix_web::error::{JsonPayloadError, PathError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::{FromRequest, HttpRequest, web};

use super::AppState;
use crate::auth::access::is_wrapped_token;
use crate::auth::credentials::clean_user_agent;
use crate::auth::{AccessTokens, Claims, RevocationSet, Role, TokenError};
use crate::error::ApiError;

/// Request bodies larger than this answer `413` (API.md).
pub const MAX_BODY_BYTES: usize = 16 * 1024;
pub use crate::auth::credentials::MAX_USER_AGENT_CHARS;

/// A caller with a valid access token of a session that is not revoked.
///
/// Checked from the token alone: signature, claims and the in-memory
/// revocation set. No database read, no lock, no await. A bad token is an
/// error, never an anonymous caller.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl FromRequest for Authenticated {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).map(Authenticated))
    }
}

fn authenticate(req: &HttpRequest) -> Result<Claims, ApiError> {
    let state = req
        .app_data::<web::Data<AppState>>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("application state missing")))?;
    check_bearer(
        req.headers().get(header::AUTHORIZATION),
        &state.tokens,
        &state.revocations,
    )
}

/// The whole Bearer check, from the `Authorization` header to the claims:
/// parse the header, verify signature and claims, consult the revocation set.
/// Pure and synchronous (what the benchmarks measure).
pub fn check_bearer(
    authorization: Option<&HeaderValue>,
    tokens: &AccessTokens,
    revocations: &RevocationSet,
) -> Result<Claims, ApiError> {
    let token = bearer_token(authorization)?;
    // Off the hot path: only a token that failed is looked at again.
    let claims = tokens.verify(token).map_err(|e| match e {
        TokenError::Malformed if is_wrapped_token(token) => TokenError::Wrapped,
        e => e,
    })?;
    if revocations.is_revoked(&claims.sid) {
        return Err(ApiError::InvalidToken(TokenError::Revoked));
    }
    Ok(claims)
}

/// The token of an `Authorization: Bearer <token>` header (RFC 6750 §2.1).
/// No header, or another scheme, is a missing token; a Bearer header with an
/// empty token is an invalid one.
pub(crate) fn bearer_token(authorization: Option<&HeaderValue>) -> Result<&str, ApiError> {
    let Some(value) = authorization else {
        return Err(ApiError::MissingToken);
    };
    // UTF-8 rather than `to_str` (visible ASCII, checked byte by byte): the
    // verifier refuses anything outside base64url and '.' anyway, and this is
    // the hot path.
    let value = std::str::from_utf8(value.as_bytes())
        .map_err(|_| ApiError::InvalidToken(TokenError::Malformed))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        // `Bearer` alone is a Bearer header with an empty token; anything
        // else without a space is a bare token (not named: it is a secret).
        if value.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::InvalidToken(TokenError::Malformed));
        }
        return Err(ApiError::NotBearer { scheme: None });
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        // A short word (`Token`, `Basic`, `JWT`) is named in the message;
        // anything else could be a credential and is not.
        let word = (1..=16).contains(&scheme.len())
            && scheme.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
        return Err(ApiError::NotBearer {
            scheme: word.then(|| scheme.to_owned()),
        });
    }
    let token = token.trim_start_matches(' ');
    if token.len() > crate::auth::access::MAX_TOKEN_BYTES {
        return Err(ApiError::InvalidToken(TokenError::TooLarge));
    }
    // The token's alphabet and structure are checked by the verifier, strictly.
    if token.is_empty() {
        return Err(ApiError::InvalidToken(TokenError::Malformed));
    }
    Ok(token)
}

/// An authenticated caller whose token carries the `admin` role. Anyone else
/// gets `403 insufficient_role` before the handler runs.
#[derive(Debug, Clone)]
pub struct Admin(pub Claims);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(authenticate(req).and_then(|claims| {
            if claims.role == Role::Admin {
                Ok(Admin(claims))
            } else {
                Err(ApiError::InsufficientRole)
            }
        }))
    }
}

/// Who is calling: the client IP (for rate limits and audit logs) and the
/// `User-Agent` (recorded with a new session, cleaned and truncated).
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl FromRequest for ClientInfo {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let trust_forwarded_for = req
            .app_data::<web::Data<AppState>>()
            .is_some_and(|s| s.trust_forwarded_for);
        let user_agent = req
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(clean_user_agent)
            .filter(|ua| !ua.is_empty());
        ready(Ok(ClientInfo {
            ip: client_ip(req, trust_forwarded_for),
            user_agent,
        }))
    }
}

/// The peer address, or, behind a proxy you run (`TRUST_FORWARDED_FOR=true`),
/// the right-most `X-Forwarded-For` entry: the one your proxy appended. Entries
/// to its left were written by the client and prove nothing.
pub fn client_ip(req: &HttpRequest, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        let forwarded = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .last()
            .and_then(|s| s.parse::<IpAddr>().ok());
        if forwarded.is_some() {
            return forwarded;
        }
    }
    req.peer_addr().map(|addr| addr.ip())
}

/// A JSON request body that must be an object.
///
/// serde accepts a struct written as an array of its fields (`["a@b", "pw"]`
/// for `{"email", "password"}`); the contract says bodies are objects, so the
/// body is read as an object first (with [`json_config`]'s limits and errors),
/// then mapped onto `T` by field name.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequest for JsonObject<T> {
    type Error = actix_web::Error;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let object =
            web::Json::<serde_json::Map<String, serde_json::Value>>::from_request(req, payload);
        Box::pin(async move {
            let object = object.await?.into_inner();
            if let Some(field) = field_with_nul(&object) {
                return Err(ApiError::InvalidRequest(match field {
                    Some(name) => format!("{name} must not contain a NUL character (U+0000)"),
                    None => "the request body must not contain a NUL character (U+0000)".into(),
                })
                .into());
            }
            let object = serde_json::Value::Object(object);
            T::deserialize(&object)
                .map(JsonObject)
                .map_err(|e| ApiError::InvalidRequest(describe_body_error::<T>(&object, &e)).into())
        })
    }
}

/// [`describe_json_error`], naming the field when one has the wrong type:
/// serde says what it expected but not where, so the field is found by
/// leaving each out in turn (the one whose absence changes the error).
/// Only a plain field name is named, and never the value.
fn describe_body_error<T: serde::de::DeserializeOwned>(
    body: &serde_json::Value,
    err: &serde_json::Error,
) -> String {
    let text = err.to_string();
    let serde_json::Value::Object(object) = body else {
        return describe_json_error(err);
    };
    if !(text.starts_with("invalid type") || text.starts_with("invalid value")) {
        return describe_json_error(err);
    }
    let culprit = object.keys().find(|key| {
        let mut without = object.clone();
        without.remove(*key);
        match T::deserialize(&serde_json::Value::Object(without)) {
            Ok(_) => true,
            Err(other) => other.to_string() != text,
        }
    });
    // serde writes "invalid type: <the value>, expected <what the type
    // wants>": only the part after the last ", expected " is ours.
    let expected = text
        .split(" at line ")
        .next()
        .and_then(|t| t.rsplit_once(", expected "))
        .map(|(_, expected)| expected);
    match (culprit.filter(|key| is_plain_name(key)), expected) {
        (Some(field), Some(expected)) => {
            format!("invalid request body: {field} has the wrong type (expected {expected})")
        }
        (Some(field), None) => format!("invalid request body: {field} has the wrong type"),
        _ => describe_json_error(err),
    }
}

/// A field name safe to echo: short, lower-case letters and `_`.
fn is_plain_name(key: &str) -> bool {
    !key.is_empty() && key.len() <= 32 && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
}

/// A NUL (U+0000) anywhere in a body, in a value at any depth or in a key:
/// `Some(Some(field))` naming the top-level field it is under when that name is
/// a plain identifier (never echoing anything else the client sent),
/// `Some(None)` otherwise.
///
/// Refused for every body here, before any handler runs (API.md: a NUL is a
/// `400`, never a `500`): PostgreSQL `text` cannot hold U+0000, so a NUL that
/// reached the store would fail the query, and no field of the API has a use
/// for one. One check covers every endpoint, today's and tomorrow's.
fn field_with_nul(object: &serde_json::Map<String, serde_json::Value>) -> Option<Option<&str>> {
    fn holds_nul(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().any(holds_nul),
            serde_json::Value::Object(fields) => fields
                .iter()
                .any(|(key, value)| key.contains('\0') || holds_nul(value)),
            _ => false,
        }
    }
    let (key, _) = object
        .iter()
        .find(|(key, value)| key.contains('\0') || holds_nul(value))?;
    Some(is_plain_name(key).then_some(key.as_str()))
}

/// JSON bodies: at most 16 KiB, `application/json`, and every rejection as a JSON error.
pub fn json_config() -> web::JsonConfig {
    web::JsonConfig::default()
        .limit(MAX_BODY_BYTES)
        .content_type_required(true)
        .error_handler(|err, _req| {
            match err {
                JsonPayloadError::OverflowKnownLength { .. }
                | JsonPayloadError::Overflow { .. } => ApiError::PayloadTooLarge,
                JsonPayloadError::ContentType => ApiError::UnsupportedMediaType,
                JsonPayloadError::Payload(e) if super::deadline::is_deadline_error(&e) => {
                    ApiError::RequestTimeout
                }
                JsonPayloadError::Deserialize(e) => {
                    ApiError::InvalidRequest(describe_json_error(&e))
                }
                _ => ApiError::InvalidRequest("the request body could not be read".into()),
            }
            .into()
        })
}

/// A short, safe description of a JSON error: its category and position, never
/// the offending text (which could be a password).
fn describe_json_error(err: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match err.classify() {
        Category::Data => {
            // serde names the field of a missing one; its other data errors
            // ("invalid type: string \"...\"") can quote the value, which may
            // be a password, so they are summarised instead.
            let text = err.to_string();
            let text = text.split(" at line ").next().unwrap_or(&text);
            if text.starts_with("missing field") {
                format!("invalid request body: {text}")
            } else if text.contains("expected a map") {
                "the request body must be a JSON object".into()
            } else {
                "invalid request body: a field has the wrong type".into()
            }
        }
        Category::Syntax | Category::Eof => format!(
            "the request body is not valid JSON (line {}, column {})",
            err.line(),
            err.column()
        ),
        Category::Io => "the request body could not be read".into(),
    }
}

/// Path parameters that do not parse (a malformed session id) are `404`: no
/// such resource, and nothing to learn from the difference.
pub fn path_config() -> web::PathConfig {
    web::PathConfig::default().error_handler(|_err: PathError, _req| ApiError::NotFound.into())
}

/// A query string that does not fit the handler's parameters is a
/// `400 invalid_request` in the JSON error shape (actix answers plain text).
/// The message names no value: a query may carry an email.
pub fn query_config() -> web::QueryConfig {
    web::QueryConfig::default().error_handler(|_err, _req| {
        ApiError::InvalidRequest("the query string is missing a parameter or malformed".into())
            .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nul_in(body: serde_json::Value) -> Option<Option<String>> {
        let serde_json::Value::Object(object) = body else {
            panic!("an object")
        };
        field_with_nul(&object).map(|field| field.map(str::to_owned))
    }

    #[test]
    fn a_nul_is_found_at_any_depth_and_named_by_its_field() {
        assert_eq!(nul_in(json!({"email": "a@b.c", "password": "pw"})), None);
        assert_eq!(
            nul_in(json!({"email": "a@b.c", "device_name": "x\u{0}y"})),
            Some(Some("device_name".into()))
        );
        assert_eq!(
            nul_in(json!({"extra": [1, {"deep": ["\u{0}"]}]})),
            Some(Some("extra".into()))
        );
        assert_eq!(
            nul_in(json!({"extra": {"k\u{0}": 1}})),
            Some(Some("extra".into()))
        );
        // A key that is not a plain name is not echoed.
        assert_eq!(nul_in(json!({"pass\u{0}word": "x"})), Some(None));
        assert_eq!(nul_in(json!({"Secret-Value": "\u{0}"})), Some(None));
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use actix_web::test::TestRequest;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn the_bearer_parser_takes_any_header_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..9000)) {
            if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                let req = TestRequest::default().insert_header((header::AUTHORIZATION, value)).to_http_request();
                match bearer_token(req.headers().get(header::AUTHORIZATION)) {
                    Ok(token) => prop_assert!(!token.is_empty() && token.len() <= crate::auth::access::MAX_TOKEN_BYTES),
                    Err(e) => {
                        let bearer_failure = matches!(e, ApiError::MissingToken | ApiError::NotBearer { .. } | ApiError::InvalidToken(_));
                        prop_assert!(bearer_failure);
                    }
                }
            }
        }

        #[test]
        fn json_errors_never_quote_the_body(body in proptest::collection::vec(any::<u8>(), 0..400)) {
            if let Err(e) = serde_json::from_slice::<crate::http::tokens::LoginRequest>(&body) {
                let text = describe_json_error(&e);
                let body_text = String::from_utf8_lossy(&body);
                // A run of 6+ characters of the body would be an echo.
                for window in body_text.chars().collect::<Vec<_>>().windows(6) {
                    let needle: String = window.iter().collect();
                    if needle.chars().all(|c| c.is_alphanumeric()) {
                        prop_assert!(!text.contains(&needle), "{} echoes {}", text, needle);
                    }
                }
            }
        }
    }
}
