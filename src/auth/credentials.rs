//! Input rules (API.md, "Input rules"): email normalisation, the password
//! policy of NIST SP 800-63B (NFKC, length and a list of common passwords, no
//! composition rules), device names and user agents, and the one rule for
//! characters that are invisible, control, format or bidi.
//!
//! Why so strict: an email, a device name and a user agent are all shown to
//! people later (in the session list, an admin screen, a mail). Invisible and
//! bidi characters make two different strings look alike (`alice\u{200B}@…`)
//! or make a name display as something else (U+202E reverses what follows), and
//! PostgreSQL `text` cannot hold U+0000 at all.

use std::collections::HashSet;
use std::sync::LazyLock;

use secrecy::zeroize::Zeroizing;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_BYTES: usize = 1024;
pub const MAX_EMAIL_BYTES: usize = 254;
/// RFC 5321 §4.5.3.1.1.
pub const MAX_EMAIL_LOCAL_BYTES: usize = 64;
/// Longest `device_name` accepted, in characters.
pub const MAX_DEVICE_NAME_CHARS: usize = 100;
/// Stored user agents are cut to this many characters.
pub const MAX_USER_AGENT_CHARS: usize = 256;

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

/// The form a password is counted, checked and hashed in: Unicode NFKC (NIST
/// SP 800-63B §5.1.1.2), so that every keyboard's spelling of the same password
/// (a precomposed or a decomposed `é`, fullwidth or ASCII digits) is the same
/// password. The copy is wiped when dropped.
pub fn normalize_password(raw: &str) -> Zeroizing<String> {
    // Sized exactly before it is filled: a growing String reallocates, and each
    // buffer it leaves behind would keep part of the password in freed memory.
    let len = raw.nfkc().map(char::len_utf8).sum();
    let mut normalized = Zeroizing::new(String::with_capacity(len));
    normalized.extend(raw.nfkc());
    normalized
}

/// Checks a new password against the policy, on its NFKC form (what is hashed):
/// the length in code points and bytes, and the common-password list.
pub fn check_password_policy(password: &str) -> Result<(), WeakPassword> {
    let password = normalize_password(password);
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    let lowercase = Zeroizing::new(password.to_lowercase());
    if COMMON_PASSWORDS.contains(lowercase.as_str()) {
        return Err(WeakPassword::Common);
    }
    Ok(())
}

/// Forces the common-password list to load, so the first registration does not pay for it.
pub fn preload_common_passwords() {
    LazyLock::force(&COMMON_PASSWORDS);
}

/// Unicode's Default_Ignorable_Code_Point (DerivedCoreProperties.txt): code
/// points that render as nothing at all. Most are also `Cf` or `Cn`; the table
/// is here for the others: fillers that are letters (U+115F, U+1160, U+3164,
/// U+FFA0), the combining grapheme joiner and the variation selectors (`Mn`).
const DEFAULT_IGNORABLE: &[(char, char)] = &[
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// The one rule for characters a person cannot see or that change how the
/// text around them is shown: controls (`Cc`: NUL, ESC, newline, DEL...),
/// format characters (`Cf`: zero-width space and joiners, BOM, soft hyphen,
/// bidi marks, embeddings, overrides and isolates), line and paragraph
/// separators, private use (`Co`), code points unassigned in our Unicode
/// tables (`Cn`, noncharacters included), and every Default_Ignorable_Code_Point
/// (fillers, variation selectors). Ordinary spaces are not in it (a name may
/// have spaces); an email refuses them separately.
pub fn is_invisible_or_control(c: char) -> bool {
    if c.is_ascii() {
        return c.is_ascii_control();
    }
    matches!(
        c.general_category(),
        GeneralCategory::Control
            | GeneralCategory::Format
            | GeneralCategory::LineSeparator
            | GeneralCategory::ParagraphSeparator
            | GeneralCategory::PrivateUse
            | GeneralCategory::Surrogate
            | GeneralCategory::Unassigned
    ) || DEFAULT_IGNORABLE
        .iter()
        .any(|&(first, last)| (first..=last).contains(&c))
}

/// The canonical form of an email (API.md): trimmed, NFKC, lower-cased; `None`
/// unless it is at most 254 bytes in that form, has exactly one `@`, a
/// non-empty local part of at most 64 bytes and a dotted domain, and holds no
/// whitespace and nothing [`is_invisible_or_control`] refuses.
///
/// Deliberately loose otherwise (no RFC 5322 parser): the promise is that two
/// spellings of the same mailbox map to the same account, that two accounts
/// cannot look alike, and that garbage is refused.
pub fn normalize_email(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    // A bound on the work before normalising. NFKC shrinks a string at most
    // threefold (three Hangul jamo compose to one syllable), so nothing longer
    // than this can fit in 254 bytes afterwards.
    if trimmed.is_empty() || trimmed.len() > 4 * MAX_EMAIL_BYTES {
        return None;
    }
    let nfkc: String = trimmed.nfkc().collect();
    // NFKC again after lower-casing: lower-casing can undo normalisation (`İ`
    // becomes `i` + U+0307, which must then be reordered with a following
    // mark), and the stored form must be a fixed point, so that normalising it
    // again changes nothing.
    let email: String = nfkc.to_lowercase().nfkc().collect();
    if email.len() > MAX_EMAIL_BYTES
        || email
            .chars()
            .any(|c| c.is_whitespace() || is_invisible_or_control(c))
    {
        return None;
    }
    let (local, domain) = email.split_once('@')?;
    let valid = !local.is_empty()
        && local.len() <= MAX_EMAIL_LOCAL_BYTES
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..");
    valid.then_some(email)
}

/// Why a `device_name` is refused: `400 invalid_request`, naming the field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DeviceNameError {
    #[error("device_name must be at most 100 characters")]
    TooLong,
    #[error("device_name must not contain control, format, bidi or invisible characters")]
    InvisibleCharacter,
}

/// A `device_name` as stored with a session: trimmed; `None` when absent or
/// blank. At most 100 characters, and nothing [`is_invisible_or_control`]
/// refuses, anywhere (a trailing newline too): the name is shown to the user in
/// the session list, where such characters could disguise a session as another.
pub fn check_device_name(raw: Option<&str>) -> Result<Option<String>, DeviceNameError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    if raw.chars().any(is_invisible_or_control) {
        return Err(DeviceNameError::InvisibleCharacter);
    }
    let name = raw.trim();
    if name.chars().count() > MAX_DEVICE_NAME_CHARS {
        return Err(DeviceNameError::TooLong);
    }
    Ok((!name.is_empty()).then(|| name.to_owned()))
}

/// A `User-Agent` as stored with a session: the characters
/// [`is_invisible_or_control`] refuses removed (the header is not ours to
/// refuse, but it is shown in the session list), then trimmed and cut to 256
/// characters.
pub fn clean_user_agent(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|&c| !is_invisible_or_control(c))
        .collect();
    cleaned.trim().chars().take(MAX_USER_AGENT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character the review named, one per line of the rule.
    const INVISIBLE: &[char] = &[
        '\u{0}',
        '\u{1B}',
        '\n',
        '\r',
        '\t',
        '\u{7F}',
        '\u{85}',
        '\u{9F}', // controls
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{FEFF}',
        '\u{00AD}', // zero-width, BOM, soft hyphen
        '\u{200E}',
        '\u{200F}',
        '\u{202A}',
        '\u{202B}',
        '\u{202C}',
        '\u{202D}',
        '\u{202E}', // bidi
        '\u{2066}',
        '\u{2067}',
        '\u{2068}',
        '\u{2069}',
        '\u{061C}', // bidi isolates, Arabic mark
        '\u{2060}',
        '\u{2061}',
        '\u{2062}',
        '\u{2063}',
        '\u{2064}',
        '\u{180E}', // joiners, invisible operators
        '\u{3164}',
        '\u{115F}',
        '\u{1160}',
        '\u{FFA0}',
        '\u{034F}', // fillers, grapheme joiner
        '\u{FE00}',
        '\u{FE0F}',
        '\u{E0100}',
        '\u{E01EF}',
        '\u{180B}', // variation selectors
        '\u{E0001}',
        '\u{E0041}', // tags
        '\u{2028}',
        '\u{2029}', // line and paragraph separators
        '\u{E000}',
        '\u{F8FF}',
        '\u{F0000}',
        '\u{10FFFD}', // private use
        '\u{378}',
        '\u{FFFE}',
        '\u{FFFF}',
        '\u{10FFFF}', // unassigned and noncharacters
    ];

    #[test]
    fn emails_are_trimmed_normalised_and_lowercased() {
        assert_eq!(
            normalize_email("  Alice@Example.COM "),
            Some("alice@example.com".into())
        );
        // NFKC: fullwidth forms are their ASCII letters, the fullwidth `＠` and `．` too.
        assert_eq!(
            normalize_email("ＡＬＩＣＥ＠ｅｘａｍｐｌｅ．ｃｏｍ"),
            Some("alice@example.com".into())
        );
        assert_eq!(normalize_email("ａ@b.c"), Some("a@b.c".into()));
    }

    #[test]
    fn precomposed_and_decomposed_spellings_are_one_email() {
        let nfc = normalize_email("caf\u{E9}@example.com");
        let nfd = normalize_email("cafe\u{301}@example.com");
        assert_eq!(nfc, Some("caf\u{E9}@example.com".into()));
        assert_eq!(nfd, nfc);
        assert_eq!(
            normalize_email("CAFE\u{301}@EXAMPLE.COM"),
            Some("caf\u{E9}@example.com".into())
        );
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
            // A dotted domain is required now.
            "a@b",
            "alice@localhost",
            // Exactly one `@`, whichever way it is spelt.
            "a@evil.test@example.com",
            "a\u{FF20}evil.test@example.com",
            // Any whitespace, not only ASCII.
            "al\u{A0}ice@example.com",
            "alice@exa\u{3000}mple.com",
        ] {
            assert_eq!(normalize_email(bad), None, "{bad:?}");
        }
        let long = format!("{}@example.com", "a".repeat(250));
        assert_eq!(normalize_email(&long), None);
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert_eq!(normalize_email(&long_local), None);
    }

    #[test]
    fn every_invisible_or_control_character_is_refused_anywhere_in_an_email() {
        for &c in INVISIBLE {
            assert!(is_invisible_or_control(c), "U+{:04X}", c as u32);
            for email in [
                format!("al{c}ice@example.com"),
                format!("alice{c}@example.com"),
                format!("alice@{c}example.com"),
                format!("alice@exam{c}ple.com"),
            ] {
                assert_eq!(normalize_email(&email), None, "U+{:04X}", c as u32);
            }
            // At either end, whitespace is trimmed (a pasted newline); any
            // other invisible character is refused there too.
            if !c.is_whitespace() {
                for email in [
                    format!("{c}alice@example.com"),
                    format!("alice@example.com{c}"),
                ] {
                    assert_eq!(normalize_email(&email), None, "U+{:04X}", c as u32);
                }
            }
        }
    }

    #[test]
    fn visible_characters_are_not_invisible() {
        for c in [
            'a',
            'Z',
            '0',
            ' ',
            '@',
            '.',
            '~',
            '\u{E9}',
            '\u{301}',
            '\u{130}',
            '\u{A0}',
            '\u{3000}',
            '日',
            'ж',
            'ش',
            '\u{1F600}',
            '\u{2764}',
        ] {
            assert!(!is_invisible_or_control(c), "U+{:04X}", c as u32);
        }
    }

    #[test]
    fn the_length_limit_applies_after_normalisation() {
        // `İ` is 2 bytes; lower-cased it is `i` + U+0307, 3 bytes.
        let dotted = |n: usize| format!("a@{}.com", "\u{130}".repeat(n));
        let fits = dotted(82);
        assert!(fits.len() <= MAX_EMAIL_BYTES);
        let normalized = normalize_email(&fits).unwrap();
        assert_eq!(normalized.len(), 2 + 82 * 3 + 4);
        let grows = dotted(110);
        assert_eq!(grows.len(), 226, "under the limit as typed");
        assert_eq!(normalize_email(&grows), None, "over it once normalised");
        // And the other way: a decomposed address over 254 bytes as typed
        // that composes to fewer is accepted.
        let composes = format!("a@{}.com", "e\u{301}".repeat(83));
        assert!(composes.len() > MAX_EMAIL_BYTES);
        assert_eq!(
            normalize_email(&composes).map(|e| e.len()),
            Some(2 + 83 * 2 + 4)
        );
    }

    #[test]
    fn lowercasing_that_breaks_the_normal_form_is_normalised_again() {
        // `İ` then a below-mark: lower-cased, U+0307 (above) would precede
        // U+0316 (below), which is not canonical order.
        let email = normalize_email("\u{130}\u{316}@example.com").unwrap();
        assert_eq!(email, "i\u{316}\u{307}@example.com");
        assert_eq!(normalize_email(&email), Some(email.clone()));
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

    #[test]
    fn the_password_policy_counts_and_compares_the_nfkc_form() {
        // Eight code points as typed (decomposed), four once composed.
        let decomposed = "e\u{301}".repeat(4);
        assert_eq!(decomposed.chars().count(), 8);
        assert_eq!(
            check_password_policy(&decomposed),
            Err(WeakPassword::TooShort)
        );
        // Fullwidth `ｐａｓｓｗｏｒｄ` is `password`.
        assert_eq!(
            check_password_policy("ｐａｓｓｗｏｒｄ"),
            Err(WeakPassword::Common)
        );
        // Three ligatures are nine letters: long enough.
        assert_eq!(check_password_policy("\u{FB03}\u{FB03}\u{FB03}"), Ok(()));
        // U+FDFA is one ligature of 3 bytes that expands to 33: 120 bytes
        // as typed, 1320 once normalised.
        assert_eq!(
            check_password_policy(&"\u{FDFA}".repeat(40)),
            Err(WeakPassword::TooLong)
        );
    }

    #[test]
    fn every_spelling_of_a_password_normalises_alike() {
        let nfc = normalize_password("caf\u{E9} au lait");
        assert_eq!(*normalize_password("cafe\u{301} au lait"), *nfc);
        assert_eq!(*normalize_password("ｃａｆé au lait"), *nfc);
        assert_eq!(
            normalize_password("caf\u{E9} au lait").capacity(),
            nfc.len()
        );
    }

    #[test]
    fn device_names_are_trimmed_and_blank_ones_are_none() {
        assert_eq!(check_device_name(None), Ok(None));
        assert_eq!(check_device_name(Some("   ")), Ok(None));
        assert_eq!(
            check_device_name(Some("  Alice's iPhone ")),
            Ok(Some("Alice's iPhone".into()))
        );
        assert_eq!(
            check_device_name(Some(&"é".repeat(100))),
            Ok(Some("é".repeat(100)))
        );
        assert_eq!(
            check_device_name(Some(&"d".repeat(101))),
            Err(DeviceNameError::TooLong)
        );
    }

    #[test]
    fn device_names_refuse_every_invisible_or_control_character() {
        for &c in INVISIBLE {
            for name in [
                format!("Alice{c}Phone"),
                format!("Phone{c}"),
                format!("{c}"),
            ] {
                assert_eq!(
                    check_device_name(Some(&name)),
                    Err(DeviceNameError::InvisibleCharacter),
                    "U+{:04X}",
                    c as u32
                );
            }
        }
        for error in [
            DeviceNameError::TooLong,
            DeviceNameError::InvisibleCharacter,
        ] {
            assert!(error.to_string().contains("device_name"));
        }
    }

    #[test]
    fn user_agents_lose_invisible_characters_then_are_truncated() {
        assert_eq!(
            clean_user_agent("Mozilla/5.0\t(X11;\u{202E} Linux)\u{1B}[31m"),
            "Mozilla/5.0(X11; Linux)[31m"
        );
        // Removed first, then truncated: 256 visible characters survive.
        let padded = format!("{}{}", "\u{200B}".repeat(300), "A".repeat(300));
        assert_eq!(clean_user_agent(&padded), "A".repeat(MAX_USER_AGENT_CHARS));
        assert_eq!(clean_user_agent("\u{0}\u{7F}"), "");
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Strings made mostly of the characters that matter to the rules: ASCII,
    /// `@` and `.` in all their spellings, combining marks, case changers
    /// whose lower-case form grows, compatibility forms and invisible ones.
    fn email_like() -> impl Strategy<Value = String> {
        let interesting = prop_oneof![
            4 => proptest::char::range('a', 'z'),
            1 => proptest::char::range('A', 'Z'),
            2 => proptest::sample::select(vec!['@', '.', '\u{FF20}', '\u{FF0E}', '\u{FE6B}', '\u{2024}']),
            2 => proptest::sample::select(vec![
                '\u{301}', '\u{307}', '\u{316}', '\u{308}', '\u{327}', '\u{E9}', '\u{130}',
                '\u{1E9E}', '\u{3A3}', '\u{FB03}', '\u{2126}', '\u{212B}', '\u{1100}', '\u{1161}',
                '\u{11A8}', '\u{FF41}', '\u{1D400}', '\u{2460}', '\u{33A1}',
            ]),
            1 => proptest::sample::select(vec![
                ' ', '\u{A0}', '\u{0}', '\u{200B}', '\u{202E}', '\u{FEFF}', '\u{AD}', '\u{3164}',
                '\u{FE0F}', '\u{E000}',
            ]),
            1 => any::<char>(),
        ];
        proptest::collection::vec(interesting, 0..80).prop_map(|c| c.into_iter().collect())
    }

    proptest! {
        #[test]
        fn normalising_never_panics_and_is_idempotent(raw in ".{0,300}") {
            if let Some(email) = normalize_email(&raw) {
                prop_assert!(email.len() <= MAX_EMAIL_BYTES);
                prop_assert_eq!(normalize_email(&email), Some(email.clone()));
            }
        }

        #[test]
        fn a_normalised_email_is_a_fixed_point_within_the_rules(raw in email_like()) {
            if let Some(email) = normalize_email(&raw) {
                prop_assert!(email.len() <= MAX_EMAIL_BYTES);
                prop_assert_eq!(email.matches('@').count(), 1);
                prop_assert!(!email.chars().any(|c| c.is_whitespace() || is_invisible_or_control(c)));
                prop_assert_eq!(normalize_email(&email), Some(email.clone()));
                // Its decomposed spelling is the same email.
                let nfd: String = email.nfd().collect();
                prop_assert_eq!(normalize_email(&nfd), Some(email.clone()));
            }
        }

        #[test]
        fn an_invisible_character_anywhere_refuses_the_email(
            raw in email_like(),
            at in any::<prop::sample::Index>(),
            c in proptest::sample::select(vec!['\u{0}', '\u{1B}', '\u{200B}', '\u{200D}', '\u{202E}', '\u{2066}', '\u{FEFF}', '\u{AD}', '\u{3164}', '\u{FE0F}', '\u{E000}']),
        ) {
            let mut chars: Vec<char> = raw.chars().collect();
            chars.insert(at.index(chars.len() + 1), c);
            let email: String = chars.into_iter().collect();
            prop_assert_eq!(normalize_email(&email), None);
        }

        #[test]
        fn the_policy_never_panics(password in ".{0,1100}") {
            let _ = check_password_policy(&password);
        }

        #[test]
        fn the_policy_judges_every_spelling_alike(password in ".{0,200}") {
            let nfd: String = password.nfd().collect();
            let nfkc: String = password.nfkc().collect();
            prop_assert_eq!(check_password_policy(&nfd), check_password_policy(&password));
            prop_assert_eq!(check_password_policy(&nfkc), check_password_policy(&password));
        }

        #[test]
        fn device_names_and_user_agents_keep_no_invisible_character(raw in ".{0,300}") {
            let agent = clean_user_agent(&raw);
            prop_assert!(agent.chars().count() <= MAX_USER_AGENT_CHARS);
            prop_assert!(!agent.chars().any(is_invisible_or_control));
            if let Ok(Some(name)) = check_device_name(Some(&raw)) {
                prop_assert!(name.chars().count() <= MAX_DEVICE_NAME_CHARS);
                prop_assert!(!name.chars().any(is_invisible_or_control));
            }
        }
    }
}
