//! The in-memory set of recently revoked sessions, checked on every Bearer
//! request with no database read.
//!
//! Reads vastly outnumber writes (every request reads; only a logout or a
//! detected theft writes), so the set is an immutable map behind an
//! [`ArcSwap`]: a read is one atomic load and a hash lookup, with no lock a slow
//! writer could hold. A write copies the map, drops what is no longer needed
//! and swaps it in.
//!
//! An entry is only needed while an access token of that session can still be
//! valid: `revoked_at + access TTL + leeway`. After that every such token has
//! expired anyway, so the set stays as small as the revocations of the last
//! fifteen minutes or so.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Session ids revoked recently enough that their access tokens may still be unexpired.
#[derive(Debug)]
pub struct RevocationSet {
    /// session id → the instant after which the entry can be forgotten.
    revoked: ArcSwap<HashMap<Uuid, DateTime<Utc>>>,
    keep_for: chrono::Duration,
}

impl RevocationSet {
    /// `keep_for` must cover the access-token lifetime plus the verification leeway.
    pub fn new(keep_for: Duration) -> Self {
        Self {
            revoked: ArcSwap::from_pointee(HashMap::new()),
            keep_for: chrono::Duration::from_std(keep_for).unwrap_or(chrono::Duration::MAX),
        }
    }

    /// Is this session revoked? The Bearer hot path: lock-free, no I/O.
    pub fn is_revoked(&self, session_id: &Uuid) -> bool {
        self.revoked.load().contains_key(session_id)
    }

    /// Records revocations (session id, when it was revoked). Entries too old to
    /// matter are skipped, and expired ones pruned on the way.
    pub fn insert_many(&self, sessions: &[(Uuid, DateTime<Utc>)], now: DateTime<Utc>) {
        let fresh: Vec<(Uuid, DateTime<Utc>)> = sessions
            .iter()
            .map(|(id, at)| (*id, *at + self.keep_for))
            .filter(|(_, forget_after)| *forget_after > now)
            .collect();
        if fresh.is_empty() {
            return;
        }
        self.revoked.rcu(|current| {
            let mut next: HashMap<Uuid, DateTime<Utc>> = current
                .iter()
                .filter(|(_, forget_after)| **forget_after > now)
                .map(|(id, at)| (*id, *at))
                .collect();
            for (id, forget_after) in &fresh {
                let slot = next.entry(*id).or_insert(*forget_after);
                *slot = (*slot).max(*forget_after);
            }
            Arc::new(next)
        });
    }

    /// Records one revocation made now.
    pub fn insert(&self, session_id: Uuid, now: DateTime<Utc>) {
        self.insert_many(&[(session_id, now)], now);
    }

    /// Drops entries whose tokens have all expired. Called periodically so an
    /// idle instance does not keep a burst of old revocations forever.
    pub fn prune(&self, now: DateTime<Utc>) {
        if self
            .revoked
            .load()
            .values()
            .all(|forget_after| *forget_after > now)
        {
            return;
        }
        self.revoked.rcu(|current| {
            Arc::new(
                current
                    .iter()
                    .filter(|(_, forget_after)| **forget_after > now)
                    .map(|(id, at)| (*id, *at))
                    .collect::<HashMap<_, _>>(),
            )
        });
    }

    /// How many revocations are remembered.
    pub fn len(&self) -> usize {
        self.revoked.load().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoked_sessions_are_remembered_until_their_tokens_expire() {
        let set = RevocationSet::new(Duration::from_secs(930));
        let now = Utc::now();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        set.insert(a, now);
        assert!(set.is_revoked(&a));
        assert!(!set.is_revoked(&b));

        set.prune(now + chrono::Duration::seconds(929));
        assert!(set.is_revoked(&a));
        set.prune(now + chrono::Duration::seconds(931));
        assert!(!set.is_revoked(&a));
        assert!(set.is_empty());
    }

    #[test]
    fn revocations_too_old_to_matter_are_not_stored() {
        let set = RevocationSet::new(Duration::from_secs(60));
        let now = Utc::now();
        let id = Uuid::new_v4();
        set.insert_many(&[(id, now - chrono::Duration::seconds(61))], now);
        assert!(!set.is_revoked(&id));
        assert!(set.is_empty());
    }
}
