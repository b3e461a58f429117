//! Access tokens: JWTs signed with the current key and verified with any
//! accepted key, by signature and claims alone. HS256 (the default) or, with
//! [`AccessTokens::with_asymmetric_keys`], ES256 or EdDSA: one algorithm per
//! service, and tokens of any other are refused.
//!
//! HS256 signing uses `jsonwebtoken`; ES256 and EdDSA sign and verify with
//! `ring` (see [`super::asymmetric`]). Verifying is the hot path of every
//! protected request and is written out in [`AccessTokens::verify`] (see there
//! why). Everything expensive (keys, the HMAC key state, the expected headers)
//! is built once, at start.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::borrow::Cow;

use chrono::{DateTime, Utc};
use hmac::Mac;
use jsonwebtoken::{Algorithm, Header};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::asymmetric::{AsymmetricKeys, VerifyingKey};
use super::keys::{Keyring, ServerKey};
use crate::clock::{SharedClock, SystemClock};

/// Tokens longer than this are refused before any parsing (API.md).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// What a user may do. Carried in the token, so a change applies at the next token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            other => Err(format!("unknown role {other:?}")),
        }
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a verified access token says (its `iss` and `aud` were checked and
/// are always ours, so they are not carried further).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claims {
    /// The user id.
    pub sub: Uuid,
    /// The session id: what revocation acts on.
    pub sid: Uuid,
    pub role: Role,
    /// Whether the account's email was verified when the token was issued
    /// (read from the database at login and at every refresh).
    pub email_verified: bool,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token.
    pub jti: Uuid,
}

/// The claims as they travel in the token (API.md, "Tokens"). `iss` and
/// `aud` borrow from the decoded payload: verifying allocates nothing for them.
#[derive(Serialize, Deserialize)]
struct WireClaims<'a> {
    #[serde(borrow)]
    iss: Cow<'a, str>,
    #[serde(borrow)]
    aud: Cow<'a, str>,
    sub: Uuid,
    sid: Uuid,
    role: Role,
    /// Absent from tokens issued before version 2: read as `false`.
    #[serde(default)]
    email_verified: bool,
    iat: i64,
    nbf: i64,
    exp: i64,
    jti: Uuid,
}

impl Claims {
    /// When the token expires, as a time.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
    }
}

/// Why a token was refused. The text is safe to show the client: it never
/// contains the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is too large")]
    TooLarge,
    #[error("the token is malformed")]
    Malformed,
    /// Quotes or whitespace around the token: copied with its JSON quotes,
    /// or read from a file with its newline.
    #[error("the token is wrapped in quotes or whitespace; send it alone, as issued")]
    Wrapped,
    #[error("the token is signed with an unknown key")]
    UnknownKey,
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token was issued for another issuer or audience")]
    WrongIssuerOrAudience,
    #[error("the token has been revoked")]
    Revoked,
    /// `GET /revocations` without one of `BACKEND_API_KEYS` (an access token is not one).
    #[error("a service key (BACKEND_API_KEYS) is required")]
    NotAServiceKey,
}

/// Whether a token arrived wrapped in quotes or whitespace (a literal `\n`
/// too: a JSON string's newline pasted as is). Never true of a token as
/// issued, whose alphabet is base64url and `.`.
pub fn is_wrapped_token(text: &str) -> bool {
    let wrapping = |c: char| c == '"' || c == '\'' || c.is_whitespace();
    text.starts_with(wrapping)
        || text.ends_with(wrapping)
        || text.ends_with("\\n")
        || text.ends_with("\\r")
}

/// Whether `text` has the shape of a compact JWS (three base64url segments,
/// a JSON header): an access token, never a refresh token. Lets `/logout` tell
/// an app that sent the wrong token instead of answering a silent `204`.
pub fn looks_like_access_token(text: &str) -> bool {
    let mut segments = text.split('.');
    let three = segments.next().is_some_and(|h| h.starts_with("eyJ"))
        && segments.next().is_some()
        && segments.next().is_some()
        && segments.next().is_none();
    three
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Issues and verifies access tokens.
#[derive(Debug)]
pub struct AccessTokens {
    /// The HS256 keys; in every mode also the refresh-token MAC keys.
    keys: Keyring,
    /// ES256/EdDSA: these keys sign and verify access tokens instead of `keys`.
    asymmetric: Option<AsymmetricKeys>,
    issuer: String,
    audience: String,
    leeway: i64,
    ttl: Duration,
    /// Tells this verifier's entries in the per-thread cache from another's.
    instance: u64,
    /// What `exp` and `nbf` are checked against.
    clock: SharedClock,
}

/// Verified tokens seen recently by this thread (see [`AccessTokens::verify`]).
/// Keyed by the signature segment; a hit also needs the same verifier and the
/// whole token byte for byte, so only the very same string can ever match.
#[derive(Default)]
struct VerifiedCache {
    entries: std::collections::HashMap<Box<str>, CachedToken>,
}

struct CachedToken {
    verifier: u64,
    token: Box<str>,
    claims: Claims,
}

/// Entries per thread; the cache is simply emptied when full (at ~600 bytes
/// an entry, at most a few MiB per worker thread).
const VERIFIED_CACHE_ENTRIES: usize = 4096;

thread_local! {
    static VERIFIED: std::cell::RefCell<VerifiedCache> = std::cell::RefCell::default();
}

static NEXT_INSTANCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A freshly signed token and what the client needs to know about it.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

/// The JOSE header fields verification looks at. Anything else is ignored,
/// except `crit`: a token that marks extensions critical is refused, since
/// we implement none (RFC 7515 §4.1.11).
#[derive(Deserialize)]
struct JoseHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    crit: Option<serde::de::IgnoredAny>,
}

/// The header of an ES256/EdDSA token. Besides `crit`, the headers that carry
/// or point to a key (`jwk`, `jku`, `x5u`, `x5c`) are refused outright: we
/// never issue them, and a verifier that followed one would let the token
/// choose its own key.
#[derive(Deserialize)]
struct AsymmetricHeader<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    crit: Option<serde::de::IgnoredAny>,
    jwk: Option<serde::de::IgnoredAny>,
    jku: Option<serde::de::IgnoredAny>,
    x5u: Option<serde::de::IgnoredAny>,
    x5c: Option<serde::de::IgnoredAny>,
}

impl AccessTokens {
    pub fn new(
        keys: Keyring,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        ttl: Duration,
    ) -> Self {
        Self {
            keys,
            asymmetric: None,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway: i64::try_from(leeway.as_secs()).unwrap_or(i64::MAX),
            ttl,
            instance: NEXT_INSTANCE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            clock: Arc::new(SystemClock),
        }
    }

    /// Checks `exp` and `nbf` against `clock` (the service's clock) instead of the system's.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Signs and verifies access tokens with these ES256/EdDSA keys instead
    /// of the HS256 keys, and refuses HS256 tokens. The [`Keyring`] stays the
    /// source of the refresh-token MAC keys.
    pub fn with_asymmetric_keys(mut self, keys: AsymmetricKeys) -> Self {
        self.asymmetric = Some(keys);
        self
    }

    /// The HS256 keys, which are also the refresh-token MAC keys in every mode.
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The `alg` of the tokens issued and accepted.
    pub fn algorithm(&self) -> &'static str {
        self.asymmetric
            .as_ref()
            .map_or("HS256", |keys| keys.algorithm().name())
    }

    /// The `kid` of the key that signs new tokens.
    pub fn current_kid(&self) -> &str {
        match &self.asymmetric {
            Some(keys) => keys.signing().public().kid(),
            None => self.keys.current().kid(),
        }
    }

    /// The public keys a verifier must accept (the current one first); none with HS256.
    pub fn public_keys(&self) -> Vec<&VerifyingKey> {
        self.asymmetric
            .as_ref()
            .map(|keys| keys.accepted().collect())
            .unwrap_or_default()
    }

    /// The access-token lifetime.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Signs a new token for this user and session with the current key.
    pub fn issue(
        &self,
        user_id: Uuid,
        session_id: Uuid,
        role: Role,
        email_verified: bool,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let iat = now.timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = WireClaims {
            iss: Cow::Borrowed(&self.issuer),
            aud: Cow::Borrowed(&self.audience),
            sub: user_id,
            sid: session_id,
            role,
            email_verified,
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl),
            jti: Uuid::new_v4(),
        };
        let token = match &self.asymmetric {
            None => {
                let key = self.keys.current();
                let mut header = Header::new(Algorithm::HS256);
                header.kid = Some(key.kid.clone());
                jsonwebtoken::encode(&header, &claims, &key.encoding)?
            }
            Some(keys) => sign_asymmetric(keys, &claims)?,
        };
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// The key a token's header names (`kid`), if the header is acceptable.
    ///
    /// Fast path: the tokens we issue carry, per key, always the same encoded
    /// header, so an exact match of the first segment names the key with
    /// nothing to decode. Any other header is decoded: it must say `HS256`,
    /// name one of our keys, and mark nothing critical.
    fn key_for(&self, header_segment: &str) -> Result<&ServerKey, TokenError> {
        if let Some(key) = self
            .keys
            .all()
            .iter()
            .find(|k| k.header_segment == header_segment)
        {
            return Ok(key);
        }
        let json = URL_SAFE_NO_PAD
            .decode(header_segment)
            .map_err(|_| TokenError::Malformed)?;
        let header: JoseHeader<'_> =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if header.alg != "HS256" || header.crit.is_some() {
            return Err(TokenError::Malformed);
        }
        header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.by_kid(kid))
            .ok_or(TokenError::UnknownKey)
    }

    /// Verifies signature and claims. No I/O; revocation is checked by the caller.
    ///
    /// This is the hot path of every protected request, so it is written out
    /// rather than delegated to `jsonwebtoken::decode` (which decodes the
    /// header twice, the claims twice and re-derives the HMAC key each time:
    /// 2.5 µs against 1 µs here, measured with `cargo bench --bench tokens`).
    /// Every step is strict and fails closed:
    /// - exactly three base64url segments, no padding, canonical encoding;
    /// - the header must name one of our keys and the configured algorithm
    ///   (HS256, or ES256/EdDSA, whose headers also may not carry or point to
    ///   a key), and nothing else;
    /// - the signature is exactly 32 bytes (HMAC, compared in constant time)
    ///   or 64 (ES256/EdDSA, checked by `ring`), and is checked before a
    ///   single byte of the claims is parsed;
    /// - every claim is required and typed (`sub`, `sid`, `jti` are UUIDs,
    ///   `role` one of ours, `aud` a single string);
    /// - `exp` and `nbf` are checked with the configured leeway, `iss` and
    ///   `aud` must equal ours exactly.
    ///
    /// The attack table of the integration tests, property tests and a fuzz
    /// target pin this behaviour.
    ///
    /// An app sends the same access token with every call for up to fifteen
    /// minutes, so each worker thread remembers the tokens it verified
    /// recently: a token that is *exactly* (byte for byte) one that passed
    /// every check before skips the HMAC and the parse. Time-dependent checks
    /// (`exp`, `nbf`) are made again on every use, and revocation is checked by
    /// the caller on every use. The cache is per thread, so the hot path takes
    /// no lock.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let signature = token.rsplit('.').next().unwrap_or_default();
        let cached = VERIFIED.with_borrow(|cache| {
            cache
                .entries
                .get(signature)
                .filter(|hit| hit.verifier == self.instance && &*hit.token == token)
                .map(|hit| hit.claims.clone())
        });
        if let Some(claims) = cached {
            self.check_times(&claims)?;
            return Ok(claims);
        }
        let claims = self.verify_uncached(token)?;
        VERIFIED.with_borrow_mut(|cache| {
            if cache.entries.len() >= VERIFIED_CACHE_ENTRIES {
                cache.entries.clear();
            }
            cache.entries.insert(
                Box::from(signature),
                CachedToken {
                    verifier: self.instance,
                    token: Box::from(token),
                    claims: claims.clone(),
                },
            );
        });
        Ok(claims)
    }

    /// `exp` and `nbf` against the clock, with the leeway.
    fn check_times(&self, claims: &Claims) -> Result<(), TokenError> {
        let now = self.clock.now().timestamp();
        if claims.exp < now.saturating_sub(self.leeway) {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now.saturating_add(self.leeway) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// Every check, from scratch.
    fn verify_uncached(&self, token: &str) -> Result<Claims, TokenError> {
        let mut segments = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(TokenError::Malformed);
        };
        let signing_input = &token.as_bytes()[..header.len() + 1 + payload.len()];
        if let Some(keys) = &self.asymmetric {
            verify_asymmetric(keys, header, signing_input, signature)?;
        } else {
            let key = self.key_for(header)?;

            let mut tag = [0u8; 32];
            match URL_SAFE_NO_PAD.decode_slice(signature, &mut tag) {
                Ok(32) => {}
                _ => return Err(TokenError::BadSignature),
            }
            let mut mac = key.jwt_mac.clone();
            mac.update(signing_input);
            mac.verify_slice(&tag)
                .map_err(|_| TokenError::BadSignature)?;
        }

        let json = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|_| TokenError::Malformed)?;
        let claims: WireClaims<'_> =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.iss != self.issuer.as_str() || claims.aud != self.audience.as_str() {
            return Err(TokenError::WrongIssuerOrAudience);
        }
        let claims = Claims {
            sub: claims.sub,
            sid: claims.sid,
            role: claims.role,
            email_verified: claims.email_verified,
            iat: claims.iat,
            nbf: claims.nbf,
            exp: claims.exp,
            jti: claims.jti,
        };
        self.check_times(&claims)?;
        Ok(claims)
    }
}

/// `header.claims.signature` under the current ES256/EdDSA key. The header
/// segment is the key's own, encoded once at start.
fn sign_asymmetric(
    keys: &AsymmetricKeys,
    claims: &WireClaims<'_>,
) -> Result<String, jsonwebtoken::errors::Error> {
    let key = keys.signing();
    let claims = serde_json::to_vec(claims)?;
    let header = &key.public().header_segment;
    let mut token = String::with_capacity(header.len() + claims.len() * 4 / 3 + 92);
    token.push_str(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(claims, &mut token);
    let signature = key.sign(token.as_bytes())?;
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
    Ok(token)
}

/// The ES256/EdDSA counterpart of [`AccessTokens::key_for`] and the HMAC
/// check: the header must name the configured algorithm and one of the
/// accepted keys, with the same fast path on the exact header segment; the
/// signature must be exactly 64 bytes and the key's.
fn verify_asymmetric(
    keys: &AsymmetricKeys,
    header_segment: &str,
    signing_input: &[u8],
    signature: &str,
) -> Result<(), TokenError> {
    let key = match keys.accepted().find(|k| k.header_segment == header_segment) {
        Some(key) => key,
        None => {
            let json = URL_SAFE_NO_PAD
                .decode(header_segment)
                .map_err(|_| TokenError::Malformed)?;
            let header: AsymmetricHeader<'_> =
                serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
            let names_a_key = header.jwk.is_some()
                || header.jku.is_some()
                || header.x5u.is_some()
                || header.x5c.is_some();
            if header.alg != keys.algorithm().name() || header.crit.is_some() || names_a_key {
                return Err(TokenError::Malformed);
            }
            header
                .kid
                .as_deref()
                .and_then(|kid| keys.by_kid(kid))
                .ok_or(TokenError::UnknownKey)?
        }
    };
    let mut raw = [0u8; super::asymmetric::Algorithm::SIGNATURE_LEN];
    match URL_SAFE_NO_PAD.decode_slice(signature, &mut raw) {
        Ok(n) if n == raw.len() => {}
        _ => return Err(TokenError::BadSignature),
    }
    if key.verify(signing_input, &raw) {
        Ok(())
    } else {
        Err(TokenError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn tokens(secret: &str) -> AccessTokens {
        AccessTokens::new(
            Keyring::new(&SecretString::from(secret.to_owned()), &[]),
            "auth-api",
            "mobile",
            Duration::from_secs(30),
            Duration::from_secs(900),
        )
    }

    #[test]
    fn an_issued_token_verifies_with_its_claims() {
        let t = tokens(&"k".repeat(32));
        let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
        let now = Utc::now();
        let issued = t.issue(user, session, Role::Admin, false, now).unwrap();
        assert_eq!(issued.expires_in, 900);
        let claims = t.verify(&issued.token).unwrap();
        assert_eq!(
            (claims.sub, claims.sid, claims.role),
            (user, session, Role::Admin)
        );
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.nbf, claims.iat);
    }

    #[test]
    fn issued_tokens_take_the_header_fast_path() {
        let t = tokens(&"k".repeat(32));
        let issued = t
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap();
        let segment = issued.token.split('.').next().unwrap();
        assert_eq!(segment, t.keys().current().header_segment);
    }

    #[test]
    fn a_token_from_another_key_is_refused() {
        let issued = tokens(&"a".repeat(32))
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap();
        assert_eq!(
            tokens(&"b".repeat(32)).verify(&issued.token),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let t = AccessTokens::new(
            Keyring::new(&SecretString::from("e".repeat(32)), &[]),
            "auth-api",
            "mobile",
            Duration::ZERO,
            Duration::from_secs(1),
        );
        let issued = t
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap();
        assert!(t.verify(&issued.token).is_ok());
        assert!(t.verify(&issued.token).is_ok(), "from the cache");
        std::thread::sleep(Duration::from_millis(2100));
        assert_eq!(t.verify(&issued.token), Err(TokenError::Expired));
    }

    #[test]
    fn a_remembered_signature_on_another_payload_is_refused() {
        let t = tokens(&"k".repeat(32));
        let issued = t
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap();
        assert!(t.verify(&issued.token).is_ok());
        let parts: Vec<&str> = issued.token.split('.').collect();
        let claims = URL_SAFE_NO_PAD.decode(parts[1]).unwrap();
        let forged = String::from_utf8(claims)
            .unwrap()
            .replace("\"user\"", "\"admin\"");
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(forged),
            parts[2]
        );
        assert_eq!(t.verify(&tampered), Err(TokenError::BadSignature));
    }

    #[test]
    fn a_token_remembered_by_one_verifier_is_not_trusted_by_another() {
        let a = tokens(&"a".repeat(32));
        let b = tokens(&"b".repeat(32));
        let issued = a
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap();
        assert!(a.verify(&issued.token).is_ok());
        assert_eq!(b.verify(&issued.token), Err(TokenError::UnknownKey));
    }

    #[test]
    fn access_tokens_are_told_from_refresh_tokens() {
        let t = tokens("k".repeat(32).as_str());
        let access = t
            .issue(
                Uuid::new_v4(),
                Uuid::new_v4(),
                Role::User,
                false,
                Utc::now(),
            )
            .unwrap()
            .token;
        assert!(looks_like_access_token(&access));
        let keys = Keyring::new(&secrecy::SecretString::from("k".repeat(32)), &[]);
        let refresh = crate::auth::refresh::mint(&keys, Uuid::new_v4(), 3);
        assert!(!looks_like_access_token(&refresh));
        for other in ["", "a.b.c", "eyJ.a", "eyJ.a.b.c", "eyJ a.b.c"] {
            assert!(!looks_like_access_token(other), "{other}");
        }
    }

    #[test]
    fn oversized_tokens_are_refused_unparsed() {
        let t = tokens(&"k".repeat(32));
        assert_eq!(
            t.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(TokenError::TooLarge)
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;

    fn tokens() -> AccessTokens {
        AccessTokens::new(
            Keyring::new(&SecretString::from("p".repeat(32)), &[]),
            "auth-api",
            "mobile",
            Duration::from_secs(30),
            Duration::from_secs(900),
        )
    }

    /// One verifier per asymmetric mode, keys generated once per test process.
    fn asymmetric_tokens() -> &'static [AccessTokens; 2] {
        use crate::auth::asymmetric::{Algorithm, SigningKey};
        static TOKENS: std::sync::LazyLock<[AccessTokens; 2]> = std::sync::LazyLock::new(|| {
            [Algorithm::Es256, Algorithm::EdDsa].map(|alg| {
                let pem = SigningKey::generate_pem(alg).expect("a key");
                let key = SigningKey::from_pem(alg, &pem).expect("a key");
                tokens().with_asymmetric_keys(AsymmetricKeys::new(key, Vec::new()).expect("keys"))
            })
        });
        &TOKENS
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_verifies_and_never_panics(text in ".{0,600}") {
            prop_assert!(tokens().verify(&text).is_err());
        }

        #[test]
        fn arbitrary_three_part_tokens_never_verify(
            header in "[A-Za-z0-9_-]{0,80}",
            payload in "[A-Za-z0-9_-]{0,300}",
            signature in "[A-Za-z0-9_-]{0,60}",
        ) {
            let token = format!("{header}.{payload}.{signature}");
            prop_assert!(tokens().verify(&token).is_err());
        }

        #[test]
        fn arbitrary_three_part_tokens_never_verify_with_es256_or_eddsa(
            header in "[A-Za-z0-9_-]{0,80}",
            payload in "[A-Za-z0-9_-]{0,300}",
            signature in "[A-Za-z0-9_-]{80,90}",
        ) {
            let token = format!("{header}.{payload}.{signature}");
            for t in asymmetric_tokens() {
                prop_assert!(t.verify(&token).is_err());
            }
        }

        #[test]
        fn any_single_byte_change_breaks_an_es256_or_eddsa_token(position in 0usize..1000, byte in any::<u8>()) {
            for t in asymmetric_tokens() {
                let token = t.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, false, Utc::now()).expect("signs").token;
                let mut bytes = token.clone().into_bytes();
                let i = position % bytes.len();
                prop_assume!(bytes[i] != byte);
                bytes[i] = byte;
                let tampered = String::from_utf8_lossy(&bytes).into_owned();
                prop_assume!(tampered != token);
                prop_assert!(t.verify(&tampered).is_err());
            }
        }

        #[test]
        fn any_single_byte_change_breaks_a_real_token(position in 0usize..1000, byte in any::<u8>()) {
            let t = tokens();
            let token = t.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, false, Utc::now()).expect("signs").token;
            let mut bytes = token.clone().into_bytes();
            let i = position % bytes.len();
            prop_assume!(bytes[i] != byte);
            bytes[i] = byte;
            let tampered = String::from_utf8_lossy(&bytes).into_owned();
            prop_assume!(tampered != token);
            prop_assert!(t.verify(&tampered).is_err());
        }
    }
}

#[cfg(test)]
mod asymmetric_tests {
    use super::*;
    use crate::auth::asymmetric::{Algorithm as Alg, SigningKey};
    use secrecy::SecretString;

    fn signing_key(alg: Alg) -> SigningKey {
        SigningKey::from_pem(alg, &SigningKey::generate_pem(alg).unwrap()).unwrap()
    }

    fn public_of(key: &SigningKey) -> VerifyingKey {
        let jwk = key.public().jwk();
        let mut raw = Vec::new();
        if let Some(y) = jwk.y {
            raw.push(4);
            raw.extend(URL_SAFE_NO_PAD.decode(jwk.x).unwrap());
            raw.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
        } else {
            raw.extend(URL_SAFE_NO_PAD.decode(jwk.x).unwrap());
        }
        VerifyingKey::from_public_bytes(key.public().algorithm(), &raw).unwrap()
    }

    fn tokens(key: SigningKey, others: Vec<VerifyingKey>) -> AccessTokens {
        AccessTokens::new(
            Keyring::new(&SecretString::from("h".repeat(32)), &[]),
            "auth-api",
            "mobile",
            Duration::from_secs(30),
            Duration::from_secs(900),
        )
        .with_asymmetric_keys(AsymmetricKeys::new(key, others).unwrap())
    }

    fn issue(t: &AccessTokens) -> String {
        t.issue(
            Uuid::new_v4(),
            Uuid::new_v4(),
            Role::User,
            false,
            Utc::now(),
        )
        .unwrap()
        .token
    }

    fn header_of(token: &str) -> serde_json::Value {
        let segment = token.split('.').next().unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    }

    #[test]
    fn issued_tokens_verify_and_name_their_algorithm_and_kid() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let key = signing_key(alg);
            let kid = key.public().kid().to_owned();
            let t = tokens(key, vec![]);
            let (user, session) = (Uuid::new_v4(), Uuid::new_v4());
            let token = t
                .issue(user, session, Role::Admin, false, Utc::now())
                .unwrap()
                .token;
            assert_eq!(
                header_of(&token),
                serde_json::json!({"alg": alg.name(), "typ": "JWT", "kid": kid})
            );
            assert_eq!(t.algorithm(), alg.name());
            assert_eq!(t.current_kid(), kid);
            let claims = t.verify(&token).unwrap();
            assert_eq!(
                (claims.sub, claims.sid, claims.role),
                (user, session, Role::Admin)
            );
            assert!(t.verify(&token).is_ok(), "from the cache");
            let signature = URL_SAFE_NO_PAD
                .decode(token.rsplit('.').next().unwrap())
                .unwrap();
            assert_eq!(signature.len(), 64);
        }
    }

    #[test]
    fn an_announced_key_is_accepted_before_it_signs() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let (old, new) = (signing_key(alg), signing_key(alg));
            let announced_on_old = tokens(old, vec![public_of(&new)]);
            let signing_with_new = tokens(new, vec![]);
            let token = issue(&signing_with_new);
            assert!(announced_on_old.verify(&token).is_ok());
            assert_eq!(announced_on_old.public_keys().len(), 2);
        }
    }

    #[test]
    fn a_foreign_key_with_our_kid_is_refused() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let ours = tokens(signing_key(alg), vec![]);
            let theirs = tokens(signing_key(alg), vec![]);
            let token = issue(&theirs);
            let forged = format!(
                "{}.{}",
                ours.public_keys()[0].header_segment,
                token.split_once('.').unwrap().1
            );
            assert_eq!(ours.verify(&forged), Err(TokenError::BadSignature));
            assert_eq!(ours.verify(&token), Err(TokenError::UnknownKey));
        }
    }

    #[test]
    fn hs256_tokens_are_refused_in_an_asymmetric_mode_and_the_reverse() {
        let hs = AccessTokens::new(
            Keyring::new(&SecretString::from("h".repeat(32)), &[]),
            "auth-api",
            "mobile",
            Duration::from_secs(30),
            Duration::from_secs(900),
        );
        for alg in [Alg::Es256, Alg::EdDsa] {
            let asym = tokens(signing_key(alg), vec![]);
            // Same JWT_SECRET on both: the HS256 token is still refused.
            assert_eq!(asym.verify(&issue(&hs)), Err(TokenError::Malformed));
            assert!(hs.verify(&issue(&asym)).is_err());
        }
        let es = tokens(signing_key(Alg::Es256), vec![]);
        let ed = tokens(signing_key(Alg::EdDsa), vec![]);
        assert!(es.verify(&issue(&ed)).is_err());
        assert!(ed.verify(&issue(&es)).is_err());
    }

    #[test]
    fn key_carrying_headers_are_refused_even_with_a_valid_signature() {
        let key = signing_key(Alg::Es256);
        let kid = key.public().kid().to_owned();
        let t = tokens(key, vec![]);
        let token = issue(&t);
        let payload = token.split('.').nth(1).unwrap();
        for extra in [
            serde_json::json!({"jku": "https://evil.example/jwks.json"}),
            serde_json::json!({"x5u": "https://evil.example/cert.pem"}),
            serde_json::json!({"x5c": ["MIIB"]}),
            serde_json::json!({"jwk": {"kty": "EC"}}),
            serde_json::json!({"crit": ["exp"]}),
        ] {
            let mut header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": kid});
            header
                .as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
            let signature = t
                .asymmetric
                .as_ref()
                .unwrap()
                .signing()
                .sign(input.as_bytes())
                .unwrap();
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
            assert_eq!(t.verify(&forged), Err(TokenError::Malformed), "{extra}");
        }
        // The same header without them verifies: the refusal is the header's.
        let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "kid": kid});
        let input = format!("{}.{payload}", URL_SAFE_NO_PAD.encode(header.to_string()));
        let signature = t
            .asymmetric
            .as_ref()
            .unwrap()
            .signing()
            .sign(input.as_bytes())
            .unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()));
        assert!(t.verify(&token).is_ok());
    }

    #[test]
    fn any_single_byte_change_breaks_an_asymmetric_token() {
        for alg in [Alg::Es256, Alg::EdDsa] {
            let t = tokens(signing_key(alg), vec![]);
            let token = issue(&t);
            assert!(t.verify(&token).is_ok());
            for i in (0..token.len()).step_by(7) {
                let mut bytes = token.clone().into_bytes();
                bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
                let tampered = String::from_utf8(bytes).unwrap();
                assert!(t.verify(&tampered).is_err(), "{alg} byte {i}");
            }
        }
    }
}
