//! Upgrades of stored data that SQL migrations cannot express, run at start
//! (and by the `migrate` subcommand) after the schema migrations, each once.
//!
//! Version 2 normalises emails (NFKC, then lower case: API.md, "Input
//! rules"). Accounts registered before kept the spelling they were typed in,
//! and a login normalises what it is given, so those stored spellings must be
//! rewritten, or their owners could not sign in. Two old accounts may now
//! normalise alike: that is reported for an operator to settle, never a
//! failed start.

use crate::auth::credentials::normalize_email;
use crate::store::{EmailNormalization, Store, StoreError};

const EMAILS_NFKC: &str = "2-emails-nfkc";

/// Runs the upgrades not yet recorded as done; returns the email report if
/// that upgrade ran now.
pub async fn run(store: &Store) -> Result<Option<EmailNormalization>, StoreError> {
    if store.data_migration_done(EMAILS_NFKC).await? {
        return Ok(None);
    }
    let report = store.normalize_emails(normalize_email).await?;
    log_report(&report);
    store
        .record_data_migration(EMAILS_NFKC, chrono::Utc::now())
        .await?;
    Ok(Some(report))
}

/// Log lines an operator can act on: ids only, never the emails themselves.
pub fn log_report(report: &EmailNormalization) {
    if report.rewritten > 0 {
        log::info!(
            "upgrade: {} stored email(s) rewritten to their normalised form (NFKC, lower case)",
            report.rewritten
        );
    }
    for (user, holder) in &report.collisions {
        log::warn!(
            "upgrade: the email of user {user} normalises to the email of user {holder}; \
             left unchanged (it cannot sign in until you settle it: delete one account, or \
             set the email of {user} by hand)"
        );
    }
    for user in &report.invalid {
        log::warn!(
            "upgrade: the email of user {user} breaks the email rules (invisible characters, \
             no dotted domain...); left unchanged, it cannot sign in"
        );
    }
}
