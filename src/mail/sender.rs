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
use crate::auth::AccessTokens;
use crate::auth::mail_seal;
use crate::clock::SharedClock;
use crate::store::{ClaimedMail, Store};

/// How often the outbox is looked at when nothing woke the sender.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// How long a claim holds its mail. One attempt takes a few SMTP timeouts
/// (15 s each) at most: well inside, so no other instance takes a mail that
/// is being sent. A sender that stops mid-attempt leaves its mail to others
/// after this. One mail per claim, so a stopped sender holds back one mail,
/// not a batch (a claim is one short statement; SMTP is the slow part).
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
    /// Their keys open the sealed bodies (`crate::auth::mail_seal`).
    tokens: Arc<AccessTokens>,
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
        tokens: Arc<AccessTokens>,
        config: &MailConfig,
        clock: SharedClock,
        metrics: MailMetrics,
    ) -> Self {
        Self {
            store,
            transport,
            tokens,
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
            match self.deliver_next().await {
                // There may be more due right now.
                Ok(true) => continue,
                Ok(false) => self.store.wait_for_mail(POLL_EVERY).await,
                Err(e) => {
                    log::warn!("mail: cannot read the outbox: {e}");
                    tokio::time::sleep(ERROR_PAUSE).await;
                }
            }
        }
    }

    /// Claims one due mail and attempts it; `false` when none was due (then
    /// settles abandoned last attempts, a write worth doing only when idle).
    pub async fn deliver_next(&self) -> Result<bool, crate::store::StoreError> {
        let now = self.clock.now();
        let lease_until = now + chrono::Duration::from_std(LEASE).unwrap_or_default();
        let claimed = self
            .store
            .claim_due_mails(now, lease_until, 1, self.max_attempts)
            .await?;
        let Some(mail) = claimed.into_iter().next() else {
            let given_up = self
                .store
                .give_up_abandoned_mails(now, self.max_attempts)
                .await?;
            if given_up > 0 {
                self.metrics.failed.inc_by(given_up);
                log::error!(
                    "mail: given up {given_up} mail(s) whose last attempt was cut short \
                     (the sender stopped before recording it)"
                );
            }
            return Ok(false);
        };
        self.attempt(mail).await?;
        Ok(true)
    }

    async fn attempt(&self, mail: ClaimedMail) -> Result<Attempt, crate::store::StoreError> {
        let (id, domain, attempt) = (mail.id, domain_of(&mail.recipient), mail.attempts);
        // The one place a body is opened. One that cannot be (its key rotated
        // out, the row altered) never will be: given up at once.
        let body = match mail_seal::open(self.tokens.keys(), &mail.recipient, &mail.body) {
            Ok(body) => secrecy::zeroize::Zeroizing::new(body),
            Err(e) => {
                let reason = format!("unreadable: {e} (JWT_SECRET / JWT_PREVIOUS_SECRETS)");
                self.store
                    .mark_mail_attempt_failed(id, &reason, None, self.clock.now())
                    .await?;
                self.metrics.failed.inc();
                log::error!("mail: given up id={id} to=*@{domain}: {reason}");
                return Ok(Attempt::GaveUp);
            }
        };
        let outgoing = Outgoing {
            id: mail.id,
            to: &mail.recipient,
            subject: &mail.subject,
            body: &body,
        };
        let result = self.transport.send(&self.from, &outgoing).await;
        let now = self.clock.now();
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
