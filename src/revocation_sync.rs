//! Keeps this instance's revocation set in step with every other instance's.
//!
//! On PostgreSQL, a trigger notifies each session revocation as its
//! transaction commits; this task listens and records them in memory, so a
//! revocation made on one instance reaches the Bearer check of every other
//! within milliseconds, still with no database read per request; the set
//! passes each new one on to this instance's revocation feed subscribers.
//!
//! Notifications are not stored: any sent while the connection was down are
//! lost. So every (re)subscription is followed by a reload of the revocations
//! recent enough to matter, in that order (listen first, then read), so nothing
//! committed in between can slip through. A periodic reload bounds the damage
//! of a connection that dies silently. On SQLite, the only other writer is
//! the command line, and a poll of the last seconds brings its revocations in
//! ([`reload_periodically`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::auth::RevocationSet;
use crate::store::{Store, StoreError};

/// Wait between reconnection attempts while the database is away.
const RETRY_EVERY: Duration = Duration::from_secs(1);
/// A full reload now and then, whatever the notifications say.
const RELOAD_EVERY: Duration = Duration::from_secs(30);
/// SQLite: how often the revocations made by other processes (the command
/// line) are looked for, and how far back each look reaches.
const SQLITE_POLL_EVERY: Duration = Duration::from_secs(1);
const SQLITE_POLL_OVERLAP: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// Loads every revocation young enough that its access tokens may still be valid.
pub async fn reload(
    store: &Store,
    revocations: &RevocationSet,
    keep_for: Duration,
) -> Result<usize, StoreError> {
    let since = Utc::now() - chrono::Duration::from_std(keep_for).unwrap_or(chrono::Duration::MAX);
    load_since(store, revocations, since).await
}

/// Records every revocation made since `since`; returns how many were read.
async fn load_since(
    store: &Store,
    revocations: &RevocationSet,
    since: chrono::DateTime<Utc>,
) -> Result<usize, StoreError> {
    let recent = store.revoked_since(since).await?;
    revocations.insert_many(&recent, Utc::now());
    Ok(recent.len())
}

/// Runs until the store is closed: subscribe, reload, apply notifications;
/// on any loss, start over. Does nothing on SQLite.
pub async fn run(store: Store, revocations: Arc<RevocationSet>, keep_for: Duration) {
    let mut was_down = false;
    loop {
        let mut feed = match store.subscribe_revocations().await {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(_) if store.is_closed() => return,
            Err(e) => {
                if !was_down {
                    log::warn!(
                        "revocation feed: cannot subscribe, retrying: {}",
                        crate::error::with_causes(&e)
                    );
                    was_down = true;
                }
                tokio::time::sleep(RETRY_EVERY).await;
                continue;
            }
        };
        if let Err(e) = reload(&store, &revocations, keep_for).await {
            log::warn!("revocation feed: cannot reload recent revocations, retrying: {e}");
            was_down = true;
            tokio::time::sleep(RETRY_EVERY).await;
            continue;
        }
        if was_down {
            log::info!("revocation feed: reconnected and reloaded");
        }
        loop {
            match feed.next().await {
                Ok(Some((session_id, user_id, at))) => {
                    revocations.insert_many(&[(session_id, user_id, at)], Utc::now())
                }
                Ok(None) => {
                    log::warn!("revocation feed: connection lost, resubscribing");
                    break;
                }
                Err(e) => {
                    log::warn!("revocation feed: {e}, resubscribing");
                    break;
                }
            }
        }
        // Whatever ended the feed was logged; the next round reconnects.
        was_down = true;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reloads periodically. On PostgreSQL, in case a connection died without
/// anyone noticing (NOTIFY does the real work). On SQLite there is no NOTIFY,
/// and the one writer besides this process is the command line (`admin
/// disable`, `admin revoke-sessions`, run beside the server on the same
/// file): polling the revocations of the last seconds every second brings
/// those to the Bearer check within API.md's 2 seconds. The read is an
/// indexed range (`sessions_revoked_at_idx`) over the last few seconds only.
pub async fn reload_periodically(
    store: Store,
    revocations: Arc<RevocationSet>,
    keep_for: Duration,
) {
    if store.kind() == "postgres" {
        let mut tick = tokio::time::interval(RELOAD_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Err(e) = reload(&store, &revocations, keep_for).await {
                log::debug!("periodic revocation reload failed: {e}");
            }
        }
    }
    let mut tick = tokio::time::interval(SQLITE_POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if store.is_closed() {
            return;
        }
        // A revocation is stamped before its transaction commits; the
        // overlap covers that gap (inserts of known entries change nothing).
        if let Err(e) = load_since(&store, &revocations, Utc::now() - SQLITE_POLL_OVERLAP).await {
            log::debug!("revocation poll failed: {e}");
        }
    }
}
