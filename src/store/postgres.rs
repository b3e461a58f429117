//! PostgreSQL specifics: the pool and the SQLSTATE codes that mean "the server
//! cannot serve right now" rather than "the query is wrong".

use sqlx::postgres::PgPoolOptions;

use super::{PoolSettings, StoreError};

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

pub(super) async fn connect(
    url: &str,
    settings: &PoolSettings,
) -> Result<sqlx::PgPool, StoreError> {
    PgPoolOptions::new()
        .max_connections(settings.max_connections)
        .acquire_timeout(settings.acquire_timeout)
        // A connection that died while idle (database restart) is replaced
        // before a request gets it, so the service recovers by itself.
        .test_before_acquire(true)
        .connect(url)
        .await
        .map_err(StoreError::from)
}

/// Class 08 (connection exception), 57P01–57P03 (shutdown, cannot connect
/// now), 53300 (too many connections).
pub(super) fn is_unavailable_code(code: &str) -> bool {
    code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03" | "53300")
}
