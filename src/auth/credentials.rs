//! Input rules for credentials (API.md, "Input rules"): email normalisation and
//! the password policy of NIST SP 800-63B (length and a list of common
//! passwords, no composition rules).

use std::collections::HashSet;
use std::sync::LazyLock;

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_EMAIL_BYTES: usize = 254;

/// Common passwords of 8 characters or more, lowercased, one a line: the
/// password list of zxcvbn (MIT), shipped so no network is needed at run time.
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| include_str!("common_passwords.txt").lines().collect());

/// Why a password is refused. Every variant answers `422 weak_password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password must have at least 8 characters")]
    TooShort,
    #[error("the password must be at most 1024 bytes")]
    TooLong,
    #[error("the password is too common; choose another one")]
    Common,
}

/// Checks a new password against the policy.
pub fn check_password_policy(password: &str) -> Result<(), WeakPassword> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    if COMMON_PASSWORDS.contains(password.to_lowercase().as_str()) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// Forces the common-password list to load, so the first registration does not pay for it.
pub fn preload_common_passwords() {
    LazyLock::force(&COMMON_PASSWORDS);
}

/// The canonical form of an email: trimmed and lowercased, if it looks like
/// `local@domain`; `None` otherwise.
///
/// Deliberately loose (no RFC 5322 parser): the only promise is that the same
/// mailbox typed twice maps to the same account, and that garbage is refused.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim();
    if email.is_empty() || email.len() > MAX_EMAIL_BYTES {
        return None;
    }
    let (local, domain) = email.rsplit_once('@')?;
    let valid = !local.is_empty()
        && local.len() <= 64
        && !domain.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@');
    valid.then(|| email.to_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lowercased() {
        assert_eq!(
            normalize_email("  Alice@Example.COM "),
            Some("alice@example.com".into())
        );
        assert_eq!(normalize_email("a@b"), Some("a@b".into()));
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "   ",
            "alice",
            "@example.com",
            "alice@",
            "al ice@example.com",
            "alice@.example.com",
            "alice@example.com.",
            "alice@exa..mple.com",
            "a\u{0}b@example.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalize_email(&long), None);
    }

    #[test]
    fn the_password_policy() {
        assert_eq!(check_password_policy("short"), Err(WeakPassword::TooShort));
        // Eight code points, more than eight bytes: long enough.
        assert_eq!(check_password_policy("ééééééé1"), Ok(()));
        assert_eq!(check_password_policy("ééé"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_password_policy(&"x".repeat(1025)),
            Err(WeakPassword::TooLong)
        );
        assert_eq!(check_password_policy(&"x".repeat(1024)), Ok(()));
        assert_eq!(check_password_policy("password"), Err(WeakPassword::Common));
        assert_eq!(
            check_password_policy("PassWord1"),
            Err(WeakPassword::Common)
        );
        assert_eq!(
            check_password_policy("correct horse battery staple"),
            Ok(())
        );
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn normalising_never_panics_and_is_idempotent(raw in ".{0,300}") {
            if let Some(email) = normalize_email(&raw) {
                prop_assert!(email.len() <= MAX_EMAIL_BYTES);
                prop_assert_eq!(normalize_email(&email), Some(email.clone()));
            }
        }

        #[test]
        fn the_policy_never_panics(password in ".{0,1100}") {
            let _ = check_password_policy(&password);
        }
    }
}
