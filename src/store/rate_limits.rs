//! The `rate_limits` table (PostgreSQL only): the rate-limit counters every
//! instance shares, one GCRA cell per key (migration 0007). The rule itself
//! (budgets, keys, fallback) is [`crate::limits`]; here are its statements.

use sqlx::PgPool;

use super::{Backend, Store, StoreError};

/// The shared counters. Only PostgreSQL has them: on SQLite (one instance)
/// the limits stay in memory.
#[derive(Debug, Clone)]
pub struct RateLimitTable {
    pool: PgPool,
}

/// The verdict of one charge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charged {
    pub allowed: bool,
    /// The key's theoretical arrival time (unix microseconds) after the charge.
    pub tat_us: i64,
}

impl Store {
    /// The shared rate-limit counters, on PostgreSQL; `None` on SQLite.
    pub fn rate_limit_table(&self) -> Option<RateLimitTable> {
        match &self.backend {
            Backend::Postgres(pool) => Some(RateLimitTable { pool: pool.clone() }),
            Backend::Sqlite(_) => None,
        }
    }
}

impl RateLimitTable {
    /// On a pool the test built (a database that never answers).
    #[cfg(test)]
    pub(crate) fn on_pool(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Charges one request to `key` at `now_us`: one upsert that charges and
    /// says whether it was allowed. Allowed when the key's arrival time, moved
    /// on by `interval_us`, is at most `burst_us` ahead of now; a refusal
    /// leaves the cell as it was. Concurrent charges of one key serialise on
    /// its row, so a burst spread over instances cannot slip past.
    pub async fn charge(
        &self,
        key: &str,
        now_us: i64,
        interval_us: i64,
        burst_us: i64,
    ) -> Result<Charged, StoreError> {
        let sql = "INSERT INTO rate_limits AS r (key, tat_us, allowed) \
                   VALUES ($1, $2 + $3, $3 <= $4) \
                   ON CONFLICT (key) DO UPDATE SET \
                   allowed = GREATEST(r.tat_us, $2) + $3 - $2 <= $4, \
                   tat_us = CASE WHEN GREATEST(r.tat_us, $2) + $3 - $2 <= $4 \
                   THEN GREATEST(r.tat_us, $2) + $3 ELSE r.tat_us END \
                   RETURNING allowed, tat_us";
        let (allowed, tat_us): (bool, i64) = sqlx::query_as(sql)
            .bind(key)
            .bind(now_us)
            .bind(interval_us)
            .bind(burst_us)
            .fetch_one(&self.pool)
            .await?;
        Ok(Charged { allowed, tat_us })
    }

    /// Gives one charge back: one atomic decrement. A cell already deleted
    /// (its budget was full again) needs nothing.
    pub async fn refund(&self, key: &str, interval_us: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE rate_limits SET tat_us = tat_us - $2 WHERE key = $1")
            .bind(key)
            .bind(interval_us)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Deletes at most `limit` cells whose budget is full again at `now_us`
    /// (they carry no information); returns how many. Rows another instance
    /// is charging or deleting are skipped, not waited for.
    pub async fn delete_expired(&self, now_us: i64, limit: i64) -> Result<u64, StoreError> {
        let sql = "DELETE FROM rate_limits WHERE key IN (SELECT key FROM rate_limits \
                   WHERE tat_us <= $1 ORDER BY tat_us LIMIT $2 FOR UPDATE SKIP LOCKED)";
        let done = sqlx::query(sql)
            .bind(now_us)
            .bind(limit)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Cells stored (for tests and the operator).
    pub async fn count(&self) -> Result<i64, StoreError> {
        let (n,): (i64,) = sqlx::query_as("SELECT count(*) FROM rate_limits")
            .fetch_one(&self.pool)
            .await?;
        Ok(n)
    }
}
