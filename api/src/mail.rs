//! Outgoing mail of the account pages (email verification, password reset). Three transports, chosen once per
//! process (docs/identity.md "Accounts"):
//! * SMTP (`JHE_SMTP_URL`, e.g. `smtp://user:pass@mail.example.org:587?tls=required`, or `smtps://…:465`),
//!   over rustls;
//! * a file outbox (`JHE_MAIL_DIR`): each message is one `.eml` file, as Django's file-based email backend;
//! * neither set: the message is written to the server's `mail/` outbox (under its data directory), where a
//!   developer reads it; the log says only that a message was written and where, never its body (the links in
//!   it are secrets).
//!
//! Sending never holds up an answer: handlers queue the message with [`Mailer::send_later`], so a slow or broken
//! mail server changes neither the response nor its timing (which would tell which emails have accounts).

use lettre::message::header::ContentTransferEncoding;
use lettre::message::header::ContentType;
use lettre::message::{Body, Mailbox, Message};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The sender when `JHE_MAIL_FROM` is unset (Django's DEFAULT_FROM_EMAIL, with the site's name).
fn default_from() -> Mailbox {
    Mailbox::new(
        Some("JupyterHealth Exchange".to_owned()),
        // a constant address that passes the checks new() would make
        lettre::Address::new_dangerous("webmaster", "localhost"),
    )
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid mail address {address:?}: {reason}")]
    Address { address: String, reason: String },
    #[error("building the message: {0}")]
    Build(#[from] lettre::error::Error),
    #[error("SMTP: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    #[error("writing {path}: {source}")]
    Outbox { path: PathBuf, source: std::io::Error },
}

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(PathBuf),
    /// no transport configured: keep each message in the outbox when there is one, and say so in the log (never
    /// what it says: its links are credentials)
    Log(Option<PathBuf>),
}

/// Sends the account pages' mail. Cheap to clone.
#[derive(Clone)]
pub struct Mailer {
    transport: Arc<Transport>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the SMTP URL may hold a password: say only which transport this is
        let transport = match self.transport.as_ref() {
            Transport::Smtp(_) => "smtp".to_owned(),
            Transport::Outbox(dir) => format!("outbox {}", dir.display()),
            Transport::Log(dir) => format!("log (outbox {:?})", dir),
        };
        f.debug_struct("Mailer").field("transport", &transport).field("from", &self.from.to_string()).finish()
    }
}

impl Mailer {
    /// Sends nothing and logs only that a message was dropped: the default of [`crate::AppState::new`].
    pub fn log_only() -> Self {
        Mailer { transport: Arc::new(Transport::Log(None)), from: default_from() }
    }

    /// Writes every message to `dir` as an `.eml` file (created when missing).
    pub fn outbox(dir: impl Into<PathBuf>) -> Self {
        Mailer { transport: Arc::new(Transport::Outbox(dir.into())), from: default_from() }
    }

    /// Sends through the SMTP server of `url` (lettre's connection URL: `smtp://`, `smtps://`, `?tls=required`).
    pub fn smtp(url: &str) -> Result<Self, MailError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)?.build();
        Ok(Mailer { transport: Arc::new(Transport::Smtp(transport)), from: default_from() })
    }

    /// The mailer the environment asks for: `JHE_SMTP_URL`, else `JHE_MAIL_DIR`, else logging plus the outbox
    /// `<data_dir>/mail` when the server has a data directory. `JHE_MAIL_FROM` sets the sender.
    pub fn from_env(data_dir: Option<&Path>) -> anyhow::Result<Self> {
        let non_empty = |name: &str| std::env::var(name).ok().filter(|value| !value.trim().is_empty());
        let mut mailer = if let Some(url) = non_empty("JHE_SMTP_URL") {
            Mailer::smtp(url.trim()).map_err(|error| anyhow::anyhow!("JHE_SMTP_URL: {error}"))?
        } else if let Some(dir) = non_empty("JHE_MAIL_DIR") {
            Mailer::outbox(dir)
        } else {
            let outbox = data_dir.map(|dir| dir.join("mail"));
            tracing::warn!(
                outbox = ?outbox,
                "no mail transport configured (JHE_SMTP_URL or JHE_MAIL_DIR): account mail is written to the \
                 outbox instead of sent"
            );
            Mailer { transport: Arc::new(Transport::Log(outbox)), from: default_from() }
        };
        if let Some(from) = non_empty("JHE_MAIL_FROM") {
            mailer.from = from.parse().map_err(|error| anyhow::anyhow!("JHE_MAIL_FROM {from:?}: {error}"))?;
        }
        Ok(mailer)
    }

    /// Sends a plain-text message now.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let recipient: Mailbox = to.parse().map_err(|error: lettre::address::AddressError| MailError::Address {
            address: to.to_owned(),
            reason: error.to_string(),
        })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(plain_body(body))?;
        match self.transport.as_ref() {
            Transport::Smtp(smtp) => {
                smtp.send(message).await?;
            }
            Transport::Outbox(dir) => {
                write_to_outbox(dir, &message).await?;
            }
            Transport::Log(Some(dir)) => {
                let path = write_to_outbox(dir, &message).await?;
                tracing::info!(subject, path = %path.display(), "account mail written to the outbox (no mail transport)");
            }
            Transport::Log(None) => tracing::warn!(subject, "account mail dropped: no mail transport and no outbox"),
        }
        Ok(())
    }

    /// Sends a message in the background; a failure is logged (the recipient is not told, the caller does not
    /// wait).
    pub fn send_later(&self, to: String, subject: String, body: String) {
        let mailer = self.clone();
        tokio::spawn(async move {
            if let Err(error) = mailer.send(&to, &subject, &body).await {
                tracing::error!(%error, subject, "sending account mail failed");
            }
        });
    }
}

/// ASCII text as 7bit, so links stay whole and readable in any mail source (lettre would pick quoted-printable
/// for lines over 76 characters, which long links are); anything else in the encoding lettre picks.
fn plain_body(text: &str) -> Body {
    Body::new_with_encoding(text.to_owned(), ContentTransferEncoding::SevenBit)
        .unwrap_or_else(|_| Body::new(text.to_owned()))
}

/// One `.eml` file per message, named so that a directory listing sorts by time; written under a temporary name
/// and renamed, so a reader never sees half a message. Returns the file's path.
async fn write_to_outbox(dir: &Path, message: &Message) -> Result<PathBuf, MailError> {
    let outbox_error = |path: &Path, source| MailError::Outbox { path: path.to_path_buf(), source };
    tokio::fs::create_dir_all(dir).await.map_err(|source| outbox_error(dir, source))?;
    let name = format!("{}-{}", chrono::Utc::now().format("%Y%m%d-%H%M%S%.6f"), jhe_catalog::random_token(8));
    let partial = dir.join(format!(".{name}.tmp"));
    let path = dir.join(format!("{name}.eml"));
    tokio::fs::write(&partial, message.formatted()).await.map_err(|source| outbox_error(&partial, source))?;
    tokio::fs::rename(&partial, &path).await.map_err(|source| outbox_error(&path, source))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn outbox_holds_one_eml_file_per_message() {
        let dir = std::env::temp_dir().join(format!("jhe-mail-test-{}", jhe_catalog::random_token(8)));
        let mailer = Mailer::outbox(&dir);
        mailer.send("a@example.org", "Hello", "Open http://x/y/ now").await.unwrap();
        let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1);
        assert!(files[0].extension().is_some_and(|e| e == "eml"));
        let text = std::fs::read_to_string(&files[0]).unwrap();
        assert!(text.contains("To: a@example.org") && text.contains("Subject: Hello"), "{text}");
        assert!(text.contains("http://x/y/"), "{text}");
        assert!(mailer.send("not an address", "x", "y").await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
