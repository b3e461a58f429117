//! auth-api: a stateless JWT authentication service for mobile apps.
//!
//! Apps log in once, carry a short-lived HS256 access token in
//! `Authorization: Bearer`, and rotate it with an opaque refresh token. Access
//! tokens are verified from the token alone; only login, refresh, logout and
//! session management touch the database.
//!
//! The map, from the outside in:
//! - [`startup`]: builds the [`startup::Application`] (keys, store, routes, background tasks);
//! - [`config`]: every setting, read once from the environment;
//! - [`connections`]: the cap on open connections per client address;
//! - [`http`]: handlers, one file per resource, and the extractors (Bearer check);
//! - [`accounts`]: the accounts service: registration, verification, reset,
//!   email change, deletion and disable, with their mails;
//! - [`sessions`]: the sessions service, the one place that starts, rotates
//!   and ends sessions (database write, revocation set, audit and metrics);
//! - [`error`]: [`error::ApiError`], the only place errors become HTTP answers;
//! - [`store`]: users, sessions and the mail outbox on SQLite or PostgreSQL; knows nothing of HTTP;
//! - [`mail`]: delivery of the outbox's mails (SMTP or a folder), in the background;
//! - [`auth`]: keys, tokens, revocations, passwords; knows nothing of HTTP or storage;
//! - [`openapi`]: the OpenAPI document, collected from the handlers;
//! - [`revocation_sync`]: revocations pushed between instances (PostgreSQL LISTEN/NOTIFY);
//! - [`limits`]: rate limits per client IP and per email;
//! - [`telemetry`]: Prometheus metrics and audit log lines;
//! - [`upgrade`]: one-off upgrades of stored data (email normalisation);
//! - [`private_files`]: files and folders created readable by the service's user only;
//! - [`clock`]: the injectable time every session and token rule is decided at;
//! - [`cli`]: the command line (serve, migrate, admin).

pub mod accounts;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connections;
pub mod error;
pub mod http;
pub mod limits;
pub mod mail;
pub mod openapi;
pub mod private_files;
pub mod revocation_sync;
pub mod sessions;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod upgrade;
