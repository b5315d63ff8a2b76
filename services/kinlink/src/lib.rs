//! The `kinlink` command: the entry point for users and operators.
//!
//! `kinlink up` runs every service (intake, enricher, alerter, notifier) in one process. On
//! the embedded default it needs nothing else installed: the store and the event log live in
//! one SQLite file under `--data-dir`. With a config that selects Kafka and PostgreSQL it runs
//! the same services on the scale-out backends.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

mod audit;
mod authority;
pub mod bench;
mod erasure;
mod import;
mod keys;
pub mod linkage;
mod ops;
mod persons;
mod report;
mod retention;
mod sar;
mod support;
mod tokens;
mod triage;
mod users;

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
    /// Run one service, for the scale-out shape (several processes sharing Kafka and
    /// PostgreSQL). Same as the service's own binary, e.g. `kinlink-enricher`.
    Serve(ServeArgs),
    /// Show which body runs children's services for a postcode or GSS code, as routing would
    /// decide it. Exit code 2 when it cannot be resolved to one body.
    Authority(AuthorityArgs),
    /// The triage queue: alerts no body could be found for, waiting for a person.
    Triage(TriageArgs),
    /// API tokens for agencies and authorities (shown once, stored hashed, revocable).
    Tokens(TokensArgs),
    /// People who sign in to the web console (`/console`): council staff, operators, reviewers.
    Users(UsersArgs),
    /// The hash-chained audit log.
    Audit(AuditArgs),
    /// On-call operations: status, trace, dead letters, replay.
    Ops(OpsArgs),
    /// Link person records in CSV files with the linkage engine (deduplicate one file, or
    /// link two).
    Link(linkage::LinkArgs),
    /// Linkage models.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Synthetic person records with ground truth, for evaluating linkage.
    Synth(linkage::SynthArgs),
    /// Load generator: starts `kinlink up`, posts `kinlink synth` households through the
    /// HTTP API, receives the webhooks, and reports throughput and latency beside what the
    /// storage allows (durable commits/s, batched rows/s) on the same disk.
    Bench(bench::BenchArgs),
    /// How a person came to be: each record's linkage decision with its per-field evidence
    /// and model version, merges, splits and review tasks (ids and weights, no names).
    Explain {
        person_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Linkage review tasks: possible matches scored between the thresholds, where nothing
    /// was merged until a person decides.
    Review {
        #[command(subcommand)]
        command: ReviewCommand,
    },
    /// Corrections to the person registry.
    Person {
        #[command(subcommand)]
        command: PersonCommand,
    },
    /// Returns for a period: referrals, dependent children identified and where, hand-offs,
    /// missing episodes, and how fast authorities acknowledged; counts from 1 to 4 (and any
    /// that totals would give away) shown as `[c]`. Read from the event log.
    Report(report::ReportArgs),
    /// Erasure: delete a person's data keys (their sealed events in the log become
    /// unreadable everywhere) and scrub the store's copies; audited.
    Erase {
        #[command(subcommand)]
        command: erasure::EraseCommand,
    },
    /// The master key wrapping the per-person data keys: status and rotation.
    Keys {
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// Retention: erase the personal data of referrals kept longer than the policy allows.
    Retention {
        #[command(subcommand)]
        command: retention::RetentionCommand,
    },
    /// Legal holds: referrals or persons nothing may erase until the hold is lifted.
    Hold {
        #[command(subcommand)]
        command: retention::HoldCommand,
    },
    /// Subject access: everything held about a person, other people's details withheld.
    Sar {
        #[command(subcommand)]
        command: sar::SarCommand,
    },
    /// Load a backlog of referrals (one JSON referral per line) through intake's validation.
    /// Re-running after an interruption skips lines already accepted.
    Import(ImportArgs),
}

#[derive(Debug, Subcommand)]
pub enum ReviewCommand {
    /// Open review tasks, oldest first (`--all` includes decided ones).
    List {
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Decide a task: `--same` merges the two persons (a `PersonsMerged` event),
    /// `--different` closes it with nothing merged.
    Decide {
        task_id: String,
        #[arg(
            long,
            conflicts_with = "different",
            required_unless_present = "different"
        )]
        same: bool,
        #[arg(long)]
        different: bool,
        /// Who decided, for the audit log (an operator id, not a name).
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum PersonCommand {
    /// Move records wrongly linked or merged to a person onto a new person of their own
    /// (a `PersonSplit` event). `kinlink explain` lists a person's record ids.
    Split {
        person_id: String,
        /// A record id to move (repeat for several).
        #[arg(long = "record", required = true)]
        records: Vec<String>,
        /// Why, in a few words (no personal data).
        #[arg(long)]
        reason: String,
        /// Who decided, for the audit log (an operator id, not a name).
        #[arg(long)]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Estimate u (random pairs) and m (expectation maximisation) from a persons CSV.
    Train(linkage::TrainArgs),
    /// Link the registry's records again with a model (the configured one by default) and
    /// report which persons would merge or split. Changes nothing.
    Diff {
        /// A model file from `kinlink model train`.
        #[arg(long)]
        model: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct OpsArgs {
    #[command(subcommand)]
    pub command: OpsCommand,
}

#[derive(Debug, Subcommand)]
pub enum OpsCommand {
    /// Lag per stage and partition (events and seconds), stalled stages, dead letters,
    /// triage and alerts by state.
    Status {
        /// A stage with lag and no progress for this many seconds is flagged stalled.
        #[arg(long)]
        stalled_after: Option<u64>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Everything that happened to one referral, in time order (ids and codes only).
    Trace {
        referral_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Dead letters: list, show one, replay.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Re-derive a stage's outputs from a point in its input (after a rule or data change).
    Replay {
        /// intake, enricher, alerter or notifier.
        #[arg(long)]
        stage: String,
        /// An RFC 3339 time, or an offset.
        #[arg(long)]
        from: String,
        /// Report what would change without changing anything.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Dead letters with their reasons.
    List {
        #[arg(long)]
        stage: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// One dead letter (never its payload).
    Show {
        event_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replay dead letters with their original event ids.
    Replay {
        /// One dead letter.
        #[arg(long, conflicts_with_all = ["stage", "all"])]
        event: Option<String>,
        /// Every dead letter of a stage.
        #[arg(long, conflicts_with = "all")]
        stage: Option<String>,
        /// Every dead letter.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// JSON Lines file: one referral per line, in the `POST /v1/referrals` JSON shape.
    pub file: PathBuf,
    /// The agency the referrals are from.
    #[arg(long)]
    pub agency: String,
    /// Write the per-line error report (JSON Lines) here instead of standard error.
    #[arg(long)]
    pub errors: Option<PathBuf>,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[derive(Debug, clap::Args)]
pub struct TokensArgs {
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token bound to one authority or one agency; prints the secret once.
    Create {
        /// GSS code (or HSCT code) of the authority the token acts for.
        #[arg(long, conflicts_with = "agency", required_unless_present = "agency")]
        authority: Option<String>,
        /// Id of the agency (police force, council, NGO) the token submits referrals for.
        #[arg(long)]
        agency: Option<String>,
        /// A note for operators, e.g. who holds the token.
        #[arg(long, default_value = "")]
        label: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List tokens (ids, never secrets).
    List(StoreArgs),
    /// Revoke a token by id.
    Revoke {
        token_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct UsersArgs {
    #[command(subcommand)]
    pub command: UsersCommand,
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// Create a console user. Prints a generated password once, unless --password-env names
    /// an environment variable holding one (at least 12 characters).
    Create {
        /// Sign-in name: 3 to 64 lower-case letters, digits, '.', '_', '-' or '@'.
        username: String,
        /// viewer, practitioner or manager (council staff, need --authority); operator or
        /// reviewer (kinlink staff, no authority).
        #[arg(long)]
        role: String,
        /// GSS code (or HSCT-...) of the council the user works for.
        #[arg(long, default_value = "")]
        authority: String,
        /// The person's name, shown in the console and its history.
        #[arg(long)]
        name: String,
        /// Environment variable holding the password (never a command-line argument).
        #[arg(long, conflicts_with = "oidc")]
        password_env: Option<String>,
        /// No password: the user signs in only through an OpenID Connect provider
        /// (`console.oidc`), whose username claim must equal USERNAME.
        #[arg(long)]
        oidc: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List users (never password hashes).
    List(StoreArgs),
    /// Disable a user: they cannot sign in and their sessions end.
    Disable {
        username: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Set a new password (generated unless --password-env), unlock and re-enable the user;
    /// their sessions end.
    Reset {
        username: String,
        #[arg(long)]
        password_env: Option<String>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chain; exit code 1 if any entry was altered or removed.
    Verify(StoreArgs),
}

#[derive(Debug, clap::Args)]
pub struct AuthorityArgs {
    /// A full or partial postcode (`SW1A 2AA`, `SW1A 2`, `SW1A`) or a GSS code (`E07000105`).
    pub place: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct TriageArgs {
    #[command(subcommand)]
    pub command: TriageCommand,
}

#[derive(Debug, Subcommand)]
pub enum TriageCommand {
    /// List open triage items, oldest first, with their SLA.
    List(StoreArgs),
    /// Route a triage item to the body a person decided on; it is then delivered and
    /// escalated like any alert, under its own id.
    Route {
        alert_id: String,
        /// GSS code of the children's-services body (a district resolves to its county),
        /// or an HSCT code in Northern Ireland.
        #[arg(long)]
        authority: String,
        /// Who decided, for the audit log (an operator id, not a name).
        #[arg(long, default_value = "operator")]
        by: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// Directory of the embedded database.
    #[arg(long, env = "KINLINK_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// TOML settings file (for a PostgreSQL store: `store.url`).
    #[arg(long, env = "KINLINK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Service {
    Intake,
    Enricher,
    Alerter,
    Notifier,
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    pub service: Service,
    /// TOML settings file; `KINLINK__SECTION__KEY` variables override it.
    #[arg(long, env = "KINLINK_CONFIG")]
    pub config: Option<PathBuf>,
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
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Commands that answer with an exit code of their own say so; the rest succeed or fail.
    let done = match cli.command {
        Command::Authority(args) => return authority::lookup(&args),
        Command::Audit(AuditArgs {
            command: AuditCommand::Verify(args),
        }) => return audit::verify(&args).await,
        other => other,
    };
    match done {
        Command::Up(args) => up(args).await,
        Command::Serve(args) => serve(args).await,
        Command::Triage(TriageArgs {
            command: TriageCommand::List(args),
        }) => triage::list(&args).await,
        Command::Triage(TriageArgs {
            command:
                TriageCommand::Route {
                    alert_id,
                    authority,
                    by,
                    store,
                },
        }) => triage::route(&alert_id, &authority, &by, &store).await,
        Command::Tokens(TokensArgs { command }) => tokens::run(command).await,
        Command::Users(UsersArgs { command }) => users::run(command).await,
        Command::Import(args) => import::run(&args).await,
        Command::Report(args) => report::run(&args).await,
        Command::Sar { command } => sar::run(command).await,
        Command::Erase { command } => erasure::run(command).await,
        Command::Retention { command } => retention::run(command).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Hold { command } => retention::hold(command).await,
        Command::Ops(OpsArgs { command }) => ops::run(command).await,
        Command::Link(args) => linkage::link(&args),
        Command::Model {
            command: ModelCommand::Train(args),
        } => linkage::train_model(&args),
        Command::Model {
            command: ModelCommand::Diff { model, store },
        } => persons::model_diff(model.as_deref(), &store).await,
        Command::Synth(args) => linkage::synth(&args),
        Command::Bench(args) => bench::run(&args).await,
        Command::Explain { person_id, store } => persons::explain(&person_id, &store).await,
        Command::Review {
            command: ReviewCommand::List { all, store },
        } => persons::review_list(all, &store).await,
        Command::Review {
            command:
                ReviewCommand::Decide {
                    task_id,
                    same,
                    different: _,
                    by,
                    store,
                },
        } => persons::review_decide(&task_id, same, &by, &store).await,
        Command::Person {
            command:
                PersonCommand::Split {
                    person_id,
                    records,
                    reason,
                    by,
                    store,
                },
        } => persons::split(&person_id, &records, &reason, &by, &store).await,
        Command::Authority(_) | Command::Audit(_) => Ok(()),
    }
    .map(|()| ExitCode::SUCCESS)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    // Each service process also samples the ops gauges (lag, triage, alerts) for /metrics.
    fn with_ops(
        process: &mut Process,
        install: kinlink_runtime::process::Install,
    ) -> Result<axum::Router, kinlink_runtime::process::TaskError> {
        ops::metrics::spawn(process);
        install(process)
    }
    let (name, install): (&str, kinlink_runtime::process::Install) = match args.service {
        Service::Intake => ("intake", |p| with_ops(p, kinlink_intake::install)),
        Service::Enricher => ("enricher", |p| with_ops(p, kinlink_enricher::install)),
        Service::Alerter => ("alerter", |p| with_ops(p, kinlink_alerter::install)),
        // The notifier owns alerts, so its processes also serve the web console.
        Service::Notifier => ("notifier", |p| {
            let api = with_ops(p, kinlink_notifier::install)?;
            retention::spawn(p);
            let console = kinlink_console::install(p)
                .map_err(|e| kinlink_runtime::process::TaskError::from(e.to_string()))?;
            Ok(api.merge(console))
        }),
    };
    kinlink_runtime::process::run_service(name, args.config.as_deref(), install)
        .await
        .map_err(|error| anyhow::anyhow!(error))
}

/// Every service in one process, as `kinlink up` runs them: returns the process (call
/// `run_until_stopped` with the router) and the API routes. Benchmarks use it too.
pub async fn assemble(settings: Settings) -> anyhow::Result<(Process, axum::Router)> {
    let embedded = settings.log.backend == LogBackend::Embedded;
    let mut process = Process::build(settings)
        .await
        .context("starting the pipeline")?;
    let mut api = axum::Router::new();
    let installs: [kinlink_runtime::process::Install; 3] = [
        kinlink_intake::install,
        kinlink_enricher::install,
        kinlink_alerter::install,
    ];
    for install in installs {
        api = api.merge(install(&mut process).map_err(|e| anyhow::anyhow!(e))?);
    }
    // The only notifier on an embedded store: claims left by a crash are released at once.
    api = api.merge(kinlink_notifier::spawn(&mut process, embedded)?);
    api = api.merge(kinlink_console::install(&process)?);
    ops::metrics::spawn(&mut process);
    retention::spawn(&mut process);
    Ok((process, api))
}

async fn up(args: UpArgs) -> anyhow::Result<()> {
    let mut settings = Settings::load(args.config.as_deref()).context("loading settings")?;
    if let Some(dir) = args.data_dir {
        settings.data_dir = dir;
    }
    if let Some(address) = args.address {
        settings.http.address = address;
    }
    let _telemetry = kinlink_runtime::telemetry::init(&settings.telemetry)?;
    let embedded = settings.log.backend == LogBackend::Embedded;
    let data_dir = settings.data_dir.clone();
    let (process, api) = assemble(settings).await?;

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
    let metrics = match process.metrics_addr()? {
        Some(metrics) => format!("http://{metrics}/metrics"),
        None => "/metrics".to_owned(),
    };
    writeln!(
        stdout,
        "intake: POST http://{address}/v1/referrals   ops: /livez /readyz {metrics}   stop: Ctrl-C"
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
