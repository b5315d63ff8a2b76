//! `kinlink bench`: a load generator that drives a real pipeline through its HTTP API and
//! measures it against the storage it runs on.
//!
//! It starts `kinlink up` (this binary) as a separate process with every body that runs
//! children's services pointed at a webhook receiver of its own, creates an agency token,
//! posts the referrals of `kinlink synth` households (adults with dependants, realistic name
//! collisions) from several clients, at full speed or at a steady rate, and waits for the
//! webhooks. Then, on the same data directory (or the same PostgreSQL database with
//! `--config`), it measures what the storage allows: durable commits per second (one row per
//! transaction) and batched rows per second. The report puts the pipeline's figures beside
//! the storage's, so the ratio to the limit is visible.

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::{AsyncBufReadExt, BufReader};

/// `kinlink bench` options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Households of `kinlink synth` to refer (each is one or more referrals).
    #[arg(long, default_value_t = 1000)]
    pub households: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Referrals per second in all (steady load); 0 sends as fast as the clients can.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Settings for the pipeline (e.g. `log.backend = "kafka"` and `store.url` for the
    /// scale-out backends); the bench adds the webhook endpoints.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Data directory for the embedded store (default: a new temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Give up waiting for webhooks after this long.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// What one run measured.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub backend: String,
    pub referrals: usize,
    pub accepted: usize,
    pub refused: usize,
    pub accepted_per_second: f64,
    pub accept_p50_ms: f64,
    pub accept_p99_ms: f64,
    /// Referrals with at least one webhook delivered.
    pub reached_a_council: usize,
    pub webhooks: usize,
    pub end_to_end_p50_ms: f64,
    pub end_to_end_p99_ms: f64,
    /// Referrals that reached a council, per second, from the first post to the last first
    /// webhook.
    pub end_to_end_per_second: f64,
    pub storage_commits_per_second: f64,
    pub storage_rows_per_second: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// Webhooks received: referral id -> when the first arrived, and how many in all.
#[derive(Debug, Default)]
struct Received {
    first: HashMap<String, Instant>,
    count: usize,
    last_at: Option<Instant>,
}

async fn receive(
    axum::extract::State(received): axum::extract::State<Arc<Mutex<Received>>>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let now = Instant::now();
    let referral = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["referral_id"].as_str().map(str::to_owned));
    if let (Some(referral), Ok(mut r)) = (referral, received.lock()) {
        r.first.entry(referral).or_insert(now);
        r.count += 1;
        r.last_at = Some(now);
    }
    axum::http::StatusCode::NO_CONTENT
}

/// `kinlink bench`.
pub async fn run(args: &BenchArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let temp;
    let data_dir = match &args.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = std::env::temp_dir().join(format!("kinlink-bench-{}", uuid::Uuid::new_v4()));
            temp.clone()
        }
    };
    std::fs::create_dir_all(&data_dir)?;

    // The receiver every body's webhook points at.
    let received: Arc<Mutex<Received>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/{code}", axum::routing::post(receive))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    // The pipeline's settings: the user's, plus an endpoint for every body.
    let mut config = match &args.config {
        Some(path) => {
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
        }
        None => String::new(),
    };
    let settings = kinlink_runtime::Settings::load(args.config.as_deref())
        .context("loading the pipeline's settings")?;
    let registry = kinlink_domain::routing::authorities::AuthorityRegistry::shipped()?;
    for body in registry.bodies() {
        config.push_str(&format!(
            "\n[[notifier.authorities]]\ncode = \"{0}\"\nwebhook_url = \"{receiver}/{0}\"\n",
            body.gss_code
        ));
    }
    let config_path = data_dir.join("bench.toml");
    std::fs::write(&config_path, config)?;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(&exe)
        .args(["up", "--address", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        .arg("--config")
        .arg(&config_path)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting kinlink up")?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let base = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("kinlink listening on ") {
                return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
            }
        }
        Ok(None)
    })
    .await??
    .context("kinlink up exited before it listened")?;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let token_out = std::process::Command::new(&exe)
        .args([
            "tokens",
            "create",
            "--agency",
            "bench",
            "--json",
            "--data-dir",
        ])
        .arg(&data_dir)
        .arg("--config")
        .arg(&config_path)
        .output()?;
    anyhow::ensure!(
        token_out.status.success(),
        "creating the bench's agency token failed"
    );
    let token = serde_json::from_slice::<serde_json::Value>(&token_out.stdout)?["token"]
        .as_str()
        .context("no token")?
        .to_owned();

    // The load.
    let records = kinlink_linkage::synth::generate(args.households, args.seed);
    // Synthetic postcodes are made up inside real districts, so most units do not exist and
    // would go to triage (no webhook). The bench sends the district (the outward code), which
    // routing resolves as a partial postcode where the district lies in one body.
    let mut referrals = crate::linkage::synth_referrals(&records);
    fn to_district(person: &mut serde_json::Value) {
        for location in person["locations"].as_array_mut().into_iter().flatten() {
            if let Some(district) = location["postcode"]
                .as_str()
                .and_then(|p| p.split_whitespace().next())
                .map(str::to_owned)
            {
                location["postcode"] = district.into();
            }
        }
    }
    for referral in &mut referrals {
        to_district(&mut referral["subject"]);
        for dependant in referral["dependants"].as_array_mut().into_iter().flatten() {
            to_district(&mut dependant["person"]);
        }
    }
    let total = referrals.len();
    let queue = Arc::new(Mutex::new(
        referrals
            .into_iter()
            .enumerate()
            .collect::<std::collections::VecDeque<_>>(),
    ));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.clients)
        .build()?;
    let started = Instant::now();
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let mut tasks = Vec::new();
    for _ in 0..args.clients {
        let (queue, client, base, token) =
            (queue.clone(), client.clone(), base.clone(), token.clone());
        tasks.push(tokio::spawn(async move {
            // (referral id, posted at, accept latency) of each accepted referral; refusals.
            let mut accepted: Vec<(String, Instant, f64)> = Vec::new();
            let mut refused = 0usize;
            loop {
                let next = queue.lock().ok().and_then(|mut q| q.pop_front());
                let Some((index, body)) = next else { break };
                if let Some(step) = interval {
                    let due = started + step.mul_f64(index as f64);
                    tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
                }
                let posted = Instant::now();
                let response = client
                    .post(format!("{base}/v1/referrals"))
                    .bearer_auth(&token)
                    .header("idempotency-key", format!("bench-{index}"))
                    .json(&body)
                    .send()
                    .await;
                let latency = posted.elapsed().as_secs_f64() * 1000.0;
                match response {
                    Ok(r) if r.status() == reqwest::StatusCode::ACCEPTED => {
                        let id = r
                            .json::<serde_json::Value>()
                            .await
                            .ok()
                            .and_then(|v| v["referral_id"].as_str().map(str::to_owned))
                            .unwrap_or_default();
                        accepted.push((id, posted, latency));
                    }
                    _ => refused += 1,
                }
            }
            (accepted, refused)
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        let (a, r) = task.await?;
        accepted.extend(a);
        refused += r;
    }
    let submitted_in = started.elapsed();

    // Wait for the webhooks: until every accepted referral has one, or nothing new has
    // arrived for ten seconds (lone adults and triage items raise none), or the timeout.
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    loop {
        let (reached, quiet) = match received.lock() {
            Ok(r) => (
                r.first.len(),
                r.last_at
                    .map_or(started + submitted_in, |t| t.max(started + submitted_in))
                    .elapsed()
                    > Duration::from_secs(10),
            ),
            Err(_) => (0, true),
        };
        if reached >= accepted.len() || quiet {
            break;
        }
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stop = std::process::Command::new("kill")
        .arg("-INT")
        .arg(child.id().map(|id| id.to_string()).unwrap_or_default())
        .status();
    if stop.is_ok() {
        let _ = tokio::time::timeout(Duration::from_secs(30), child.wait()).await;
    }

    // The figures.
    let (first, webhooks) = match received.lock() {
        Ok(r) => (r.first.clone(), r.count),
        Err(_) => (HashMap::new(), 0),
    };
    let mut accept_ms: Vec<f64> = accepted.iter().map(|a| a.2).collect();
    accept_ms.sort_by(f64::total_cmp);
    let mut e2e_ms: Vec<f64> = Vec::new();
    let mut last_first: Option<Instant> = None;
    for (id, posted, _) in &accepted {
        if let Some(at) = first.get(id) {
            e2e_ms.push(at.saturating_duration_since(*posted).as_secs_f64() * 1000.0);
            last_first = Some(last_first.map_or(*at, |l: Instant| l.max(*at)));
        }
    }
    e2e_ms.sort_by(f64::total_cmp);
    let e2e_span = last_first
        .map(|l| l.saturating_duration_since(started).as_secs_f64())
        .unwrap_or(0.0);
    let (commits, rows) = crate::bench::storage_limit(&settings, &data_dir).await?;
    let report = Report {
        backend: format!("{:?}", settings.log.backend).to_lowercase(),
        referrals: total,
        accepted: accepted.len(),
        refused,
        accepted_per_second: accepted.len() as f64 / submitted_in.as_secs_f64().max(1e-9),
        accept_p50_ms: percentile(&accept_ms, 50.0),
        accept_p99_ms: percentile(&accept_ms, 99.0),
        reached_a_council: e2e_ms.len(),
        webhooks,
        end_to_end_p50_ms: percentile(&e2e_ms, 50.0),
        end_to_end_p99_ms: percentile(&e2e_ms, 99.0),
        end_to_end_per_second: if e2e_span > 0.0 {
            e2e_ms.len() as f64 / e2e_span
        } else {
            0.0
        },
        storage_commits_per_second: commits,
        storage_rows_per_second: rows,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        writeln!(
            out,
            "kinlink bench: {} backend, {} referral(s) from {} household(s), {} client(s){}",
            report.backend,
            report.referrals,
            args.households,
            args.clients,
            if args.rate > 0.0 {
                format!(", steady {} referrals/s", args.rate)
            } else {
                String::new()
            }
        )?;
        writeln!(out, "| measure | value |\n|---|---|")?;
        writeln!(
            out,
            "| accepted | {} ({} refused) |",
            report.accepted, report.refused
        )?;
        writeln!(out, "| accepted/s | {:.1} |", report.accepted_per_second)?;
        writeln!(
            out,
            "| accept latency p50 / p99 | {:.1} ms / {:.1} ms |",
            report.accept_p50_ms, report.accept_p99_ms
        )?;
        writeln!(
            out,
            "| reached a council (webhooks) | {} ({}) |",
            report.reached_a_council, report.webhooks
        )?;
        writeln!(
            out,
            "| end to end p50 / p99 | {:.1} ms / {:.1} ms |",
            report.end_to_end_p50_ms, report.end_to_end_p99_ms
        )?;
        writeln!(
            out,
            "| end to end sustained | {:.1} referrals/s |",
            report.end_to_end_per_second
        )?;
        writeln!(
            out,
            "| storage: durable commits/s (same disk) | {:.0} |",
            report.storage_commits_per_second
        )?;
        writeln!(
            out,
            "| storage: batched rows/s | {:.0} |",
            report.storage_rows_per_second
        )?;
        if report.storage_commits_per_second > 0.0 {
            writeln!(
                out,
                "| end to end ÷ durable commits | {:.3} |",
                report.end_to_end_per_second / report.storage_commits_per_second
            )?;
        }
    }
    if args.data_dir.is_none() {
        let _ = std::fs::remove_dir_all(&data_dir);
    }
    anyhow::ensure!(report.accepted > 0, "no referral was accepted");
    Ok(())
}

/// What the storage under the pipeline allows, measured now: durable single-row commits per
/// second for two seconds, and rows per second inserted 1,000 to a transaction (100 to a
/// statement). The embedded
/// backend uses a scratch SQLite file beside the pipeline's, with the same settings (WAL,
/// `synchronous = FULL`); PostgreSQL a scratch table in the pipeline's database.
pub async fn storage_limit(
    settings: &kinlink_runtime::Settings,
    data_dir: &std::path::Path,
) -> anyhow::Result<(f64, f64)> {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    let (url, postgres) = match &settings.store.url {
        Some(url) if url.starts_with("postgres") => (url.clone(), true),
        _ => (
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("bench-probe.db").display()
            ),
            false,
        ),
    };
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let table = format!("kinlink_bench_probe_{}", std::process::id());
    if !postgres {
        sqlx::raw_sql("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .execute(&mut conn)
            .await?;
    }
    sqlx::raw_sql(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id BIGINT PRIMARY KEY, body TEXT NOT NULL)"
    ))
    .execute(&mut conn)
    .await?;
    let insert = format!("INSERT INTO {table} (id, body) VALUES ($1, $2)");
    let started = Instant::now();
    let mut commits = 0i64;
    while started.elapsed() < Duration::from_secs(2) {
        let mut tx = conn.begin().await?;
        sqlx::query(&insert)
            .bind(commits)
            .bind("a row of about the size of an event")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        commits += 1;
    }
    let commit_rate = commits as f64 / started.elapsed().as_secs_f64();
    // Batched: 1,000 rows a transaction, 100 to a statement.
    let values: Vec<String> = (0..100)
        .map(|i| format!("(${}, ${})", 2 * i + 1, 2 * i + 2))
        .collect();
    let batch_insert = format!(
        "INSERT INTO {table} (id, body) VALUES {}",
        values.join(", ")
    );
    let started = Instant::now();
    let mut rows = 0i64;
    while started.elapsed() < Duration::from_secs(2) {
        let mut tx = conn.begin().await?;
        for _ in 0..10 {
            let mut statement = sqlx::query(&batch_insert);
            for _ in 0..100 {
                statement = statement
                    .bind(1_000_000_000 + rows)
                    .bind("a row of about the size of an event");
                rows += 1;
            }
            statement.execute(&mut *tx).await?;
        }
        tx.commit().await?;
    }
    let row_rate = rows as f64 / started.elapsed().as_secs_f64();
    sqlx::raw_sql(&format!("DROP TABLE IF EXISTS {table}"))
        .execute(&mut conn)
        .await?;
    conn.close().await?;
    if !postgres {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(data_dir.join(format!("bench-probe.db{suffix}")));
        }
    }
    Ok((commit_rate, row_rate))
}
