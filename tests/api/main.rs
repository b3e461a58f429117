//! The integration suite: one binary, one module per resource. Every test
//! spawns the real application with a fresh database (see `helpers`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

mod account;
mod admin;
mod bearer;
mod cli;
mod contract;
mod docs;
mod email_change;
mod errors;
mod flaky;
mod flood;
mod gateway;
mod health;
mod helpers;
mod hostile;
mod housekeeping;
mod input_rules;
mod instances;
mod keys;
mod leaks;
mod limits;
mod login;
mod logout;
mod logs;
mod mail;
mod messages;
mod metrics;
mod outage;
mod outbox_sealed;
mod password;
pub mod refresh;
mod register;
mod reset;
mod revocation_feed;
mod rotation;
mod sessions;
mod shared_limits;
mod shutdown;
mod slow_clients;
mod soak;
mod store;
mod support;
mod verification;
mod verify;
