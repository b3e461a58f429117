//! Mailed tokens and codes (API.md, "Mail"): what a verification, reset or
//! email-change mail carries, and the MACs the database keeps instead.
//!
//! A mail carries a token (32 bytes from the OS CSPRNG, base64url: 256 bits,
//! for a link) and a 6-digit code (for typing into an app). The database
//! holds only `HMAC(key, …)` of each, under keys derived from `JWT_SECRET` for
//! this use alone ([`super::keys`]), so a copy of the database verifies,
//! resets and changes nothing. The token's MAC is looked up by equality (it
//! is unique and unguessable); the code's MAC covers the grant id too, so two
//! grants with the same code store different MACs, and it is compared in
//! constant time. What a grant allows, and how often a code may be wrong,
//! is the accounts service's business.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use rand::Rng;
use rand::rngs::OsRng;
use secrecy::zeroize::Zeroizing;
use uuid::Uuid;

use super::keys::{Keyring, ServerKey};

const TOKEN_BYTES: usize = 32;
/// Length of an encoded token: base64url of 32 bytes, no padding.
pub const TOKEN_LEN: usize = 43;
/// Digits in a code.
pub const CODE_DIGITS: usize = 6;

/// What a grant is for; the link's `purpose` and the stored column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Verify,
    Reset,
    EmailChange,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Verify => "verify",
            Purpose::Reset => "reset",
            Purpose::EmailChange => "email-change",
        }
    }
}

/// A freshly drawn token and code, wiped from memory when dropped.
pub struct MailSecrets {
    pub token: Zeroizing<String>,
    pub code: Zeroizing<String>,
}

impl std::fmt::Debug for MailSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MailSecrets(..)")
    }
}

/// Draws a token and a code from the OS CSPRNG.
pub fn generate() -> MailSecrets {
    let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
    OsRng.fill(&mut raw[..]);
    let token = Zeroizing::new(URL_SAFE_NO_PAD.encode(&raw[..]));
    // Uniform over 000000..=999999 (gen_range rejects the biased tail).
    let code = Zeroizing::new(format!("{:06}", OsRng.gen_range(0..1_000_000u32)));
    MailSecrets { token, code }
}

fn token_tag(key: &ServerKey, purpose: Purpose, token: &str) -> Vec<u8> {
    let mut mac = key.mail_token_mac.clone();
    mac.update(purpose.as_str().as_bytes());
    mac.update(b"\0");
    mac.update(token.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn code_mac(key: &ServerKey, grant: Uuid, code: &str) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = key.mail_code_mac.clone();
    mac.update(grant.as_bytes());
    mac.update(code.as_bytes());
    mac
}

/// The MAC stored for a token, under the current key.
pub fn token_mac(keys: &Keyring, purpose: Purpose, token: &str) -> Vec<u8> {
    token_tag(keys.current(), purpose, token)
}

/// The MACs a presented token may be stored under: one per accepted key, so
/// a mail sent before a key rotation still works after it. Empty for a
/// string that cannot be one of our tokens (nothing to look up).
pub fn token_lookup_macs(keys: &Keyring, purpose: Purpose, token: &str) -> Vec<Vec<u8>> {
    if !is_token_shaped(token) {
        return Vec::new();
    }
    keys.all()
        .iter()
        .map(|key| token_tag(key, purpose, token))
        .collect()
}

/// The MAC stored for the code of grant `grant`, under the current key.
pub fn code_mac_for(keys: &Keyring, grant: Uuid, code: &str) -> Vec<u8> {
    code_mac(keys.current(), grant, code)
        .finalize()
        .into_bytes()
        .to_vec()
}

/// Whether `code` is the code of grant `grant` whose stored MAC is `stored`,
/// under any accepted key; compared in constant time (`verify_slice`).
pub fn code_matches(keys: &Keyring, grant: Uuid, code: &str, stored: &[u8]) -> bool {
    is_code_shaped(code)
        && keys
            .all()
            .iter()
            .any(|key| code_mac(key, grant, code).verify_slice(stored).is_ok())
}

fn is_token_shaped(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn is_code_shaped(code: &str) -> bool {
    code.len() == CODE_DIGITS && code.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn ring(secret: &str, previous: &[&str]) -> Keyring {
        let previous: Vec<_> = previous
            .iter()
            .map(|s| SecretString::from((*s).to_owned()))
            .collect();
        Keyring::new(&SecretString::from(secret.to_owned()), &previous)
    }

    #[test]
    fn tokens_are_256_bits_url_safe_and_codes_six_digits() {
        let a = generate();
        let b = generate();
        assert_eq!(a.token.len(), TOKEN_LEN);
        assert!(is_token_shaped(&a.token));
        assert_ne!(*a.token, *b.token);
        assert!(is_code_shaped(&a.code));
    }

    #[test]
    fn a_token_is_found_by_its_mac_under_any_accepted_key_and_only_for_its_purpose() {
        let old = ring(&"o".repeat(32), &[]);
        let token = generate().token;
        let stored = token_mac(&old, Purpose::Reset, &token);
        let rotated = ring(&"n".repeat(32), &[&"o".repeat(32)]);
        assert!(token_lookup_macs(&rotated, Purpose::Reset, &token).contains(&stored));
        assert!(!token_lookup_macs(&rotated, Purpose::Verify, &token).contains(&stored));
        assert!(token_lookup_macs(&rotated, Purpose::Reset, "short").is_empty());
        // The MAC is not the refresh-token key's: another derivation.
        assert_ne!(
            stored,
            token_mac(&ring(&"x".repeat(32), &[]), Purpose::Reset, &token)
        );
    }

    #[test]
    fn a_code_matches_only_its_own_grant() {
        let keys = ring(&"k".repeat(32), &[]);
        let (g1, g2) = (Uuid::new_v4(), Uuid::new_v4());
        let stored = code_mac_for(&keys, g1, "123456");
        assert!(code_matches(&keys, g1, "123456", &stored));
        assert!(!code_matches(&keys, g1, "123457", &stored));
        assert!(!code_matches(&keys, g2, "123456", &stored));
        assert!(!code_matches(&keys, g1, "12345", &stored));
        assert!(!code_matches(&keys, g1, "１２３４５６", &stored));
        assert_ne!(stored, code_mac_for(&keys, g2, "123456"));
    }
}
