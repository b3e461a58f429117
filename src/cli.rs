//! The command line. Serving is the default, so `cargo run --release` serves;
//! the other subcommands are operator tools that work on the configured database.

use clap::{Parser, Subcommand};

use crate::auth::Role;
use crate::config::Config;
use crate::store::{PoolSettings, Store};

#[derive(Debug, Parser)]
#[command(
    name = "auth-api",
    version,
    about = "Stateless JWT authentication service for mobile apps"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Probe the running server's `/healthz` (or `/readyz` with `--ready`) on
    /// BIND_ADDR: exit 0 if it answers 200. For container health checks.
    Healthcheck {
        /// Ask `/readyz` (the database answers) instead of `/healthz`.
        #[arg(long)]
        ready: bool,
    },
    /// Time argon2id hashes on this machine (what one login costs), to size
    /// PASSWORD_HASH_CONCURRENCY and to know the login throughput limit.
    HashCost {
        /// How many hashes to time.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Print the OpenAPI document (regenerate the committed copy with
    /// `cargo run --release -- openapi > openapi/openapi.json`).
    Openapi,
    /// Accounts: roles, find, disable, enable, revoke sessions.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminAction {
    /// Give the admin role to the account with this email (effective from
    /// the user's next token).
    Grant { email: String },
    /// Take the admin role away (back to `user`).
    Demote { email: String },
    /// The old name of `demote`; still works, with a deprecation note.
    #[command(hide = true)]
    Revoke { email: String },
    /// Show the account with this email.
    Find { email: String },
    /// Disable the account: no login (403 account_disabled), every session revoked.
    Disable { email: String },
    /// Enable a disabled account again.
    Enable { email: String },
    /// Revoke every session of the account (it can log in again).
    RevokeSessions { email: String },
}

/// Opens the configured database (applying migrations) for a one-shot command.
async fn open_store(config: &Config) -> anyhow::Result<Store> {
    Ok(Store::connect(
        &config.database_url,
        &PoolSettings {
            max_connections: 1,
            acquire_timeout: config.db_acquire_timeout,
        },
    )
    .await?)
}

/// `migrate`: apply migrations and report.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    let store = open_store(config).await?;
    println!("migrations applied ({} database)", store.kind());
    if let Some(report) = crate::upgrade::run(&store).await? {
        println!(
            "emails normalised: {} rewritten, {} collision(s), {} invalid (see the log for user ids)",
            report.rewritten,
            report.collisions.len(),
            report.invalid.len()
        );
    }
    store.close().await;
    Ok(())
}

/// `healthcheck`: one HTTP/1.1 request to our own listener, no client library
/// needed in the image (so no curl in the container either).
pub fn healthcheck(config: &Config, ready: bool) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
    use std::time::Duration;

    let mut addr = config.bind_addr;
    if addr.ip().is_unspecified() {
        let loopback: IpAddr = match addr {
            SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        };
        addr.set_ip(loopback);
    }
    let path = if ready { "/readyz" } else { "/healthz" };
    let timeout = Duration::from_secs(3);
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head)?;
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        anyhow::bail!("{path} answered {}", String::from_utf8_lossy(&head[9..]))
    }
}

/// `hash-cost`: the median time of one hash, and the login limit it implies.
pub async fn hash_cost(rounds: usize) -> anyhow::Result<()> {
    use crate::auth::password::{M_COST_KIB, P_COST, PasswordHasher, T_COST};
    let hasher = PasswordHasher::new(1, rounds.max(1));
    let mut times = Vec::with_capacity(rounds.max(1));
    for _ in 0..rounds.max(1) {
        let start = std::time::Instant::now();
        hasher
            .hash(secrecy::SecretString::from(
                "hash cost benchmark".to_owned(),
            ))
            .await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "argon2id m={M_COST_KIB} KiB t={T_COST} p={P_COST}: median {median:.2} ms per hash over {} hashes; \
         limit with {cores} cores: {:.0} hashes/s",
        times.len(),
        cores as f64 * 1000.0 / median
    );
    Ok(())
}

/// `admin grant|demote|find|disable|enable|revoke-sessions EMAIL`.
pub async fn admin(config: &Config, action: &AdminAction) -> anyhow::Result<()> {
    let (email, role) = match action {
        AdminAction::Grant { email } => (email, Role::Admin),
        AdminAction::Demote { email } => (email, Role::User),
        AdminAction::Revoke { email } => {
            eprintln!("note: `admin revoke` is now `admin demote`; the old name will go away");
            (email, Role::User)
        }
        AdminAction::Find { email }
        | AdminAction::Disable { email }
        | AdminAction::Enable { email }
        | AdminAction::RevokeSessions { email } => {
            return account_action(config, action, email).await;
        }
    };
    let email = crate::auth::credentials::normalize_email(email)
        .ok_or_else(|| anyhow::anyhow!("not a valid email address"))?;
    let store = open_store(config).await?;
    let found = store.set_role(&email, role, chrono::Utc::now()).await?;
    store.close().await;
    if !found {
        anyhow::bail!("no account with the email {email}");
    }
    log::warn!("audit: role of {email} set to {role} from the command line");
    println!("{email} now has the role {role} (effective from the user's next token)");
    if role == Role::User {
        // Tokens already issued keep the admin role until they expire (15
        // minutes): say how to cut them off now, for a compromised admin.
        println!("to refuse the admin's current tokens now: admin revoke-sessions {email}");
    }
    Ok(())
}

/// The account actions of `admin`, through the same services as the API.
async fn account_action(config: &Config, action: &AdminAction, email: &str) -> anyhow::Result<()> {
    use crate::accounts::AccountError;
    let store = open_store(config).await?;
    let (_sessions, accounts) = crate::startup::account_services(config, &store)?;
    let not_found = |e: AccountError| match e {
        AccountError::NotFound => anyhow::anyhow!("no account with the email {email}"),
        other => anyhow::Error::new(other),
    };
    let result = async {
        match action {
            AdminAction::Find { .. } => {
                let found = accounts.find_by_email(email).await.map_err(not_found)?;
                let user = &found.user;
                println!("id:              {}", user.id);
                println!("email:           {}", user.email);
                println!("email_verified:  {}", user.email_verified());
                println!("role:            {}", user.role.0);
                println!("disabled:        {}", user.disabled_at.is_some());
                println!("created_at:      {}", user.created_at.to_rfc3339());
                println!("active_sessions: {}", found.active_sessions);
            }
            AdminAction::Disable { .. } => {
                let user = accounts.disable(email, None).await.map_err(not_found)?;
                log::warn!("audit: account {} disabled from the command line", user.id);
                println!("{} is disabled; every session is revoked", user.email);
            }
            AdminAction::Enable { .. } => {
                let user = accounts.enable(email).await.map_err(not_found)?;
                log::warn!("audit: account {} enabled from the command line", user.id);
                println!("{} is enabled", user.email);
            }
            AdminAction::RevokeSessions { .. } => {
                let n = accounts
                    .revoke_sessions(email, None)
                    .await
                    .map_err(not_found)?;
                println!("{n} session(s) revoked");
            }
            AdminAction::Grant { .. } | AdminAction::Demote { .. } | AdminAction::Revoke { .. } => {
            }
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    store.close().await;
    result
}
