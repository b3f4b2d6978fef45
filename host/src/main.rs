//! `pingvas`: the Pingvas Studio host.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingvas_host::app::{AppState, open_database};
use pingvas_host::billing::plans::Catalogue;
use pingvas_host::config::Config;
use pingvas_host::plugins::PluginRuntime;
use pingvas_host::plugins::check::{self, CheckInput};
use pingvas_host::plugins::engine::EngineOptions;
use pingvas_host::{admin, server, telemetry};

#[derive(Parser)]
#[command(name = "pingvas", version, about = "Pingvas Studio host server")]
struct Cli {
    /// Configuration file (default: ./pingvas.toml, or $PINGVAS_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the API server (migrations run first).
    Serve,
    /// Run database migrations and exit.
    Migrate,
    /// Operator actions on accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Plugin author tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Validate a component as `POST /plugins` does, then run it once in the
    /// sandbox with sample input and report time and memory.
    Check {
        file: PathBuf,
        /// Sample input as JSON: prompt, negative_prompt, model, width,
        /// height, steps, seed, config (the node's parameters),
        /// image_width, image_height.
        #[arg(long)]
        input: Option<String>,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Add credits to an account (negative to remove), as an admin adjustment.
    GrantCredits {
        email: String,
        #[arg(allow_negative_numbers = true)]
        amount: i64,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Move an account to a tier of the plan catalogue.
    SetTier { email: String, tier: String },
    /// Make an account an admin, or a plain user again.
    SetRole { email: String, role: String },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref())?;
    telemetry::init(&config.log_format);
    match cli.command {
        Command::Plugin(PluginCommand::Check { file, input }) => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let input: CheckInput = match input {
                Some(text) => serde_json::from_str(&text).context("--input")?,
                None => CheckInput::default(),
            };
            let runtime = PluginRuntime::new(&EngineOptions::default(), None)?;
            let name = file
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            match check::check(&runtime, &name, &bytes, &input, config.plugin_max_bytes).await {
                Ok(report) => {
                    for line in report.lines {
                        println!("{line}");
                    }
                    Ok(())
                }
                Err(e) => {
                    eprintln!("check failed: {e}");
                    std::process::exit(1);
                }
            }
        }
        Command::Serve => {
            let addr = config.addr;
            let state = AppState::build(config).await?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding {addr}"))?;
            tracing::info!(addr = %listener.local_addr()?, database = state.db.kind(), "pingvas listening");
            server::serve(state, listener, server::shutdown_signal()).await
        }
        Command::Migrate => {
            let db = open_database(&config).await?;
            println!("migrations applied ({})", db.kind());
            Ok(())
        }
        Command::Admin(cmd) => {
            let db = open_database(&config).await?;
            match cmd {
                AdminCommand::GrantCredits {
                    email,
                    amount,
                    reason,
                } => {
                    let posted =
                        admin::grant_credits(&db, &email, amount, reason.as_deref()).await?;
                    println!(
                        "{email}: {amount:+} credits, balance now {}",
                        posted.balance_after
                    );
                }
                AdminCommand::SetTier { email, tier } => {
                    let plans = Catalogue::load(config.plans_file.as_deref())?;
                    admin::set_tier(&db, &plans, &email, &tier).await?;
                    println!("{email}: tier set to {tier}");
                }
                AdminCommand::SetRole { email, role } => {
                    admin::set_role(&db, &email, &role).await?;
                    println!("{email}: role set to {role}");
                }
            }
            Ok(())
        }
    }
}
