//! The text of every account mail: plain text, naming `APP_NAME`. A grant
//! mail carries the link `APP_LINK_URL?purpose=<purpose>&token=<token>` and
//! the 6-digit code; notices carry neither.

use crate::auth::mail_grants::{MailSecrets, Purpose};
use crate::config::AccountConfig;
use crate::store::NewMail;

/// The mail of a grant: its link and code.
pub(super) fn grant_mail(
    config: &AccountConfig,
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
    NewMail {
        to: to.to_owned(),
        subject,
        body,
    }
}

/// To the old address when an email change is asked.
pub(super) fn change_requested_notice(config: &AccountConfig, old: &str, new: &str) -> NewMail {
    let app = &config.app_name;
    NewMail {
        to: old.to_owned(),
        subject: format!("{app}: a change of your email address was asked"),
        body: format!(
            "Hello,\n\nSomeone signed in to your {app} account asked to change its email address \
             to {new}. Nothing changes until the new address is confirmed.\n\n\
             If it was not you, change your password now.\n\n{app}\n"
        ),
    }
}

/// To the old address when an email change is confirmed.
pub(super) fn changed_notice(config: &AccountConfig, old: &str, new: &str) -> NewMail {
    let app = &config.app_name;
    NewMail {
        to: old.to_owned(),
        subject: format!("{app}: your email address was changed"),
        body: format!(
            "Hello,\n\nThe email address of your {app} account is now {new}; this address \
             no longer signs in.\n\nIf it was not you, contact the {app} support.\n\n{app}\n"
        ),
    }
}

/// To the old address when the account is deleted.
pub(super) fn deleted_notice(config: &AccountConfig, old: &str) -> NewMail {
    let app = &config.app_name;
    NewMail {
        to: old.to_owned(),
        subject: format!("{app}: your account was deleted"),
        body: format!(
            "Hello,\n\nYour {app} account was deleted, and every device signed in to it was \
             signed out. This address can register again.\n\n{app}\n"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::mail_grants::generate;

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
            let mail = grant_mail(&config(), purpose, "a@example.com", &secrets);
            assert_eq!(mail.to, "a@example.com");
            assert!(mail.subject.starts_with("Acme: "), "{}", mail.subject);
            let link = format!(
                "https://acme.example/auth?purpose={}&token={}",
                purpose.as_str(),
                secrets.token.as_str()
            );
            assert!(mail.body.contains(&link), "{}", mail.body);
            assert!(
                mail.body
                    .contains(&format!("code in the app: {}", secrets.code.as_str()))
            );
            assert!(mail.body.contains("30 minutes"));
        }
    }

    #[test]
    fn notices_carry_no_token_or_code() {
        let c = config();
        for mail in [
            change_requested_notice(&c, "old@example.com", "new@example.com"),
            changed_notice(&c, "old@example.com", "new@example.com"),
            deleted_notice(&c, "old@example.com"),
        ] {
            assert_eq!(mail.to, "old@example.com");
            assert!(mail.subject.starts_with("Acme: "));
            assert!(!mail.body.contains("token="));
            assert!(!mail.body.contains("code"));
        }
    }
}
