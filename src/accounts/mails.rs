//! The text of every account mail: plain text, naming `APP_NAME`. A grant
//! mail carries the link `APP_LINK_URL?purpose=<purpose>&token=<token>` and
//! the 6-digit code; notices carry neither. Every body leaves here sealed
//! (`crate::auth::mail_seal`): the outbox never holds it in clear.

use crate::auth::Keyring;
use crate::auth::mail_grants::{MailSecrets, Purpose};
use crate::auth::mail_seal;
use crate::config::AccountConfig;
use crate::store::NewMail;

/// A mail to `to`, its body sealed for `to`.
fn sealed(keys: &Keyring, to: &str, subject: String, body: &str) -> NewMail {
    NewMail {
        to: to.to_owned(),
        subject,
        body: mail_seal::seal(keys, to, body),
    }
}

/// The mail of a grant: its link and code.
pub(super) fn grant_mail(
    config: &AccountConfig,
    keys: &Keyring,
    purpose: Purpose,
    to: &str,
    secrets: &MailSecrets,
) -> NewMail {
    let app = &config.app_name;
    let (subject, why) = match purpose {
        Purpose::Verify => (
            format!("{app}: confirm your email address"),
            format!("Please confirm that this is the email address of your {app} account."),
        ),
        Purpose::Reset => (
            format!("{app}: reset your password"),
            format!(
                "Someone, hopefully you, asked to reset the password of your {app} account.\n\
                 If it was not you, ignore this mail: nothing changes."
            ),
        ),
        Purpose::EmailChange => (
            format!("{app}: confirm your new email address"),
            format!(
                "Someone, hopefully you, asked to use this address for their {app} account.\n\
                 If it was not you, ignore this mail: nothing changes."
            ),
        ),
    };
    let minutes = config.mail_code_ttl.as_secs().div_ceil(60);
    let body = format!(
        "Hello,\n\n{why}\n\nOpen this link on the device where you use {app}:\n\
         {link}?purpose={purpose}&token={token}\n\n\
         or type this code in the app: {code}\n\n\
         The link and the code work once, for {minutes} minutes; a newer mail replaces them.\n\n\
         {app}\n",
        link = config.app_link_url,
        purpose = purpose.as_str(),
        token = secrets.token.as_str(),
        code = secrets.code.as_str(),
    );
    let body = secrecy::zeroize::Zeroizing::new(body);
    sealed(keys, to, subject, &body)
}

/// To the old address when an email change is asked.
pub(super) fn change_requested_notice(
    config: &AccountConfig,
    keys: &Keyring,
    old: &str,
    new: &str,
) -> NewMail {
    let app = &config.app_name;
    sealed(
        keys,
        old,
        format!("{app}: a change of your email address was asked"),
        &format!(
            "Hello,\n\nSomeone signed in to your {app} account asked to change its email address \
             to {new}. Nothing changes until the new address is confirmed.\n\n\
             If it was not you, change your password now.\n\n{app}\n"
        ),
    )
}

/// To the old address when an email change is confirmed.
pub(super) fn changed_notice(
    config: &AccountConfig,
    keys: &Keyring,
    old: &str,
    new: &str,
) -> NewMail {
    let app = &config.app_name;
    sealed(
        keys,
        old,
        format!("{app}: your email address was changed"),
        &format!(
            "Hello,\n\nThe email address of your {app} account is now {new}; this address \
             no longer signs in.\n\nIf it was not you, contact the {app} support.\n\n{app}\n"
        ),
    )
}

/// To the old address when the account is deleted.
pub(super) fn deleted_notice(config: &AccountConfig, keys: &Keyring, old: &str) -> NewMail {
    let app = &config.app_name;
    sealed(
        keys,
        old,
        format!("{app}: your account was deleted"),
        &format!(
            "Hello,\n\nYour {app} account was deleted, and every device signed in to it was \
             signed out. This address can register again.\n\n{app}\n"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mail_grants::generate;
    use secrecy::SecretString;

    fn keys() -> Keyring {
        Keyring::new(&SecretString::from("m".repeat(32)), &[])
    }

    fn opened(keys: &Keyring, mail: &NewMail) -> String {
        mail_seal::open(keys, &mail.to, mail.body.as_str()).unwrap()
    }

    fn config() -> AccountConfig {
        AccountConfig {
            require_email_verification: false,
            app_name: "Acme".into(),
            app_link_url: "https://acme.example/auth".into(),
            mail_code_ttl: std::time::Duration::from_secs(1800),
        }
    }

    #[test]
    fn a_grant_mail_names_the_app_and_carries_the_link_and_the_code() {
        let secrets = generate();
        for purpose in [Purpose::Verify, Purpose::Reset, Purpose::EmailChange] {
            let keys = keys();
            let mail = grant_mail(&config(), &keys, purpose, "a@example.com", &secrets);
            let body = opened(&keys, &mail);
            assert!(!mail.body.as_str().contains(secrets.token.as_str()));
            assert!(!mail.body.as_str().contains(secrets.code.as_str()));
            assert_eq!(mail.to, "a@example.com");
            assert!(mail.subject.starts_with("Acme: "), "{}", mail.subject);
            let link = format!(
                "https://acme.example/auth?purpose={}&token={}",
                purpose.as_str(),
                secrets.token.as_str()
            );
            assert!(body.contains(&link), "{body}");
            assert!(body.contains(&format!("code in the app: {}", secrets.code.as_str())));
            assert!(body.contains("30 minutes"));
        }
    }

    #[test]
    fn notices_carry_no_token_or_code() {
        let (c, k) = (config(), keys());
        for mail in [
            change_requested_notice(&c, &k, "old@example.com", "new@example.com"),
            changed_notice(&c, &k, "old@example.com", "new@example.com"),
            deleted_notice(&c, &k, "old@example.com"),
        ] {
            let body = opened(&k, &mail);
            assert_eq!(mail.to, "old@example.com");
            assert!(mail.subject.starts_with("Acme: "));
            assert!(!body.contains("token="));
            assert!(!body.contains("code"));
        }
    }
}
