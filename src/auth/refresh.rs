//! Refresh tokens: `base64url(session_id ‖ generation ‖ HMAC-SHA256)`.
//!
//! A session row holds only its id and how many times it rotated (its
//! generation). The token for generation `g` is a MAC over `(session, g)` under a
//! key derived from the server secret, so:
//! - the database never holds a usable token: a copy of it alone refreshes nothing;
//! - a token is checked with no table scan and no hash index: parse, verify the
//!   MAC, read one row by primary key;
//! - the successor of a token can be *recomputed*, which is what lets a retry
//!   within the reuse grace get back the very token the first call returned.
//!
//! The 256-bit MAC makes tokens unguessable. What to do with a genuine token
//! (rotate, grace, reuse) is the sessions service's decision
//! ([`crate::sessions::rotation`]).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use uuid::Uuid;

use super::keys::{Keyring, ServerKey};

const ID_LEN: usize = 16;
const GEN_LEN: usize = 8;
const MAC_LEN: usize = 32;
const RAW_LEN: usize = ID_LEN + GEN_LEN + MAC_LEN;
/// Length of an encoded token: base64url of 56 bytes, no padding.
pub const ENCODED_LEN: usize = (RAW_LEN * 4).div_ceil(3);

/// What a genuine refresh token says: which session, which generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshClaims {
    pub session_id: Uuid,
    pub generation: i64,
}

fn mac(key: &ServerKey, session_id: Uuid, generation: i64) -> hmac::Hmac<sha2::Sha256> {
    let mut mac = key.refresh_mac.clone();
    mac.update(session_id.as_bytes());
    mac.update(&generation.to_be_bytes());
    mac
}

/// The refresh token of `session_id` at `generation`, under the current key.
///
/// During a rolling rotation (README) two instances may have different
/// current keys and so mint different strings for the same generation: both
/// verify on every instance, and rotation decides on the generation, not the
/// string, so a retry that reaches the other instance gets a working
/// successor (not byte-identical to the first answer's).
pub fn mint(keys: &Keyring, session_id: Uuid, generation: i64) -> String {
    let tag = mac(keys.current(), session_id, generation)
        .finalize()
        .into_bytes();
    let mut raw = [0u8; RAW_LEN];
    raw[..ID_LEN].copy_from_slice(session_id.as_bytes());
    raw[ID_LEN..ID_LEN + GEN_LEN].copy_from_slice(&generation.to_be_bytes());
    raw[ID_LEN + GEN_LEN..].copy_from_slice(&tag);
    URL_SAFE_NO_PAD.encode(raw)
}

/// Parses and authenticates a refresh token against every accepted key.
/// `None` for anything that is not a token we minted: such input revokes nothing.
pub fn verify(keys: &Keyring, token: &str) -> Option<RefreshClaims> {
    if token.len() != ENCODED_LEN {
        return None;
    }
    let mut raw = [0u8; RAW_LEN];
    let written = URL_SAFE_NO_PAD.decode_slice(token, &mut raw).ok()?;
    if written != RAW_LEN {
        return None;
    }
    let session_id = Uuid::from_slice(&raw[..ID_LEN]).ok()?;
    let generation = i64::from_be_bytes(raw[ID_LEN..ID_LEN + GEN_LEN].try_into().ok()?);
    if generation < 0 {
        return None;
    }
    let tag = &raw[ID_LEN + GEN_LEN..];
    // verify_slice compares in constant time.
    keys.all()
        .iter()
        .any(|key| mac(key, session_id, generation).verify_slice(tag).is_ok())
        .then_some(RefreshClaims {
            session_id,
            generation,
        })
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
    fn a_minted_token_verifies_and_says_its_session_and_generation() {
        let keys = ring(&"k".repeat(32), &[]);
        let id = Uuid::new_v4();
        let token = mint(&keys, id, 7);
        assert_eq!(token.len(), ENCODED_LEN);
        assert!(
            token
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(
            verify(&keys, &token),
            Some(RefreshClaims {
                session_id: id,
                generation: 7
            })
        );
    }

    #[test]
    fn minting_is_deterministic_so_a_successor_can_be_recomputed() {
        let keys = ring(&"k".repeat(32), &[]);
        let id = Uuid::new_v4();
        assert_eq!(mint(&keys, id, 3), mint(&keys, id, 3));
        assert_ne!(mint(&keys, id, 3), mint(&keys, id, 4));
    }

    #[test]
    fn tampered_or_foreign_tokens_are_refused() {
        let keys = ring(&"k".repeat(32), &[]);
        let token = mint(&keys, Uuid::new_v4(), 1);
        assert_eq!(verify(&ring(&"x".repeat(32), &[]), &token), None);
        for i in [0, 20, 30, 74] {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).unwrap();
            assert_eq!(verify(&keys, &tampered), None, "byte {i}");
        }
        assert_eq!(verify(&keys, ""), None);
        assert_eq!(verify(&keys, &token[1..]), None);
        assert_eq!(verify(&keys, &format!("{token}A")), None);
        assert_eq!(verify(&keys, &"!".repeat(ENCODED_LEN)), None);
    }

    #[test]
    fn tokens_under_a_previous_key_still_verify() {
        let old = "o".repeat(32);
        let token = mint(&ring(&old, &[]), Uuid::new_v4(), 0);
        assert!(verify(&ring(&"n".repeat(32), &[&old]), &token).is_some());
    }

    #[test]
    fn during_a_rolling_rotation_each_instance_accepts_the_others_refresh_tokens() {
        // Step 2 of the README's HS256 rotation, half done: one instance signs
        // with the new secret, the other still with the old one and has the new
        // one as previous (since step 1).
        let (old, new) = ("o".repeat(32), "n".repeat(32));
        let restarted = ring(&new, &[&old]);
        let not_yet = ring(&old, &[&new]);
        let id = Uuid::new_v4();
        let from_restarted = mint(&restarted, id, 1);
        let from_not_yet = mint(&not_yet, id, 2);
        assert_eq!(verify(&not_yet, &from_restarted).unwrap().generation, 1);
        assert_eq!(verify(&restarted, &from_not_yet).unwrap().generation, 2);
        // Before step 1, the old instance would have refused the new key's tokens.
        assert_eq!(verify(&ring(&old, &[]), &from_restarted), None);
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;
    use secrecy::SecretString;

    fn keys() -> Keyring {
        Keyring::new(&SecretString::from("r".repeat(32)), &[])
    }

    proptest! {
        #[test]
        fn arbitrary_text_is_never_a_refresh_token(text in ".{0,200}") {
            prop_assert_eq!(verify(&keys(), &text), None);
        }

        #[test]
        fn arbitrary_base64_of_the_right_length_is_never_a_refresh_token(text in "[A-Za-z0-9_-]{75}") {
            prop_assert_eq!(verify(&keys(), &text), None);
        }

        #[test]
        fn every_minted_token_round_trips(id in any::<[u8; 16]>(), generation in 0i64..i64::MAX) {
            let keys = keys();
            let session_id = Uuid::from_bytes(id);
            let token = mint(&keys, session_id, generation);
            prop_assert_eq!(verify(&keys, &token), Some(RefreshClaims { session_id, generation }));
        }
    }
}
