//! The `kinlink` command: the entry point for users and operators.
//!
//! `kinlink up` runs every service (intake, enricher, alerter, notifier) in one process. On
//! the embedded default it needs nothing else installed: the store and the event log live in
//! one SQLite file under `--data-dir`. With a config that selects Kafka and PostgreSQL it runs
//! the same services on the scale-out backends.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use kinlink_runtime::settings::LogBackend;
use kinlink_runtime::{Process, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "kinlink",
    version,
    about = "Links dependent children to modern-slavery referrals and alerts the responsible authority."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole pipeline in this process (embedded storage by default).
    Up(UpArgs),
}

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// Directory of the embedded database (created if missing).
    #[arg(long, env = "KINLINK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML settings file; `KINLINK__SECTION__KEY` variables override it.
    #[arg(long, env = "KINLINK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the HTTP server (intake API and ops endpoints), e.g. 127.0.0.1:8080.
    #[arg(long)]
    pub address: Option<String>,
}

/// Runs the parsed command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Up(args) => up(args).await,
    }
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    if let Some(dir) = args.data_dir {
        settings.data_dir = dir;
    }
    if let Some(address) = args.address {
        settings.http.address = address;
    }
    kinlink_runtime::telemetry::init(&settings.telemetry)?;
    let registry = Arc::new(kinlink_alerter::authorities::AuthorityRegistry::shipped()?);
    let embedded = settings.log.backend == LogBackend::Embedded;
    let data_dir = settings.data_dir.clone();
    let mut process = Process::build(settings)
        .await
        .context("starting the pipeline")?;
    process.spawn_stage(kinlink_enricher::Enricher);
    process.spawn_stage(kinlink_alerter::Alerter::new(registry));
    kinlink_notifier::spawn(&mut process, embedded)?;
    let api = kinlink_intake::router(process.log.clone(), &process.settings.intake);

    let address = process.local_addr()?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "kinlink listening on http://{address}")?;
    if embedded {
        writeln!(
            stdout,
            "embedded store and log: {}",
            data_dir.join("kinlink.db").display()
        )?;
    } else {
        writeln!(stdout, "scale-out backends: Kafka log, PostgreSQL store")?;
    }
    writeln!(
        stdout,
        "intake: POST http://{address}/v1/referrals   ops: /livez /readyz /metrics   stop: Ctrl-C"
    )?;
    stdout.flush()?;
    drop(stdout);

    tokio::spawn(kinlink_runtime::shutdown_on_signal(
        process.shutdown.clone(),
    ));
    process
        .run_until_stopped(api)
        .await
        .map_err(|error| anyhow::anyhow!(error))?;
    println!("kinlink stopped cleanly");
    Ok(())
}
