//! Service keys: the credentials of the app's own backends for the
//! revocation feed (`BACKEND_API_KEYS`), never accepted from apps.
//!
//! Only SHA-256 digests of the keys are kept, and a presented key is hashed
//! and compared with every digest in constant time, without stopping at a
//! match: how long a check takes says nothing about how much of a key was
//! right, nor which key matched. Comparing digests also makes the
//! comparison independent of the keys' lengths.

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

/// The configured service keys (possibly none: the feed is then off).
pub struct ServiceKeys {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for ServiceKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceKeys")
            .field("count", &self.digests.len())
            .finish_non_exhaustive()
    }
}

impl ServiceKeys {
    pub fn new(keys: &[SecretString]) -> Self {
        Self {
            digests: keys
                .iter()
                .map(|key| Sha256::digest(key.expose_secret().as_bytes()).into())
                .collect(),
        }
    }

    /// No key configured: whatever needs one is off.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Is `presented` one of the keys?
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.digests
            .iter()
            .fold(false, |found, key| found | constant_time_eq(key, &digest))
    }
}

/// Every byte is looked at whatever the first difference.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_configured_key_is_accepted() {
        let one = "backend-key-number-one-0123456789abcdef";
        let two = "backend-key-number-two-0123456789abcdef";
        let keys = ServiceKeys::new(&[SecretString::from(one), SecretString::from(two)]);
        assert!(!keys.is_empty());
        assert!(keys.accepts(one));
        assert!(keys.accepts(two));
        for wrong in ["", "backend-key-number-one", &format!("{one}x"), &one[1..]] {
            assert!(!keys.accepts(wrong), "{wrong}");
        }
        let none = ServiceKeys::new(&[]);
        assert!(none.is_empty());
        assert!(!none.accepts(""));
    }

    #[test]
    fn the_debug_form_shows_no_key() {
        let key = "backend-key-number-one-0123456789abcdef";
        let text = format!("{:?}", ServiceKeys::new(&[SecretString::from(key)]));
        assert!(!text.contains(key));
    }
}
