//! SQLite specifics: the connection options (WAL, foreign keys, busy timeout)
//! and the error codes that mean "busy, try later" rather than "broken".

use std::str::FromStr;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

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
    let path = options.get_filename();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Other(sqlx::Error::Io(e)))?;
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
