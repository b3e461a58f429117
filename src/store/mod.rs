//! Persistence of users and sessions, on SQLite (the embedded default) or
//! PostgreSQL (for several instances), chosen at start from `DATABASE_URL`.
//!
//! One interface, two backends, split by table: [`users`] and [`sessions`]
//! hold the statements both databases share (both accept `$n` placeholders,
//! `RETURNING` and the same types through sqlx), each method body expanded for
//! each pool by [`on_pool!`] and checked by the test suite against both. What
//! differs lives in [`sqlite`] and [`postgres`]: connection setup, error codes,
//! and the two statements whose best form differs (rotating a refresh token,
//! opening a session under a credential version), each stated once there.
//!
//! Writes that must agree are single conditional statements or transactions:
//! never a read followed by an unconditional write. The store knows nothing of
//! HTTP; it returns rows and [`StoreError`].
//!
//! Mails go through the outbox ([`outbox`]): a store method that causes a mail
//! writes it in its own transaction with `enqueue_mail!`.

mod grants;
mod outbox;
mod postgres;
mod rate_limits;
mod sessions;
mod sqlite;
mod users;

use secrecy::{ExposeSecret, SecretString};

pub use grants::{CodeBudget, Grant, GrantIssue, MailCap, NewGrant};
pub use outbox::{ClaimedMail, NewMail, QueuedMail};
pub use rate_limits::{Charged, RateLimitTable};
pub use sessions::{NewSession, Session};
pub use users::{EmailNormalization, RoleColumn, User};

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The email is registered already (the users' email index said so).
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
    /// Only "unavailable" or "other": which constraint a violation means is
    /// decided where the statement is written (see [`on_constraint`]), so a
    /// unique violation elsewhere is never mistaken for a taken email.
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            StoreError::Unavailable(err)
        } else {
            StoreError::Other(err)
        }
    }
}

/// Maps a violation of the named unique index to `mapped`, anything else as
/// [`From`] does. PostgreSQL names the index; SQLite names the columns
/// (`UNIQUE constraint failed: users.email`), hence both.
fn on_constraint(
    err: sqlx::Error,
    index: &str,
    sqlite_columns: &str,
    mapped: StoreError,
) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
        && (db.constraint() == Some(index) || db.message().ends_with(sqlite_columns))
    {
        return mapped;
    }
    StoreError::from(err)
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

/// A live subscription to the revocations of every instance.
#[derive(Debug)]
pub struct RevocationFeed {
    listener: sqlx::postgres::PgListener,
}

impl RevocationFeed {
    /// The next revocation (session id, user id, when). `Ok(None)` when the connection
    /// was lost: notifications may have been missed, so the caller should
    /// subscribe again and reload recent revocations.
    pub async fn next(
        &mut self,
    ) -> Result<Option<(uuid::Uuid, uuid::Uuid, chrono::DateTime<chrono::Utc>)>, StoreError> {
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
    /// Shared by every clone: wakes this instance's mail sender.
    outbox: std::sync::Arc<outbox::OutboxSignal>,
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
use on_pool;

impl Store {
    /// Connects to `DATABASE_URL` and applies the migrations of that backend.
    pub async fn connect(url: &SecretString, pool: &PoolSettings) -> Result<Self, StoreError> {
        let url = url.expose_secret();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite(sqlite::connect(url, pool).await?)
        } else {
            Backend::Postgres(postgres::connect(url, pool).await?)
        };
        let store = Self {
            backend,
            outbox: outbox::new_signal(),
        };
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
}
