//! `pingvas`: the Pingvas Studio host.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use pingvas_host::app::{AppState, open_database};
use pingvas_host::billing::plans::Catalogue;
use pingvas_host::config::{self, Config};
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
    /// Run a GPU worker that leases jobs from a host's internal API.
    Worker(WorkerArgs),
    /// Operator actions on accounts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Plugin author tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Check an image's content credentials (C2PA): prints the report as
    /// JSON; exits 1 when the file has none, they are invalid, or the file
    /// changed since it was signed.
    Verify { file: PathBuf },
}

#[derive(clap::Args)]
struct WorkerArgs {
    /// The host's base URL (`http://host:8080`).
    #[arg(long, env = "PINGVAS_SERVER")]
    server: String,
    /// The host's worker token (`PINGVAS_WORKER_TOKEN` on the host).
    #[arg(long, env = "PINGVAS_WORKER_TOKEN", hide_env_values = true)]
    token: String,
    /// cpu-reference, invokeai or comfyui.
    #[arg(long, default_value = "cpu-reference")]
    backend: String,
    /// Base URL of the InvokeAI or ComfyUI server.
    #[arg(long)]
    backend_url: Option<String>,
    /// Comma-separated models this worker serves (default: every model).
    #[arg(long)]
    models: Option<String>,
    /// A name shown in logs (default: the host name).
    #[arg(long)]
    name: Option<String>,
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
            let listeners = server::Listeners::bind(listener, &state.config).await?;
            server::serve(state, listeners, server::shutdown_signal()).await
        }
        Command::Worker(args) => run_worker(args, &config).await,
        Command::Verify { file } => {
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let mime = pingvas_host::provenance::mime_of(&bytes)
                .with_context(|| format!("{} is not a PNG, JPEG or WebP image", file.display()))?;
            let creds = pingvas_host::provenance::Credentials::from_config(&config)?;
            let report = creds.verify(&bytes, mime)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            if !(report.has_manifest && report.signature_valid && report.unchanged) {
                std::process::exit(1);
            }
            Ok(())
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

async fn run_worker(args: WorkerArgs, config: &Config) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::time::Duration;

    use pingvas_host::queue::WorkerInfo;
    use pingvas_host::worker::Worker;
    use pingvas_host::worker::remote::RemoteSource;

    let models = args.models.as_deref().map(config::comma_list);
    let backend = pingvas_host::inference::build(&args.backend, args.backend_url.as_deref())?;
    let plans = Catalogue::load(config.plans_file.as_deref())?;
    let catalogue =
        pingvas_host::models::ModelCatalogue::load(config.models_file.as_deref(), &plans)?;
    let name = args
        .name
        .unwrap_or_else(|| std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into()));
    let info = WorkerInfo::new("worker", name, args.backend.clone(), models);
    let runtime = pingvas_host::app::plugin_runtime(config)?;
    let source = Arc::new(RemoteSource::new(&args.server, &args.token)?);
    let worker = Worker::new(source, info, backend, runtime, catalogue, config);
    worker.refresh_models().await;
    let worker = Arc::new(worker);
    // SIGTERM: stop leasing and let the running job finish and report
    // within the grace period; past it, stop the job (its lease expires and
    // another worker takes it).
    let stop = tokio_util::sync::CancellationToken::new();
    let (on_signal, abort, grace) = (
        stop.clone(),
        worker.abort.clone(),
        Duration::from_secs(config.shutdown_grace_secs),
    );
    tokio::spawn(async move {
        server::shutdown_signal().await;
        on_signal.cancel();
        tokio::time::sleep(grace).await;
        abort.cancel();
    });
    worker.run(stop).await;
    Ok(())
}
