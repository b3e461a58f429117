//! The `mail_grants` table and the account changes a grant allows: what a
//! verification, reset or email-change mail stands for, stored as MACs only
//! (`crate::auth::mail_grants`), and the transactions that spend one.
//!
//! Every change that sends a mail writes the mail in its own transaction
//! (`enqueue_mail!`), so the change and the mail commit or roll back
//! together. Every spend is a conditional `UPDATE … WHERE ended_at IS NULL AND
//! expires_at > now` inside the transaction that applies the change: of two
//! racing spends exactly one changes anything.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::outbox::{NewMail, enqueue_mail};
use super::users::{USER_COLUMNS, User};
use super::{Backend, Store, StoreError, on_constraint, on_pool};

/// Locks user `$user`'s row: `Result<u64, sqlx::Error>`, the rows found
/// (0 for no such live account). A write, so it takes the row lock on
/// PostgreSQL and the write lock on SQLite. Every transaction here that
/// touches both a user and its grants takes this (or another write to the
/// users row) FIRST, so two of them never hold the locks in opposite orders
/// (a PostgreSQL deadlock, answered 500).
macro_rules! lock_user {
    ($executor:expr, $user:expr) => {{
        sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1 AND deleted_at IS NULL")
            .bind($user)
            .execute($executor)
            .await
            .map(|r| r.rows_affected())
    }};
}

/// Inserts a grant for `$user` on `$executor`; `Result<(), sqlx::Error>`.
macro_rules! insert_grant {
    ($executor:expr, $user:expr, $grant:expr, $now:expr) => {{
        let grant: &NewGrant = $grant;
        sqlx::query(
            "INSERT INTO mail_grants (id, user_id, purpose, email, new_email, token_mac, \
             code_mac, attempts, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 0, $8, $9)",
        )
        .bind(grant.id)
        .bind($user)
        .bind(grant.purpose)
        .bind(&grant.email)
        .bind(grant.new_email.as_deref())
        .bind(&grant.token_mac)
        .bind(&grant.code_mac)
        .bind($now)
        .bind(grant.expires_at)
        .execute($executor)
        .await
        .map(|_| ())
    }};
}

/// Spends grant `$id` of `$user` if it is live: `Result<bool, sqlx::Error>`.
/// The condition is in the write, so of racing spends exactly one wins.
macro_rules! spend_grant {
    ($executor:expr, $id:expr, $user:expr, $now:expr) => {{
        sqlx::query(
            "UPDATE mail_grants SET ended_at = $1 \
             WHERE id = $2 AND user_id = $3 AND ended_at IS NULL AND expires_at > $1",
        )
        .bind($now)
        .bind($id)
        .bind($user)
        .execute($executor)
        .await
        .map(|r| r.rows_affected() == 1)
    }};
}

/// A grant to store (the service drew the token and code and MACed them).
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub id: Uuid,
    pub purpose: &'static str,
    /// Where the mail goes.
    pub email: String,
    /// Email change: the address to switch to.
    pub new_email: Option<String>,
    pub token_mac: Vec<u8>,
    pub code_mac: Vec<u8>,
    pub expires_at: DateTime<Utc>,
}

/// A live grant, as read back.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Grant {
    pub id: Uuid,
    pub user_id: Uuid,
    pub purpose: String,
    pub email: String,
    pub new_email: Option<String>,
    pub code_mac: Vec<u8>,
    pub attempts: i64,
    pub expires_at: DateTime<Utc>,
}

const GRANT_COLUMNS: &str =
    "id, user_id, purpose, email, new_email, code_mac, attempts, expires_at";

/// How many code attempts a grant and a user may take (see
/// [`Store::take_code_attempt`]).
#[derive(Debug, Clone, Copy)]
pub struct CodeBudget {
    /// Attempts on one grant (the last wrong one ends it).
    pub per_grant: i64,
    /// Attempts of one user and purpose over grants created since `since`.
    pub per_user: i64,
    pub since: DateTime<Utc>,
}

/// At most `limit` grants (mails) of one purpose to one address since `since`.
#[derive(Debug, Clone, Copy)]
pub struct MailCap {
    pub limit: i64,
    pub since: DateTime<Utc>,
}

/// What [`Store::issue_grant`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantIssue {
    /// Stored, older grants of the same purpose ended, mails queued.
    Issued,
    /// A decoy for an address with no account: stored, no mail.
    Decoy,
    /// The address had its mails for the hour: nothing written.
    Capped,
    /// No such (live) account: nothing written.
    NoAccount,
}

/// What a deleted account's email becomes: unique, and never a normalised
/// email (no `@`), so it can be neither signed in with nor registered.
fn tombstone_email(id: Uuid) -> String {
    format!("deleted:{id}")
}

impl Store {
    /// Inserts a user and, in the same transaction, its verification grant
    /// and mail; [`StoreError::EmailTaken`] if the email exists.
    pub async fn create_user_with_grant(
        &self,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
        grant: &NewGrant,
        mail: &NewMail,
    ) -> Result<User, StoreError> {
        let id = Uuid::new_v4();
        let insert = format!(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, 'user', $4, $4) RETURNING {USER_COLUMNS}"
        );
        // An async block, so that `?` lands in the map_err below.
        let user = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            let user = sqlx::query_as::<_, User>(&insert)
                .bind(id).bind(email).bind(password_hash).bind(now)
                .fetch_one(&mut *tx).await?;
            insert_grant!(&mut *tx, id, grant, now)?;
            enqueue_mail!(&mut *tx, mail, now)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(user)
        }.await)
        .map_err(|e| on_constraint(e, "users_email_key", "users.email", StoreError::EmailTaken))?;
        self.mail_queued(1);
        Ok(user)
    }

    /// Stores a grant for `user_id` and queues `mails`, in one transaction
    /// that first locks the user row (so two racing requests count the cap
    /// one after the other), ends the user's older live grants of the same
    /// purpose (a newer mail supersedes the older), and refuses when the
    /// grant's address already had `cap.limit` grants of the same purpose
    /// since `cap.since`.
    ///
    /// `user_id` `None` stores a decoy: the same statements for an address
    /// with no account (a row no spend matches, no mail), so that
    /// `/password/forgot` costs the same whether or not the address has one.
    pub async fn issue_grant(
        &self,
        user_id: Option<Uuid>,
        grant: &NewGrant,
        mails: &[NewMail],
        cap: MailCap,
        now: DateTime<Utc>,
    ) -> Result<GrantIssue, StoreError> {
        // Per address AND purpose: a reset asked by anyone, or an email
        // change to the address asked by another account, leaves its
        // verification mails (and the reverse) alone.
        let count = "SELECT COUNT(*) FROM mail_grants \
                     WHERE email = $1 AND purpose = $2 AND created_at > $3";
        let supersede = "UPDATE mail_grants SET ended_at = $1 \
                         WHERE user_id = $2 AND purpose = $3 AND ended_at IS NULL";
        let outcome = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The user row first (`lock_user!`), before the count is read.
            let found = lock_user!(&mut *tx, user_id.unwrap_or_else(Uuid::nil))?;
            if found != 1 && user_id.is_some() {
                return Ok(GrantIssue::NoAccount);
            }
            let sent: i64 = sqlx::query_scalar(count)
                .bind(&grant.email).bind(grant.purpose).bind(cap.since)
                .fetch_one(&mut *tx).await?;
            if sent >= cap.limit {
                return Ok(GrantIssue::Capped);
            }
            sqlx::query(supersede)
                .bind(now).bind(user_id).bind(grant.purpose).execute(&mut *tx).await?;
            insert_grant!(&mut *tx, user_id, grant, now)?;
            if user_id.is_none() {
                tx.commit().await?;
                return Ok(GrantIssue::Decoy);
            }
            for mail in mails {
                enqueue_mail!(&mut *tx, mail, now)?;
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(GrantIssue::Issued)
        })?;
        if outcome == GrantIssue::Issued {
            self.mail_queued(mails.len() as u64);
        }
        Ok(outcome)
    }

    /// The live grant of `purpose` whose token MAC is one of `macs`.
    pub async fn find_grant_by_token(
        &self,
        purpose: &str,
        macs: &[Vec<u8>],
        now: DateTime<Utc>,
    ) -> Result<Option<Grant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM mail_grants WHERE token_mac = $1 AND purpose = $2 \
             AND user_id IS NOT NULL AND ended_at IS NULL AND expires_at > $3"
        );
        for mac in macs {
            let found = on_pool!(self, pool => sqlx::query_as::<_, Grant>(&sql)
                .bind(mac).bind(purpose).bind(now).fetch_optional(pool).await)?;
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The user's live grant of `purpose` (at most one: a newer one ends the older).
    pub async fn live_grant(
        &self,
        user_id: Uuid,
        purpose: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Grant>, StoreError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM mail_grants WHERE user_id = $1 AND purpose = $2 \
             AND ended_at IS NULL AND expires_at > $3 ORDER BY created_at DESC LIMIT 1"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, Grant>(&sql)
            .bind(user_id).bind(purpose).bind(now).fetch_optional(pool).await)?)
    }

    /// Takes one code attempt on live grant `grant_id` of `user_id` before
    /// the code is compared: `false` (nothing written) when the grant is no
    /// longer live, had `budget.per_grant` attempts, or the user's attempts on
    /// grants of `purpose` created since `budget.since` (summed over every
    /// grant, live or ended) reached `budget.per_user`. A right code gives
    /// its attempt back ([`Store::refund_code_attempt`]), so the sum counts
    /// wrong codes (and codes being compared right now).
    ///
    /// One transaction that first locks the user row: racing guesses for one
    /// user take their attempts one after the other, each reading the sum the
    /// previous one left, so no number of parallel guesses compares more
    /// codes than the budget. (On PostgreSQL a lone `UPDATE … WHERE (SELECT
    /// SUM …)` would not do: the sum is read from the statement's snapshot.)
    pub async fn take_code_attempt(
        &self,
        grant_id: Uuid,
        user_id: Uuid,
        purpose: &str,
        budget: CodeBudget,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let take = "UPDATE mail_grants SET attempts = attempts + 1 \
                    WHERE id = $1 AND user_id = $2 AND ended_at IS NULL AND expires_at > $3 \
                    AND attempts < $4 \
                    AND (SELECT COALESCE(SUM(attempts), 0) FROM mail_grants \
                         WHERE user_id = $2 AND purpose = $5 AND created_at > $6) < $7";
        let taken = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            lock_user!(&mut *tx, user_id)?;
            let rows = sqlx::query(take)
                .bind(grant_id).bind(user_id).bind(now).bind(budget.per_grant)
                .bind(purpose).bind(budget.since).bind(budget.per_user)
                .execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows == 1)
        })?;
        Ok(taken)
    }

    /// Gives back the attempt a right code took (see [`Store::take_code_attempt`]).
    pub async fn refund_code_attempt(&self, grant_id: Uuid) -> Result<(), StoreError> {
        let sql = "UPDATE mail_grants SET attempts = attempts - 1 WHERE id = $1 AND attempts > 0";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(grant_id).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// After a wrong code: ends the grant if it had its `per_grant` attempts
    /// (its link dies with it).
    pub async fn end_guessed_grant(
        &self,
        grant_id: Uuid,
        per_grant: i64,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "UPDATE mail_grants SET ended_at = $1 \
                   WHERE id = $2 AND attempts >= $3 AND ended_at IS NULL";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(grant_id).bind(per_grant).execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// The code attempts counted against `user_id` for `purpose` on grants
    /// created since `since` (what [`Store::take_code_attempt`] sums).
    pub async fn code_attempts(
        &self,
        user_id: Uuid,
        purpose: &str,
        since: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        // SUM of a BIGINT is a NUMERIC on PostgreSQL.
        let sql = "SELECT CAST(COALESCE(SUM(attempts), 0) AS BIGINT) FROM mail_grants \
                   WHERE user_id = $1 AND purpose = $2 AND created_at > $3";
        let sum: i64 = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(user_id).bind(purpose).bind(since).fetch_one(pool).await)?;
        Ok(sum)
    }

    /// Spends a verification grant and marks the email verified, if it is
    /// still the account's email. `false` if the grant was spent, ended or
    /// expired meanwhile, or the email changed: nothing written.
    pub async fn verify_email(
        &self,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let verify = "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $1), \
                      updated_at = $1 WHERE id = $2 AND email = $3 AND deleted_at IS NULL";
        let done = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The user row before the grant (`lock_user!`).
            lock_user!(&mut *tx, grant.user_id)?;
            if !spend_grant!(&mut *tx, grant.id, grant.user_id, now)? {
                return Ok(false);
            }
            let rows = sqlx::query(verify)
                .bind(now).bind(grant.user_id).bind(&grant.email)
                .execute(&mut *tx).await?.rows_affected();
            if rows != 1 {
                return Ok(false);
            }
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        })?;
        Ok(done)
    }

    /// Spends a reset grant, stores the new hash, bumps the credential
    /// version (a login that checked the old password opens no session) and
    /// revokes every session of the user, in one transaction. The mail proved
    /// the address, so the email counts as verified if it still is the
    /// account's. `None` if the grant was spent, ended or expired meanwhile.
    pub async fn reset_password(
        &self,
        grant: &Grant,
        new_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let update = "UPDATE users SET password_hash = $1, updated_at = $2, \
                      credential_version = credential_version + 1, \
                      email_verified_at = CASE WHEN email = $3 \
                          THEN COALESCE(email_verified_at, $2) ELSE email_verified_at END \
                      WHERE id = $4 AND deleted_at IS NULL";
        let revoke = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                      RETURNING id";
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            // The users row first (see `change_password`): a racing login
            // either waits for this and finds the version moved, or committed
            // its session before, which the revoke below then sees.
            let rows = sqlx::query(update)
                .bind(new_hash).bind(now).bind(&grant.email).bind(grant.user_id)
                .execute(&mut *tx).await?.rows_affected();
            if rows != 1 || !spend_grant!(&mut *tx, grant.id, grant.user_id, now)? {
                return Ok(None);
            }
            let ids: Vec<Uuid> = sqlx::query_scalar(revoke)
                .bind(now).bind(grant.user_id).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(ids))
        })?;
        Ok(revoked)
    }

    /// Spends an email-change grant of `user_id`: the account's email becomes
    /// the grant's new address, verified; every other live grant of the user
    /// ends (a reset mailed to the old address must not outlive the change);
    /// `notice` is queued. `Ok(false)` if the grant was spent, ended or
    /// expired meanwhile; [`StoreError::EmailTaken`] if the new address was
    /// registered since the change was asked (nothing is written).
    pub async fn change_email(
        &self,
        grant: &Grant,
        notice: &NewMail,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let update = "UPDATE users SET email = $1, email_verified_at = $2, updated_at = $2 \
                      WHERE id = $3 AND deleted_at IS NULL";
        let end_others = "UPDATE mail_grants SET ended_at = $1 \
                          WHERE user_id = $2 AND ended_at IS NULL";
        let Some(new_email) = grant.new_email.as_deref() else {
            return Ok(false);
        };
        // An async block, so that `?` lands in the map_err below.
        let done = on_pool!(self, pool => async {
            let mut tx = pool.begin().await?;
            // The user row before the grant (`lock_user!`).
            lock_user!(&mut *tx, grant.user_id)?;
            if !spend_grant!(&mut *tx, grant.id, grant.user_id, now)? {
                return Ok(false);
            }
            let rows = sqlx::query(update)
                .bind(new_email).bind(now).bind(grant.user_id)
                .execute(&mut *tx).await?.rows_affected();
            if rows != 1 {
                return Ok(false);
            }
            sqlx::query(end_others).bind(now).bind(grant.user_id).execute(&mut *tx).await?;
            enqueue_mail!(&mut *tx, notice, now)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(true)
        }.await)
        .map_err(|e| on_constraint(e, "users_email_key", "users.email", StoreError::EmailTaken))?;
        if done {
            self.mail_queued(1);
        }
        Ok(done)
    }

    /// Deletes an account, if its credential version is still `seen` (the
    /// one read with the hash its password was checked against): the row
    /// stays as a tombstone with its email, hash and personal data erased
    /// (the email is free at once), the credential version moves, every
    /// session is revoked and loses its device name and user agent, every
    /// grant is deleted, and `notice` is queued to the old address. Returns
    /// the sessions revoked, or `None` if the credential changed meanwhile.
    pub async fn delete_account(
        &self,
        user_id: Uuid,
        seen: i64,
        notice: &NewMail,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let update = "UPDATE users SET email = $1, password_hash = '', email_verified_at = NULL, \
                      deleted_at = $2, disabled_at = COALESCE(disabled_at, $2), updated_at = $2, \
                      credential_version = credential_version + 1 \
                      WHERE id = $3 AND credential_version = $4 AND deleted_at IS NULL";
        let revoke = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                      RETURNING id";
        // Revoked rows stay (housekeeping deletes them after the retention):
        // they are what keeps the access tokens refused across a restart.
        let erase = "UPDATE sessions SET device_name = NULL, user_agent = NULL WHERE user_id = $1";
        let grants = "DELETE FROM mail_grants WHERE user_id = $1";
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(update)
                .bind(tombstone_email(user_id)).bind(now).bind(user_id).bind(seen)
                .execute(&mut *tx).await?.rows_affected();
            if rows != 1 {
                return Ok(None);
            }
            let ids: Vec<Uuid> = sqlx::query_scalar(revoke)
                .bind(now).bind(user_id).fetch_all(&mut *tx).await?;
            sqlx::query(erase).bind(user_id).execute(&mut *tx).await?;
            sqlx::query(grants).bind(user_id).execute(&mut *tx).await?;
            sqlx::query(super::outbox::DELETE_MAILS_TO).bind(&notice.to).execute(&mut *tx).await?;
            enqueue_mail!(&mut *tx, notice, now)?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(ids))
        })?;
        if revoked.is_some() {
            self.mail_queued(1);
        }
        Ok(revoked)
    }

    /// Disables an account: sets `disabled_at`, bumps the credential version
    /// (a racing login opens no session) and revokes every session, in one
    /// transaction. `None` if there is no such live account; an account
    /// disabled already revokes whatever is left (nothing, normally).
    pub async fn disable_user(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let update = "UPDATE users SET disabled_at = COALESCE(disabled_at, $1), updated_at = $1, \
                      credential_version = credential_version + 1 \
                      WHERE id = $2 AND deleted_at IS NULL";
        let revoke = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                      RETURNING id";
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let rows = sqlx::query(update).bind(now).bind(user_id)
                .execute(&mut *tx).await?.rows_affected();
            if rows != 1 {
                return Ok(None);
            }
            let ids: Vec<Uuid> = sqlx::query_scalar(revoke)
                .bind(now).bind(user_id).fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(ids))
        })?;
        Ok(revoked)
    }

    /// Enables a disabled account; `false` if there is no such live account.
    pub async fn enable_user(&self, user_id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET disabled_at = NULL, updated_at = $1 \
                   WHERE id = $2 AND deleted_at IS NULL";
        let rows = on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(rows == 1)
    }

    /// How many active sessions the user has.
    pub async fn count_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let sql = "SELECT COUNT(*) FROM sessions WHERE user_id = $1 AND revoked_at IS NULL \
                   AND idle_expires_at > $2 AND expires_at > $2";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(user_id).bind(now).fetch_one(pool).await)?)
    }

    /// Deletes at most `limit` grants that ended or expired before `before`,
    /// keeping those with code attempts until `guessed_before` (their
    /// attempts count against the user's code budget until then).
    pub async fn delete_old_grants(
        &self,
        before: DateTime<Utc>,
        guessed_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let sql = "DELETE FROM mail_grants WHERE id IN (SELECT id FROM mail_grants \
                   WHERE created_at < $1 AND (ended_at IS NOT NULL OR expires_at < $1) \
                   AND (attempts = 0 OR created_at < $2) LIMIT $3)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(before).bind(guessed_before).bind(limit)
            .execute(pool).await.map(|r| r.rows_affected()))?)
    }
}
