//! Chaos harness for the scale-out shape: a tansu broker and a PostgreSQL database of its own,
//! every service a separate `kinlink serve` process (two instances of each stage), an authority
//! receiver that verifies signatures and counts deliveries per webhook-id, and an on-call
//! receiver. It drives family referrals (two children, two authorities, urgent, due at once so
//! every alert escalates) through two intake processes, as an agency would: retrying with the
//! same idempotency key until one accepts. Meanwhile it injects faults on a seeded schedule:
//!
//! - SIGKILL of any service process, then a restart;
//! - SIGSTOP of a consumer past its session timeout, then SIGCONT (a rebalance while it holds
//!   work);
//! - the broker stopped and restarted on the same port and storage;
//! - every database session killed (`pg_terminate_backend`), or the database refusing new
//!   connections for a while;
//! - authority endpoints answering 500, 429 or too slowly.
//!
//! At the end it compares what the receivers saw with the truth and prints one summary line;
//! the test fails on any lost alert, unmarked duplicate, escalation fired twice or a drain
//! slower than 60 s after the last fault.
//!
//! `cargo test --test chaos` runs a short seeded run (as CI does); `scripts/chaos.sh` runs a
//! long one (`--referrals 10000 --faults 50`), through the same code with other numbers.
//!
//! A second test is the rebalance proof: with two instances of each stage and four partitions,
//! both instances of every stage consume (read from each process's own metrics), and when one
//! instance of each stage is killed the others take its partitions and nothing is lost.

#[allow(dead_code)]
#[path = "../e2e/helpers.rs"]
mod helpers;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use sqlx::Connection;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const SIGNING_SECRET: &str = "whsec_a2lubGluay1jaGFvcy1zaWduaW5nLXNlY3JldC0zMmI=";
/// The variable every kinlink process reads it from (settings refuse secrets inline).
const SIGNING_SECRET_VAR: &str = "KINLINK_CHAOS_SIGNING_SECRET";
const SECRETS: &[(&str, &str)] = &[(SIGNING_SECRET_VAR, SIGNING_SECRET)];
/// A stage's consumer session timeout (`session.timeout.ms` in the settings below): a process
/// stopped for longer loses its partitions to the other instance.
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// Partitions of every topic: two instances of a stage get two each.
const PARTITIONS: i32 = 4;
/// Every stage must have drained this soon after the last fault.
const DRAIN_LIMIT: Duration = Duration::from_secs(60);

/// The tests of this file each start sixteen processes: one at a time on a 2-core machine.
static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// The run's size and seed, from the environment (`scripts/chaos.sh` sets them).
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    referrals: usize,
    faults: usize,
    /// Time over which referrals are sent and faults fall.
    window: Duration,
    broker_down: Duration,
    database_down: Duration,
    /// The kinds of fault to draw from (`KINLINK_CHAOS_KINDS`, comma-separated names).
    kinds: Vec<Fault>,
    /// When the drain limit passes with alerts outstanding, how much longer to wait before
    /// counting them lost, so a slow drain is told apart from a loss.
    settle: Duration,
}

impl Plan {
    fn from_env() -> TestResult<Self> {
        let number = |name: &str, default: u64| -> TestResult<u64> {
            match std::env::var(name) {
                Ok(value) => Ok(value
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, got {value:?}"))?),
                Err(_) => Ok(default),
            }
        };
        let referrals = usize::try_from(number("KINLINK_CHAOS_REFERRALS", 30)?)?;
        let faults = usize::try_from(number("KINLINK_CHAOS_FAULTS", 6)?)?;
        Ok(Self {
            seed: number("KINLINK_CHAOS_SEED", 1)?,
            referrals,
            faults,
            window: Duration::from_secs(number(
                "KINLINK_CHAOS_WINDOW_SECS",
                (referrals as u64 / 20).max(faults as u64 * 12).max(30),
            )?),
            broker_down: Duration::from_secs(number("KINLINK_CHAOS_BROKER_DOWN_SECS", 5)?),
            database_down: Duration::from_secs(number("KINLINK_CHAOS_DATABASE_DOWN_SECS", 4)?),
            settle: Duration::from_secs(number("KINLINK_CHAOS_SETTLE_SECS", 0)?),
            kinds: match std::env::var("KINLINK_CHAOS_KINDS") {
                Ok(names) => names
                    .split(',')
                    .map(|name| {
                        Fault::ALL
                            .into_iter()
                            .find(|f| f.name() == name.trim())
                            .ok_or_else(|| format!("KINLINK_CHAOS_KINDS: unknown fault {name:?}"))
                    })
                    .collect::<Result<_, _>>()?,
                Err(_) => Fault::ALL.to_vec(),
            },
        })
    }
}

/// tansu on a fixed port and SQLite storage, so it can be stopped and started again as the
/// same broker.
struct Broker {
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    /// Times tansu exited on its own (not a fault of the schedule) and was started again, as
    /// a service supervisor would; kinlink must ride through those too.
    crashes: usize,
}

impl Broker {
    async fn start(dir: &Path) -> TestResult<Self> {
        let mut broker = Self {
            dir: dir.to_owned(),
            port: free_port()?,
            child: None,
            crashes: 0,
        };
        broker.restart().await?;
        Ok(broker)
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) -> TestResult {
        let bin = std::env::var("KINLINK_TANSU_BIN").unwrap_or_else(|_| "tansu".into());
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let deadline = Instant::now() + Duration::from_secs(30);
        // The port may linger in TIME_WAIT after a stop: tansu exits when it cannot bind, so
        // a dead child means "try again".
        while Instant::now() < deadline {
            let mut child = Command::new(&bin)
                .args([
                    "broker",
                    "--listener-url",
                    &url,
                    "--advertised-listener-url",
                    &url,
                ])
                .args(["--storage-engine", "sqlite://tansu.db"])
                .current_dir(&self.dir)
                .stdin(Stdio::null())
                .stdout(broker_log()?)
                .stderr(broker_log()?)
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot start tansu ({bin}): {e}"))?;
            loop {
                if child.try_wait()?.is_some() {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    break;
                }
                if tokio::net::TcpStream::connect(self.bootstrap())
                    .await
                    .is_ok()
                {
                    self.child = Some(child);
                    return Ok(());
                }
                if Instant::now() > deadline {
                    return Err("tansu did not start listening within 30 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err("tansu could not bind its port again within 30 s".into())
    }

    /// Starts tansu again if it exited by itself.
    async fn supervise(&mut self) -> TestResult {
        let exited = match self.child.as_mut() {
            Some(child) => child.try_wait()?,
            None => None,
        };
        if let Some(status) = exited {
            self.crashes += 1;
            report_line(&format!(
                "chaos: tansu exited by itself ({status}); restarting it"
            ));
            self.child = None;
            self.restart().await?;
        }
        Ok(())
    }

    /// Stops tansu as an operator's restart would: SIGINT, then SIGKILL if it has not exited
    /// within 10 s. (A SIGKILLed tansu 0.6 can come back with an idempotent producer's state
    /// missing and then panics in its storage task on that producer's next batch, leaving a
    /// broker that answers every request with an error: a tansu fault, not one kinlink can
    /// ride through.)
    async fn stop(&mut self) -> TestResult {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                signal(pid, "INT")?;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                child.kill().await?;
            }
        }
        Ok(())
    }
}

/// Where tansu's own log goes: `KINLINK_CHAOS_BROKER_LOG` (appended to; its level from
/// `RUST_LOG`), or nowhere.
fn broker_log() -> TestResult<Stdio> {
    Ok(match std::env::var_os("KINLINK_CHAOS_BROKER_LOG") {
        Some(path) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .into(),
        None => Stdio::null(),
    })
}

/// One `kinlink serve <service>` slot: the process, restarted after a SIGKILL.
struct Instance {
    service: &'static str,
    process: Option<Kinlink>,
}

/// Every service process of the run.
struct Fleet {
    config: PathBuf,
    instances: Vec<Instance>,
}

impl Fleet {
    async fn start(config: &Path) -> TestResult<Self> {
        let mut instances = Vec::new();
        for service in [
            "intake", "intake", "enricher", "enricher", "alerter", "alerter", "notifier",
            "notifier",
        ] {
            instances.push(Instance {
                service,
                process: Some(Kinlink::serve_with_env(service, config, SECRETS).await?),
            });
        }
        Ok(Self {
            config: config.to_owned(),
            instances,
        })
    }

    /// Base URL and token of each running intake.
    fn intakes(&self) -> Vec<(String, String)> {
        self.instances
            .iter()
            .filter(|i| i.service == "intake")
            .filter_map(|i| i.process.as_ref())
            .map(|k| (k.base_url.clone(), k.agency_token.clone()))
            .collect()
    }

    fn pid(&self, index: usize) -> TestResult<u32> {
        self.instances[index]
            .process
            .as_ref()
            .and_then(|k| k.child.id())
            .ok_or_else(|| format!("instance {index} is not running").into())
    }

    async fn kill_and_restart(&mut self, index: usize, pause: Duration) -> TestResult {
        if let Some(process) = self.instances[index].process.take() {
            process.crash().await?;
        }
        tokio::time::sleep(pause).await;
        let service = self.instances[index].service;
        self.instances[index].process =
            Some(Kinlink::serve_with_env(service, &self.config, SECRETS).await?);
        Ok(())
    }

    /// Ctrl-C to every process; true when each drained and exited cleanly.
    async fn interrupt(self) -> TestResult<bool> {
        let mut clean = true;
        for instance in self.instances {
            if let Some(process) = instance.process {
                clean &= process.interrupt().await?.success();
            }
        }
        Ok(clean)
    }
}

fn signal(pid: u32, name: &str) -> TestResult {
    let status = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("kill -{name} {pid} failed").into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Stop,
    BrokerRestart,
    SessionsKilled,
    DatabaseRefuses,
    EndpointErrors,
}

impl Fault {
    fn name(self) -> &'static str {
        match self {
            Self::Kill => "kill",
            Self::Stop => "stop",
            Self::BrokerRestart => "broker",
            Self::SessionsKilled => "pg_terminate",
            Self::DatabaseRefuses => "db_down",
            Self::EndpointErrors => "endpoint",
        }
    }

    const ALL: [Self; 6] = [
        Self::Kill,
        Self::Stop,
        Self::BrokerRestart,
        Self::SessionsKilled,
        Self::DatabaseRefuses,
        Self::EndpointErrors,
    ];

    /// How often this kind is drawn, relative to the others: process kills most.
    fn weight(self) -> u32 {
        match self {
            Self::Kill => 4,
            Self::EndpointErrors => 2,
            _ => 1,
        }
    }

    fn pick(rng: &mut StdRng, kinds: &[Self]) -> Self {
        let total: u32 = kinds.iter().map(|k| k.weight()).sum();
        let mut draw = rng.random_range(0..total.max(1));
        for kind in kinds {
            if draw < kind.weight() {
                return *kind;
            }
            draw -= kind.weight();
        }
        Self::Kill
    }
}

/// Runs `statement` for the run's database from an administrative connection.
async fn admin(statement: &str, database: &str) -> TestResult {
    let mut conn =
        sqlx::PgConnection::connect(&kinlink_store::test_support::postgres_admin_url()).await?;
    sqlx::query(statement)
        .bind(database)
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    Ok(())
}

async fn terminate_sessions(database: &str) -> TestResult {
    admin(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
        database,
    )
    .await
}

async fn allow_connections(database: &str, allow: bool) -> TestResult {
    // ALTER DATABASE takes no parameters: the name is the harness's own, `kinlink_test_<hex>`.
    if !database
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err("unexpected database name".into());
    }
    let mut conn =
        sqlx::PgConnection::connect(&kinlink_store::test_support::postgres_admin_url()).await?;
    sqlx::query(&format!(
        "ALTER DATABASE {database} WITH ALLOW_CONNECTIONS {allow}"
    ))
    .execute(&mut conn)
    .await?;
    conn.close().await?;
    Ok(())
}

/// Sends referral `index` until an intake accepts it, with the same idempotency key each time
/// (an agency's retry); the referral id it was given.
async fn refer(client: &reqwest::Client, fleet: &Mutex<Fleet>, index: usize) -> TestResult<String> {
    let body = family_referral(&format!("chaos{index}"));
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut attempt = 0usize;
    loop {
        let intakes = fleet.lock().await.intakes();
        if !intakes.is_empty() {
            let (base_url, token) = &intakes[(index + attempt) % intakes.len()];
            let response = client
                .post(format!("{base_url}/v1/referrals"))
                .bearer_auth(token)
                .header("idempotency-key", format!("chaos-{index}"))
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            if let Ok(response) = response
                && response.status().is_success()
            {
                let accepted: serde_json::Value = response.json().await?;
                return Ok(accepted["referral_id"]
                    .as_str()
                    .ok_or("no referral_id")?
                    .to_owned());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("referral {index} not accepted within 120 s").into());
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Events waiting in the dead-letter topics.
fn dead_letters(bootstrap: &str) -> TestResult<i64> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kinlink-chaos-counter")
        .set("log_level", "0")
        .create()?;
    let metadata = consumer.fetch_metadata(None, Duration::from_secs(10))?;
    let mut count = 0;
    for stage in kinlink_eventlog::topics::STAGES {
        let name = kinlink_eventlog::topics::dead_letter(stage);
        let Some(topic) = metadata.topics().iter().find(|t| t.name() == name) else {
            continue;
        };
        for partition in topic.partitions() {
            let (low, high) =
                consumer.fetch_watermarks(&name, partition.id(), Duration::from_secs(10))?;
            count += high - low;
        }
    }
    Ok(count)
}

/// Writes a result line to the process's stderr directly, past the test harness's output
/// capture, so CI logs show it on a passing run too.
fn report_line(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// What the receivers saw, against the truth.
#[derive(Debug, Default)]
struct Summary {
    accepted: usize,
    expected: usize,
    delivered: usize,
    /// Delivered only after the drain limit (while settling).
    late: usize,
    lost: usize,
    repeated: usize,
    unmarked: usize,
    bad_signatures: usize,
    escalations_expected: usize,
    escalations_fired: usize,
    escalations_twice: usize,
    dead_letters: i64,
    broker_crashes: usize,
    faults: BTreeMap<&'static str, usize>,
    drain: Duration,
}

impl Summary {
    fn from_receipts(referrals: &BTreeSet<String>, received: &[Received]) -> Self {
        let mut summary = Self {
            accepted: referrals.len(),
            expected: referrals.len() * 2,
            escalations_expected: referrals.len() * 2,
            ..Self::default()
        };
        let primary: Vec<&Received> = received
            .iter()
            .filter(|r| r.authority == KENT || r.authority == WESTMINSTER)
            .collect();
        let ids: BTreeSet<&str> = primary.iter().map(|r| r.webhook_id.as_str()).collect();
        summary.repeated = primary.len() - ids.len();
        summary.bad_signatures = primary
            .iter()
            .filter(|r| r.signature_valid != Some(true))
            .count();
        // Per (referral, authority): the alert ids delivered.
        let mut per_case: BTreeMap<(String, String), BTreeSet<&str>> = BTreeMap::new();
        for r in &primary {
            let referral = r.body["referral_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            per_case
                .entry((referral, r.authority.clone()))
                .or_default()
                .insert(r.webhook_id.as_str());
        }
        for referral in referrals {
            for authority in [KENT, WESTMINSTER] {
                match per_case.get(&(referral.clone(), authority.to_owned())) {
                    Some(ids) => {
                        summary.delivered += 1;
                        summary.unmarked += ids.len() - 1;
                    }
                    None => summary.lost += 1,
                }
            }
        }
        let mut pages: BTreeMap<&str, usize> = BTreeMap::new();
        for r in received.iter().filter(|r| {
            r.authority == "pagerduty" && r.body["event_action"].as_str() == Some("trigger")
        }) {
            *pages
                .entry(r.body["dedup_key"].as_str().unwrap_or_default())
                .or_default() += 1;
        }
        summary.escalations_fired = pages.len();
        summary.escalations_twice = pages.values().map(|n| n - 1).sum();
        summary
    }

    fn line(&self, plan: &Plan) -> String {
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        format!(
            "chaos seed={} referrals={} accepted={} alerts expected={} delivered={} late={} lost={} repeated={} unmarked_duplicates={} bad_signatures={} escalations expected={} fired={} fired_twice={} dead_letters={} broker_crashes={} faults[{}] drain_after_last_fault={:.1}s",
            plan.seed,
            plan.referrals,
            self.accepted,
            self.expected,
            self.delivered,
            self.late,
            self.lost,
            self.repeated,
            self.unmarked,
            self.bad_signatures,
            self.escalations_expected,
            self.escalations_fired,
            self.escalations_twice,
            self.dead_letters,
            self.broker_crashes,
            faults.join(" "),
            self.drain.as_secs_f64()
        )
    }
}

fn write_settings(
    dir: &Path,
    receiver: &WebhookReceiver,
    bootstrap: &str,
    create_topics: bool,
    database: &kinlink_store::test_support::TempPostgres,
) -> TestResult<PathBuf> {
    let mut text = format!(
        "[telemetry]\nfilter = \"warn\"\n\n[notifier]\nretry_delays_ms = [100, 300, 1000, 2000, 4000, 8000, 15000, 30000]\ntimeout_ms = 2000\non_call_after_seconds = 2\n\n[notifier.on_call]\nevents_url = \"{}\"\nrouting_key = \"chaos\"\n\n[alerter.deadlines]\nred_minutes = 0\namber_working_minutes = 240\ngreen_working_days = 1\n",
        receiver.url("pagerduty")
    );
    for code in [KENT, WESTMINSTER] {
        text.push_str(&format!(
            "\n[[notifier.authorities]]\ncode = \"{code}\"\nwebhook_url = \"{}\"\nsecondary_webhook_url = \"{}\"\nsigning_secrets = [\"env:{SIGNING_SECRET_VAR}\"]\n",
            receiver.url(code),
            receiver.url(&format!("secondary-{code}"))
        ));
    }
    text.push_str(&format!(
        "\n[log]\nbackend = \"kafka\"\npartitions = {PARTITIONS}\n\n[log.kafka]\nbrokers = \"{bootstrap}\"\ngroup_prefix = \"chaos-{}-\"\ncreate_topics = {create_topics}\n\n[log.kafka.options]\n\"session.timeout.ms\" = \"{}\"\n\"heartbeat.interval.ms\" = \"1000\"\n\n[store]\nurl = \"{}\"\n",
        database.name,
        SESSION_TIMEOUT.as_millis(),
        database.url
    ));
    text.push_str(&test_master_key_settings());
    let path = dir.join("kinlink.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// Injects one fault and waits until it is over (the process restarted, the broker or the
/// database back).
async fn inject(
    fault: Fault,
    rng: &mut StdRng,
    fleet: &Mutex<Fleet>,
    broker: &Mutex<Broker>,
    receiver: &WebhookReceiver,
    plan: &Plan,
    database: &str,
) -> TestResult {
    match fault {
        Fault::Kill => {
            let index = rng.random_range(0..fleet.lock().await.instances.len());
            let pause = Duration::from_millis(rng.random_range(200..2000));
            // Hold the lock while the slot is empty: the referral sender waits for a live
            // intake instead of posting to a dead address.
            fleet.lock().await.kill_and_restart(index, pause).await?;
        }
        Fault::Stop => {
            // A consumer: not an intake (an HTTP server is not in a consumer group).
            let index = rng.random_range(2..fleet.lock().await.instances.len());
            let pid = fleet.lock().await.pid(index)?;
            signal(pid, "STOP")?;
            tokio::time::sleep(SESSION_TIMEOUT + Duration::from_secs(3)).await;
            signal(pid, "CONT")?;
        }
        Fault::BrokerRestart => {
            // Held throughout, so the supervisor does not restart it early.
            let mut broker = broker.lock().await;
            broker.stop().await?;
            tokio::time::sleep(plan.broker_down).await;
            broker.restart().await?;
        }
        Fault::SessionsKilled => terminate_sessions(database).await?,
        Fault::DatabaseRefuses => {
            allow_connections(database, false).await?;
            terminate_sessions(database).await?;
            tokio::time::sleep(plan.database_down).await;
            allow_connections(database, true).await?;
        }
        Fault::EndpointErrors => {
            let code = if rng.random_bool(0.5) {
                KENT
            } else {
                WESTMINSTER
            };
            let mut replies = Vec::new();
            for _ in 0..rng.random_range(2..6) {
                replies.push(match rng.random_range(0..3) {
                    0 => Reply::status(500),
                    1 => Reply {
                        retry_after: Some("1"),
                        ..Reply::status(429)
                    },
                    // Slower than the notifier's timeout: kinlink gives up, the receiver
                    // has it anyway (a delivery kinlink must repeat under the same id).
                    _ => Reply {
                        delay: Duration::from_millis(2500),
                        ..Reply::status(204)
                    },
                });
            }
            receiver.script(code, replies);
        }
    }
    Ok(())
}

#[tokio::test]
async fn chaos_loses_and_duplicates_nothing() -> TestResult {
    let _serial = ONE_AT_A_TIME.lock().await;
    let plan = Plan::from_env()?;
    let dir = TempDir::new("chaos")?;
    let broker = Arc::new(Mutex::new(Broker::start(&dir.0).await?));
    let bootstrap = broker.lock().await.bootstrap();
    // A supervisor: tansu restarted whenever it exits by itself.
    let supervising = Arc::new(AtomicBool::new(true));
    let supervisor = {
        let (broker, supervising) = (broker.clone(), supervising.clone());
        tokio::spawn(async move {
            while supervising.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(500)).await;
                broker.lock().await.supervise().await?;
            }
            TestResult::Ok(())
        })
    };
    let database = kinlink_store::test_support::TempPostgres::create()
        .await
        .map_err(|e| format!("PostgreSQL is required: {e}"))?;
    let receiver = WebhookReceiver::start().await?;
    receiver.verify_with(SIGNING_SECRET);
    let config = write_settings(&dir.0, &receiver, &bootstrap, true, &database)?;
    let fleet = Arc::new(Mutex::new(Fleet::start(&config).await?));

    // Referrals at an even pace over the window, from their own task.
    let sending = Arc::new(AtomicBool::new(true));
    let sender = {
        let fleet = fleet.clone();
        let sending = sending.clone();
        let pace = plan.window / u32::try_from(plan.referrals.max(1))?;
        let referrals = plan.referrals;
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut accepted = BTreeSet::new();
            for index in 0..referrals {
                let started = Instant::now();
                accepted.insert(refer(&client, &fleet, index).await?);
                tokio::time::sleep(pace.saturating_sub(started.elapsed())).await;
            }
            sending.store(false, Ordering::SeqCst);
            TestResult::Ok(accepted)
        })
    };

    // Faults at seeded random times over the window, one at a time.
    let mut rng = StdRng::seed_from_u64(plan.seed);
    let mut at: Vec<Duration> = (0..plan.faults)
        .map(|_| plan.window.mul_f64(rng.random_range(0.05..0.95)))
        .collect();
    at.sort();
    let started = Instant::now();
    let mut faults: BTreeMap<&'static str, usize> = BTreeMap::new();
    for when in at {
        tokio::time::sleep(when.saturating_sub(started.elapsed())).await;
        let fault = Fault::pick(&mut rng, &plan.kinds);
        println!(
            "chaos t+{:.1}s: {}",
            started.elapsed().as_secs_f64(),
            fault.name()
        );
        inject(
            fault,
            &mut rng,
            &fleet,
            &broker,
            &receiver,
            &plan,
            &database.name,
        )
        .await?;
        *faults.entry(fault.name()).or_default() += 1;
    }
    let last_fault = Instant::now();
    let referrals = sender.await??;

    // Drain: every alert delivered and escalated, or the limit passes.
    let expected = referrals.len() * 2;
    let drained = receiver
        .wait_for(DRAIN_LIMIT, |received| {
            let summary = Summary::from_receipts(&referrals, received);
            summary.delivered >= expected && summary.escalations_fired >= expected
        })
        .await
        .is_ok();
    let drain = last_fault.elapsed();
    let delivered_at_limit = Summary::from_receipts(&referrals, &receiver.received()).delivered;
    if !drained {
        let _ = wait_delivered(&receiver, &referrals, plan.settle).await;
    }
    // Let stray repeats arrive before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut summary = Summary::from_receipts(&referrals, &receiver.received());
    summary.faults = faults;
    summary.drain = drain;
    summary.broker_crashes = broker.lock().await.crashes;
    summary.late = summary.delivered - delivered_at_limit.min(summary.delivered);
    summary.dead_letters = {
        let bootstrap = bootstrap.clone();
        tokio::task::spawn_blocking(move || dead_letters(&bootstrap).map_err(|e| e.to_string()))
            .await??
    };
    report_line(&summary.line(&plan));
    if let Ok(path) = std::env::var("KINLINK_CHAOS_SUMMARY") {
        std::fs::write(path, summary.line(&plan) + "\n")?;
    }

    let fleet = Arc::try_unwrap(fleet).map_err(|_| "fleet still shared")?;
    let clean = fleet.into_inner().interrupt().await?;
    supervising.store(false, Ordering::SeqCst);
    supervisor.await??;
    broker.lock().await.stop().await?;
    database.drop_database().await?;

    assert!(!sending.load(Ordering::SeqCst));
    assert_eq!(summary.accepted, plan.referrals, "every referral accepted");
    assert_eq!(summary.lost, 0, "no alert lost");
    assert_eq!(summary.unmarked, 0, "no alert delivered under two ids");
    assert_eq!(summary.bad_signatures, 0, "every delivery signed");
    assert_eq!(
        summary.escalations_fired, summary.escalations_expected,
        "every unacknowledged alert escalated"
    );
    assert_eq!(summary.escalations_twice, 0, "no escalation fired twice");
    assert_eq!(summary.dead_letters, 0, "nothing dead-lettered");
    assert!(drained, "drained within {DRAIN_LIMIT:?} of the last fault");
    assert!(clean, "every process drains and exits cleanly on Ctrl-C");
    Ok(())
}

/// Events a process's stage consumed and applied, from its `/metrics`.
async fn applied_by(client: &reqwest::Client, process: &Kinlink, stage: &str) -> TestResult<f64> {
    let text = client
        .get(format!("{}/metrics", process.base_url))
        .send()
        .await?
        .text()
        .await?;
    let stage_label = format!("stage=\"{stage}\"");
    Ok(text
        .lines()
        .filter(|line| line.starts_with("kinlink_stage_events_total{"))
        .filter(|line| line.contains(&stage_label) && line.contains("outcome=\"applied\""))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum())
}

/// Sends referrals `range` and waits until both alerts of each have been delivered.
async fn refer_and_deliver(
    fleet: &Mutex<Fleet>,
    receiver: &WebhookReceiver,
    range: std::ops::Range<usize>,
    referrals: &mut BTreeSet<String>,
) -> TestResult {
    let client = reqwest::Client::new();
    for index in range {
        referrals.insert(refer(&client, fleet, index).await?);
    }
    wait_delivered(receiver, referrals, Duration::from_secs(60)).await
}

/// Waits until both alerts of every referral have been delivered; the error says how many
/// were (the receiver's full log would bury it).
async fn wait_delivered(
    receiver: &WebhookReceiver,
    referrals: &BTreeSet<String>,
    limit: Duration,
) -> TestResult {
    let deadline = Instant::now() + limit;
    loop {
        let summary = Summary::from_receipts(referrals, &receiver.received());
        if summary.lost == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "{} of {} alerts delivered within {limit:?}",
                summary.delivered, summary.expected
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn both_instances_of_a_stage_consume_and_a_survivor_takes_over() -> TestResult {
    let _serial = ONE_AT_A_TIME.lock().await;
    let dir = TempDir::new("rebalance")?;
    // rdkafka's mock cluster, reached over TCP by the kinlink processes, not tansu: tansu 0.6
    // drops a member that missed its heartbeats without rebalancing the group (its heartbeat
    // handler removes the member, so the group stays "formed" and the survivors' rejoin gets
    // the old assignment back), and the dead member's partitions wait for a new member to
    // join. The chaos test restarts what it kills, which tansu does handle.
    let broker = rdkafka::mocking::MockCluster::new(1)?;
    for topic in kinlink_eventlog::topics::all_with_dead_letters() {
        broker.create_topic(&topic, PARTITIONS, 1)?;
    }
    let database = kinlink_store::test_support::TempPostgres::create()
        .await
        .map_err(|e| format!("PostgreSQL is required: {e}"))?;
    let receiver = WebhookReceiver::start().await?;
    receiver.verify_with(SIGNING_SECRET);
    // The mock broker does not implement CreateTopics; the topics were made above.
    let config = write_settings(
        &dir.0,
        &receiver,
        &broker.bootstrap_servers(),
        false,
        &database,
    )?;
    let fleet = Mutex::new(Fleet::start(&config).await?);
    let client = reqwest::Client::new();
    let mut referrals = BTreeSet::new();

    // Both instances of every consuming stage take a share (four partitions, two members).
    refer_and_deliver(&fleet, &receiver, 0..24, &mut referrals).await?;
    let mut report = Vec::new();
    for (first, stage) in [(2, "enricher"), (4, "alerter"), (6, "notifier")] {
        let guard = fleet.lock().await;
        let (a, b) = (
            guard.instances[first]
                .process
                .as_ref()
                .ok_or("not running")?,
            guard.instances[first + 1]
                .process
                .as_ref()
                .ok_or("not running")?,
        );
        let (applied_a, applied_b) = (
            applied_by(&client, a, stage).await?,
            applied_by(&client, b, stage).await?,
        );
        report.push(format!("{stage} {applied_a}+{applied_b}"));
        assert!(
            applied_a > 0.0 && applied_b > 0.0,
            "both {stage} instances consume: {applied_a} and {applied_b}"
        );
    }

    // One instance of each stage killed and not restarted: the survivors take every
    // partition, and the next referrals all get through.
    let mut before = Vec::new();
    {
        let mut guard = fleet.lock().await;
        for index in [3, 5, 7] {
            if let Some(process) = guard.instances[index].process.take() {
                process.crash().await?;
            }
        }
        for (index, stage) in [(2, "enricher"), (4, "alerter"), (6, "notifier")] {
            let survivor = guard.instances[index]
                .process
                .as_ref()
                .ok_or("not running")?;
            before.push(applied_by(&client, survivor, stage).await?);
        }
    }
    let outcome = refer_and_deliver(&fleet, &receiver, 24..48, &mut referrals).await;
    if let Err(error) = outcome {
        let guard = fleet.lock().await;
        let mut progress = Vec::new();
        for ((index, stage), before) in [(2, "enricher"), (4, "alerter"), (6, "notifier")]
            .into_iter()
            .zip(&before)
        {
            let survivor = guard.instances[index]
                .process
                .as_ref()
                .ok_or("not running")?;
            let after = applied_by(&client, survivor, stage).await?;
            progress.push(format!("{stage} +{}", after - before));
        }
        return Err(format!("{error}; survivors since the kill: {}", progress.join(", ")).into());
    }
    {
        let guard = fleet.lock().await;
        for ((index, stage), before) in [(2, "enricher"), (4, "alerter"), (6, "notifier")]
            .into_iter()
            .zip(before)
        {
            let survivor = guard.instances[index]
                .process
                .as_ref()
                .ok_or("not running")?;
            let after = applied_by(&client, survivor, stage).await?;
            report.push(format!("{stage} survivor +{}", after - before));
            // 24 referrals: the enricher and alerter see each at least once, the notifier
            // each of their 48 alerts.
            let least = if stage == "notifier" { 48.0 } else { 24.0 };
            assert!(
                after - before >= least,
                "the surviving {stage} applied {} events, expected at least {least}",
                after - before
            );
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let summary = Summary::from_receipts(&referrals, &receiver.received());
    report_line(&format!(
        "rebalance: consumed per instance [{}]; alerts expected={} delivered={} lost={} unmarked_duplicates={}",
        report.join(", "),
        summary.expected,
        summary.delivered,
        summary.lost,
        summary.unmarked
    ));
    let clean = fleet.into_inner().interrupt().await?;
    drop(broker);
    database.drop_database().await?;
    assert_eq!(summary.lost, 0);
    assert_eq!(summary.unmarked, 0);
    assert!(clean, "every process drains and exits cleanly on Ctrl-C");
    Ok(())
}
