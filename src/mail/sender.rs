//! The background sender: claims due mails from the outbox, delivers them,
//! and records each attempt, retrying with backoff.
//!
//! One per instance. Several instances on one PostgreSQL database share the
//! outbox: a claim leases its rows (`FOR UPDATE SKIP LOCKED`), so each mail is
//! taken by one of them at a time. Woken at once when a mail is queued on this
//! instance; otherwise it polls, which is how it sees mails other instances
//! queued and retries that came due.

use std::sync::Arc;
use std::time::Duration;

use lettre::message::Mailbox;
use prometheus_client::metrics::counter::Counter;

use super::transport::{Outgoing, Transport};
use super::{MailConfig, domain_of};
use crate::clock::SharedClock;
use crate::store::{ClaimedMail, Store};

/// How often the outbox is looked at when nothing woke the sender.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Mails claimed at once.
const BATCH: i64 = 10;
/// How long a claim holds its mails. A batch takes at most `BATCH` times the
/// SMTP timeout (15 s): well inside, so no other instance takes a mail that is
/// being sent. A sender that dies leaves its mails to others after this.
const LEASE: Duration = Duration::from_secs(300);
/// The first retry waits this long; each next one twice as long, up to
/// [`BACKOFF_CAP`].
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(600);
/// A database error stops the sender for this long before it tries again.
const ERROR_PAUSE: Duration = Duration::from_secs(5);

/// Counters the sender keeps (registered in the metrics by [`crate::telemetry`]).
#[derive(Debug, Clone, Default)]
pub struct MailMetrics {
    /// Mails delivered.
    pub sent: Counter,
    /// Failed attempts that will be retried.
    pub retried: Counter,
    /// Mails given up.
    pub failed: Counter,
}

/// The sender of one instance.
#[derive(Debug)]
pub struct MailSender {
    store: Store,
    transport: Transport,
    from: Mailbox,
    max_attempts: i64,
    clock: SharedClock,
    metrics: MailMetrics,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    Sent,
    Retry,
    GaveUp,
}

impl MailSender {
    pub fn new(
        store: Store,
        transport: Transport,
        config: &MailConfig,
        clock: SharedClock,
        metrics: MailMetrics,
    ) -> Self {
        Self {
            store,
            transport,
            from: config.from.clone(),
            max_attempts: i64::from(config.max_attempts),
            clock,
            metrics,
        }
    }

    /// Delivers until the task is aborted (shutdown). An attempt cut short by
    /// the abort keeps its lease and is tried again when it expires.
    pub async fn run(self: Arc<Self>) {
        loop {
            match self.deliver_due().await {
                // A full batch: there may be more due right now.
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => self.store.wait_for_mail(POLL_EVERY).await,
                Err(e) => {
                    log::warn!("mail: cannot read the outbox: {e}");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Claims one batch of due mails and attempts each; returns how many.
    pub async fn deliver_due(&self) -> Result<usize, crate::store::StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let mails = self
            .store
            .claim_due_mails(now, lease_until, BATCH, self.max_attempts)
            .await?;
        let n = mails.len();
        for mail in mails {
            self.attempt(mail).await?;
        }
        Ok(n)
    }

    async fn attempt(&self, mail: ClaimedMail) -> Result<Attempt, crate::store::StoreError> {
        let outgoing = Outgoing {
            id: mail.id,
            to: &mail.recipient,
            subject: &mail.subject,
            body: &mail.body,
        };
        let result = self.transport.send(&self.from, &outgoing).await;
        let now = self.clock.now();
        let (id, domain, attempt) = (mail.id, domain_of(&mail.recipient), mail.attempts);
        match result {
            Ok(()) => {
                self.store.mark_mail_sent(id, now).await?;
                self.metrics.sent.inc();
                log::info!("mail: sent id={id} to=*@{domain} attempt={attempt}");
                Ok(Attempt::Sent)
            }
            Err(e) if e.permanent || attempt >= self.max_attempts => {
                self.store
                    .mark_mail_attempt_failed(id, &e.reason, None, now)
                    .await?;
                self.metrics.failed.inc();
                log::error!(
                    "mail: given up id={id} to=*@{domain} attempt={attempt}/{}: {e}",
                    self.max_attempts
                );
                Ok(Attempt::GaveUp)
            }
            Err(e) => {
                let wait = backoff(attempt);
                let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                self.store
                    .mark_mail_attempt_failed(id, &e.reason, Some(retry_at), now)
                    .await?;
                self.metrics.retried.inc();
                log::warn!(
                    "mail: attempt failed id={id} to=*@{domain} attempt={attempt}/{}, \
                     retry in {}s: {e}",
                    self.max_attempts,
                    wait.as_secs()
                );
                Ok(Attempt::Retry)
            }
        }
    }
}

/// The wait after the `attempt`-th failed attempt: 1 s, 2 s, 4 s … 10 min.
pub fn backoff(attempt: i64) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1).clamp(0, 20)).unwrap_or(20);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(2), Duration::from_secs(2));
        assert_eq!(backoff(5), Duration::from_secs(16));
        assert_eq!(backoff(10), Duration::from_secs(512));
        assert_eq!(backoff(11), BACKOFF_CAP);
        assert_eq!(backoff(1000), BACKOFF_CAP);
        assert_eq!(backoff(0), Duration::from_secs(1));
    }
}
