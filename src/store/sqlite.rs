//! SQLite specifics: the connection options (WAL, foreign keys, busy timeout),
//! the error codes that mean "busy, try later" rather than "broken", and this
//! backend's form of the refresh-token rotation.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use uuid::Uuid;

use super::sessions::{SESSION_COLUMNS, Session};
use super::{PoolSettings, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// Opens (creating if needed) the database file and its folder.
pub(super) async fn connect(
    url: &str,
    settings: &PoolSettings,
) -> Result<sqlx::SqlitePool, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(StoreError::Other)?
        .create_if_missing(true)
        // WAL: readers never block the writer and the writer never blocks readers.
        .journal_mode(SqliteJournalMode::Wal)
        // NORMAL is durable against process crashes in WAL mode; an OS crash may
        // lose the last transactions, never corrupt the file.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        // One writer at a time: a writer waits this long for the lock before the
        // request answers 503, instead of failing at once under a burst.
        .busy_timeout(settings.acquire_timeout);
    // Created here, private, rather than by SQLite with the umask's mode;
    // SQLite gives the -wal and -shm files the database file's mode.
    let path = options.get_filename();
    if path != std::path::Path::new(":memory:") && !url.contains("mode=memory") {
        let io = |e| StoreError::Other(sqlx::Error::Io(e));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::private_files::create_dir_all(dir).map_err(io)?;
        }
        crate::private_files::ensure_file(path).map_err(io)?;
        if crate::private_files::readable_by_others(path) {
            log::warn!(
                "{} is readable by other users of this machine; chmod 600 it (and its -wal and -shm)",
                path.display()
            );
        }
    }
    SqlitePoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        .connect_with(options)
        .await
        .map_err(StoreError::from)
}

/// SQLITE_BUSY and SQLITE_LOCKED, with their extended codes: contention, not a fault.
pub(super) fn is_busy_code(code: &str) -> bool {
    code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Spends the refresh token of generation `from` (see `Store::rotate_if_current`).
///
/// A read on any connection, then a short conditional `UPDATE`: SQLite
/// serialises writers, so the less work inside the write lock the better
/// (`benches/refresh_load.rs`, 64 chains, 2 cores: 8,000 rotations/s, against
/// 6,500 with one `UPDATE … RETURNING`). The `UPDATE` repeats every condition,
/// so a race lost between the read and the write rotates nothing.
pub(super) async fn rotate_if_current(
    pool: &SqlitePool,
    id: Uuid,
    from: i64,
    now: DateTime<Utc>,
    refresh_expiry: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    let read = format!(
        "SELECT {SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = $1"
    );
    let Some(mut session) = sqlx::query_as::<_, Session>(&read)
        .bind(id)
        .fetch_optional(pool)
        .await?
    else {
        return Ok(None);
    };
    if session.generation != from || !session.is_active(now) {
        return Ok(None);
    }
    let idle_expires_at = refresh_expiry.min(session.expires_at);
    let write = "UPDATE sessions SET generation = generation + 1, rotated_at = $1, \
                 last_used_at = $1, idle_expires_at = $2 \
                 WHERE id = $3 AND generation = $4 AND revoked_at IS NULL \
                 AND idle_expires_at > $1 AND expires_at > $1";
    let rows = sqlx::query(write)
        .bind(now)
        .bind(idle_expires_at)
        .bind(id)
        .bind(from)
        .execute(pool)
        .await?
        .rows_affected();
    if rows != 1 {
        return Ok(None);
    }
    session.generation = from + 1;
    session.rotated_at = now;
    session.last_used_at = now;
    session.idle_expires_at = idle_expires_at;
    Ok(Some(session))
}
