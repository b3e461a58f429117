//! Sealing of the outbox's mail bodies at rest.
//!
//! A grant mail carries a live token and code; the database keeps only their
//! MACs (DESIGN.md, "a database copy cannot reset passwords"), so the outbox
//! must not hold them readable either. Every body is sealed with
//! ChaCha20-Poly1305 under a key derived from the server key for this use
//! only (`crate::auth::keys`), with a random 96-bit nonce, and the recipient
//! as associated data: a sealed body opens only for the address it was
//! written for, so moving a row to another recipient makes it unreadable.
//!
//! Stored form: `v1.<base64url(nonce || ciphertext || tag)>`. A body sealed
//! under a previous key still opens after a rotation (`JWT_PREVIOUS_SECRETS`),
//! as refresh tokens still verify; once that key is dropped, its pending
//! mails cannot be opened and the sender gives them up.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::aead::{Aad, NONCE_LEN, Nonce};
use ring::rand::{SecureRandom, SystemRandom};

use super::keys::Keyring;

/// The version prefix of a sealed body.
const PREFIX: &str = "v1.";

/// A mail body sealed by [`seal`]: the only form the outbox accepts, so no
/// code path can queue a body in clear.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedBody(String);

impl SealedBody {
    /// The stored text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SealedBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Sealed, but no use in logs either.
        f.write_str("SealedBody(..)")
    }
}

/// Why a stored body cannot be opened. Says nothing of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not of the `v1.<base64url>` form (corrupted, or written in clear
    /// before bodies were sealed).
    Malformed,
    /// No accepted key opens it for this recipient (its key was rotated out,
    /// or the row was altered).
    NoKey,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Malformed => "sealed body malformed",
            Self::NoKey => "sealed body opens under no accepted key",
        })
    }
}

/// Seals `body` for `recipient` under the current key.
pub fn seal(keys: &Keyring, recipient: &str, body: &str) -> SealedBody {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .expect("the system random source works");
    let mut in_out = body.as_bytes().to_vec();
    keys.current()
        .outbox_key
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(recipient.as_bytes()),
            &mut in_out,
        )
        .expect("a mail body is far below the AEAD's length limit");
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(&in_out);
    SealedBody(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
}

/// Opens a stored body for `recipient`, trying the current key, then the
/// previous ones.
pub fn open(keys: &Keyring, recipient: &str, stored: &str) -> Result<String, OpenError> {
    let raw = stored
        .strip_prefix(PREFIX)
        .and_then(|b64| URL_SAFE_NO_PAD.decode(b64).ok())
        .filter(|raw| raw.len() >= NONCE_LEN)
        .ok_or(OpenError::Malformed)?;
    let (nonce, sealed) = raw.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| OpenError::Malformed)?;
    for key in keys.all() {
        let mut in_out = sealed.to_vec();
        if let Ok(plain) = key.outbox_key.open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(recipient.as_bytes()),
            &mut in_out,
        ) {
            return String::from_utf8(plain.to_vec()).map_err(|_| OpenError::Malformed);
        }
    }
    Err(OpenError::NoKey)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    fn ring(current: &str, previous: &[&str]) -> Keyring {
        let previous: Vec<SecretString> = previous
            .iter()
            .map(|s| SecretString::from(s.repeat(32)))
            .collect();
        Keyring::new(&SecretString::from(current.repeat(32)), &previous)
    }

    #[test]
    fn a_sealed_body_opens_for_its_recipient_only_and_hides_the_text() {
        let keys = ring("a", &[]);
        let body = "token=s3cr3t code 123456";
        let sealed = seal(&keys, "x@example.com", body);
        assert!(sealed.as_str().starts_with("v1."));
        assert!(!sealed.as_str().contains("s3cr3t") && !sealed.as_str().contains("123456"));
        // A fresh nonce each time.
        assert_ne!(sealed, seal(&keys, "x@example.com", body));
        assert_eq!(open(&keys, "x@example.com", sealed.as_str()).unwrap(), body);
        assert_eq!(
            open(&keys, "y@example.com", sealed.as_str()),
            Err(OpenError::NoKey)
        );
    }

    #[test]
    fn previous_keys_open_and_dropped_keys_do_not() {
        let old = ring("a", &[]);
        let sealed = seal(&old, "x@example.com", "hello");
        let rotated = ring("b", &["a"]);
        assert_eq!(
            open(&rotated, "x@example.com", sealed.as_str()).unwrap(),
            "hello"
        );
        let dropped = ring("b", &[]);
        assert_eq!(
            open(&dropped, "x@example.com", sealed.as_str()),
            Err(OpenError::NoKey)
        );
    }

    #[test]
    fn corrupted_or_clear_bodies_are_refused() {
        let keys = ring("a", &[]);
        let sealed = seal(&keys, "x@example.com", "hello").as_str().to_owned();
        for bad in ["hello, token=abc", "v1.", "v1.!!!", "v1.AAAA", ""] {
            assert_eq!(
                open(&keys, "x@example.com", bad),
                Err(OpenError::Malformed),
                "{bad}"
            );
        }
        let mut flipped = sealed.into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert!(open(&keys, "x@example.com", &flipped).is_err());
    }
}
