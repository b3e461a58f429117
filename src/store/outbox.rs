//! The `mail_outbox` table: every mail the service sends (DESIGN.md, "Mail").
//!
//! # Queuing a mail (the interface other store methods use)
//!
//! A mail is written in the same transaction as the change that causes it, so
//! the change and its mail commit or roll back together. Inside a store method
//! whose body [`on_pool!`](super::on_pool) expands per backend:
//!
//! ```ignore
//! use super::outbox::{NewMail, enqueue_mail};
//!
//! let queued = on_pool!(self, pool => {
//!     let mut tx = pool.begin().await?;
//!     // ... the change itself, on &mut *tx ...
//!     enqueue_mail!(&mut *tx, &mail, now)?;   // Result<(), sqlx::Error>
//!     tx.commit().await?;
//!     Ok::<_, sqlx::Error>(())
//! })?;
//! self.mail_queued(1); // after the commit: wakes this instance's sender
//! ```
//!
//! [`enqueue_mail!`] is one `INSERT` ([`INSERT_MAIL`]) that both backends
//! accept, on any executor (`&mut *tx`, or a pool). [`Store::mail_queued`]
//! must follow the commit (never before: the sender could look before the row
//! is visible; forgetting it only delays the mail to the sender's next poll)
//! and counts the mails for the metrics. Callers without a transaction use
//! [`Store::enqueue_mail`], which does both.
//!
//! # The body at rest
//!
//! A body carries live codes and tokens, which the database otherwise holds
//! only as MACs (DESIGN.md: a database copy cannot reset passwords). So the
//! outbox never holds one readable: [`NewMail::body`] is a
//! [`SealedBody`], which only `crate::auth::mail_seal::seal` makes (the mail
//! texts in `crate::accounts::mails` seal what they write), and every
//! `INSERT` goes through [`INSERT_MAIL`]. The sender (`src/mail/sender.rs`)
//! is the one place that opens a body, just before the transport; one it
//! cannot open is given up. The statements that record a mail as sent or
//! given up also blank its body: nothing of it stays, not even sealed. The
//! subject stays (it names the app and the purpose, no secret) for an
//! operator answering "did my mail go out?". Bodies are never logged, and
//! `last_error` holds only the transport's error or the class of an
//! unreadable body, never the body.
//!
//! # Reading
//!
//! [`Store::outbox_for`] lists the mails queued for one address, oldest first,
//! whatever their state, bodies as stored (sealed or blank): tests open them
//! with the app's keys; an operator reads states and errors.
//!
//! # Delivering (the sender, `src/mail`)
//!
//! [`Store::claim_due_mails`] takes due mails with a lease (one statement:
//! `FOR UPDATE SKIP LOCKED` on PostgreSQL so instances share the work without
//! taking the same row, a conditional `UPDATE` on SQLite); then
//! [`Store::mark_mail_sent`] or [`Store::mark_mail_attempt_failed`];
//! [`Store::give_up_abandoned_mails`] settles last attempts nobody recorded.
//! A sender that dies mid-send leaves its lease to expire, and the mail is
//! tried again: delivery is at least once, and exactly once unless a sender
//! dies between the SMTP server accepting a mail and recording it.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Backend, Store, StoreError, on_pool};
use crate::auth::mail_seal::SealedBody;

/// A mail to queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMail {
    /// The recipient's address.
    pub to: String,
    pub subject: String,
    /// Plain text, sealed for `to` (`crate::auth::mail_seal`): the outbox
    /// never holds a body in clear.
    pub body: SealedBody,
}

/// A row of the outbox, in whatever state it is.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QueuedMail {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    /// Sealed (`crate::auth::mail_seal::open` reads it) while the mail is
    /// pending; empty once it is sent or given up.
    pub body: String,
    pub created_at: DateTime<Utc>,
    /// Delivery attempts begun so far.
    pub attempts: i64,
    pub next_attempt_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// Set when the sender gave up (after `MAIL_MAX_ATTEMPTS`).
    pub failed_at: Option<DateTime<Utc>>,
    /// The latest attempt's error (the transport's, never the body).
    pub last_error: Option<String>,
}

const MAIL_COLUMNS: &str = "id, recipient, subject, body, created_at, attempts, \
                            next_attempt_at, sent_at, failed_at, last_error";

/// Queues one mail, due at once: binds id, recipient, subject, body, now.
pub(super) const INSERT_MAIL: &str = "INSERT INTO mail_outbox \
     (id, recipient, subject, body, created_at, attempts, next_attempt_at) \
     VALUES ($1, $2, $3, $4, $5, 0, $5)";

/// Drops every mail to `$1`, whatever its state: an account deleted keeps no
/// trace of its address, pending mails included (its deletion notice is
/// queued after this, in the same transaction).
pub(super) const DELETE_MAILS_TO: &str = "DELETE FROM mail_outbox WHERE recipient = $1";

/// Inserts `$mail` (a `&NewMail`) into the outbox on `$executor` (`&mut *tx`
/// inside a transaction, or a pool), due at `$now`. Evaluates to
/// `Result<(), sqlx::Error>`; call [`Store::mail_queued`] after the commit.
macro_rules! enqueue_mail {
    ($executor:expr, $mail:expr, $now:expr) => {{
        let mail: &$crate::store::NewMail = $mail;
        sqlx::query($crate::store::outbox::INSERT_MAIL)
            .bind(uuid::Uuid::new_v4())
            .bind(&mail.to)
            .bind(&mail.subject)
            .bind(mail.body.as_str())
            .bind($now)
            .execute($executor)
            .await
            .map(|_| ())
    }};
}
// Used by the store methods of the flows that send mail.
#[allow(unused_imports)]
pub(super) use enqueue_mail;

/// What a store shares with the mail sender of its instance: a wake-up when
/// a mail was queued here, and how many were.
#[derive(Debug, Default)]
pub(super) struct OutboxSignal {
    wake: tokio::sync::Notify,
    /// Read by the metrics (`auth_mails_queued_total`).
    queued: Counter,
}

/// A mail taken by [`Store::claim_due_mails`], to deliver before its lease ends.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedMail {
    pub id: Uuid,
    pub recipient: String,
    pub subject: String,
    /// Sealed: the sender opens it just before handing it to the transport.
    pub body: String,
    /// Attempts begun, this one included.
    pub attempts: i64,
}

impl Store {
    /// Queues a mail on its own (callers with no transaction of their own).
    pub async fn enqueue_mail(&self, mail: &NewMail, now: DateTime<Utc>) -> Result<(), StoreError> {
        on_pool!(self, pool => enqueue_mail!(pool, mail, now))?;
        self.mail_queued(1);
        Ok(())
    }

    /// Tells this instance's sender that `n` mails were committed to the
    /// outbox, and counts them. Call after the commit that queued them.
    pub fn mail_queued(&self, n: u64) {
        self.outbox.queued.inc_by(n);
        self.wake_mail_sender();
    }

    /// Makes this instance's sender look for due mails now rather than at its
    /// next poll (after [`Store::mail_queued`]; tests, after moving the clock).
    pub fn wake_mail_sender(&self) {
        // A stored permit: a sender busy right now looks again when done.
        self.outbox.wake.notify_one();
    }

    /// The count of mails queued through this store since start (registered
    /// in the metrics).
    pub fn mails_queued_counter(&self) -> Counter {
        self.outbox.queued.clone()
    }

    /// Waits until a mail is queued on this instance, or `timeout` passes.
    pub async fn wait_for_mail(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.outbox.wake.notified()).await;
    }

    /// Every mail queued for `recipient`, oldest first.
    pub async fn outbox_for(&self, recipient: &str) -> Result<Vec<QueuedMail>, StoreError> {
        let sql = format!(
            "SELECT {MAIL_COLUMNS} FROM mail_outbox WHERE recipient = $1 ORDER BY created_at, id"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, QueuedMail>(&sql)
            .bind(recipient).fetch_all(pool).await)?)
    }

    /// Takes up to `limit` due mails (pending, `next_attempt_at` passed, no
    /// live lease, fewer than `max_attempts` attempts) and leases them until
    /// `lease_until`, counting the attempt. No other sender takes them before
    /// the lease ends.
    pub async fn claim_due_mails(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: i64,
        max_attempts: i64,
    ) -> Result<Vec<ClaimedMail>, StoreError> {
        let lock = match self.backend {
            Backend::Sqlite(_) => "",
            // Rows another instance is claiming are skipped, not waited for.
            Backend::Postgres(_) => super::postgres::CLAIM_LOCK,
        };
        let claim = format!(
            "UPDATE mail_outbox SET claimed_until = $1, attempts = attempts + 1 \
             WHERE id IN (SELECT id FROM mail_outbox \
                WHERE sent_at IS NULL AND failed_at IS NULL AND next_attempt_at <= $2 \
                AND (claimed_until IS NULL OR claimed_until <= $2) AND attempts < $3 \
                ORDER BY next_attempt_at LIMIT $4 {lock}) \
             AND (claimed_until IS NULL OR claimed_until <= $2) \
             RETURNING id, recipient, subject, body, attempts"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, ClaimedMail>(&claim)
            .bind(lease_until).bind(now).bind(max_attempts).bind(limit)
            .fetch_all(pool).await)?,
        )
    }

    /// Marks failed the mails whose last allowed attempt was leased by a
    /// sender that stopped (crash, shutdown) before recording it: no claim
    /// takes them any more, and they must not stay pending forever. Returns
    /// how many.
    pub async fn give_up_abandoned_mails(
        &self,
        now: DateTime<Utc>,
        max_attempts: i64,
    ) -> Result<u64, StoreError> {
        let sql = "UPDATE mail_outbox SET failed_at = $1, claimed_until = NULL, body = '', \
                   last_error = 'the sender stopped during the last attempt' \
                   WHERE sent_at IS NULL AND failed_at IS NULL AND attempts >= $2 \
                   AND claimed_until IS NOT NULL AND claimed_until <= $1";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(max_attempts).execute(pool).await.map(|r| r.rows_affected()))?)
    }

    /// Records a delivered mail, and blanks its body: nothing of it is
    /// needed any more, so nothing of it is kept, not even sealed.
    pub async fn mark_mail_sent(&self, id: Uuid, now: DateTime<Utc>) -> Result<(), StoreError> {
        let sql = "UPDATE mail_outbox SET sent_at = $1, claimed_until = NULL, last_error = NULL, \
                   body = '' WHERE id = $2";
        on_pool!(self, pool => sqlx::query(sql).bind(now).bind(id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Records a failed attempt: tried again at `retry_at`, or, when `None`,
    /// given up (failed at `now`, and the body blanked, as when sent).
    /// `error` must not contain the body.
    pub async fn mark_mail_attempt_failed(
        &self,
        id: Uuid,
        error: &str,
        retry_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE mail_outbox SET claimed_until = NULL, last_error = $1, \
                   next_attempt_at = COALESCE($2, next_attempt_at), failed_at = $3, \
                   body = CASE WHEN $3 IS NULL THEN body ELSE '' END \
                   WHERE id = $4";
        let failed_at = retry_at.is_none().then_some(now);
        on_pool!(self, pool => sqlx::query(sql)
            .bind(error).bind(retry_at).bind(failed_at).bind(id)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Deletes at most `limit` mails sent or given up before `before`;
    /// returns how many.
    pub async fn delete_finished_mails(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let sql = "DELETE FROM mail_outbox WHERE id IN (SELECT id FROM mail_outbox \
                   WHERE sent_at < $1 UNION ALL SELECT id FROM mail_outbox WHERE failed_at < $1 \
                   LIMIT $2)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(before).bind(limit).execute(pool).await.map(|r| r.rows_affected()))?)
    }
}

/// The signal of a newly connected store (its clones share it).
pub(super) fn new_signal() -> Arc<OutboxSignal> {
    Arc::new(OutboxSignal::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::PoolSettings;

    impl Store {
        /// What a flow's store method does: a change and its mail in one
        /// transaction, committed or not.
        async fn queue_in_transaction(
            &self,
            mail: &NewMail,
            commit: bool,
        ) -> Result<(), StoreError> {
            let now = Utc::now();
            on_pool!(self, pool => {
                let mut tx = pool.begin().await?;
                sqlx::query("INSERT INTO data_migrations (name, completed_at) VALUES ($1, $2)")
                    .bind(&mail.subject).bind(now).execute(&mut *tx).await?;
                enqueue_mail!(&mut *tx, mail, now)?;
                if commit {
                    tx.commit().await?;
                }
                Ok::<_, sqlx::Error>(())
            })?;
            if commit {
                self.mail_queued(1);
            }
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_mail_commits_or_rolls_back_with_the_change_that_caused_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let settings = PoolSettings {
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        };
        let store = Store::connect(&url.into(), &settings).await.unwrap();
        let keys = crate::auth::Keyring::new(&secrecy::SecretString::from("k".repeat(32)), &[]);
        let mail = |subject: &str| NewMail {
            to: "a@example.com".into(),
            subject: subject.into(),
            body: crate::auth::mail_seal::seal(&keys, "a@example.com", "code 123456"),
        };
        store
            .queue_in_transaction(&mail("rolled back"), false)
            .await
            .unwrap();
        store
            .queue_in_transaction(&mail("committed"), true)
            .await
            .unwrap();
        let rows = store.outbox_for("a@example.com").await.unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].subject, "committed");
        assert_eq!(rows[0].attempts, 0);
        assert!(!store.data_migration_done("rolled back").await.unwrap());
        assert!(store.data_migration_done("committed").await.unwrap());
        assert_eq!(store.mails_queued_counter().get(), 1);
    }
}
