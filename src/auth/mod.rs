//! Everything about credentials and tokens, with no knowledge of HTTP or of
//! the database:
//! - [`keys`]: the server keys, their `kid`, and the generated key file;
//! - [`asymmetric`]: ES256 and EdDSA signing keys, their RFC 7638 `kid`, PEM files;
//! - [`access`]: HS256 access tokens (issue, verify);
//! - [`refresh`]: refresh tokens (mint, verify);
//! - [`mail_grants`]: the MACs of mailed tokens and codes;
//! - [`mail_seal`]: the outbox's bodies, sealed at rest;
//! - [`revocations`]: the in-memory set of recently revoked sessions, and its feed;
//! - [`service_keys`]: the backends' keys for the revocation feed;
//! - [`password`]: the bounded argon2id hasher;
//! - [`credentials`]: email and password input rules.

pub mod access;
pub mod asymmetric;
pub mod credentials;
pub mod keys;
pub mod mail_grants;
pub mod mail_seal;
pub mod password;
pub mod refresh;
pub mod revocations;
pub mod service_keys;

pub use access::{AccessTokens, Claims, Role, TokenError};
pub use keys::Keyring;
pub use password::{HashError, PasswordHasher};
pub use revocations::RevocationSet;
pub use service_keys::ServiceKeys;
