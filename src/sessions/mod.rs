//! The sessions service: the one place that starts, rotates and ends sessions
//! (DESIGN.md, "One place that starts, rotates and revokes sessions").
//!
//! Handlers extract, call and answer; every decision about a session is made
//! here, at the time of one injected [`Clock`](crate::clock::Clock):
//! - [`Sessions::start`] opens a session under the credential that was checked
//!   (the store's insert is conditional on the user's credential version) and
//!   enforces the per-user session cap;
//! - [`Sessions::rotate`] spends a refresh token: one conditional statement in
//!   the common case, else one read classified by [`rotation::classify`];
//! - every way a session ends ([`Sessions::end_by_refresh_token`],
//!   [`Sessions::end_one`], [`Sessions::end_all`], [`Sessions::change_password`],
//!   reuse, the cap) goes through [`Sessions::revoked`], which writes the
//!   in-memory revocation set (and so reaches the Bearer check at once) and the
//!   audit line and metric. A new way to end a session cannot forget a step.

pub mod rotation;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::auth::{AccessTokens, RevocationSet, refresh};
use crate::clock::{SharedClock, later};
use crate::config::SessionConfig;
use crate::store::{Grant, NewMail, NewSession, Session, Store, StoreError, User};
use crate::telemetry::{Outcome, RevocationReason, Telemetry};
use rotation::Decision;

/// What a client gets when a session starts or rotates.
#[derive(Debug)]
pub struct TokenPair {
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds until the refresh token expires if unused.
    pub refresh_expires_in: u64,
    pub session_id: Uuid,
}

/// Whose session it is, as the access token's claims say: read from the
/// database at login and at every refresh.
#[derive(Debug)]
struct Holder {
    user_id: Uuid,
    role: crate::auth::Role,
    email_verified: bool,
}

/// Where a session is opened from, as shown in the session list.
#[derive(Debug, Default, Clone)]
pub struct Device {
    pub name: Option<String>,
    pub user_agent: Option<String>,
}

/// Why a refresh token was refused (API.md, "Why a refresh failed").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    /// The idle TTL or the absolute lifetime passed.
    Expired,
    /// The session was ended (logout, password change, admin...).
    Revoked,
    /// This call found a spent token past the grace and revoked the session.
    ReuseDetected,
    /// A late duplicate within the grace; the app's current token still works.
    Superseded,
    /// Malformed, forged, or of no known session.
    Invalid,
}

impl RefreshRefusal {
    /// Every reason (the document's enum of `reason`).
    pub const ALL: [RefreshRefusal; 5] = [
        RefreshRefusal::Expired,
        RefreshRefusal::Revoked,
        RefreshRefusal::ReuseDetected,
        RefreshRefusal::Superseded,
        RefreshRefusal::Invalid,
    ];

    /// The `reason` of the `invalid_grant` answer.
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshRefusal::Expired => "expired",
            RefreshRefusal::Revoked => "revoked",
            RefreshRefusal::ReuseDetected => "reuse_detected",
            RefreshRefusal::Superseded => "superseded",
            RefreshRefusal::Invalid => "invalid",
        }
    }

    fn outcome(self) -> Outcome {
        match self {
            RefreshRefusal::Expired => Outcome::expired,
            RefreshRefusal::Revoked => Outcome::revoked,
            RefreshRefusal::ReuseDetected => Outcome::reuse_detected,
            RefreshRefusal::Superseded => Outcome::superseded,
            RefreshRefusal::Invalid => Outcome::invalid,
        }
    }
}

/// Why the service could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `/refresh` refused the token.
    #[error("refresh token refused: {}", .0.as_str())]
    Refused(RefreshRefusal),
    /// The credential that was checked changed before the session could be
    /// opened (a password change, a disable or a deletion raced the login).
    #[error("the credential changed while signing in")]
    CredentialChanged,
    /// Racing rotations kept winning over this one; retrying later works.
    #[error("the session is busy")]
    Contended,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot sign the access token")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// The sessions service. Built once at start; cheap to share.
#[derive(Debug)]
pub struct Sessions {
    store: Store,
    tokens: Arc<AccessTokens>,
    revocations: Arc<RevocationSet>,
    telemetry: Arc<Telemetry>,
    config: SessionConfig,
    clock: SharedClock,
}

impl Sessions {
    pub fn new(
        store: Store,
        tokens: Arc<AccessTokens>,
        revocations: Arc<RevocationSet>,
        telemetry: Arc<Telemetry>,
        config: SessionConfig,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            tokens,
            revocations,
            telemetry,
            config,
            clock,
        }
    }

    /// The service's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Opens a session for `user`, whose password was just checked against the
    /// row read with it. If the credential changed since that read (its
    /// version moved, or the account was disabled or deleted), no session is
    /// opened: [`SessionError::CredentialChanged`]. Beyond the per-user cap,
    /// the least recently used sessions are revoked.
    pub async fn start(&self, user: &User, device: Device) -> Result<TokenPair, SessionError> {
        let now = self.now();
        let expires_at = later(now, self.config.max_lifetime);
        let new = NewSession {
            id: Uuid::new_v4(),
            user_id: user.id,
            credential_version: user.credential_version,
            device_name: device.name,
            user_agent: device.user_agent,
            now,
            idle_expires_at: later(now, self.config.refresh_ttl).min(expires_at),
            expires_at,
        };
        if !self.store.create_session(&new).await? {
            self.telemetry.login_raced_credential_change(user.id);
            return Err(SessionError::CredentialChanged);
        }
        self.telemetry.login_succeeded(user.id, new.id);
        let evicted = self
            .store
            .revoke_sessions_beyond(user.id, new.id, self.config.max_per_user, now)
            .await?;
        self.revoked(&evicted, now, RevocationReason::session_cap, None, user.id);
        let holder = Holder {
            user_id: user.id,
            role: user.role.0,
            email_verified: user.email_verified(),
        };
        self.pair(new.id, &holder, 0, new.idle_expires_at, now)
    }

    /// Spends a refresh token and answers the next pair (API.md, "Reuse").
    pub async fn rotate(&self, refresh_token: &str) -> Result<TokenPair, SessionError> {
        let result = self.rotate_inner(refresh_token).await;
        match &result {
            Ok((_, outcome)) => self.telemetry.refreshed(*outcome),
            Err(SessionError::Refused(refusal)) => self.telemetry.refreshed(refusal.outcome()),
            Err(_) => {}
        }
        result.map(|(pair, _)| pair)
    }

    async fn rotate_inner(&self, token: &str) -> Result<(TokenPair, Outcome), SessionError> {
        // A token we did not mint (malformed, forged, another server's) revokes nothing.
        let presented = refresh::verify(self.tokens.keys(), token)
            .ok_or(SessionError::Refused(RefreshRefusal::Invalid))?;
        // The common case, the current token of an active session: one
        // conditional statement rotates it. Otherwise read the session once and
        // classify; a race lost between the two (another request rotated
        // first) goes round again and then lands on the grace path.
        for _ in 0..3 {
            let now = self.now();
            if let Some(session) = self
                .store
                .rotate_if_current(
                    presented.session_id,
                    presented.generation,
                    now,
                    later(now, self.config.refresh_ttl),
                )
                .await?
            {
                return Ok((self.pair_for(&session, now)?, Outcome::success));
            }
            let Some(session) = self.store.find_session(presented.session_id).await? else {
                return Err(SessionError::Refused(RefreshRefusal::Invalid));
            };
            if session.revoked_at.is_some() {
                return Err(SessionError::Refused(RefreshRefusal::Revoked));
            }
            if session.is_expired(now) {
                return Err(SessionError::Refused(RefreshRefusal::Expired));
            }
            let grace = self.config.reuse_grace;
            match rotation::classify(
                presented.generation,
                session.generation,
                session.rotated_at,
                now,
                grace,
            ) {
                Decision::Rotate => continue,
                Decision::ReturnCurrent => {
                    return Ok((self.pair_for(&session, now)?, Outcome::grace_retry));
                }
                Decision::Superseded => {
                    return Err(SessionError::Refused(RefreshRefusal::Superseded));
                }
                Decision::Reuse => {
                    if self.store.revoke_session(session.id, now).await?.is_some() {
                        self.remember(&[session.id], session.user_id, now);
                        self.telemetry.reuse_detected(
                            session.user_id,
                            session.id,
                            now - session.rotated_at,
                            session.generation - presented.generation,
                        );
                    }
                    return Err(SessionError::Refused(RefreshRefusal::ReuseDetected));
                }
                Decision::Unknown => return Err(SessionError::Refused(RefreshRefusal::Invalid)),
            }
        }
        Err(SessionError::Contended)
    }

    /// Ends the session of a refresh token (current or spent), as `/logout`
    /// does. A token we did not mint, or of a session already ended, is a no-op.
    pub async fn end_by_refresh_token(&self, token: &str) -> Result<(), SessionError> {
        let Some(presented) = refresh::verify(self.tokens.keys(), token) else {
            return Ok(());
        };
        let now = self.now();
        if let Some(user) = self.store.revoke_session(presented.session_id, now).await? {
            self.revoked(
                &[presented.session_id],
                now,
                RevocationReason::logout,
                None,
                user,
            );
        }
        Ok(())
    }

    /// Ends one active session of `user`; `false` if it is not one.
    pub async fn end_one(&self, user: Uuid, session: Uuid) -> Result<bool, SessionError> {
        let now = self.now();
        let ended = self.store.revoke_user_session(user, session, now).await?;
        if ended {
            self.revoked(
                &[session],
                now,
                RevocationReason::session_delete,
                Some(user),
                user,
            );
        }
        Ok(ended)
    }

    /// Ends every session of `user`. `also` is a session whose access tokens
    /// must die even if its row is gone already (the caller's own, on
    /// logout-all). `actor` is who asked, when not the user (an admin).
    pub async fn end_all(
        &self,
        user: Uuid,
        reason: RevocationReason,
        actor: Option<Uuid>,
        also: Option<Uuid>,
    ) -> Result<Vec<Uuid>, SessionError> {
        let now = self.now();
        let ended = self.store.revoke_all_sessions(user, now).await?;
        if let Some(also) = also.filter(|id| !ended.contains(id)) {
            self.remember(&[also], user, now);
        }
        self.revoked(&ended, now, reason, actor, user);
        Ok(ended)
    }

    /// Sets a new password hash and ends every session of the user but `keep`,
    /// in one transaction that also bumps the credential version, so a login
    /// that checked the old password cannot open a session afterwards. `user`
    /// is the row the current password was checked against: if its credential
    /// changed since (another password change won the race),
    /// [`SessionError::CredentialChanged`] and nothing is written.
    pub async fn change_password(
        &self,
        user: &User,
        new_hash: &str,
        keep: Option<Uuid>,
    ) -> Result<(), SessionError> {
        let now = self.now();
        let Some(ended) = self
            .store
            .change_password(user.id, user.credential_version, new_hash, keep, now)
            .await?
        else {
            return Err(SessionError::CredentialChanged);
        };
        self.telemetry.password_changed(user.id);
        self.revoked(
            &ended,
            now,
            RevocationReason::password_change,
            Some(user.id),
            user.id,
        );
        Ok(())
    }

    /// Sets a password through a mailed reset grant: spends the grant, stores
    /// the hash, bumps the credential version and ends EVERY session of the
    /// user, in one transaction. `false` if the grant was spent, ended or
    /// expired meanwhile (nothing written).
    pub async fn reset_password(
        &self,
        grant: &Grant,
        new_hash: &str,
    ) -> Result<bool, SessionError> {
        let now = self.now();
        let Some(ended) = self.store.reset_password(grant, new_hash, now).await? else {
            return Ok(false);
        };
        self.telemetry
            .account_event("password reset", grant.user_id);
        self.revoked(
            &ended,
            now,
            RevocationReason::password_reset,
            Some(grant.user_id),
            grant.user_id,
        );
        Ok(true)
    }

    /// Deletes the account whose password was just checked against `user`
    /// (see [`Store::delete_account`]): every session ends, and `notice` is
    /// queued. [`SessionError::CredentialChanged`] if the credential changed
    /// since `user` was read (nothing written).
    pub async fn delete_account(&self, user: &User, notice: &NewMail) -> Result<(), SessionError> {
        let now = self.now();
        let Some(ended) = self
            .store
            .delete_account(user.id, user.credential_version, notice, now)
            .await?
        else {
            return Err(SessionError::CredentialChanged);
        };
        self.telemetry.account_event("account deleted", user.id);
        self.revoked(
            &ended,
            now,
            RevocationReason::account_deleted,
            Some(user.id),
            user.id,
        );
        Ok(())
    }

    /// Disables an account: no login from now on (a racing one opens no
    /// session), every session ends. `actor` is the admin who asked (`None`
    /// from the command line). `false` if there is no such account.
    pub async fn disable_account(
        &self,
        user: Uuid,
        actor: Option<Uuid>,
    ) -> Result<bool, SessionError> {
        let now = self.now();
        let Some(ended) = self.store.disable_user(user, now).await? else {
            return Ok(false);
        };
        self.telemetry.account_event("account disabled", user);
        self.revoked(&ended, now, RevocationReason::account_disabled, actor, user);
        Ok(true)
    }

    /// Deletes at most `batch` sessions that ended longer than the retention
    /// period ago (the housekeeping task's tick).
    pub async fn delete_ended(&self, batch: i64) -> Result<u64, SessionError> {
        let retention =
            chrono::Duration::from_std(self.config.retention).unwrap_or(chrono::Duration::MAX);
        let cutoff = self.now() - retention;
        Ok(self.store.delete_ended_sessions(cutoff, batch).await?)
    }

    /// How often the housekeeping task deletes ended sessions.
    pub fn cleanup_interval(&self) -> std::time::Duration {
        self.config.cleanup_interval
    }

    /// The user's active sessions, newest first.
    pub async fn list(&self, user: Uuid) -> Result<Vec<Session>, SessionError> {
        Ok(self.store.list_active_sessions(user, self.now()).await?)
    }

    /// The last two steps of every revocation, after the database write: the
    /// in-memory set (the Bearer check, and through it every instance's
    /// feed), then the audit line and metric.
    fn revoked(
        &self,
        sessions: &[Uuid],
        at: DateTime<Utc>,
        reason: RevocationReason,
        actor: Option<Uuid>,
        user: Uuid,
    ) {
        if sessions.is_empty() {
            return;
        }
        self.remember(sessions, user, at);
        self.telemetry.revoked(reason, actor, Some(user), sessions);
    }

    /// Into the revocation set (and from there to the feed's subscribers).
    fn remember(&self, sessions: &[Uuid], user: Uuid, at: DateTime<Utc>) {
        let entries: Vec<_> = sessions.iter().map(|id| (*id, user, at)).collect();
        self.revocations.insert_many(&entries, self.now());
    }

    fn pair_for(&self, session: &Session, now: DateTime<Utc>) -> Result<TokenPair, SessionError> {
        let holder = Holder {
            user_id: session.user_id,
            role: session.role.0,
            email_verified: session.email_verified,
        };
        self.pair(
            session.id,
            &holder,
            session.generation,
            session.idle_expires_at,
            now,
        )
    }

    /// Signs an access token and mints the refresh token of `generation`.
    fn pair(
        &self,
        session_id: Uuid,
        holder: &Holder,
        generation: i64,
        refresh_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<TokenPair, SessionError> {
        let access = self.tokens.issue(
            holder.user_id,
            session_id,
            holder.role,
            holder.email_verified,
            now,
        )?;
        Ok(TokenPair {
            access_token: access.token,
            expires_in: access.expires_in,
            refresh_token: refresh::mint(self.tokens.keys(), session_id, generation),
            // Rounded: PostgreSQL keeps microseconds, so a 30-day expiry read
            // back is a hair under 30 days.
            refresh_expires_in: u64::try_from(
                ((refresh_expires_at - now).num_milliseconds() + 500) / 1000,
            )
            .unwrap_or(0),
            session_id,
        })
    }
}
