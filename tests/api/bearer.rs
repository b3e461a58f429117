//! The Bearer check: `/me` as the probe, and a table of forged, tampered and
//! expired tokens that must all be refused with an RFC 6750 challenge.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Sha256, Sha384, Sha512};

use crate::helpers::{JWT_SECRET, Login, assert_error, decode_claims, spawn_app};

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A compact JWS with any header and claims, signed by any HMAC (or unsigned).
fn forge(header: &Value, claims: &Value, key: &[u8], alg: &str) -> String {
    let signing_input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = match alg {
        "HS256" => Hmac::<Sha256>::new_from_slice(key)
            .unwrap()
            .chain_update(&signing_input)
            .finalize()
            .into_bytes()
            .to_vec(),
        "HS384" => Hmac::<Sha384>::new_from_slice(key)
            .unwrap()
            .chain_update(&signing_input)
            .finalize()
            .into_bytes()
            .to_vec(),
        "HS512" => Hmac::<Sha512>::new_from_slice(key)
            .unwrap()
            .chain_update(&signing_input)
            .finalize()
            .into_bytes()
            .to_vec(),
        _ => Vec::new(),
    };
    format!("{signing_input}.{}", b64(&signature))
}

fn kid() -> String {
    auth_api::auth::keys::key_id(JWT_SECRET.as_bytes())
}

fn good_header() -> Value {
    json!({"alg": "HS256", "typ": "JWT", "kid": kid()})
}

/// Claims like the server's, for this login, with `now` as issue time.
fn claims_for(login: &Login) -> Value {
    decode_claims(&login.access_token)
}

fn with(mut value: Value, key: &str, new: Value) -> Value {
    value[key] = new;
    value
}

fn without(mut value: Value, key: &str) -> Value {
    value.as_object_mut().unwrap().remove(key);
    value
}

fn flip_char(token: &str, index: usize) -> String {
    let mut bytes = token.as_bytes().to_vec();
    bytes[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
    String::from_utf8(bytes).unwrap()
}

async fn assert_invalid_token(app: &crate::helpers::TestApp, token: &str, case: &str) {
    let response = app.me(token).await;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .unwrap_or_else(|| panic!("{case}: a WWW-Authenticate challenge"))
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer error=\"invalid_token\", error_description=\""),
        "{case}: {challenge}"
    );
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_token", "{case}");
}

#[tokio::test]
async fn a_valid_token_reads_me_from_the_token_alone() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app.me(&login.access_token).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    let claims = claims_for(&login);
    assert_eq!(body["user_id"], login.user_id.to_string());
    assert_eq!(body["session_id"], login.session_id.to_string());
    assert_eq!(body["role"], "user");
    let expires_at =
        chrono::DateTime::parse_from_rfc3339(body["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at.timestamp(), claims["exp"].as_i64().unwrap());
}

#[tokio::test]
async fn the_bearer_check_reads_no_database() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    // With the database gone, a valid token still verifies.
    app.state.store.close().await;
    assert_eq!(app.me(&login.access_token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_forged_token_we_sign_ourselves_is_accepted_so_the_table_below_is_meaningful() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let token = forge(
        &good_header(),
        &claims_for(&login),
        JWT_SECRET.as_bytes(),
        "HS256",
    );
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn forged_tampered_and_expired_tokens_are_401_invalid_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let claims = claims_for(&login);
    let now = chrono::Utc::now().timestamp();
    let key = JWT_SECRET.as_bytes();
    let other_key = b"another-secret-of-at-least-32-bytes!!";
    let sign = |header: &Value, claims: &Value| forge(header, claims, key, "HS256");
    let real = login.access_token.clone();
    let parts: Vec<&str> = real.split('.').collect();

    let cases: Vec<(&str, String)> = vec![
        (
            "alg none, no signature",
            forge(
                &with(good_header(), "alg", json!("none")),
                &claims,
                key,
                "none",
            ),
        ),
        (
            "alg none with our signature",
            format!(
                "{}.{}.{}",
                b64(with(good_header(), "alg", json!("none"))
                    .to_string()
                    .as_bytes()),
                parts[1],
                parts[2]
            ),
        ),
        (
            "HS384 with the right key",
            forge(
                &with(good_header(), "alg", json!("HS384")),
                &claims,
                key,
                "HS384",
            ),
        ),
        (
            "HS512 with the right key",
            forge(
                &with(good_header(), "alg", json!("HS512")),
                &claims,
                key,
                "HS512",
            ),
        ),
        (
            "RS256 header",
            forge(
                &with(good_header(), "alg", json!("RS256")),
                &claims,
                key,
                "HS256",
            ),
        ),
        (
            "signed with another key, our kid",
            forge(&good_header(), &claims, other_key, "HS256"),
        ),
        (
            "unknown kid",
            sign(&with(good_header(), "kid", json!("AAAAAAAAAAA")), &claims),
        ),
        ("missing kid", sign(&without(good_header(), "kid"), &claims)),
        (
            "tampered header",
            format!(
                "{}.{}.{}",
                b64(with(good_header(), "typ", json!("JOSE"))
                    .to_string()
                    .as_bytes()),
                parts[1],
                parts[2]
            ),
        ),
        (
            "tampered payload",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(with(claims.clone(), "role", json!("admin"))
                    .to_string()
                    .as_bytes()),
                parts[2]
            ),
        ),
        ("tampered signature", flip_char(&real, real.len() - 5)),
        ("signature removed", format!("{}.{}.", parts[0], parts[1])),
        (
            "expired past the leeway",
            sign(
                &good_header(),
                &with(
                    with(claims.clone(), "exp", json!(now - 31)),
                    "iat",
                    json!(now - 1000),
                ),
            ),
        ),
        (
            "nbf in the future past the leeway",
            sign(
                &good_header(),
                &with(claims.clone(), "nbf", json!(now + 60)),
            ),
        ),
        (
            "wrong issuer",
            sign(
                &good_header(),
                &with(claims.clone(), "iss", json!("someone-else")),
            ),
        ),
        (
            "wrong audience",
            sign(&good_header(), &with(claims.clone(), "aud", json!("web"))),
        ),
        (
            "missing exp",
            sign(&good_header(), &without(claims.clone(), "exp")),
        ),
        (
            "missing sid",
            sign(&good_header(), &without(claims.clone(), "sid")),
        ),
        (
            "missing jti",
            sign(&good_header(), &without(claims.clone(), "jti")),
        ),
        (
            "unknown role",
            sign(&good_header(), &with(claims.clone(), "role", json!("root"))),
        ),
        (
            "sub not a uuid",
            sign(
                &good_header(),
                &with(claims.clone(), "sub", json!("1 OR 1=1")),
            ),
        ),
        (
            "crit header",
            sign(&with(good_header(), "crit", json!(["exp"])), &claims),
        ),
        (
            "alg in lowercase",
            forge(
                &with(good_header(), "alg", json!("hs256")),
                &claims,
                key,
                "HS256",
            ),
        ),
        (
            "aud as an array",
            sign(
                &good_header(),
                &with(claims.clone(), "aud", json!(["mobile"])),
            ),
        ),
        (
            "exp as a string",
            sign(
                &good_header(),
                &with(claims.clone(), "exp", json!((now + 600).to_string())),
            ),
        ),
        (
            "missing iat",
            sign(&good_header(), &without(claims.clone(), "iat")),
        ),
        ("duplicate sub", {
            let body = claims.to_string().replacen(
                '{',
                &format!("{{\"sub\":\"{}\",", uuid::Uuid::new_v4()),
                1,
            );
            let input = format!(
                "{}.{}",
                b64(good_header().to_string().as_bytes()),
                b64(body.as_bytes())
            );
            let mac = Hmac::<Sha256>::new_from_slice(key)
                .unwrap()
                .chain_update(&input)
                .finalize()
                .into_bytes();
            format!("{input}.{}", b64(&mac))
        }),
        ("signature with padding", format!("{real}=")),
        (
            "signature one byte short",
            format!(
                "{}.{}.{}",
                parts[0],
                parts[1],
                b64(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()[..31])
            ),
        ),
        ("four segments", format!("{real}.AAAA")),
        ("not a JWT", "not-a-jwt".into()),
        ("two parts", format!("{}.{}", parts[0], parts[1])),
        ("garbage base64", "###.###.###".into()),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "A".repeat(9 * 1024), parts[2]),
        ),
    ];
    for (case, token) in &cases {
        assert_invalid_token(&app, token, case).await;
    }
    // None of that revoked or disturbed the real session.
    assert_eq!(app.me(&real).await.status(), StatusCode::OK);
}

#[tokio::test]
async fn small_clock_skew_within_the_leeway_is_tolerated() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let now = chrono::Utc::now().timestamp();
    let claims = claims_for(&login);
    let expired_recently = with(
        with(claims.clone(), "exp", json!(now - 10)),
        "iat",
        json!(now - 910),
    );
    let issued_slightly_ahead = with(with(claims, "nbf", json!(now + 10)), "iat", json!(now + 10));
    for claims in [expired_recently, issued_slightly_ahead] {
        let token = forge(&good_header(), &claims, JWT_SECRET.as_bytes(), "HS256");
        assert_eq!(app.me(&token).await.status(), StatusCode::OK, "{claims}");
    }
}

#[tokio::test]
async fn a_request_without_a_bearer_token_is_401_missing_token() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let no_header = app.client.get(app.url("/me")).send().await.unwrap();
    let basic = app.me_with_authorization("Basic dXNlcjpwYXNz").await;
    let token_without_scheme = app.me_with_authorization(login.access_token.as_str()).await;
    for response in [no_header, basic, token_without_scheme] {
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
}

#[tokio::test]
async fn an_empty_or_malformed_bearer_value_is_401_invalid_token() {
    let app = spawn_app().await;
    for value in ["Bearer", "Bearer ", "Bearer a b", "Bearer ä"] {
        let response = app.me_with_authorization(value).await;
        assert_error(response, StatusCode::UNAUTHORIZED, "invalid_token").await;
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let login = app.new_login().await;
    let response = app
        .me_with_authorization(format!("bearer {}", login.access_token))
        .await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn every_protected_route_requires_a_token() {
    let app = spawn_app().await;
    let id = uuid::Uuid::new_v4();
    let requests = [
        app.client.get(app.url("/me")),
        app.client.get(app.url("/sessions")),
        app.client.delete(app.url(&format!("/sessions/{id}"))),
        app.client.post(app.url("/logout-all")),
        app.client
            .post(app.url("/password"))
            .json(&json!({"current_password": "x", "new_password": "y"})),
        app.client
            .post(app.url(&format!("/admin/users/{id}/revoke-sessions"))),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_error(response, StatusCode::UNAUTHORIZED, "missing_token").await;
    }
}

#[tokio::test]
async fn tokens_signed_with_a_previous_key_are_still_accepted() {
    let old_secret = "the-old-secret-that-is-at-least-32-bytes";
    let app = crate::helpers::spawn_app_with(&[("JWT_PREVIOUS_SECRETS", old_secret)]).await;
    let login = app.new_login().await;
    let old_kid = auth_api::auth::keys::key_id(old_secret.as_bytes());
    let token = forge(
        &json!({"alg": "HS256", "typ": "JWT", "kid": old_kid}),
        &claims_for(&login),
        old_secret.as_bytes(),
        "HS256",
    );
    assert_eq!(app.me(&token).await.status(), StatusCode::OK);
    // New tokens carry the current key's kid.
    assert_eq!(
        crate::helpers::decode_header(&login.access_token)["kid"],
        kid()
    );
}
