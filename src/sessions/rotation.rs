//! The rotation policy of API.md ("Reuse") as a pure function of the
//! presented generation and the session's state, so it is tested alone.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// What to do with a genuine refresh token of an active session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The token is the current one: spend it, move the session to the next generation.
    Rotate,
    /// The immediate parent of the current token, presented within the grace
    /// while its successor was never presented: a retry or a race of the same
    /// app. Answer with the current token again.
    ReturnCurrent,
    /// Any other spent token presented within the grace of the session's
    /// latest rotation (an older one, or the parent once its successor was
    /// presented): a late duplicate of the same app. Refuse, revoke nothing.
    Superseded,
    /// A spent token presented past the grace: treat as stolen, revoke the session.
    Reuse,
    /// A generation the session never reached (only a restored database
    /// explains it): refuse, revoke nothing.
    Unknown,
}

/// Classifies generation `presented` against a session at generation
/// `current` whose latest rotation was at `rotated_at`.
///
/// With one row per session, "the successor was presented" is "the session
/// rotated again": the parent of a token that was itself spent is two
/// generations behind, which is why the grace retry is only for `current - 1`.
pub fn classify(
    presented: i64,
    current: i64,
    rotated_at: DateTime<Utc>,
    now: DateTime<Utc>,
    grace: Duration,
) -> Decision {
    if presented == current {
        Decision::Rotate
    } else if presented > current {
        Decision::Unknown
    } else if !within(rotated_at, now, grace) {
        Decision::Reuse
    } else if presented == current - 1 {
        Decision::ReturnCurrent
    } else {
        Decision::Superseded
    }
}

fn within(since: DateTime<Utc>, now: DateTime<Utc>, grace: Duration) -> bool {
    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    now.signed_duration_since(since) <= grace
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rotation_policy() {
        let grace = Duration::from_secs(120);
        let t0 = Utc::now();
        let s = chrono::Duration::seconds;
        use Decision::*;
        assert_eq!(classify(5, 5, t0, t0 + s(100_000), grace), Rotate);
        assert_eq!(classify(4, 5, t0, t0 + s(9), grace), ReturnCurrent);
        assert_eq!(classify(4, 5, t0, t0 + s(120), grace), ReturnCurrent);
        assert_eq!(classify(4, 5, t0, t0 + s(121), grace), Reuse);
        assert_eq!(classify(3, 5, t0, t0, grace), Superseded);
        assert_eq!(classify(0, 5, t0, t0 + s(120), grace), Superseded);
        assert_eq!(classify(3, 5, t0, t0 + s(121), grace), Reuse);
        assert_eq!(classify(6, 5, t0, t0, grace), Unknown);
        assert_eq!(classify(4, 5, t0, t0, Duration::ZERO), ReturnCurrent);
        assert_eq!(classify(4, 5, t0, t0 + s(1), Duration::ZERO), Reuse);
        assert_eq!(classify(3, 5, t0, t0 + s(1), Duration::ZERO), Reuse);
    }
}
