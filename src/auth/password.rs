//! Password hashing with argon2id (m = 19456 KiB, t = 2, p = 1: the OWASP
//! minimum), off the async workers and bounded.
//!
//! Each hash takes tens of milliseconds and ~19 MiB. Two bounds keep a login
//! flood from stalling the server or exhausting memory:
//! - hashes run on `concurrency` dedicated threads, never on an async worker
//!   (where one would stall every other request of that worker). Dedicated
//!   threads rather than tokio's blocking pool: the allocator keeps a hash's
//!   19 MiB in the arena of the thread that freed it, and the blocking pool
//!   spreads jobs over ever new threads, so peak memory grew with the number of
//!   threads (measured: 659 MiB after a login flood). Each of our threads also
//!   allocates its 19 MiB of argon2 memory once and reuses it for every hash,
//!   so hashing memory is at most `concurrency × 19 MiB`, flat, whatever the
//!   load; a thread idle for [`RELEASE_AFTER`] gives its memory back;
//! - at most `queue` jobs wait; past that the caller gets [`HashError::Busy`]
//!   at once, which the API answers with `503` and `Retry-After`, instead of an
//!   unbounded queue.
//!
//! An unknown account still costs one verify, against a dummy hash made at
//! start with the same parameters, so timing does not reveal which emails exist.
//!
//! Passwords are hashed and verified in their NFKC form (NIST SP 800-63B), here
//! and nowhere else, so no caller can forget it.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use secrecy::{ExposeSecret, SecretString};

use super::credentials::normalize_password;

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
    /// Jobs running now.
    pub in_flight: AtomicUsize,
    /// Jobs waiting for a hashing thread.
    pub queued: AtomicUsize,
}

/// A hashing thread that has had no work this long frees its argon2 memory.
pub const RELEASE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

/// One unit of work for a hashing thread.
type Job = Box<dyn FnOnce(&mut Worker) + Send>;

/// The bounded argon2id hasher. Cheap to share behind an `Arc`; its threads
/// stop when it is dropped.
#[derive(Debug)]
pub struct PasswordHasher {
    jobs: SyncSender<Job>,
    dummy_hash: String,
    stats: Arc<HasherStats>,
}

impl PasswordHasher {
    /// `concurrency` hashing threads, and at most `queue` jobs waiting for them.
    pub fn new(concurrency: usize, queue: usize) -> Self {
        // Made once per process: a random password nobody knows, so the dummy
        // verify can never succeed, with the very parameters real hashes use.
        let dummy_password = SaltString::generate(&mut rand::rngs::OsRng);
        let dummy_hash = Worker::new()
            .hash(dummy_password.as_str().as_bytes())
            .expect("hashing a random password succeeds");

        let (jobs, receiver) = sync_channel::<Job>(queue.max(1));
        let receiver = Arc::new(Mutex::new(receiver));
        for i in 0..concurrency.max(1) {
            let receiver = receiver.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&receiver, &mut Worker::new()))
                .expect("a hashing thread starts");
        }
        Self {
            jobs,
            dummy_hash,
            stats: Arc::default(),
        }
    }

    /// Hashes a new password (PHC string with parameters and salt), in its
    /// NFKC form ([`normalize_password`]), so any spelling of it verifies.
    pub async fn hash(&self, password: SecretString) -> Result<String, HashError> {
        self.stats.hashes.fetch_add(1, Ordering::Relaxed);
        self.run(move |worker| worker.hash(normalize_password(password.expose_secret()).as_bytes()))
            .await?
    }

    /// Checks a password against a stored hash, in its NFKC form; with `None`
    /// (no such account) spends the same effort on the dummy hash and answers
    /// `false`.
    pub async fn verify(
        &self,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, HashError> {
        self.stats.verifications.fetch_add(1, Ordering::Relaxed);
        let known = stored.is_some();
        let stored = stored.unwrap_or_else(|| self.dummy_hash.clone());
        let matched = self
            .run(move |worker| {
                let raw = password.expose_secret();
                let normalized = normalize_password(raw);
                if worker.verify(normalized.as_bytes(), &stored)? {
                    return Ok(true);
                }
                // Legacy hashes: before passwords were normalised, the bytes
                // typed at registration were hashed as they came. Typed the
                // same way again, such a password matches only in its raw form;
                // without this second try every account registered with a
                // non-NFKC password (a decomposed `é` from some keyboards,
                // fullwidth digits) would be locked out. It costs a second
                // verify only for input that is not NFKC, and it runs for an
                // unknown account too (against the dummy hash), so the timing
                // still does not tell which emails exist.
                if normalized.as_str() != raw {
                    return worker.verify(raw.as_bytes(), &stored);
                }
                Ok(false)
            })
            .await??;
        Ok(known && matched)
    }

    /// Queues one argon2 job, or answers [`HashError::Busy`] at once if the
    /// queue is full. A caller that goes away (client disconnect) does not
    /// cancel a job already queued: the bound counts work, not waiters.
    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&mut Worker) -> T + Send + 'static,
    ) -> Result<T, HashError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let stats = self.stats.clone();
        stats.queued.fetch_add(1, Ordering::Relaxed);
        let job: Job = Box::new(move |worker| {
            stats.queued.fetch_sub(1, Ordering::Relaxed);
            stats.in_flight.fetch_add(1, Ordering::Relaxed);
            let out = job(worker);
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send(out);
        });
        if let Err(e) = self.jobs.try_send(job) {
            self.stats.queued.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => {
                    self.stats.rejected_busy.fetch_add(1, Ordering::Relaxed);
                    HashError::Busy
                }
                TrySendError::Disconnected(_) => HashError::Failed("the hasher has stopped".into()),
            });
        }
        result
            .await
            .map_err(|_| HashError::Failed("the hashing job failed".into()))
    }

    pub fn stats(&self) -> &HasherStats {
        &self.stats
    }

    /// Hashes running now.
    pub fn in_flight(&self) -> usize {
        self.stats.in_flight.load(Ordering::Relaxed)
    }

    /// Requests admitted and waiting for a hashing thread.
    pub fn queued(&self) -> usize {
        self.stats.queued.load(Ordering::Relaxed)
    }
}

/// A hashing thread: takes jobs until the hasher is dropped. A job that
/// panics fails its caller (its result channel is dropped), not the thread.
fn work(receiver: &Mutex<Receiver<Job>>, worker: &mut Worker) {
    loop {
        let job = {
            let receiver = receiver
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match receiver.recv_timeout(RELEASE_AFTER) {
                Ok(job) => job,
                Err(RecvTimeoutError::Timeout) => {
                    worker.release_memory();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
            }
        };
        let _ = catch_unwind(AssertUnwindSafe(|| job(worker)));
    }
}

/// A hashing thread's tools: the argon2id instance and its memory, allocated
/// at the first hash and reused by every hash and verify until the thread idles.
struct Worker {
    argon2: Argon2<'static>,
    memory: Vec<Block>,
}

fn failed(e: impl std::fmt::Display) -> HashError {
    HashError::Failed(e.to_string())
}

impl Worker {
    fn new() -> Self {
        let params =
            Params::new(M_COST_KIB, T_COST, P_COST, None).expect("valid argon2 parameters");
        Self {
            argon2: Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
            memory: Vec::new(),
        }
    }

    /// The argon2 memory for at least `blocks` blocks, allocated if needed.
    fn memory(&mut self, blocks: usize) -> &mut [Block] {
        let ours = self.argon2.params().block_count();
        if self.memory.len() < ours {
            self.memory = vec![Block::default(); ours];
        }
        &mut self.memory[..blocks.min(ours)]
    }

    fn release_memory(&mut self) {
        self.memory = Vec::new();
    }

    /// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`), exactly as
    /// the argon2 crate's own `hash_password` writes it, but in our memory.
    fn hash(&mut self, password: &[u8]) -> Result<String, HashError> {
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.as_salt().decode_b64(&mut salt_buf).map_err(failed)?;
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon2 = self.argon2.clone();
        let blocks = argon2.params().block_count();
        argon2
            .hash_password_into_with_memory(password, salt_bytes, &mut out, self.memory(blocks))
            .map_err(failed)?;
        let phc = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(self.argon2.params()).map_err(failed)?,
            salt: Some(salt.as_salt()),
            hash: Some(Output::new(&out).map_err(failed)?),
        };
        Ok(phc.to_string())
    }

    /// Checks a password against a PHC string with the parameters it names
    /// (so hashes made with other costs still verify), comparing in constant time.
    fn verify(&mut self, password: &[u8], stored: &str) -> Result<bool, HashError> {
        let parsed = PasswordHash::new(stored)
            .map_err(|e| failed(format!("stored hash unreadable: {e}")))?;
        let algorithm = Algorithm::try_from(parsed.algorithm).map_err(failed)?;
        let version = parsed
            .version
            .map(Version::try_from)
            .transpose()
            .map_err(failed)?
            .unwrap_or_default();
        let params = Params::try_from(&parsed).map_err(failed)?;
        let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
            return Err(failed("stored hash has no salt or no output"));
        };
        let mut salt_buf = [0u8; 64];
        let salt_bytes = salt.decode_b64(&mut salt_buf).map_err(failed)?;
        let argon2 = Argon2::new(algorithm, version, params.clone());
        let mut out = vec![0u8; expected.len()];
        if params.block_count() <= self.argon2.params().block_count() {
            let memory = self.memory(params.block_count());
            argon2.hash_password_into_with_memory(password, salt_bytes, &mut out, memory)
        } else {
            // A hash stronger than ours (an older, costlier setting): allocate for it.
            argon2.hash_password_into(password, salt_bytes, &mut out)
        }
        .map_err(failed)?;
        // Output's equality is constant-time.
        Ok(Output::new(&out).map_err(failed)? == expected)
    }
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
    async fn hashes_are_standard_phc_strings_both_ways() {
        use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
        let hasher = PasswordHasher::new(1, 4);
        // Ours verifies with the argon2 crate's own verifier...
        let ours = hasher.hash(secret("interoperable")).await.unwrap();
        let parsed = PasswordHash::new(&ours).unwrap();
        assert!(
            Argon2::default()
                .verify_password(b"interoperable", &parsed)
                .is_ok()
        );
        // ...and the crate's hashes (other costs too) verify with ours.
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        for params in [
            Params::new(8, 1, 1, None).unwrap(),
            Params::new(32 * 1024, 1, 1, None).unwrap(),
        ] {
            let theirs = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password(b"interoperable", &salt)
                .unwrap()
                .to_string();
            assert!(
                hasher
                    .verify(secret("interoperable"), Some(theirs.clone()))
                    .await
                    .unwrap()
            );
            assert!(
                !hasher
                    .verify(secret("interoperablE"), Some(theirs))
                    .await
                    .unwrap()
            );
        }
    }

    #[tokio::test]
    async fn every_spelling_of_a_password_verifies_its_hash() {
        let hasher = PasswordHasher::new(1, 4);
        let nfc = "caf\u{E9} cr\u{E8}me 2024";
        let nfd = "cafe\u{301} cre\u{300}me 2024";
        let fullwidth = "caf\u{E9} cr\u{E8}me \u{FF12}\u{FF10}\u{FF12}\u{FF14}";
        for (registered, typed) in [(nfc, nfd), (nfd, nfc), (nfc, fullwidth), (fullwidth, nfd)] {
            let hash = hasher.hash(secret(registered)).await.unwrap();
            assert!(
                hasher
                    .verify(secret(typed), Some(hash.clone()))
                    .await
                    .unwrap(),
                "{registered:?} then {typed:?}"
            );
            assert!(
                !hasher
                    .verify(secret("cafe creme 2024"), Some(hash))
                    .await
                    .unwrap()
            );
        }
    }

    #[tokio::test]
    async fn a_hash_of_a_raw_non_nfkc_password_still_verifies_as_typed() {
        let hasher = PasswordHasher::new(1, 4);
        // As hashes were made before passwords were normalised: the raw bytes.
        let nfd = "cafe\u{301} cre\u{300}me 2024";
        let legacy = Worker::new().hash(nfd.as_bytes()).unwrap();
        assert!(
            hasher
                .verify(secret(nfd), Some(legacy.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(secret("cafe creme 2024"), Some(legacy))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn an_unreadable_stored_hash_is_an_error_not_a_match() {
        let hasher = PasswordHasher::new(1, 4);
        let result = hasher.verify(secret("x"), Some("not a hash".into())).await;
        assert!(matches!(result, Err(HashError::Failed(_))));
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
        let wait_for = |what: fn(&PasswordHasher) -> usize, hasher: Arc<PasswordHasher>| async move {
            while what(&hasher) == 0 {
                tokio::task::yield_now().await;
            }
        };
        let (h1, h2) = (hasher.clone(), hasher.clone());
        let running = tokio::spawn(async move { h1.hash(secret("first password")).await });
        wait_for(PasswordHasher::in_flight, hasher.clone()).await;
        let waiting = tokio::spawn(async move { h2.hash(secret("second password")).await });
        wait_for(PasswordHasher::queued, hasher.clone()).await;
        // One running, one waiting, a queue of one: the third is refused at once.
        assert!(matches!(
            hasher.hash(secret("third password")).await,
            Err(HashError::Busy)
        ));
        assert!(running.await.unwrap().is_ok());
        assert!(waiting.await.unwrap().is_ok());
        assert_eq!(hasher.stats().rejected_busy.load(Ordering::Relaxed), 1);
        assert_eq!((hasher.in_flight(), hasher.queued()), (0, 0));
    }
}
