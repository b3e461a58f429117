//! Arbitrary bytes as a refresh token: parsing must never panic, and nothing
//! we did not mint may authenticate.
#![no_main]

use std::sync::LazyLock;

use auth_api::auth::Keyring;
use auth_api::auth::refresh;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

static KEYS: LazyLock<Keyring> = LazyLock::new(|| {
    Keyring::new(&SecretString::from("fuzzing-key-0123456789-0123456789".to_owned()), &[])
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        assert!(refresh::verify(&KEYS, text).is_none(), "a refresh token nobody minted verified");
    }
});
