//! The `sessions` table: one row per login on one device, its refresh-token
//! generation, lifetimes and revocation.
//!
//! The rotation statement, whose best form differs by database, lives in each
//! backend's own file: [`sqlite::rotate_if_current`], [`postgres::rotate_if_current`].

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::users::RoleColumn;
use super::{Backend, Store, StoreError, on_pool, postgres, sqlite};

/// A session (one login on one device) and its owner's current role.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Session {
    pub id: Uuid,
    pub user_id: Uuid,
    /// How many times the refresh token rotated; the current token is for this generation.
    pub generation: i64,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: DateTime<Utc>,
    pub rotated_at: DateTime<Utc>,
    pub last_used_at: DateTime<Utc>,
    /// When the current refresh token expires if unused.
    pub idle_expires_at: DateTime<Utc>,
    /// The absolute end of the session.
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    /// Whether the owner's current email is verified (read with the role, so
    /// a refresh issues the claim from the database, like the role).
    pub email_verified: bool,
}

impl Session {
    /// Not revoked and not expired at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && !self.is_expired(now)
    }

    /// Past its idle expiry or its absolute lifetime at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.idle_expires_at || now >= self.expires_at
    }
}

/// What `create_session` needs.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The user's credential version read with the password hash that was
    /// checked: the session is only inserted if it is still current.
    pub credential_version: i64,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub now: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The columns of [`Session`], for a query over `sessions s JOIN users u`.
pub(super) const SESSION_COLUMNS: &str = "s.id, s.user_id, s.generation, s.device_name, \
     s.user_agent, s.created_at, s.rotated_at, s.last_used_at, s.idle_expires_at, s.expires_at, \
     s.revoked_at, u.role, (u.email_verified_at IS NOT NULL) AS email_verified";

impl Store {
    /// Starts a session at generation 0, if the user still exists, is not
    /// disabled and its credential version is still `new.credential_version`.
    /// `false` if not: the credential changed since it was checked.
    ///
    /// One `INSERT … SELECT`. On PostgreSQL `FOR SHARE` closes the race with
    /// a password change under READ COMMITTED: if the change has written the
    /// users row, this insert waits for it to commit and then re-reads the row
    /// (the version no longer matches: nothing is inserted); if this insert
    /// locked the row first, the change waits for it, and its revoke statement
    /// then sees and revokes this session. SQLite runs one writer at a time,
    /// which gives the same two outcomes with no lock clause.
    pub async fn create_session(&self, new: &NewSession) -> Result<bool, StoreError> {
        let lock = match self.backend {
            Backend::Postgres(_) => " FOR SHARE",
            Backend::Sqlite(_) => "",
        };
        let sql = format!(
            "INSERT INTO sessions (id, user_id, generation, device_name, user_agent, created_at, \
             rotated_at, last_used_at, idle_expires_at, expires_at) \
             SELECT $1, u.id, 0, $2, $3, $4, $4, $4, $5, $6 FROM users u \
             WHERE u.id = $7 AND u.credential_version = $8 AND u.disabled_at IS NULL{lock}"
        );
        let rows = on_pool!(self, pool => sqlx::query(&sql)
            .bind(new.id).bind(new.device_name.as_deref()).bind(new.user_agent.as_deref())
            .bind(new.now).bind(new.idle_expires_at).bind(new.expires_at)
            .bind(new.user_id).bind(new.credential_version)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(rows == 1)
    }

    /// A session by id, whatever its state.
    pub async fn find_session(&self, id: Uuid) -> Result<Option<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
        );
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, Session>(&sql).bind(id).fetch_optional(pool).await)?,
        )
    }

    /// The one statement that spends a refresh token: if the session is at
    /// generation `from`, active and not revoked, move it to `from + 1` and
    /// return it (with its owner's current role); `None` if any condition
    /// failed. The new idle expiry is `min(refresh_expiry, expires_at)`.
    ///
    /// The condition is checked by the database in the write itself, so of
    /// several racing callers (on one instance or many) exactly one rotates.
    pub async fn rotate_if_current(
        &self,
        id: Uuid,
        from: i64,
        now: DateTime<Utc>,
        refresh_expiry: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        match &self.backend {
            Backend::Sqlite(pool) => {
                sqlite::rotate_if_current(pool, id, from, now, refresh_expiry).await
            }
            Backend::Postgres(pool) => {
                postgres::rotate_if_current(pool, id, from, now, refresh_expiry).await
            }
        }
    }

    /// Revokes one session; returns its user, or `None` if it was revoked
    /// already (or does not exist).
    pub async fn revoke_session(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Option<Uuid>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                   RETURNING user_id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(now).bind(id).fetch_optional(pool).await)?)
    }

    /// Revokes one session if it is an active session of this user; `false` otherwise.
    pub async fn revoke_user_session(
        &self,
        user_id: Uuid,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND user_id = $3 \
                   AND revoked_at IS NULL AND idle_expires_at > $1 AND expires_at > $1";
        let rows = on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(id).bind(user_id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(rows == 1)
    }

    /// Revokes every session of a user. Returns the sessions revoked.
    pub async fn revoke_all_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
                   RETURNING id";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(now).bind(user_id).fetch_all(pool).await)?)
    }

    /// Revokes the user's least recently used active sessions beyond the
    /// `cap` most recent, never `keep` (the session just opened). Returns the
    /// sessions revoked.
    pub async fn revoke_sessions_beyond(
        &self,
        user_id: Uuid,
        keep: Uuid,
        cap: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        // `keep` counts as one of the cap; LIMIT with the largest value because
        // SQLite needs a LIMIT before OFFSET and PostgreSQL refuses LIMIT -1.
        let sql = "UPDATE sessions SET revoked_at = $1 WHERE id IN ( \
                       SELECT id FROM sessions WHERE user_id = $2 AND id <> $3 \
                       AND revoked_at IS NULL AND idle_expires_at > $1 AND expires_at > $1 \
                       ORDER BY last_used_at DESC, created_at DESC, id \
                       LIMIT $4 OFFSET $5) \
                   AND revoked_at IS NULL RETURNING id";
        let offset = i64::from(cap.saturating_sub(1));
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(now).bind(user_id).bind(keep).bind(i64::MAX).bind(offset)
            .fetch_all(pool).await)?)
    }

    /// The user's active sessions, newest first.
    pub async fn list_active_sessions(
        &self,
        user_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Session>, StoreError> {
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.user_id = $1 AND s.revoked_at IS NULL AND s.idle_expires_at > $2 \
             AND s.expires_at > $2 ORDER BY s.created_at DESC, s.id"
        );
        Ok(on_pool!(self, pool => sqlx::query_as::<_, Session>(&sql)
            .bind(user_id).bind(now).fetch_all(pool).await)?)
    }

    /// Sessions revoked at or after `since`, with their user and when: what a starting instance
    /// loads into its revocation set so a restart resurrects no access token.
    pub async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, Uuid, DateTime<Utc>)>, StoreError> {
        let sql = "SELECT id, user_id, revoked_at FROM sessions WHERE revoked_at >= $1";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, (Uuid, Uuid, DateTime<Utc>)>(sql)
            .bind(since).fetch_all(pool).await)?,
        )
    }

    /// Deletes at most `limit` sessions that ended (revoked or expired) before
    /// `ended_before`. Bounded so one housekeeping tick never holds the database long.
    pub async fn delete_ended_sessions(
        &self,
        ended_before: DateTime<Utc>,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let sql = "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions \
                   WHERE revoked_at < $1 OR idle_expires_at < $1 OR expires_at < $1 LIMIT $2)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(ended_before).bind(limit).execute(pool).await.map(|r| r.rows_affected()))?)
    }
}
