//! Entry point: load `.env`, start logging, read the configuration, then run
//! the chosen command (serving by default). All the wiring is in `startup`.

use std::process::ExitCode;

use auth_api::cli::{self, Cli, Command};
use auth_api::config::Config;
use auth_api::startup::Application;
use clap::Parser;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Printing the document and timing hashes need no configuration.
    match cli.command {
        Some(Command::Openapi) => {
            print!("{}", auth_api::openapi::document_json());
            return ExitCode::SUCCESS;
        }
        Some(Command::HashCost { rounds }) => {
            return match cli::hash_cost(rounds).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            };
        }
        _ => {}
    }
    // A missing .env is normal; a broken one is reported but not fatal.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("warning: .env could not be read: {e}");
    }
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        // env_logger's line, plus the id of the request that caused it (the
        // access line prints its own), so one grep finds a request's lines.
        .format(|buf, record| {
            use std::io::Write;
            let id = auth_api::http::request_id::current()
                .filter(|_| record.target() != "actix_web::middleware::logger")
                .map(|id| format!(" request_id={id}"))
                .unwrap_or_default();
            writeln!(
                buf,
                "[{} {:<5} {}] {}{id}",
                buf.timestamp(),
                record.level(),
                record.target(),
                record.args()
            )
        })
        .init();

    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            log::error!("{e}");
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => cli::migrate(&config).await,
        Command::Admin { action } => cli::admin(&config, &action).await,
        Command::Healthcheck { ready } => cli::healthcheck(&config, ready),
        Command::Openapi | Command::HashCost { .. } => {
            unreachable!("handled before the configuration is read")
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    auth_api::startup::raise_open_file_limit();
    let app = Application::build(config).await?;
    app.run_until_stopped().await?;
    Ok(())
}
