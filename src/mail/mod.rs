//! Mail delivery (API.md, "Mail"; DESIGN.md, "Mail").
//!
//! Nothing here is on a request's path: the flows write mails into the outbox
//! table (`store::outbox`, in the transaction of the change that causes them),
//! and the background [`sender`] delivers them through the [`transport`] that
//! `MAIL_URL` names, with retries. So an SMTP outage delays mail, loses none,
//! and no request waits for SMTP.
//!
//! Mail bodies carry codes and tokens: the outbox holds them sealed
//! (`auth::mail_seal`), the sender opens each one only to hand it to the
//! transport, and the row is blanked once sent or given up. Nothing in this
//! module logs a body, and errors recorded or logged are the transport's (or
//! the class of a body that cannot be opened), never the message.

pub mod sender;
pub mod transport;

use std::fmt;
use std::path::PathBuf;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};

pub use sender::MailSender;
pub use transport::Transport;

/// The default `MAIL_URL`: mails written to files a developer can open.
pub const DEFAULT_MAIL_URL: &str = "file://data/mail";
/// The default `MAIL_FROM`.
pub const DEFAULT_MAIL_FROM: &str = "no-reply@localhost";

/// `MAIL_URL`, `MAIL_FROM`, `MAIL_MAX_ATTEMPTS`, checked at start.
#[derive(Debug, Clone)]
pub struct MailConfig {
    pub target: MailTarget,
    pub from: Mailbox,
    /// Delivery attempts per mail before it is given up.
    pub max_attempts: u32,
    /// `MAIL_TLS_CA_FILE`: PEM root certificates trusted for the SMTP server
    /// besides the built-in Mozilla roots (a relay under a private CA).
    pub tls_ca_file: Option<PathBuf>,
}

/// Where mails go.
#[derive(Debug, Clone)]
pub enum MailTarget {
    /// An SMTP server (`smtp://` or `smtps://`).
    Smtp(SmtpUrl),
    /// A folder: each mail one `.eml` file (`file://<folder>`).
    Folder(PathBuf),
}

/// An SMTP `MAIL_URL`, validated. Its password is only ever shown redacted.
#[derive(Clone)]
pub struct SmtpUrl {
    url: SecretString,
    redacted: String,
    host: String,
    tls: SmtpTls,
}

/// How an SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://…?tls=required`: STARTTLS, and nothing is sent if it fails.
    StartTls,
    /// `smtp://`: plain text (a relay on this host; no password allowed).
    None,
}

impl SmtpUrl {
    /// The URL with its password replaced by `***`: what logs may show.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    pub(crate) fn expose(&self) -> &str {
        self.url.expose_secret()
    }

    pub fn tls(&self) -> SmtpTls {
        self.tls
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SmtpUrl").field(&self.redacted).finish()
    }
}

impl fmt::Display for MailTarget {
    /// What the startup line says: the URL, password redacted.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailTarget::Smtp(url) => f.write_str(url.redacted()),
            MailTarget::Folder(dir) => write!(f, "file://{}", dir.display()),
        }
    }
}

/// Parses `MAIL_URL`. The error is a reason fit for a [`crate::config::ConfigError`]:
/// it never repeats the URL (which may hold a password).
pub fn parse_mail_url(raw: &str) -> Result<MailTarget, String> {
    let raw = raw.trim();
    if let Some(folder) = raw.strip_prefix("file://") {
        if folder.is_empty() {
            return Err("file:// needs a folder, like file://data/mail".into());
        }
        return Ok(MailTarget::Folder(PathBuf::from(folder)));
    }
    let url = url::Url::parse(raw).map_err(|e| format!("is not a valid URL ({e})"))?;
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    if let Some((key, _)) = url.query_pairs().find(|(k, _)| k != "tls") {
        return Err(format!(
            "unknown parameter {key:?} (only tls=required is known)"
        ));
    }
    let mode = match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => SmtpTls::Implicit,
        ("smtp", Some("required")) => SmtpTls::StartTls,
        ("smtp", None) => SmtpTls::None,
        ("smtp" | "smtps", Some(other)) => {
            return Err(format!(
                "tls={other:?} is not supported: use smtp://…?tls=required (STARTTLS), \
                 smtps:// (TLS), or smtp:// with no tls parameter (no TLS)"
            ));
        }
        (scheme, _) => {
            return Err(format!(
                "unknown scheme {scheme:?}: use smtps://, smtp:// or file://"
            ));
        }
    };
    let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
        return Err("names no host".into());
    };
    // lettre wants an IPv6 host bare, as TLS names it.
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if url.password().is_some() && mode == SmtpTls::None {
        // The password would cross the network in clear.
        return Err(
            "a password needs TLS: use smtps://… or smtp://…?tls=required, \
             or no credentials for a relay on this host"
                .into(),
        );
    }
    let mut shown = url.clone();
    if url.password().is_some() {
        // Cannot fail: the URL has a host (checked above).
        let _ = shown.set_password(Some("***"));
    }
    let smtp = SmtpUrl {
        url: SecretString::from(raw.to_owned()),
        redacted: shown.to_string(),
        host,
        tls: mode,
    };
    // lettre must accept it too; its error is not shown (it could quote the URL).
    Transport::smtp(&smtp, None).map_err(|_| "is not an SMTP URL lettre accepts".to_owned())?;
    Ok(MailTarget::Smtp(smtp))
}

/// Parses `MAIL_FROM`: an address, optionally with a name (`App <no-reply@example.com>`).
pub fn parse_mail_from(raw: &str) -> Result<Mailbox, String> {
    raw.trim().parse::<Mailbox>().map_err(|_| {
        "must be an address like no-reply@example.com or Name <no-reply@example.com>".into()
    })
}

/// The domain of an address, which is what logs say of a recipient.
pub fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("-", |(_, domain)| domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_forms_parse() {
        assert!(matches!(
            parse_mail_url("file://data/mail").unwrap(),
            MailTarget::Folder(p) if p == std::path::Path::new("data/mail")
        ));
        assert!(matches!(
            parse_mail_url("file:///var/mail/auth").unwrap(),
            MailTarget::Folder(p) if p == std::path::Path::new("/var/mail/auth")
        ));
        for url in [
            "smtps://user:pass@mail.example.com:465",
            "smtp://user:pass@mail.example.com:587?tls=required",
            "smtp://127.0.0.1:25",
        ] {
            assert!(
                matches!(parse_mail_url(url), Ok(MailTarget::Smtp(_))),
                "{url}"
            );
        }
    }

    #[test]
    fn the_password_is_never_shown() {
        let target = parse_mail_url("smtps://alice:s3cr%21t@mail.example.com:465").unwrap();
        let shown = format!("{target} {target:?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(
            shown.contains("smtps://alice:***@mail.example.com:465"),
            "{shown}"
        );
    }

    #[test]
    fn bad_urls_are_refused_without_repeating_them() {
        for url in [
            "http://mail.example.com",
            "smtp://user:hunter2-secret@mail.example.com:25",
            "smtp://user:hunter2-secret@mail.example.com:587?tls=opportunistic",
            "smtp://mail.example.com?tls=required&x=1",
            "file://",
            "not a url hunter2-secret",
            "smtp://",
        ] {
            let err = parse_mail_url(url).expect_err(url);
            assert!(!err.contains("hunter2"), "{url}: {err}");
        }
    }

    #[test]
    fn from_addresses_parse() {
        assert_eq!(
            parse_mail_from("no-reply@localhost")
                .unwrap()
                .email
                .to_string(),
            "no-reply@localhost"
        );
        assert!(parse_mail_from("Auth <a@example.com>").is_ok());
        assert!(parse_mail_from("not an address").is_err());
        assert_eq!(domain_of("a@example.com"), "example.com");
    }
}
