//! PostgreSQL specifics: the pool, the SQLSTATE codes that mean "the server
//! cannot serve right now" rather than "the query is wrong", the revocation
//! channel, and this backend's form of the refresh-token rotation.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

use super::sessions::Session;
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

/// The channel the `sessions_revoked_notify` trigger notifies (migration 0002).
/// The channel with the user id (migration 0008); the older
/// `auth_session_revoked` is still notified for instances not yet upgraded.
pub(super) const REVOCATION_CHANNEL: &str = "auth_session_revoked_v2";

/// Appended to the outbox claim's inner `SELECT`: rows another instance is
/// claiming are skipped rather than waited for, so instances share the due
/// mails and never take the same one.
pub(super) const CLAIM_LOCK: &str = "FOR UPDATE SKIP LOCKED";

/// Parses a trigger payload: `"<session uuid> <revoked_at in unix ms> <user uuid>"`.
pub(super) fn parse_revocation(
    payload: &str,
) -> Option<(uuid::Uuid, uuid::Uuid, chrono::DateTime<chrono::Utc>)> {
    let mut fields = payload.split(' ');
    let id = fields.next()?.parse().ok()?;
    let at = chrono::DateTime::from_timestamp_millis(fields.next()?.parse().ok()?)?;
    let user = fields.next()?.parse().ok()?;
    if fields.next().is_some() {
        return None;
    }
    Some((id, user, at))
}

/// Spends the refresh token of generation `from` (see `Store::rotate_if_current`).
///
/// One `UPDATE … RETURNING` round trip, conditions and all, instead of a read
/// and a write: `benches/refresh_load.rs` (64 chains, 2 cores) measured 4,900
/// → 7,800 rotations/s.
pub(super) async fn rotate_if_current(
    pool: &PgPool,
    id: Uuid,
    from: i64,
    now: DateTime<Utc>,
    refresh_expiry: DateTime<Utc>,
) -> Result<Option<Session>, StoreError> {
    // The owner's role and email_verified come from the same statement (the
    // join), so a refresh issues both claims as the database holds them now.
    let sql = "UPDATE sessions s SET generation = s.generation + 1, rotated_at = $1, \
               last_used_at = $1, idle_expires_at = LEAST($2, s.expires_at) \
               FROM users u \
               WHERE s.id = $3 AND u.id = s.user_id AND s.generation = $4 \
               AND s.revoked_at IS NULL AND s.idle_expires_at > $1 AND s.expires_at > $1 \
               RETURNING s.id, s.user_id, s.generation, s.device_name, s.user_agent, \
               s.created_at, s.rotated_at, s.last_used_at, s.idle_expires_at, s.expires_at, \
               s.revoked_at, u.role, (u.email_verified_at IS NOT NULL) AS email_verified";
    Ok(sqlx::query_as::<_, Session>(sql)
        .bind(now)
        .bind(refresh_expiry)
        .bind(id)
        .bind(from)
        .fetch_optional(pool)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_payloads_parse() {
        let (id, user, at) = parse_revocation(
            "6f1c1f0e-8a61-4a8e-9b1e-2f4f5d1c0a11 1795767451123 0b7e5c1a-3f2d-4c8e-9a6b-1d2e3f4a5b6c",
        )
        .unwrap();
        assert_eq!(id.to_string(), "6f1c1f0e-8a61-4a8e-9b1e-2f4f5d1c0a11");
        assert_eq!(user.to_string(), "0b7e5c1a-3f2d-4c8e-9a6b-1d2e3f4a5b6c");
        assert_eq!(at.timestamp_millis(), 1_795_767_451_123);
        assert!(parse_revocation("garbage").is_none());
        // The old payload, without the user: not for this channel.
        assert!(parse_revocation("6f1c1f0e-8a61-4a8e-9b1e-2f4f5d1c0a11 1795767451123").is_none());
        assert!(
            parse_revocation(
                "6f1c1f0e-8a61-4a8e-9b1e-2f4f5d1c0a11 soon 0b7e5c1a-3f2d-4c8e-9a6b-1d2e3f4a5b6c"
            )
            .is_none()
        );
    }
}
