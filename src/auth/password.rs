//! Password hashing with argon2id (m = 19456 KiB, t = 2, p = 1: the OWASP
//! minimum), off the async workers and bounded.
//!
//! Each hash takes tens of milliseconds and ~19 MiB. Two bounds keep a login
//! flood from stalling the server or exhausting memory:
//! - `concurrency` hashes run at once, on tokio's blocking pool (never on an
//!   async worker, where it would stall every other request of that worker);
//!   peak hashing memory is `concurrency × 19 MiB`;
//! - at most `queue` requests are admitted (running plus waiting); past that the
//!   caller gets [`HashError::Busy`] at once, which the API answers with `503`
//!   and `Retry-After`, instead of an unbounded queue of waiting requests.
//!
//! An unknown account still costs one verify, against a dummy hash made at
//! start with the same parameters, so timing does not reveal which emails exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

/// argon2id memory cost, KiB.
pub const M_COST_KIB: u32 = 19 * 1024;
/// argon2id passes.
pub const T_COST: u32 = 2;
/// argon2id lanes.
pub const P_COST: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// The queue is full: try again later.
    #[error("the password hasher is busy")]
    Busy,
    /// A stored hash could not be parsed, or hashing failed: a server fault.
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Counters an operator (and the tests) can read.
#[derive(Debug, Default)]
pub struct HasherStats {
    pub hashes: AtomicU64,
    pub verifications: AtomicU64,
    pub rejected_busy: AtomicU64,
}

/// The bounded argon2id hasher. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    workers: Arc<Semaphore>,
    admitted: Arc<Semaphore>,
    concurrency: usize,
    queue: usize,
    dummy_hash: String,
    stats: HasherStats,
}

impl PasswordHasher {
    /// `concurrency` hashes at once, `queue` admitted in all (at least `concurrency`).
    pub fn new(concurrency: usize, queue: usize) -> Self {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 parameters");
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let concurrency = concurrency.max(1);
        let queue = queue.max(concurrency);
        // Made once per process: a random password nobody knows, so the dummy
        // verify can never succeed, with the very parameters real hashes use.
        let dummy_password = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = hash_with(&argon2, dummy_password.as_str())
            .expect("hashing a random password succeeds");
        Self {
            argon2,
            workers: Arc::new(Semaphore::new(concurrency)),
            admitted: Arc::new(Semaphore::new(queue)),
            concurrency,
            queue,
            dummy_hash,
            stats: HasherStats::default(),
        }
    }

    /// Hashes a new password (PHC string with parameters and salt).
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        self.run(move |argon2| hash_with(argon2, password.expose_secret()))
            .await?
    }

    /// Checks a password against a stored hash; with `None` (no such account)
    /// spends the same effort on the dummy hash and answers `false`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        self.stats.verifications.fetch_add(1, Ordering::Relaxed);
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = self
            .run(move |argon2| {
                let parsed = PasswordHash::new(&stored)
                    .map_err(|e| HashError::Failed(format!("stored hash unreadable: {e}")))?;
                Ok::<_, HashError>(
                    argon2
                        .verify_password(password.expose_secret().as_bytes(), &parsed)
                        .is_ok(),
                )
            })
            .await??;
        Ok(known && matched)
    }

    /// Runs one argon2 job on the blocking pool within both bounds. The permits
    /// move into the job, so a caller that goes away (client disconnect) cannot
    /// free a slot while its hash still runs.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let Ok(admitted) = self.admitted.clone().try_acquire_owned() else {
            self.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
            return Err(HashError::Busy);
        };
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| HashError::Busy)?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || {
            let out = job(&argon2);
            drop((worker, admitted));
            out
        })
        .await
        .map_err(|e| HashError::Failed(format!("hashing task failed: {e}")))
    }

    pub fn stats(&self) -> &HasherStats {
        &self.stats
    }

    /// Hashes running now.
    pub fn in_flight(&self) -> usize {
        self.concurrency - self.workers.available_permits()
    }

    /// Requests admitted and waiting for a hashing slot.
    pub fn queued(&self) -> usize {
        (self.queue - self.admitted.available_permits()).saturating_sub(self.in_flight())
    }
}

fn hash_with(argon2: &Argon2<'_>, password: &str) -> Result<String, HashError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    argon2
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hasher = PasswordHasher::new(1, 4);
        let hash = hasher.hash(secret("correct horse")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            hasher
                .verify(secret("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(secret("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unknown_account_spends_a_verify_and_fails() {
        let hasher = PasswordHasher::new(1, 4);
        assert!(!hasher.verify(secret("anything"), None).await.unwrap());
        assert_eq!(hasher.stats().verifications.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn a_full_queue_answers_busy_at_once() {
        let hasher = Arc::new(PasswordHasher::new(1, 1));
        let busy = hasher.clone();
        let first = tokio::spawn(async move { busy.hash(secret("first password")).await });
        // Wait until the first job holds the only admission.
        while hasher.admitted.available_permits() != 0 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            hasher.hash(secret("second password")).await,
            Err(HashError::Busy)
        ));
        assert!(first.await.unwrap().is_ok());
        assert_eq!(hasher.stats().rejected_busy.load(Ordering::Relaxed), 1);
    }
}
