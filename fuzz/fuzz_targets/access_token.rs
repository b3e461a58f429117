//! Arbitrary bytes as an access token: verification must never panic, and
//! nothing we did not sign may verify.
#![no_main]

use std::sync::LazyLock;
use std::time::Duration;

use auth_api::auth::{AccessTokens, Keyring};
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

static TOKENS: LazyLock<AccessTokens> = LazyLock::new(|| {
    let current = SecretString::from("fuzzing-key-0123456789-0123456789".to_owned());
    let previous = [SecretString::from("fuzzing-old-key-0123456789-012345".to_owned())];
    AccessTokens::new(
        Keyring::new(&current, &previous),
        "auth-api",
        "mobile",
        Duration::from_secs(30),
        Duration::from_secs(900),
    )
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(TOKENS.verify(text).is_err(), "a token nobody signed verified");
    }
});
