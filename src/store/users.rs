//! The `users` table: accounts, their password hash, role, and the credential
//! version that every change of the credential bumps.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Backend, Store, StoreError, on_constraint, on_pool};
use crate::auth::Role;

/// A registered user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub created_at: DateTime<Utc>,
    /// Bumped by every change of the credential (password change, reset,
    /// disable, deletion). A login opens its session only under the version it
    /// read with the hash it checked.
    pub credential_version: i64,
    pub disabled_at: Option<DateTime<Utc>>,
    /// When the current email was verified; `None` while it is not.
    pub email_verified_at: Option<DateTime<Utc>>,
}

impl User {
    /// Whether the current email was verified (the `email_verified` claim).
    pub fn email_verified(&self) -> bool {
        self.email_verified_at.is_some()
    }
}

/// The `role` column, parsed. A value the code does not know is an error, not a guess.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleColumn(pub Role);

impl TryFrom<String> for RoleColumn {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map(RoleColumn)
    }
}

pub(super) const USER_COLUMNS: &str = "id, email, password_hash, role, created_at, credential_version, disabled_at, email_verified_at";

impl Store {
    /// Inserts a user; [`StoreError::EmailTaken`] if the email exists.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let id = Uuid::new_v4();
        let sql = format!(
            "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
             VALUES ($1, $2, $3, 'user', $4, $4) RETURNING {USER_COLUMNS}"
        );
        on_pool!(self, pool => sqlx::query_as::<_, User>(&sql)
            .bind(id).bind(email).bind(password_hash).bind(now)
            .fetch_one(pool).await)
        .map_err(|e| on_constraint(e, "users_email_key", "users.email", StoreError::EmailTaken))
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM users WHERE email = $1 AND deleted_at IS NULL");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, User>(&sql).bind(email).fetch_optional(pool).await)?,
        )
    }

    pub async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1 AND deleted_at IS NULL");
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, User>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    /// Sets a user's role by email; `false` if no such user.
    pub async fn set_role(
        &self,
        email: &str,
        role: Role,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE users SET role = $1, updated_at = $2 WHERE email = $3";
        let done = on_pool!(self, pool => sqlx::query(sql)
            .bind(role.as_str()).bind(now).bind(email)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done == 1)
    }

    /// Stores a new password hash, bumps the credential version and revokes
    /// every session of the user but `keep`, in one transaction, if the
    /// credential version is still `seen` (the one read with the hash the
    /// current password was checked against). Returns the sessions revoked,
    /// or `None` if the credential changed meanwhile: two changes checked
    /// against the same old password cannot both win, so an attacker who
    /// knows it cannot overwrite the owner's change.
    ///
    /// The users row is written first: a login that checked the old password
    /// either waits on that row and then finds the version changed (its
    /// session is never inserted), or committed its session before, and then
    /// this transaction's revoke sees and revokes it.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        seen: i64,
        new_hash: &str,
        keep: Option<Uuid>,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<Uuid>>, StoreError> {
        let update = "UPDATE users SET password_hash = $1, updated_at = $2, \
                      credential_version = credential_version + 1 \
                      WHERE id = $3 AND credential_version = $4";
        let revoke = "UPDATE sessions SET revoked_at = $1 \
                      WHERE user_id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR id <> $3) \
                      RETURNING id";
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(update)
                .bind(new_hash).bind(now).bind(user_id).bind(seen)
                .execute(&mut *tx).await?.rows_affected();
            if changed != 1 {
                // Dropping the transaction rolls it back; nothing was written.
                return Ok(None);
            }
            let ids: Vec<Uuid> = sqlx::query_scalar(revoke)
                .bind(now).bind(user_id).bind(keep)
                .fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(Some(ids))
        })?;
        Ok(revoked)
    }
}

/// What [`Store::normalize_emails`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EmailNormalization {
    /// Accounts whose stored email was rewritten to its normalised form.
    pub rewritten: usize,
    /// Accounts left as they were because another account already has the
    /// normalised form: (this account, the account holding it).
    pub collisions: Vec<(Uuid, Uuid)>,
    /// Accounts whose email the current rules refuse outright, left as they were.
    pub invalid: Vec<Uuid>,
}

impl Store {
    /// Rewrites every stored email to `normalize(email)` where they differ.
    /// Never fails on data: an email whose normalised form belongs to another
    /// account, or that the rules refuse, is left as it was and reported, so
    /// an operator can settle it (the accounts can still be reached by id).
    pub async fn normalize_emails(
        &self,
        normalize: impl Fn(&str) -> Option<String>,
    ) -> Result<EmailNormalization, StoreError> {
        let mut report = EmailNormalization::default();
        // Oldest first: of two accounts that now normalise alike, the older
        // keeps the address, whatever the table's physical order. Deleted
        // accounts hold no address (their tombstone is not an email).
        let users: Vec<(Uuid, String)> = on_pool!(self, pool =>
            sqlx::query_as("SELECT id, email FROM users WHERE deleted_at IS NULL ORDER BY created_at, id").fetch_all(pool).await)?;
        for (id, email) in users {
            let Some(normal) = normalize(&email) else {
                report.invalid.push(id);
                continue;
            };
            if normal == email {
                continue;
            }
            let update = "UPDATE users SET email = $1 WHERE id = $2";
            let result = on_pool!(self, pool =>
                sqlx::query(update).bind(&normal).bind(id).execute(pool).await.map(|_| ()))
            .map_err(|e| {
                on_constraint(e, "users_email_key", "users.email", StoreError::EmailTaken)
            });
            match result {
                Ok(_) => report.rewritten += 1,
                Err(StoreError::EmailTaken) => {
                    let holder = self.find_user_by_email(&normal).await?.map_or(id, |u| u.id);
                    report.collisions.push((id, holder));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(report)
    }

    /// Whether the data migration `name` has completed.
    pub async fn data_migration_done(&self, name: &str) -> Result<bool, StoreError> {
        let sql = "SELECT COUNT(*) FROM data_migrations WHERE name = $1";
        let n: i64 =
            on_pool!(self, pool => sqlx::query_scalar(sql).bind(name).fetch_one(pool).await)?;
        Ok(n > 0)
    }

    /// Records that the data migration `name` completed (idempotent).
    pub async fn record_data_migration(
        &self,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let sql = "INSERT INTO data_migrations (name, completed_at) VALUES ($1, $2) \
                   ON CONFLICT (name) DO NOTHING";
        on_pool!(self, pool => sqlx::query(sql).bind(name).bind(now).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
