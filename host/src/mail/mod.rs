//! Outgoing mail: over SMTP (`smtp_url`, lettre) or, with no SMTP server
//! configured, as `.eml` files in `<data_dir>/outbox/` for an operator (or
//! a test) to read. Mail goes out in the background: a request never waits
//! on a mail server, and a failure is logged and counted
//! (`pingvas_mail_failed_total`), never lost silently. The outbox is written
//! before the request ends.

pub mod templates;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use prometheus_client::metrics::counter::Counter;
use secrecy::ExposeSecret;

use crate::config::Config;

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(15);

enum Transport {
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    Outbox(AsyncFileTransport<Tokio1Executor>, PathBuf),
}

/// One mail: a plain-text body and its HTML twin.
#[derive(Debug, Clone)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: String,
}

pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    sent: Counter,
    failed: Counter,
}

impl Mailer {
    pub fn from_config(config: &Config, sent: Counter, failed: Counter) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .mail_from
            .parse()
            .with_context(|| format!("mail_from: {} is no mailbox", config.mail_from))?;
        let transport = match &config.smtp_url {
            Some(url) => Transport::Smtp(
                AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret())
                    .context("smtp_url: expected smtp://, smtps:// (or smtp://…?tls=required)")?
                    .timeout(Some(SMTP_TIMEOUT))
                    .build(),
            ),
            None => {
                let dir = config.data_dir.join("outbox");
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("creating the outbox {}", dir.display()))?;
                Transport::Outbox(AsyncFileTransport::new(&dir), dir)
            }
        };
        Ok(Self {
            transport,
            from,
            sent,
            failed,
        })
    }

    /// Sends a mail and waits for the server (or the file) to take it.
    pub async fn send(&self, mail: &Mail) -> anyhow::Result<()> {
        let message = Message::builder()
            .from(self.from.clone())
            .to(mail.to.parse().context("recipient")?)
            .subject(&mail.subject)
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .context("building the message")?;
        match &self.transport {
            Transport::Smtp(t) => {
                t.send(message).await.context("SMTP")?;
            }
            Transport::Outbox(t, dir) => {
                let id = t.send(message).await.context("writing to the outbox")?;
                tracing::info!(to = %mail.to, file = %dir.join(format!("{id}.eml")).display(), "mail written to the outbox (no smtp_url)");
            }
        }
        Ok(())
    }

    /// Sends a mail; a failure is logged and counted, not returned.
    pub async fn deliver(&self, mail: &Mail) {
        match self.send(mail).await {
            Ok(()) => {
                self.sent.inc();
            }
            Err(e) => {
                self.failed.inc();
                tracing::error!(to = %mail.to, subject = %mail.subject, error = format!("{e:#}"), "mail not sent");
            }
        }
    }

    /// `deliver` without making the caller wait on a mail server; a file
    /// in the outbox is written before this returns.
    pub async fn dispatch(self: &Arc<Self>, mail: Mail) {
        if matches!(self.transport, Transport::Outbox(..)) {
            return self.deliver(&mail).await;
        }
        let mailer = self.clone();
        tokio::spawn(async move { mailer.deliver(&mail).await });
    }
}
