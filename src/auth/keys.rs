//! The server keys: the current HS256 key and the older ones still accepted.
//!
//! Keys are decoded once at start. Each key's `kid` is derived from the key
//! itself (base64url of the first 8 bytes of its SHA-256), so rotating needs no
//! naming scheme. From each key we also derive a separate MAC key for refresh
//! tokens: the JWT key and the refresh key are never the same bytes, so a
//! weakness in one use cannot be turned against the other.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use jsonwebtoken::EncodingKey;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// Domain separation for the refresh-token MAC key (see module docs).
const REFRESH_KEY_LABEL: &[u8] = b"auth-api/refresh-token/v1";
/// Domain separation for the MACs of mailed tokens (`crate::auth::mail_grants`).
const MAIL_TOKEN_KEY_LABEL: &[u8] = b"auth-api/mail-token/v1";
/// Domain separation for the MACs of mailed 6-digit codes.
const MAIL_CODE_KEY_LABEL: &[u8] = b"auth-api/mail-code/v1";
/// Domain separation for the sealing key of outbox bodies (`crate::auth::mail_seal`).
const MAIL_OUTBOX_KEY_LABEL: &[u8] = b"auth-api/mail-outbox/v1";

/// An HMAC-SHA256 keyed with `HMAC(secret, label)`: one key per purpose,
/// none of them the JWT key itself.
fn derived_mac(secret: &[u8], label: &[u8]) -> Hmac<Sha256> {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    let key = mac.finalize().into_bytes();
    <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("HMAC accepts keys of any length")
}

/// A ChaCha20-Poly1305 key of `HMAC(secret, label)`'s 32 bytes.
fn derived_aead_key(secret: &[u8], label: &[u8]) -> ring::aead::LessSafeKey {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(label);
    let key = mac.finalize().into_bytes();
    let key = ring::aead::UnboundKey::new(&ring::aead::CHACHA20_POLY1305, &key)
        .expect("a 32-byte key fits ChaCha20-Poly1305");
    ring::aead::LessSafeKey::new(key)
}

/// One server key in all the forms the service uses.
pub struct ServerKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    /// HMAC-SHA256 keyed with the JWT key, ready to clone per verification.
    pub(crate) jwt_mac: Hmac<Sha256>,
    pub(crate) refresh_mac: Hmac<Sha256>,
    pub(crate) mail_token_mac: Hmac<Sha256>,
    pub(crate) mail_code_mac: Hmac<Sha256>,
    /// ChaCha20-Poly1305 key sealing the outbox's bodies.
    pub(crate) outbox_key: ring::aead::LessSafeKey,
    /// The first segment of every access token this key signs (see `AccessTokens::verify`).
    pub(crate) header_segment: String,
}

impl std::fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The kid is public (it is in every token header); the key is not.
        f.debug_struct("ServerKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl ServerKey {
    /// Builds a key from the secret's UTF-8 bytes, as given.
    pub fn new(secret: &SecretString) -> Self {
        let bytes = secret.expose_secret().as_bytes();
        let kid = key_id(bytes);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
        header.kid = Some(kid.clone());
        let header_json = serde_json::to_vec(&header).expect("a header serialises");
        let header_segment = URL_SAFE_NO_PAD.encode(header_json);
        let jwt_mac =
            <Hmac<Sha256> as Mac>::new_from_slice(bytes).expect("HMAC accepts keys of any length");
        Self {
            header_segment,
            jwt_mac,
            kid,
            encoding: EncodingKey::from_secret(bytes),
            refresh_mac: derived_mac(bytes, REFRESH_KEY_LABEL),
            mail_token_mac: derived_mac(bytes, MAIL_TOKEN_KEY_LABEL),
            mail_code_mac: derived_mac(bytes, MAIL_CODE_KEY_LABEL),
            outbox_key: derived_aead_key(bytes, MAIL_OUTBOX_KEY_LABEL),
        }
    }

    /// The key id that goes in the JWT header.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The `kid` of a key: base64url (no padding) of the first 8 bytes of SHA-256.
pub fn key_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    URL_SAFE_NO_PAD.encode(&digest[..8])
}

/// The current key (signs) and the previous ones (still verify).
#[derive(Debug)]
pub struct Keyring {
    /// `keys[0]` is the current key; the rest are previous keys, newest first.
    keys: Vec<ServerKey>,
}

impl Keyring {
    pub fn new(current: &SecretString, previous: &[SecretString]) -> Self {
        let mut keys = vec![ServerKey::new(current)];
        for secret in previous {
            let key = ServerKey::new(secret);
            // A previous key equal to the current one (a half-done rotation) is harmless; skip it.
            if keys.iter().all(|k| k.kid != key.kid) {
                keys.push(key);
            }
        }
        Self { keys }
    }

    /// The key that signs new tokens.
    pub fn current(&self) -> &ServerKey {
        &self.keys[0]
    }

    /// The key with this `kid`, if it is one of ours.
    pub fn by_kid(&self, kid: &str) -> Option<&ServerKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Every accepted key, the current one first.
    pub fn all(&self) -> &[ServerKey] {
        &self.keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kid_is_base64url_of_the_first_eight_bytes_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea...; its first 8 bytes in base64url.
        assert_eq!(key_id(b"abc"), "ungWv48Bz-o");
        assert_eq!(key_id(b"abc").len(), 11);
    }

    #[test]
    fn previous_keys_are_kept_in_order_without_duplicates() {
        let a = SecretString::from("a".repeat(32));
        let b = SecretString::from("b".repeat(32));
        let ring = Keyring::new(&a, &[b.clone(), a.clone(), b]);
        assert_eq!(ring.all().len(), 2);
        assert_eq!(ring.current().kid(), key_id("a".repeat(32).as_bytes()));
        assert!(ring.by_kid(&key_id("b".repeat(32).as_bytes())).is_some());
        assert!(ring.by_kid("nope").is_none());
    }
}

/// Name of the generated key file inside the data folder.
pub const KEY_FILE_NAME: &str = "jwt_secret";

/// Reads the key file in `dir`, or creates it with a fresh 256-bit key (mode
/// 0600). Returns the key and whether it was just created, so the caller can
/// warn once. The key is base64url text, so it is also a valid `JWT_SECRET`.
pub fn load_or_create_key_file(dir: &std::path::Path) -> std::io::Result<(SecretString, bool)> {
    use std::io::Write;
    let path = dir.join(KEY_FILE_NAME);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim().to_owned();
            if key.len() < crate::config::MIN_SECRET_BYTES {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} holds a key shorter than 32 bytes", path.display()),
                ));
            }
            Ok((SecretString::from(key), false))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::private_files::create_dir_all(dir)?;
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
            let key = URL_SAFE_NO_PAD.encode(bytes);
            let mut file = crate::private_files::create_new_options().open(&path)?;
            file.write_all(key.as_bytes())?;
            file.sync_all()?;
            Ok((SecretString::from(key), true))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod key_file_tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, created) = load_or_create_key_file(dir.path()).unwrap();
        assert!(created);
        assert_eq!(first.expose_secret().len(), 43);
        let (second, created) = load_or_create_key_file(dir.path()).unwrap();
        assert!(!created);
        assert_eq!(first.expose_secret(), second.expose_secret());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
