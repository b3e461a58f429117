//! Access tokens: HS256 JWTs, signed with the current key and verified with any
//! accepted key, by signature and claims alone.
//!
//! This is the hot path of every protected request. Everything expensive to
//! build (keys, `Validation`) is built once in [`AccessTokens::new`]; verifying
//! is a header parse, one HMAC and a claims check.

use std::time::Duration;

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, Header, Validation, errors::ErrorKind};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::Keyring;

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

/// The claims of an access token (API.md, "Tokens").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The session id: what revocation acts on.
    pub sid: Uuid,
    pub role: Role,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Unique per token.
    pub jti: Uuid,
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
}

/// Issues and verifies access tokens.
#[derive(Debug)]
pub struct AccessTokens {
    keys: Keyring,
    validation: Validation,
    issuer: String,
    audience: String,
    ttl: Duration,
}

/// A freshly signed token and what the client needs to know about it.
#[derive(Debug)]
pub struct IssuedToken {
    pub token: String,
    pub expires_in: u64,
}

impl AccessTokens {
    pub fn new(
        keys: Keyring,
        issuer: &str,
        audience: &str,
        leeway: Duration,
        ttl: Duration,
    ) -> Self {
        // Pinned to HS256: a header saying anything else (none, HS512, RS256...) fails.
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = leeway.as_secs();
        Self {
            keys,
            validation,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
        }
    }

    pub fn keys(&self) -> &Keyring {
        &self.keys
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
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, jsonwebtoken::errors::Error> {
        let iat = now.timestamp();
        let ttl = i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX);
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            sid: session_id,
            role,
            iat,
            nbf: iat,
            exp: iat.saturating_add(ttl),
            jti: Uuid::new_v4(),
        };
        let key = self.keys.current();
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(key.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &key.encoding)?;
        Ok(IssuedToken {
            token,
            expires_in: self.ttl.as_secs(),
        })
    }

    /// Verifies signature and claims. No I/O; revocation is checked by the caller.
    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != Algorithm::HS256 {
            return Err(TokenError::Malformed);
        }
        let key = header
            .kid
            .as_deref()
            .and_then(|kid| self.keys.by_kid(kid))
            .ok_or(TokenError::UnknownKey)?;
        jsonwebtoken::decode::<Claims>(token, &key.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                    TokenError::WrongIssuerOrAudience
                }
                // Missing claims, bad JSON, bad base64, wrong algorithm...: all malformed.
                _ => TokenError::Malformed,
            })
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
        let issued = t.issue(user, session, Role::Admin, now).unwrap();
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
    fn a_token_from_another_key_is_refused() {
        let issued = tokens(&"a".repeat(32))
            .issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, Utc::now())
            .unwrap();
        assert_eq!(
            tokens(&"b".repeat(32)).verify(&issued.token),
            Err(TokenError::UnknownKey)
        );
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
        fn any_single_byte_change_breaks_a_real_token(position in 0usize..1000, byte in any::<u8>()) {
            let t = tokens();
            let token = t.issue(Uuid::new_v4(), Uuid::new_v4(), Role::User, Utc::now()).expect("signs").token;
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
