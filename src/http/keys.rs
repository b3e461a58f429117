//! The key set: `GET /.well-known/jwks.json`, every public key a verifier of
//! access tokens must accept (RFC 7517): the signing key, keys announced ahead
//! of use and keys retired but still accepted. Empty with HS256, whose key is
//! a secret.

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;

/// Verifiers may cache the set this long (API.md, "Key set"). A key is
/// announced at least this long before it signs (README, key rotation).
const CACHE_CONTROL: &str = "public, max-age=300";

/// A JSON Web Key Set.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]}))]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

/// One public key (RFC 7517; RFC 8037 for Ed25519).
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwk {
    /// `EC` (P-256) or `OKP` (Ed25519).
    #[schema(example = "EC")]
    pub kty: &'static str,
    /// `P-256` or `Ed25519`.
    #[schema(example = "P-256")]
    pub crv: &'static str,
    /// The x coordinate (P-256) or the public key (Ed25519), base64url.
    pub x: String,
    /// The y coordinate, base64url (P-256 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    /// The key's RFC 7638 thumbprint: the `kid` of the tokens it signs.
    pub kid: String,
    /// `ES256` or `EdDSA`.
    #[schema(example = "ES256")]
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    #[schema(example = "sig")]
    pub use_: &'static str,
}

/// The public keys that verify access tokens: pick the one whose `kid` is the
/// token's, accept only its `alg`. `{"keys":[]}` with HS256.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    tag = "tokens",
    responses((
        status = 200,
        description = "The key set, cacheable for 5 minutes",
        body = JwkSet,
        headers(("Cache-Control" = String, description = "public, max-age=300"))
    ))
)]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    let keys = state
        .tokens
        .public_keys()
        .into_iter()
        .map(|key| {
            let jwk = key.jwk();
            Jwk {
                kty: jwk.kty,
                crv: jwk.crv,
                x: jwk.x,
                y: jwk.y,
                kid: key.kid().to_owned(),
                alg: key.algorithm().name(),
                use_: "sig",
            }
        })
        .collect();
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, CACHE_CONTROL))
        .json(JwkSet { keys })
}
