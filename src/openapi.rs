//! The OpenAPI 3.1 document: the operations of the documented routes of
//! [`ROUTES`] (their `#[utoipa::path]` annotations give the success answers),
//! every error answer written here from the route list, and the bearer
//! security scheme. `openapi/openapi.json` in the repository is this document,
//! printed by `auth-api openapi`; a test fails when the two differ, so every
//! API change is a reviewed diff.
//!
//! # Error answers
//! Each error status of an operation answers a reusable response of
//! `components.responses`, named after the codes it can carry
//! (`InvalidEmailOrWeakPassword`), whose schema's `error` is an enum of
//! exactly those codes (and `reason` an enum on `invalid_grant`), so
//! generated clients switch on typed codes. Every operation also has a
//! `default` answer, [`ErrorCode::ALL`]. The codes of a route are
//! [`Route::error_codes`]: its own plus those its access, body and path imply.
//! Every answer is checked against them as it leaves (`auth_undocumented_errors_total`,
//! and an error log line), so a code missing from the list shows up in the tests.
//!
//! # Adding a route
//! 1. Write the handler with `#[utoipa::path(method, path = "...", tag = "...",
//!    responses(...))]` listing its **success** answers only (2xx, with their
//!    bodies and headers); error answers are written here, from the list.
//!    Give it a one-line doc comment: it is the operation's summary.
//! 2. Add one entry to `route_table!` in `src/http/routes.rs`, under
//!    `documented` (or `undocumented` for operators' routes):
//!    `module::handler => Route::post("/path").bearer().json_body().errors(&[...]),`
//!    - `.bearer()` / `.admin()` imply `401 missing_token, invalid_token`
//!      (and `403 insufficient_role`); `.json_body()` (a `JsonObject` extractor)
//!      implies `400 invalid_request, 408, 413, 415`; a `{param}` in the path
//!      implies `404 not_found`; `500 internal_error` is always there.
//!    - `.any_method()` serves the path for every method (no `405` from the
//!      router): `/verify`, whose gateways forward any method, and
//!      `/revocations`, which must look absent to every method when it is off.
//!    - `.errors(&[...])`: every other code the handler can answer
//!      (`Unavailable` when it reads the database, `TooManyRequests` when it
//!      is rate limited, `EmailTaken`...).
//!    - A new code is a new [`ErrorCode`] variant (with its status and meaning)
//!      and an `ApiError` variant that maps to it.
//! 3. Regenerate the committed copy: `cargo run -q -- openapi > openapi/openapi.json`
//!    and review the diff. The route, its `405` for other methods, `HEAD` for
//!    `GET`, its metrics label and its documented codes all follow from the entry.
//!
//! Bodies: timestamps go through `crate::http::timestamp` (RFC 3339, UTC,
//! milliseconds); a field always sent but possibly `null` is
//! `#[schema(required = true)]` on an `Option`.

use std::collections::BTreeMap;

use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorCode;
use crate::http::routes::{Method, ROUTES, Route, documented_operations};
use crate::sessions::RefreshRefusal;

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "auth-api",
        description = "Stateless JWT authentication for mobile apps: HS256, ES256 or EdDSA \
                       access tokens verified without a database (public keys at \
                       `/.well-known/jwks.json`), rotating refresh tokens with reuse \
                       detection, sessions per device.\n\n\
                       Every error is `{\"error\": \"<code>\", \"message\": \"<text>\"}` \
                       (plus `reason` on `invalid_grant`); clients switch on `error`, \
                       whose possible values each response lists.\n\n\
                       To try the protected routes: call `/login`, copy `access_token` \
                       (without the quotes), press **Authorize** and paste it alone: \
                       Swagger UI adds `Bearer `.",
        license(name = "MIT"),
    ),
    servers((url = "/", description = "The server this document is served by")),
    modifiers(&BearerScheme),
    tags(
        (name = "account", description = "Registration, identity, password, and the mailed flows: verification, reset, email change, deletion"),
        (name = "tokens", description = "Sign in, refresh rotation, sign out"),
        (name = "sessions", description = "The caller's sessions (devices)"),
        (name = "admin", description = "Administration (role admin)"),
        (name = "backends", description = "For the app's backends and gateways: forward auth and the revocation feed"),
        (name = "operations", description = "Probes and documentation"),
    )
)]
pub struct ApiDoc;

/// The whole document: [`ApiDoc`], the operations of the documented routes,
/// and their error answers.
pub fn document() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.merge(documented_operations());
    add_error_answers(&mut doc);
    doc
}

/// Adds the `bearer` security scheme the protected routes require.
#[derive(Debug)]
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some(
                        "The `access_token` of a `/login` or `/refresh` answer. Paste the \
                         token alone (no quotes, no `Bearer ` prefix): it is sent as \
                         `Authorization: Bearer <token>`.",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "service_key",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "One of `BACKEND_API_KEYS`, as `Authorization: Bearer <key>`: a \
                         credential of the app's own backends, never of apps (an access \
                         token is not accepted).",
                    ))
                    .build(),
            ),
        );
    }
}

/// Every operation's error answers, from [`ROUTES`]: one response per status
/// (a reusable component, shared by every operation with the same codes), and
/// the `default` answer. Error answers written in annotations are replaced.
fn add_error_answers(doc: &mut utoipa::openapi::OpenApi) {
    let mut responses: BTreeMap<String, RefOr<Response>> = BTreeMap::new();
    let mut schemas: BTreeMap<String, RefOr<Schema>> = BTreeMap::new();
    for route in ROUTES.iter().filter(|r| r.documented) {
        let Some(operation) = doc
            .paths
            .paths
            .get_mut(route.path)
            .and_then(|item| operation_mut(item, route.method))
        else {
            continue;
        };
        operation
            .responses
            .responses
            .retain(|status, _| status.starts_with('1') || status.starts_with('2'));
        for (status, codes) in by_status(route) {
            let name = response_name(&codes);
            responses
                .entry(name.clone())
                .or_insert_with(|| RefOr::T(error_response(&name, &codes, &mut schemas)));
            operation.responses.responses.insert(
                status.to_string(),
                RefOr::Ref(Ref::new(format!("#/components/responses/{name}"))),
            );
        }
        operation.responses.responses.insert(
            "default".into(),
            RefOr::Ref(Ref::new("#/components/responses/Error")),
        );
    }
    responses.insert(
        "Error".into(),
        RefOr::T(error_response("Error", &ErrorCode::ALL, &mut schemas)),
    );
    let components = doc.components.get_or_insert_with(Default::default);
    // The handlers' own `ErrorBody` schema has no use in the document.
    components.schemas.remove("ErrorBody");
    components.schemas.append(&mut schemas);
    components.responses.append(&mut responses);
}

fn operation_mut(item: &mut PathItem, method: Method) -> Option<&mut Operation> {
    match method {
        Method::Get => item.get.as_mut(),
        Method::Post => item.post.as_mut(),
        Method::Delete => item.delete.as_mut(),
    }
}

/// A route's codes grouped by status, in status order.
fn by_status(route: &Route) -> BTreeMap<u16, Vec<ErrorCode>> {
    let mut statuses: BTreeMap<u16, Vec<ErrorCode>> = BTreeMap::new();
    for code in route.error_codes() {
        statuses
            .entry(code.status().as_u16())
            .or_default()
            .push(code);
    }
    statuses
}

/// `InvalidEmailOrWeakPassword`: the codes, in PascalCase, joined by `Or`.
fn response_name(codes: &[ErrorCode]) -> String {
    codes
        .iter()
        .map(|code| {
            code.as_str()
                .split('_')
                .map(|word| {
                    let mut chars = word.chars();
                    chars.next().map_or(String::new(), |first| {
                        first.to_ascii_uppercase().to_string() + chars.as_str()
                    })
                })
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("Or")
}

/// The response for one set of codes, its schema (`<name>Error`, or `Error`
/// for the default answer) added to `schemas`.
fn error_response(
    name: &str,
    codes: &[ErrorCode],
    schemas: &mut BTreeMap<String, RefOr<Schema>>,
) -> Response {
    // `InvalidEmailOrWeakPasswordError`; the default answer's is plain `Error`.
    let schema_name = if name == "Error" {
        name.to_owned()
    } else {
        format!("{name}Error")
    };
    schemas.insert(schema_name.clone(), RefOr::T(error_schema(codes)));
    let mut description = if codes.len() == 1 {
        codes[0].meaning().to_owned()
    } else {
        let mut text = String::from("One of:");
        for code in codes {
            text.push_str("\n- ");
            text.push_str(code.meaning());
        }
        text
    };
    if name == "Error" {
        description = format!(
            "Any error of the API (every answer carries one of these codes; the statuses \
             above list the codes this operation answers).\n\n{description}"
        );
    }
    let mut response = ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema_name)))
            .build(),
    );
    let string = || ObjectBuilder::new().schema_type(Type::String);
    let seconds = || {
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(0))
    };
    let any = |wanted: &[ErrorCode]| codes.iter().any(|c| wanted.contains(c));
    if any(&[
        ErrorCode::MissingToken,
        ErrorCode::InvalidToken,
        ErrorCode::InsufficientRole,
    ]) {
        response = response.header(
            "WWW-Authenticate",
            HeaderBuilder::new()
                .schema(string())
                .description(Some(
                    "RFC 6750 challenge: `Bearer` with no token, `Bearer error=\"invalid_token\", \
                     error_description=\"...\"` for a bad one, `error=\"insufficient_scope\"` for \
                     too low a role",
                ))
                .build(),
        );
    }
    if any(&[ErrorCode::TooManyRequests, ErrorCode::Unavailable]) {
        response = response.header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(seconds())
                .description(Some("Seconds to wait before retrying"))
                .build(),
        );
    }
    if codes.contains(&ErrorCode::MethodNotAllowed) {
        response = response.header(
            "Allow",
            HeaderBuilder::new()
                .schema(string())
                .description(Some("On `405`: the methods the path serves"))
                .build(),
        );
    }
    response.build()
}

/// `{"error", "message"}` with `error` an enum of `codes`, and `reason` an
/// enum of the refusals where `invalid_grant` is one of them (required when
/// it is the only one).
fn error_schema(codes: &[ErrorCode]) -> Schema {
    let mut schema = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "error",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(codes.iter().map(|c| c.as_str())))
                .description(Some("Stable code: switch on it.")),
        )
        .required("error")
        .property(
            "message",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .description(Some("Text for humans; may change.")),
        )
        .required("message");
    if codes.contains(&ErrorCode::InvalidGrant) {
        schema = schema.property(
            "reason",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(RefreshRefusal::ALL.iter().map(|r| r.as_str())))
                .description(Some(
                    "On `invalid_grant`, why: sign in again on every reason but \
                     `superseded` (a late duplicate: keep using the newest refresh token).",
                )),
        );
        if codes == [ErrorCode::InvalidGrant] {
            schema = schema.required("reason");
        }
    }
    schema.build().into()
}

/// The document as pretty JSON, ending with a newline (the committed file's form).
pub fn document_json() -> String {
    let mut text = document()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_named_by_their_codes() {
        assert_eq!(
            response_name(&[ErrorCode::InvalidEmail, ErrorCode::WeakPassword]),
            "InvalidEmailOrWeakPassword"
        );
        assert_eq!(response_name(&[ErrorCode::InternalError]), "InternalError");
    }

    #[test]
    fn every_documented_operation_lists_its_codes_by_status_and_a_default() {
        let doc = serde_json::to_value(document()).expect("JSON");
        for route in ROUTES.iter().filter(|r| r.documented) {
            let method = route.method.as_str().to_ascii_lowercase();
            let answers = &doc["paths"][route.path][&method]["responses"];
            assert!(answers["default"].is_object(), "{method} {}", route.path);
            for (status, codes) in by_status(route) {
                let reference = answers[status.to_string()]["$ref"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{method} {} {status}", route.path));
                let name = reference.rsplit('/').next().unwrap_or_default();
                let schema = &doc["components"]["schemas"][format!("{name}Error")];
                let listed: Vec<&str> = schema["properties"]["error"]["enum"]
                    .as_array()
                    .expect("an enum")
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect();
                let codes: Vec<&str> = codes.iter().map(|c| c.as_str()).collect();
                assert_eq!(listed, codes, "{method} {} {status}", route.path);
            }
        }
    }
}
