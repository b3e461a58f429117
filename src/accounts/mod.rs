//! The accounts service: the account lifecycle of API.md v2 (registration
//! with a verification mail, email verification, password reset, email
//! change, deletion, disable), decided here at the time of one injected clock.
//!
//! Handlers extract, call and answer. This service checks input, hashes on
//! the bounded hasher pool, draws and MACs mailed tokens and codes
//! ([`crate::auth::mail_grants`]), writes the change and its mail in one store
//! transaction, and leaves every ending of a session to the sessions service
//! ([`Sessions`]), which alone ends sessions.
//!
//! Grants (a mailed token and code): single-use (spent by a conditional
//! update in the transaction that applies the change, and only by a `POST`),
//! `MAIL_CODE_TTL` long, a newer one of the same purpose ends the older, and
//! the fifth wrong code ends it. Across grants, a user has
//! [`CODE_ATTEMPTS_PER_DAY`] wrong codes per purpose over grants created in the
//! last 24 hours: past that every code is refused uncompared (asking for a new
//! mail does not restart the count), while links, which cannot be guessed,
//! keep working. At most [`MAILS_PER_HOUR`] grant mails of one purpose go to
//! one address an hour. Codes and tokens are never logged: they exist in
//! clear only in memory ([`MailSecrets`] wipes them) and in the mail body.

mod mails;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use uuid::Uuid;

use crate::auth::credentials::{WeakPassword, check_password_policy, normalize_email};
use crate::auth::mail_grants::{self, MailSecrets, Purpose};
use crate::auth::{AccessTokens, HashError, PasswordHasher};
use crate::clock::{SharedClock, later};
use crate::config::AccountConfig;
use crate::sessions::{SessionError, Sessions};
use crate::store::{
    CodeBudget, Grant, GrantIssue, MailCap, NewGrant, NewMail, Store, StoreError, User,
};
use crate::telemetry::{RevocationReason, Telemetry};

/// Grant mails per address, purpose (verification, reset, email change) and
/// hour (API.md, "Input rules"). Per purpose, so that nobody can spend an
/// address's verification or reset mails by asking resets for it or email
/// changes to it.
pub const MAILS_PER_HOUR: i64 = 5;
/// The wrong code that ends a grant.
pub const MAX_CODE_ATTEMPTS: i64 = 5;
/// Wrong codes per user and purpose over the grants of the last
/// [`CODE_BUDGET_HOURS`], whatever became of those grants: without it each new
/// mail (5 an hour) would bring 5 more guesses at a 6-digit code.
pub const CODE_ATTEMPTS_PER_DAY: i64 = 10;
/// The sliding window of [`CODE_ATTEMPTS_PER_DAY`].
pub const CODE_BUDGET_HOURS: i64 = 24;

/// Why the service could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The token or code is unknown, spent, expired or wrong.
    #[error("the code or link is not valid (wrong, used, expired or replaced by a newer one)")]
    InvalidCode,
    #[error("the email address is not verified")]
    EmailNotVerified,
    #[error("the account is disabled")]
    AccountDisabled,
    #[error("the email or password is wrong")]
    InvalidCredentials,
    #[error("this email is already registered")]
    EmailTaken,
    #[error("the email address is not valid")]
    InvalidEmail,
    /// The address had its mails for the hour.
    #[error("too many mails to this address; try again within the hour")]
    TooManyMails,
    /// No such (live) account.
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    WeakPassword(#[from] WeakPassword),
    #[error(transparent)]
    Hash(#[from] HashError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How a grant is presented: the mailed link's token, or the typed code of
/// the account it was mailed for.
#[derive(Debug)]
pub enum Presented<'a> {
    Token(&'a str),
    Code { user: Uuid, code: &'a str },
}

/// What an admin sees of an account.
#[derive(Debug)]
pub struct AccountSummary {
    pub user: User,
    pub active_sessions: i64,
}

/// The accounts service. Built once at start; cheap to share.
#[derive(Debug)]
pub struct Accounts {
    store: Store,
    sessions: Arc<Sessions>,
    hasher: Arc<PasswordHasher>,
    tokens: Arc<AccessTokens>,
    telemetry: Arc<Telemetry>,
    config: AccountConfig,
    clock: SharedClock,
}

impl Accounts {
    pub fn new(
        store: Store,
        sessions: Arc<Sessions>,
        hasher: Arc<PasswordHasher>,
        tokens: Arc<AccessTokens>,
        telemetry: Arc<Telemetry>,
        config: AccountConfig,
        clock: SharedClock,
    ) -> Self {
        Self {
            store,
            sessions,
            hasher,
            tokens,
            telemetry,
            config,
            clock,
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    fn cap(&self, now: DateTime<Utc>) -> MailCap {
        MailCap {
            limit: MAILS_PER_HOUR,
            since: now - chrono::Duration::hours(1),
        }
    }

    fn code_budget(&self, now: DateTime<Utc>) -> CodeBudget {
        CodeBudget {
            per_grant: MAX_CODE_ATTEMPTS,
            per_user: CODE_ATTEMPTS_PER_DAY,
            since: now - chrono::Duration::hours(CODE_BUDGET_HOURS),
        }
    }

    /// Draws a token and code for a grant to `to` and MACs them.
    fn draft(
        &self,
        purpose: Purpose,
        to: &str,
        new_email: Option<&str>,
        now: DateTime<Utc>,
    ) -> (NewGrant, MailSecrets) {
        let secrets = mail_grants::generate();
        let keys = self.tokens.keys();
        let id = Uuid::new_v4();
        let grant = NewGrant {
            id,
            purpose: purpose.as_str(),
            email: to.to_owned(),
            new_email: new_email.map(str::to_owned),
            token_mac: mail_grants::token_mac(keys, purpose, &secrets.token),
            code_mac: mail_grants::code_mac_for(keys, id, &secrets.code),
            expires_at: later(now, self.config.mail_code_ttl),
        };
        (grant, secrets)
    }

    /// `POST /register`: the user row and its verification mail, in one transaction.
    pub async fn register(
        &self,
        email: &str,
        password: SecretString,
    ) -> Result<User, AccountError> {
        let email = normalize_email(email).ok_or(AccountError::InvalidEmail)?;
        check_password_policy(password.expose_secret())?;
        let hash = self.hasher.hash(password).await?;
        let now = self.now();
        let (grant, secrets) = self.draft(Purpose::Verify, &email, None, now);
        let mail = mails::grant_mail(
            &self.config,
            self.tokens.keys(),
            Purpose::Verify,
            &email,
            &secrets,
        );
        let user = self
            .store
            .create_user_with_grant(&email, &hash, now, &grant, &mail)
            .await
            .map_err(|e| match e {
                StoreError::EmailTaken => AccountError::EmailTaken,
                other => other.into(),
            })?;
        self.telemetry.registered(user.id);
        Ok(user)
    }

    /// `GET /account`: the account as the database holds it now.
    pub async fn account(&self, user: Uuid) -> Result<User, AccountError> {
        self.store
            .find_user(user)
            .await?
            .ok_or(AccountError::NotFound)
    }

    /// The rules a login with the right password must still pass, checked
    /// only after the password (so they reveal nothing to a guesser):
    /// a disabled account is refused, and with REQUIRE_EMAIL_VERIFICATION an
    /// unverified one is refused with a new verification mail (within the
    /// hourly cap, silently).
    pub async fn check_sign_in(&self, user: &User) -> Result<(), AccountError> {
        if user.disabled_at.is_some() {
            return Err(AccountError::AccountDisabled);
        }
        if self.config.require_email_verification && !user.email_verified() {
            self.issue(Some(user.id), Purpose::Verify, &user.email, None, &[])
                .await?;
            return Err(AccountError::EmailNotVerified);
        }
        Ok(())
    }

    /// Stores a grant to `to` and queues its mail (and `also`), within the
    /// per-address cap.
    async fn issue(
        &self,
        user: Option<Uuid>,
        purpose: Purpose,
        to: &str,
        new_email: Option<&str>,
        also: &[NewMail],
    ) -> Result<GrantIssue, AccountError> {
        let now = self.now();
        let (grant, secrets) = self.draft(purpose, to, new_email, now);
        let mut mails = vec![mails::grant_mail(
            &self.config,
            self.tokens.keys(),
            purpose,
            to,
            &secrets,
        )];
        mails.extend_from_slice(also);
        let issued = self
            .store
            .issue_grant(user, &grant, &mails, self.cap(now), now)
            .await?;
        if let (GrantIssue::Issued, Some(user)) = (issued, user) {
            self.telemetry.account_event(purpose_event(purpose), user);
        }
        Ok(issued)
    }

    /// `POST /email/verification`: a new verification mail (a no-op when verified).
    pub async fn resend_verification(&self, user: Uuid) -> Result<(), AccountError> {
        let user = self.account(user).await?;
        if user.email_verified() {
            return Ok(());
        }
        match self
            .issue(Some(user.id), Purpose::Verify, &user.email, None, &[])
            .await?
        {
            GrantIssue::Issued | GrantIssue::Decoy => Ok(()),
            GrantIssue::Capped => Err(AccountError::TooManyMails),
            GrantIssue::NoAccount => Err(AccountError::NotFound),
        }
    }

    /// The user a typed code is for, by email; `None` for an unknown or
    /// malformed email (answered as a wrong code).
    pub async fn user_for_code(&self, email: &str) -> Result<Option<Uuid>, AccountError> {
        let Some(email) = normalize_email(email) else {
            return Ok(None);
        };
        Ok(self.store.find_user_by_email(&email).await?.map(|u| u.id))
    }

    /// The live grant `presented` stands for. A code takes an attempt from
    /// the user's live grant of `purpose` and from the user's daily budget
    /// before it is compared (so parallel guesses compare no more codes than
    /// the budget); a right one gives it back. The fifth wrong code ends the
    /// grant; once the budget is spent, codes (right ones too) are refused
    /// uncompared but the live grant is left alone: its link still works.
    async fn resolve(
        &self,
        purpose: Purpose,
        presented: Presented<'_>,
    ) -> Result<Grant, AccountError> {
        let now = self.now();
        let keys = self.tokens.keys();
        match presented {
            Presented::Token(token) => {
                let macs = mail_grants::token_lookup_macs(keys, purpose, token);
                self.store
                    .find_grant_by_token(purpose.as_str(), &macs, now)
                    .await?
                    .ok_or(AccountError::InvalidCode)
            }
            Presented::Code { user, code } => {
                let Some(grant) = self.store.live_grant(user, purpose.as_str(), now).await? else {
                    return Err(AccountError::InvalidCode);
                };
                let budget = self.code_budget(now);
                let purpose = purpose.as_str();
                if !self
                    .store
                    .take_code_attempt(grant.id, user, purpose, budget, now)
                    .await?
                {
                    return Err(AccountError::InvalidCode);
                }
                if mail_grants::code_matches(keys, grant.id, code, &grant.code_mac) {
                    self.store.refund_code_attempt(grant.id).await?;
                    Ok(grant)
                } else {
                    self.store
                        .end_guessed_grant(grant.id, MAX_CODE_ATTEMPTS, now)
                        .await?;
                    Err(AccountError::InvalidCode)
                }
            }
        }
    }

    /// `POST /email/verify`.
    pub async fn verify_email(&self, presented: Presented<'_>) -> Result<(), AccountError> {
        let grant = self.resolve(Purpose::Verify, presented).await?;
        if !self.store.verify_email(&grant, self.now()).await? {
            return Err(AccountError::InvalidCode);
        }
        self.telemetry
            .account_event("email verified", grant.user_id);
        Ok(())
    }

    /// `POST /password/forgot`: a reset mail when the address has an
    /// account, within the hourly cap; silently nothing otherwise. The same
    /// work either way (a token and code drawn and MACed, the mail written,
    /// one transaction begun), so neither the answer nor its timing tells
    /// which addresses have accounts.
    pub async fn forgot_password(&self, email: &str) -> Result<(), AccountError> {
        let email = normalize_email(email).ok_or(AccountError::InvalidEmail)?;
        let user = self.store.find_user_by_email(&email).await?;
        // An unknown address runs the same statements and stores a decoy
        // grant (no mail): the same writes, so about the same time.
        self.issue(user.map(|u| u.id), Purpose::Reset, &email, None, &[])
            .await?;
        Ok(())
    }

    /// `POST /password/reset`: the grant spent, the password set through the
    /// same policy and hasher as `POST /password`, every session ended.
    pub async fn reset_password(
        &self,
        presented: Presented<'_>,
        new_password: SecretString,
    ) -> Result<(), AccountError> {
        // The grant is checked first, so a wrong code costs no hash; it is
        // spent only after the hash, in the transaction that sets it.
        let grant = self.resolve(Purpose::Reset, presented).await?;
        check_password_policy(new_password.expose_secret())?;
        let hash = self.hasher.hash(new_password).await?;
        if !self.sessions.reset_password(&grant, &hash).await? {
            return Err(AccountError::InvalidCode);
        }
        Ok(())
    }

    /// Checks `password` against the account's current hash (one verify,
    /// on the hasher pool). The row returned is the one checked.
    async fn check_password(
        &self,
        user: Uuid,
        password: SecretString,
    ) -> Result<User, AccountError> {
        let user = self.store.find_user(user).await?;
        let verified = self
            .hasher
            .verify(password, user.as_ref().map(|u| u.password_hash.clone()))
            .await?;
        user.filter(|_| verified)
            .ok_or(AccountError::InvalidCredentials)
    }

    /// `POST /email/change`: a grant and mail to the new address, a notice
    /// to the old one; the account is unchanged until confirmed.
    pub async fn request_email_change(
        &self,
        user: Uuid,
        new_email: &str,
        password: SecretString,
    ) -> Result<(), AccountError> {
        let new_email = normalize_email(new_email).ok_or(AccountError::InvalidEmail)?;
        let user = self.check_password(user, password).await?;
        if new_email == user.email || self.store.find_user_by_email(&new_email).await?.is_some() {
            return Err(AccountError::EmailTaken);
        }
        let notice = mails::change_requested_notice(
            &self.config,
            self.tokens.keys(),
            &user.email,
            &new_email,
        );
        match self
            .issue(
                Some(user.id),
                Purpose::EmailChange,
                &new_email,
                Some(&new_email),
                &[notice],
            )
            .await?
        {
            GrantIssue::Issued | GrantIssue::Decoy => Ok(()),
            GrantIssue::Capped => Err(AccountError::TooManyMails),
            GrantIssue::NoAccount => Err(AccountError::NotFound),
        }
    }

    /// `POST /email/change/confirm` (the caller's own grant only).
    pub async fn confirm_email_change(
        &self,
        user: Uuid,
        presented: Presented<'_>,
    ) -> Result<(), AccountError> {
        let grant = self.resolve(Purpose::EmailChange, presented).await?;
        if grant.user_id != user {
            return Err(AccountError::InvalidCode);
        }
        let account = self.account(user).await?;
        let new_email = grant.new_email.clone().unwrap_or_default();
        let notice =
            mails::changed_notice(&self.config, self.tokens.keys(), &account.email, &new_email);
        match self.store.change_email(&grant, &notice, self.now()).await {
            Ok(true) => {
                self.telemetry.account_event("email changed", user);
                Ok(())
            }
            Ok(false) => Err(AccountError::InvalidCode),
            Err(StoreError::EmailTaken) => Err(AccountError::EmailTaken),
            Err(e) => Err(e.into()),
        }
    }

    /// `DELETE /account`: checked against the password; every session ends
    /// (through the sessions service), the email, hash and personal data
    /// are erased, a notice goes to the old address.
    pub async fn delete_account(
        &self,
        user: Uuid,
        password: SecretString,
    ) -> Result<(), AccountError> {
        let user = self.check_password(user, password).await?;
        let notice = mails::deleted_notice(&self.config, self.tokens.keys(), &user.email);
        self.sessions
            .delete_account(&user, &notice)
            .await
            .map_err(|e| match e {
                // A racing password change or reset won: the password we
                // checked is no longer the account's.
                SessionError::CredentialChanged => AccountError::InvalidCredentials,
                other => other.into(),
            })
    }

    /// Deletes at most `batch` grants that ended or expired over an hour ago
    /// (the hourly cap no longer counts them), but those with code attempts
    /// only once the code budget's window no longer counts them either.
    pub async fn delete_old_grants(&self, batch: i64) -> Result<u64, AccountError> {
        let now = self.now();
        let before = now - chrono::Duration::hours(1);
        let guessed_before = self.code_budget(now).since;
        Ok(self
            .store
            .delete_old_grants(before, guessed_before, batch)
            .await?)
    }

    /// An account by email, for admins.
    pub async fn find_by_email(&self, email: &str) -> Result<AccountSummary, AccountError> {
        let email = normalize_email(email).ok_or(AccountError::NotFound)?;
        let user = self
            .store
            .find_user_by_email(&email)
            .await?
            .ok_or(AccountError::NotFound)?;
        let active_sessions = self
            .store
            .count_active_sessions(user.id, self.now())
            .await?;
        Ok(AccountSummary {
            user,
            active_sessions,
        })
    }

    /// Disables the account with this email; every session ends.
    pub async fn disable(&self, email: &str, actor: Option<Uuid>) -> Result<User, AccountError> {
        let user = self.find_by_email(email).await?.user;
        if !self.sessions.disable_account(user.id, actor).await? {
            return Err(AccountError::NotFound);
        }
        Ok(user)
    }

    /// Enables the account with this email again.
    pub async fn enable(&self, email: &str) -> Result<User, AccountError> {
        let user = self.find_by_email(email).await?.user;
        if !self.store.enable_user(user.id, self.now()).await? {
            return Err(AccountError::NotFound);
        }
        self.telemetry.account_event("account enabled", user.id);
        Ok(user)
    }

    /// Ends every session of the account with this email; how many ended.
    pub async fn revoke_sessions(
        &self,
        email: &str,
        actor: Option<Uuid>,
    ) -> Result<usize, AccountError> {
        let user = self.find_by_email(email).await?.user;
        let ended = self
            .sessions
            .end_all(user.id, RevocationReason::admin, actor, None)
            .await?;
        Ok(ended.len())
    }
}

fn purpose_event(purpose: Purpose) -> &'static str {
    match purpose {
        Purpose::Verify => "verification mail queued",
        Purpose::Reset => "password reset mail queued",
        Purpose::EmailChange => "email change mail queued",
    }
}
