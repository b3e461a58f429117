//! Persistence of users and sessions, on SQLite (the embedded default) or
//! PostgreSQL (for several instances), chosen at start from `DATABASE_URL`.
//!
//! One interface, two backends. The SQL is written once: both databases accept
//! `$n` placeholders, `RETURNING` and the same types through sqlx (UUID and
//! time columns map to native types on PostgreSQL and to blob/text on SQLite),
//! so each method body is expanded for each pool by [`on_pool!`] and checked by
//! the test suite against both. What does differ (connection setup,
//! migrations, error codes) lives in [`sqlite`] and [`postgres`].
//!
//! Writes that must agree are single conditional statements or transactions:
//! never a read followed by an unconditional write. The store knows nothing of
//! HTTP; it returns rows and [`StoreError`].

mod postgres;
mod sqlite;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::auth::Role;

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email is registered already (the unique index said so).
    #[error("email already registered")]
    EmailTaken,
    /// The database cannot be reached or is overloaded right now; retrying later may work.
    #[error("database unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// Anything else: a bug or a broken database.
    #[error("database error")]
    Other(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        if let sqlx::Error::Database(db) = &err
            && db.is_unique_violation()
        {
            return StoreError::EmailTaken;
        }
        if is_unavailable(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Other(err)
        }
    }
}

/// Errors that mean "the database is not answering", as opposed to "the query is wrong".
fn is_unavailable(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let is_sqlite = db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some();
            db.code().is_some_and(|code| {
                if is_sqlite {
                    sqlite::is_busy_code(&code)
                } else {
                    postgres::is_unavailable_code(&code)
                }
            })
        }
        _ => false,
    }
}

/// A registered user.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct User {
    pub id: Uuid,
    pub email: String,
    pub password_hash: String,
    #[sqlx(try_from = "String")]
    pub role: RoleColumn,
    pub created_at: DateTime<Utc>,
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
}

impl Session {
    /// Not revoked and not expired at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && now < self.idle_expires_at && now < self.expires_at
    }
}

/// What `create_session` needs.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub id: Uuid,
    pub user_id: Uuid,
    pub device_name: Option<String>,
    pub user_agent: Option<String>,
    pub now: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A live subscription to the revocations of every instance.
#[derive(Debug)]
pub struct RevocationFeed {
    listener: sqlx::postgres::PgListener,
}

impl RevocationFeed {
    /// The next revocation (session id, when). `Ok(None)` when the connection
    /// was lost: notifications may have been missed, so the caller should
    /// subscribe again and reload recent revocations.
    pub async fn next(&mut self) -> Result<Option<(Uuid, DateTime<Utc>)>, StoreError> {
        loop {
            match self.listener.try_recv().await? {
                None => return Ok(None),
                Some(notification) => match postgres::parse_revocation(notification.payload()) {
                    Some(revocation) => return Ok(Some(revocation)),
                    None => log::warn!("ignoring a malformed revocation notification"),
                },
            }
        }
    }
}

/// Pool limits.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    pub max_connections: u32,
    pub acquire_timeout: std::time::Duration,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// The store: a connection pool to one of the two databases.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
}

/// Expands `$body` once per backend, with `$pool` bound to that backend's pool.
/// The body is the same source; the compiler checks it against each driver.
macro_rules! on_pool {
    ($self:expr, $pool:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($pool) => $body,
            Backend::Postgres($pool) => $body,
        }
    };
}

const SESSION_COLUMNS: &str = "s.id, s.user_id, s.generation, s.device_name, s.user_agent, \
     s.created_at, s.rotated_at, s.last_used_at, s.idle_expires_at, s.expires_at, s.revoked_at, u.role";

impl Store {
    /// Connects to `DATABASE_URL` and applies the migrations of that backend.
    pub async fn connect(url: &SecretString, pool: &PoolSettings) -> Result<Self, StoreError> {
        let url = url.expose_secret();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::connect(url, pool).await?)
        } else {
            Backend::Postgres(postgres::connect(url, pool).await?)
        };
        let store = Self { backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations. Safe when several instances start at once:
    /// sqlx takes a database lock (an advisory lock on PostgreSQL) while migrating.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.backend {
            Backend::Sqlite(pool) => sqlite::MIGRATOR.run(pool).await,
            Backend::Postgres(pool) => postgres::MIGRATOR.run(pool).await,
        };
        result.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => StoreError::from(e),
            other => StoreError::Other(sqlx::Error::Migrate(Box::new(other))),
        })
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Subscribes to revocations made by any instance (PostgreSQL only: SQLite
    /// is one process, which records its own). `Ok(None)` on SQLite.
    pub async fn subscribe_revocations(&self) -> Result<Option<RevocationFeed>, StoreError> {
        let Backend::Postgres(pool) = &self.backend else {
            return Ok(None);
        };
        let mut listener = sqlx::postgres::PgListener::connect_with(pool).await?;
        listener.listen(postgres::REVOCATION_CHANNEL).await?;
        Ok(Some(RevocationFeed { listener }))
    }

    /// One round trip: does the database answer?
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, pool => sqlx::query("SELECT 1").execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Connections open, and of those idle (for the metrics).
    pub fn pool_stats(&self) -> (u32, usize) {
        on_pool!(self, pool => (pool.size(), pool.num_idle()))
    }

    /// Whether [`Store::close`] was called.
    pub fn is_closed(&self) -> bool {
        on_pool!(self, pool => pool.is_closed())
    }

    /// Closes every connection (graceful shutdown).
    pub async fn close(&self) {
        on_pool!(self, pool => pool.close().await);
    }

    // ----- users -----

    /// Inserts a user; [`StoreError::EmailTaken`] if the email exists.
    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<User, StoreError> {
        let id = Uuid::new_v4();
        let sql = "INSERT INTO users (id, email, password_hash, role, created_at, updated_at) \
                   VALUES ($1, $2, $3, 'user', $4, $4) \
                   RETURNING id, email, password_hash, role, created_at";
        let user = on_pool!(self, pool => sqlx::query_as::<_, User>(sql)
            .bind(id).bind(email).bind(password_hash).bind(now)
            .fetch_one(pool).await)?;
        Ok(user)
    }

    pub async fn find_user_by_email(&self, email: &str) -> Result<Option<User>, StoreError> {
        let sql = "SELECT id, email, password_hash, role, created_at FROM users WHERE email = $1";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, User>(sql).bind(email).fetch_optional(pool).await)?,
        )
    }

    pub async fn find_user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        let sql = "SELECT id, email, password_hash, role, created_at FROM users WHERE id = $1";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, User>(sql).bind(id).fetch_optional(pool).await)?,
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

    /// Stores a new password hash and revokes every other session of the user,
    /// in one transaction. Returns the sessions revoked.
    pub async fn change_password(
        &self,
        user_id: Uuid,
        new_hash: &str,
        keep_session: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<Uuid>, StoreError> {
        let update = "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3";
        let revoke = "UPDATE sessions SET revoked_at = $1 \
                      WHERE user_id = $2 AND revoked_at IS NULL AND id <> $3 RETURNING id";
        let revoked = on_pool!(self, pool => {
            let mut tx = pool.begin().await?;
            sqlx::query(update).bind(new_hash).bind(now).bind(user_id).execute(&mut *tx).await?;
            let ids: Vec<Uuid> = sqlx::query_scalar(revoke)
                .bind(now).bind(user_id).bind(keep_session)
                .fetch_all(&mut *tx).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(ids)
        })?;
        Ok(revoked)
    }

    // ----- sessions -----

    /// Starts a session at generation 0.
    pub async fn create_session(&self, new: &NewSession) -> Result<(), StoreError> {
        let sql = "INSERT INTO sessions (id, user_id, generation, device_name, user_agent, created_at, \
                   rotated_at, last_used_at, idle_expires_at, expires_at) \
                   VALUES ($1, $2, 0, $3, $4, $5, $5, $5, $6, $7)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(new.id).bind(new.user_id).bind(new.device_name.as_deref())
            .bind(new.user_agent.as_deref()).bind(new.now).bind(new.idle_expires_at)
            .bind(new.expires_at)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
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

    /// Moves the session from generation `from` to `from + 1`, if it is still at
    /// `from` and not revoked. Exactly one of several racing callers gets `true`
    /// (on one instance or many): the condition is checked by the database in
    /// the same statement that writes.
    pub async fn advance_session(
        &self,
        id: Uuid,
        from: i64,
        now: DateTime<Utc>,
        idle_expires_at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let sql = "UPDATE sessions SET generation = generation + 1, rotated_at = $1, \
                   last_used_at = $1, idle_expires_at = $2 \
                   WHERE id = $3 AND generation = $4 AND revoked_at IS NULL";
        let rows = on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(idle_expires_at).bind(id).bind(from)
            .execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(rows == 1)
    }

    /// The common case of a refresh: if the session is at generation `from`,
    /// active and not revoked, move it to `from + 1` and return it (with its
    /// owner's current role). `None` if any condition failed; the caller then
    /// reads the session to find out why (a retry within the grace, a replay,
    /// an expired session...). The new idle expiry is
    /// `min(refresh_expiry, expires_at)`.
    ///
    /// Either way one conditional write decides, so racing refreshes rotate
    /// exactly once. How it is done differs, measured with
    /// `benches/refresh_load.rs` (64 chains, 2 cores):
    /// - PostgreSQL: one `UPDATE … RETURNING` round trip instead of a read and
    ///   a write: 4,900 → 7,800 rotations/s;
    /// - SQLite: a read on any connection, then a short conditional `UPDATE`:
    ///   writes are serialised, so the less work inside the write lock the
    ///   better (8,000 rotations/s, against 6,500 with `UPDATE … RETURNING`).
    pub async fn rotate_if_current(
        &self,
        id: Uuid,
        from: i64,
        now: DateTime<Utc>,
        refresh_expiry: DateTime<Utc>,
    ) -> Result<Option<Session>, StoreError> {
        match &self.backend {
            Backend::Postgres(pool) => {
                let sql = "UPDATE sessions SET generation = generation + 1, rotated_at = $1, \
                           last_used_at = $1, idle_expires_at = LEAST($2, expires_at) \
                           WHERE id = $3 AND generation = $4 AND revoked_at IS NULL \
                           AND idle_expires_at > $1 AND expires_at > $1 \
                           RETURNING id, user_id, generation, device_name, user_agent, created_at, \
                           rotated_at, last_used_at, idle_expires_at, expires_at, revoked_at, \
                           (SELECT u.role FROM users u WHERE u.id = sessions.user_id) AS role";
                Ok(sqlx::query_as::<_, Session>(sql)
                    .bind(now)
                    .bind(refresh_expiry)
                    .bind(id)
                    .bind(from)
                    .fetch_optional(pool)
                    .await?)
            }
            Backend::Sqlite(_) => {
                let Some(mut session) = self.find_session(id).await? else {
                    return Ok(None);
                };
                if session.generation != from || !session.is_active(now) {
                    return Ok(None);
                }
                let idle_expires_at = refresh_expiry.min(session.expires_at);
                if !self.advance_session(id, from, now, idle_expires_at).await? {
                    return Ok(None);
                }
                session.generation = from + 1;
                session.rotated_at = now;
                session.last_used_at = now;
                session.idle_expires_at = idle_expires_at;
                Ok(Some(session))
            }
        }
    }

    /// Revokes one session; `false` if it was revoked already (or does not exist).
    pub async fn revoke_session(&self, id: Uuid, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let sql = "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL";
        let rows = on_pool!(self, pool => sqlx::query(sql)
            .bind(now).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(rows == 1)
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

    /// Sessions revoked at or after `since`, with when: what a starting instance
    /// loads into its revocation set so a restart resurrects no access token.
    pub async fn revoked_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(Uuid, DateTime<Utc>)>, StoreError> {
        let sql = "SELECT id, revoked_at FROM sessions WHERE revoked_at >= $1";
        Ok(
            on_pool!(self, pool => sqlx::query_as::<_, (Uuid, DateTime<Utc>)>(sql)
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
