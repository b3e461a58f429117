//! The transports `MAIL_URL` names: SMTP through lettre (implicit TLS,
//! STARTTLS required, or none), or a folder of `.eml` files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use uuid::Uuid;

use super::{MailConfig, MailTarget, SmtpTls, SmtpUrl};
use crate::config::ConfigError;

/// How long one SMTP exchange may take (connect, TLS, each command) before
/// the attempt counts as failed. Keeps a batch well inside the sender's lease.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

/// A configured transport.
#[derive(Debug, Clone)]
pub enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Folder(PathBuf),
}

/// One mail, ready to send.
#[derive(Debug)]
pub struct Outgoing<'a> {
    /// The outbox row's id: the Message-ID and the file name derive from it,
    /// so a mail tried twice is recognisably the same mail.
    pub id: Uuid,
    pub to: &'a str,
    pub subject: &'a str,
    pub body: &'a str,
}

/// Why an attempt failed, in words fit for a log line and `last_error`:
/// never the message itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    /// Retrying cannot help (the recipient's address is malformed).
    pub permanent: bool,
    pub reason: String,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl Transport {
    /// The transport of a checked [`MailConfig`]. A folder is created (mode
    /// 0700) and `MAIL_TLS_CA_FILE` read here, so either failing stops the
    /// start with an error naming the variable.
    pub fn new(config: &MailConfig) -> Result<Self, ConfigError> {
        match &config.target {
            MailTarget::Smtp(url) => {
                let ca = match &config.tls_ca_file {
                    None => None,
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        ConfigError::new(
                            "MAIL_TLS_CA_FILE",
                            format!("cannot read the file ({})", e.kind()),
                        )
                    })?),
                };
                Self::smtp(url, ca.as_deref()).map_err(|_| match ca {
                    Some(_) => ConfigError::new(
                        "MAIL_TLS_CA_FILE",
                        "holds no PEM certificate rustls accepts",
                    ),
                    None => ConfigError::new("MAIL_URL", "is not usable"),
                })
            }
            MailTarget::Folder(dir) => {
                crate::private_files::create_dir_all(dir).map_err(|e| {
                    ConfigError::new(
                        "MAIL_URL",
                        format!("cannot create the mail folder ({})", e.kind()),
                    )
                })?;
                Ok(Transport::Folder(dir.clone()))
            }
        }
    }

    /// lettre's transport for an SMTP URL: `smtps://` is TLS from the first
    /// byte; `?tls=required` is STARTTLS, and lettre refuses to go on (no
    /// credentials, no message) if the server does not offer it or the
    /// upgrade fails; neither is plain text. Certificates are checked against
    /// the Mozilla roots built in (webpki-roots), so no system store is needed.
    /// `ca`: PEM roots trusted besides the built-in ones (`MAIL_TLS_CA_FILE`).
    pub(super) fn smtp(
        url: &SmtpUrl,
        ca: Option<&[u8]>,
    ) -> Result<Self, lettre::transport::smtp::Error> {
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose())?
            .timeout(Some(SMTP_TIMEOUT));
        if let Some(pem) = ca {
            let parameters = TlsParameters::builder(url.host().to_owned())
                .add_root_certificate(Certificate::from_pem(pem)?)
                .build()?;
            builder = match url.tls() {
                SmtpTls::Implicit => builder.tls(Tls::Wrapper(parameters)),
                SmtpTls::StartTls => builder.tls(Tls::Required(parameters)),
                // Refused in the configuration: a CA for a plain connection is a mistake.
                SmtpTls::None => builder,
            };
        }
        Ok(Transport::Smtp(builder.build()))
    }

    /// Delivers one mail: accepted by the SMTP server, or written to its file.
    pub async fn send(&self, from: &Mailbox, mail: &Outgoing<'_>) -> Result<(), SendError> {
        let message = message(from, mail)?;
        match self {
            Transport::Smtp(smtp) => smtp.send(message).await.map(|_| ()).map_err(smtp_error),
            Transport::Folder(dir) => {
                let path = dir.join(format!("{}.eml", mail.id));
                let bytes = message.formatted();
                tokio::task::spawn_blocking(move || write_eml(&path, &bytes))
                    .await
                    .map_err(|_| SendError {
                        permanent: false,
                        reason: "file: the writing task stopped".into(),
                    })?
                    .map_err(|e| SendError {
                        permanent: false,
                        reason: format!("file: {}", e.kind()),
                    })
            }
        }
    }
}

/// The message: plain text, UTF-8, with a Message-ID stable across attempts.
fn message(from: &Mailbox, mail: &Outgoing<'_>) -> Result<Message, SendError> {
    let to: Mailbox = mail.to.parse().map_err(|_| SendError {
        permanent: true,
        reason: "the recipient's address is not valid".into(),
    })?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(mail.subject)
        .message_id(Some(format!("<{}@{}>", mail.id, from.email.domain())))
        .header(ContentType::TEXT_PLAIN)
        .body(mail.body.to_owned())
        .map_err(|e| SendError {
            permanent: true,
            // lettre's builder errors name a missing header, never the body.
            reason: format!("cannot build the message ({e})"),
        })
}

/// Writes a new `.eml` file, mode 0600. A file already there is the same
/// mail written by an earlier attempt (the name is the mail's id): done.
fn write_eml(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(dir) = path.parent() {
        crate::private_files::create_dir_all(dir)?;
    }
    // Written under a temporary name and renamed, so a reader never sees half a mail.
    let partial = path.with_extension("eml.partial");
    let _ = std::fs::remove_file(&partial);
    let mut file = crate::private_files::create_new_options().open(&partial)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    if path.exists() {
        return std::fs::remove_file(&partial);
    }
    std::fs::rename(&partial, path)
}

/// An SMTP failure as a class and a code: lettre's text of a server reply
/// could quote what the server saw, so only its kind and status are kept.
fn smtp_error(e: lettre::transport::smtp::Error) -> SendError {
    let code = e.status().map(|c| format!(" {c}")).unwrap_or_default();
    let class = if e.is_tls() {
        "tls"
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_permanent() {
        "permanent"
    } else if e.is_transient() {
        "transient"
    } else if e.is_client() {
        "client"
    } else if e.is_response() {
        "response"
    } else {
        "connection"
    };
    let detail = match class {
        // "client" is lettre refusing to go on: for STARTTLS that the server
        // does not offer, this is what tls=required promises.
        "client" => ": refused by this client (e.g. the server offers no STARTTLS)",
        "connection" => io_kind(&e).map_or("", |k| k),
        _ => "",
    };
    SendError {
        permanent: false,
        reason: format!("smtp {class}{code}{detail}"),
    }
}

/// The I/O error kind under an SMTP error, if it is one.
fn io_kind(e: &lettre::transport::smtp::Error) -> Option<&'static str> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(match io.kind() {
                std::io::ErrorKind::ConnectionRefused => ": connection refused",
                std::io::ErrorKind::ConnectionReset => ": connection reset",
                std::io::ErrorKind::ConnectionAborted => ": connection aborted",
                std::io::ErrorKind::TimedOut => ": timed out",
                std::io::ErrorKind::UnexpectedEof => ": connection closed",
                _ => ": i/o error",
            });
        }
        source = err.source();
    }
    None
}
