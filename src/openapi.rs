//! The OpenAPI 3.1 document: every handler's `#[utoipa::path]` collected in
//! one place, with the bearer (JWT) security scheme. `openapi/openapi.json` in
//! the repository is this document, printed by `auth-api openapi`; a test
//! fails when the two differ, so every API change is a reviewed diff.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::ErrorBody;
use crate::http::{account, admin, docs, health, keys, revocations, sessions, tokens, verify};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "auth-api",
        description = "Stateless JWT authentication for mobile apps: HS256, ES256 or EdDSA \
                       access tokens verified without a database (public keys at \
                       `/.well-known/jwks.json`), rotating refresh tokens with reuse \
                       detection, sessions per device.\n\n\
                       Every error is `{\"error\": \"<code>\", \"message\": \"<text>\"}`; \
                       clients switch on `error`.\n\n\
                       To try the protected routes: call `/login`, copy `access_token`, \
                       press **Authorize** and paste it.",
        license(name = "MIT"),
    ),
    paths(
        account::register,
        tokens::login,
        tokens::refresh,
        tokens::logout,
        tokens::logout_all,
        keys::jwks,
        account::me,
        sessions::list_sessions,
        sessions::delete_session,
        account::change_password,
        admin::revoke_user_sessions,
        verify::verify,
        revocations::revocations,
        health::healthz,
        health::readyz,
        health::metrics,
        docs::openapi_json,
        docs::swagger_ui,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerScheme),
    tags(
        (name = "account", description = "Registration, identity and password"),
        (name = "tokens", description = "Sign in, refresh rotation, sign out"),
        (name = "sessions", description = "The caller's sessions (devices)"),
        (name = "admin", description = "Administration (role admin)"),
        (name = "backends", description = "For the app's backends and gateways: forward auth and the revocation feed"),
        (name = "operations", description = "Probes and documentation"),
    )
)]
pub struct ApiDoc;

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
                        "The `access_token` of a `/login` or `/refresh` answer.",
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

/// The document as pretty JSON, ending with a newline (the committed file's form).
pub fn document_json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises");
    text.push('\n');
    text
}
