//! Test harness: the real `kinlink` binary, a webhook receiver standing in for authorities,
//! a tansu broker (Kafka protocol) and temporary PostgreSQL databases.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub use kinlink_test_kit::TestResult;

/// A fresh directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TestResult<Self> {
        let path =
            std::env::temp_dir().join(format!("kinlink-{label}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One webhook request as an authority received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub authority: String,
    pub webhook_id: String,
    pub body: serde_json::Value,
    pub at: std::time::Instant,
    /// The body as sent (for non-JSON bodies such as OTLP protobuf).
    pub raw: Vec<u8>,
    /// Whether the Standard Webhooks signature verified with the receiver's secret (checked
    /// by the reference implementation, not kinlink's code); None when no secret is set.
    pub signature_valid: Option<bool>,
}

/// A scripted answer for the next request to one path.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub delay: Duration,
    pub retry_after: Option<&'static str>,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Self {
            status,
            delay: Duration::ZERO,
            retry_after: None,
        }
    }
}

/// Stands in for every authority: `POST /hooks/{code}` records the request and answers 204,
/// or what `script` says for that path.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    state: ReceiverState,
}

type Scripts = Arc<Mutex<std::collections::HashMap<String, std::collections::VecDeque<Reply>>>>;

#[derive(Debug, Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    /// How long each unscripted request takes to answer after it has been recorded.
    delay: Duration,
    scripts: Scripts,
    secret: Arc<Mutex<Option<String>>>,
}

impl WebhookReceiver {
    pub async fn start() -> TestResult<Self> {
        Self::start_slow(Duration::ZERO).await
    }

    /// A receiver that records each request on arrival and answers after `delay`, so
    /// deliveries stay in flight long enough for a crash to land in the middle of one.
    pub async fn start_slow(delay: Duration) -> TestResult<Self> {
        let state = ReceiverState {
            received: Arc::new(Mutex::new(Vec::new())),
            delay,
            scripts: Arc::new(Mutex::new(std::collections::HashMap::new())),
            secret: Arc::new(Mutex::new(None)),
        };
        let app = axum::Router::new()
            .route("/hooks/{code}", post(record))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Self { addr, state })
    }

    pub fn url(&self, code: &str) -> String {
        format!("http://{}/hooks/{code}", self.addr)
    }

    /// Answers the next requests to `/hooks/{code}` with `replies`, in order; then 204.
    pub fn script(&self, code: &str, replies: Vec<Reply>) {
        if let Ok(mut scripts) = self.state.scripts.lock() {
            scripts.insert(code.to_owned(), replies.into());
        }
    }

    /// Verifies every request's signature with this `whsec_` secret.
    pub fn verify_with(&self, secret: &str) {
        if let Ok(mut slot) = self.state.secret.lock() {
            *slot = Some(secret.to_owned());
        }
    }

    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    pub fn received_by(&self, code: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.authority == code)
            .collect()
    }

    /// Waits until `predicate` holds for what was received, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        predicate: impl Fn(&[Received]) -> bool,
    ) -> TestResult<Vec<Received>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if predicate(&received) {
                return Ok(received);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "timed out; received {} webhook(s): {:?}",
                    received.len(),
                    received
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

async fn record(
    State(state): State<ReceiverState>,
    UrlPath(code): UrlPath<String>,
    headers: HeaderMap,
    raw: axum::body::Bytes,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let webhook_id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = serde_json::from_slice(&raw).unwrap_or(serde_json::Value::Null);
    let secret = state.secret.lock().ok().and_then(|s| s.clone());
    let signature_valid = secret.map(|secret| {
        standardwebhooks::Webhook::new(&secret)
            .is_ok_and(|hook| hook.verify(&raw, &headers).is_ok())
    });
    if let Ok(mut list) = state.received.lock() {
        list.push(Received {
            authority: code.clone(),
            webhook_id,
            body,
            at: std::time::Instant::now(),
            raw: raw.to_vec(),
            signature_valid,
        });
    }
    let reply = state
        .scripts
        .lock()
        .ok()
        .and_then(|mut s| s.get_mut(&code).and_then(|q| q.pop_front()));
    match reply {
        Some(reply) => {
            tokio::time::sleep(reply.delay).await;
            let status =
                StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            match reply.retry_after {
                Some(after) => (status, [("retry-after", after)]).into_response(),
                None => status.into_response(),
            }
        }
        None => {
            tokio::time::sleep(state.delay).await;
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

/// The `kinlink` binary under test: the one this test build made, or `KINLINK_E2E_BIN` (used
/// to run the golden walkthrough against an earlier build and compare).
pub fn kinlink_bin() -> std::ffi::OsString {
    std::env::var_os("KINLINK_E2E_BIN")
        .unwrap_or_else(|| std::ffi::OsString::from(env!("CARGO_BIN_EXE_kinlink")))
}

/// Writes a settings file for `kinlink up`; `extra` is appended verbatim.
pub fn write_config(
    dir: &Path,
    receiver: &WebhookReceiver,
    authorities: &[&str],
    extra: &str,
) -> TestResult<PathBuf> {
    let mut text = String::from(
        "[telemetry]\nfilter = \"info\"\n\n[notifier]\nretry_delays_ms = [100, 200, 500, 1000]\ntimeout_ms = 2000\n",
    );
    for code in authorities {
        text.push_str(&format!(
            "\n[[notifier.authorities]]\ncode = \"{code}\"\nwebhook_url = \"{}\"\n",
            receiver.url(code)
        ));
    }
    text.push_str(extra);
    let path = dir.join("kinlink.toml");
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A running `kinlink up` process.
#[derive(Debug)]
pub struct Kinlink {
    pub child: Child,
    pub base_url: String,
    /// An agency API token created for the test (`kinlink tokens create --agency`).
    pub agency_token: String,
}

/// Creates an agency token with the CLI, against the store the settings name.
pub fn create_token(
    data_dir: Option<&Path>,
    config: &Path,
    flag: &str,
    principal: &str,
) -> TestResult<String> {
    let mut command = std::process::Command::new(kinlink_bin());
    command
        .args(["tokens", "create", flag, principal, "--json", "--config"])
        .arg(config);
    if let Some(dir) = data_dir {
        command.arg("--data-dir").arg(dir);
    }
    let output = command.output()?;
    if !output.status.success() {
        return Err(format!("token creation failed: {output:?}").into());
    }
    let json: serde_json::Value = serde_json::from_slice(&output.stdout)?;
    Ok(json["token"]
        .as_str()
        .ok_or("no token in output")?
        .to_owned())
}

impl Kinlink {
    /// Starts `kinlink up` (every service in one process) and waits for its address.
    pub async fn up(data_dir: &Path, config: &Path) -> TestResult<Self> {
        let mut command = Command::new(kinlink_bin());
        command
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .arg("--address")
            .arg("127.0.0.1:0");
        let mut kinlink = Self::spawn(command, "kinlink listening on ").await?;
        kinlink.agency_token = create_token(Some(data_dir), config, "--agency", "e2e-agency")?;
        Ok(kinlink)
    }

    /// Starts `kinlink serve <service>` (one service, scale-out shape) on a free port.
    pub async fn serve(service: &str, config: &Path) -> TestResult<Self> {
        Self::serve_with_env(service, config, &[]).await
    }

    /// `kinlink serve <service>` with extra environment variables (secrets, say).
    pub async fn serve_with_env(
        service: &str,
        config: &Path,
        env: &[(&str, &str)],
    ) -> TestResult<Self> {
        let mut command = Command::new(kinlink_bin());
        command.envs(env.iter().copied());
        command
            .arg("serve")
            .arg(service)
            .arg("--config")
            .arg(config)
            .env("KINLINK__HTTP__ADDRESS", "127.0.0.1:0");
        let mut kinlink = Self::spawn(command, &format!("kinlink {service} listening on ")).await?;
        if service == "intake" {
            kinlink.agency_token = create_token(None, config, "--agency", "e2e-agency")?;
        }
        Ok(kinlink)
    }

    /// `kinlink up` with extra environment variables.
    pub async fn up_with_env(
        data_dir: &Path,
        config: &Path,
        env: &[(&str, &str)],
    ) -> TestResult<Self> {
        let mut command = Command::new(kinlink_bin());
        command
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--config")
            .arg(config)
            .arg("--address")
            .arg("127.0.0.1:0");
        command.envs(env.iter().copied());
        let mut kinlink = Self::spawn(command, "kinlink listening on ").await?;
        kinlink.agency_token = create_token(Some(data_dir), config, "--agency", "e2e-agency")?;
        Ok(kinlink)
    }

    async fn spawn(mut command: Command, ready_prefix: &str) -> TestResult<Self> {
        let mut child = command
            .env(
                "RUST_LOG",
                std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base_url = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(url) = line.strip_prefix(ready_prefix) {
                    return Ok::<_, std::io::Error>(Some(url.trim().to_owned()));
                }
            }
            Ok(None)
        })
        .await
        .map_err(|_| format!("kinlink did not print {ready_prefix:?} within 60 s"))??
        .ok_or("kinlink exited before printing its address")?;
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Self {
            child,
            base_url,
            agency_token: String::new(),
        })
    }

    pub async fn post_referral(
        &self,
        referral: &serde_json::Value,
    ) -> TestResult<serde_json::Value> {
        let response = reqwest::Client::new()
            .post(format!("{}/v1/referrals", self.base_url))
            .bearer_auth(&self.agency_token)
            .json(referral)
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if status != reqwest::StatusCode::ACCEPTED {
            return Err(format!("referral refused with {status}: {body}").into());
        }
        Ok(body)
    }

    /// SIGINT, as Ctrl-C would; returns the exit status.
    pub async fn interrupt(mut self) -> TestResult<std::process::ExitStatus> {
        let pid = self.child.id().ok_or("process already gone")?;
        let status = std::process::Command::new("kill")
            .arg("-INT")
            .arg(pid.to_string())
            .status()?;
        if !status.success() {
            return Err("kill -INT failed".into());
        }
        Ok(tokio::time::timeout(Duration::from_secs(40), self.child.wait()).await??)
    }

    /// SIGKILL: no chance to drain or commit.
    pub async fn crash(mut self) -> TestResult {
        self.child.kill().await?;
        Ok(())
    }
}

/// An adult referred with two dependent children: one lives in Ashford (a Kent district, so
/// Kent County Council runs children's services), one in Westminster.
pub fn family_referral(tag: &str) -> serde_json::Value {
    serde_json::json!({
        "external_reference": format!("TEST-{tag}"),
        "subject": {
            "given_name": format!("Adult{tag}"),
            "family_name": "Hoxha",
            "date_of_birth": { "value": "1990-04-02", "precision": "exact" },
            "sex": "female",
            "nationalities": ["AL"],
            "locations": [{ "role": "found", "authority_code": "E09000033" }]
        },
        "dependants": [
            {
                "person": {
                    "given_name": format!("Elira{tag}"),
                    "family_name": "Hoxha",
                    "date_of_birth": { "value": "2016-01-01", "precision": "estimated" },
                    "locations": [{ "role": "lives", "authority_code": "E07000105" }]
                },
                "relationship": "child",
                "with_subject": false
            },
            {
                "person": {
                    "given_name": format!("Arben{tag}"),
                    "family_name": "Hoxha",
                    "claimed_age": 9,
                    "locations": [{ "role": "lives", "authority_code": "E09000033" }]
                },
                "relationship": "child",
                "with_subject": true
            }
        ],
        "exploitation_types": ["labour"],
        "urgency": "urgent",
        "consent": "given",
        "concern": "free text that must never reach a log"
    })
}

/// The person id of dependant `index` of `referral_id`, read from the store.
pub async fn dependant_person_id(
    store_url: &str,
    referral_id: &str,
    index: i64,
) -> TestResult<String> {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let mut conn = sqlx::AnyConnection::connect(store_url).await?;
    let row = sqlx::query("SELECT person_id FROM referral_persons WHERE referral_id = $1 AND role = 2 AND dependant_index = $2")
        .bind(referral_id)
        .bind(index)
        .fetch_one(&mut conn)
        .await?;
    let id: String = row.try_get("person_id")?;
    conn.close().await?;
    Ok(id)
}

/// A tansu broker (Kafka protocol) on a free loopback port with SQLite storage in `dir`.
#[derive(Debug)]
pub struct Tansu {
    /// Killed when dropped.
    _child: Child,
    pub bootstrap: String,
}

impl Tansu {
    /// Starts tansu, retrying on another port if the chosen one was taken in the meantime
    /// (tansu exits when it cannot bind, so a dead child means "try again").
    pub async fn start(dir: &Path) -> TestResult<Self> {
        let bin = std::env::var("KINLINK_TANSU_BIN").unwrap_or_else(|_| "tansu".into());
        for _ in 0..3 {
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            let mut child = Command::new(&bin)
                .arg("broker")
                .arg("--listener-url")
                .arg(&url)
                .arg("--advertised-listener-url")
                .arg(&url)
                // tansu resolves the SQLite path against its working directory.
                .arg("--storage-engine")
                .arg("sqlite://tansu.db")
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| {
                    format!(
                        "cannot start the tansu broker ({bin}); scripts/test.sh installs it: {e}"
                    )
                })?;
            let bootstrap = format!("127.0.0.1:{port}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if tokio::net::TcpStream::connect(&bootstrap).await.is_ok() {
                    return Ok(Self {
                        _child: child,
                        bootstrap,
                    });
                }
                if tokio::time::Instant::now() > deadline {
                    return Err("tansu did not start listening within 30 s".into());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Err("tansu exited three times before listening".into())
    }
}

/// The test suites' master key (32 bytes of 7), base64.
pub const TEST_MASTER_KEY: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// `[privacy]` settings naming a file that holds [`TEST_MASTER_KEY`] (written once per run).
pub fn test_master_key_settings() -> String {
    let path = std::env::temp_dir().join(format!("kinlink-test-master-{}.key", std::process::id()));
    if !path.exists() {
        // A failed write shows up as kinlink refusing to start, naming the file.
        let _ = std::fs::write(&path, TEST_MASTER_KEY);
    }
    format!("\n[privacy]\nmaster_key_file = \"{}\"\n", path.display())
}

pub fn free_port() -> TestResult<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// The scale-out shape's processes: intake, then each of `workers` (services by name), each
/// its own `kinlink serve`.
pub async fn serve_scale_out(
    config: &Path,
    workers: &[&str],
) -> TestResult<(Kinlink, Vec<Kinlink>)> {
    let intake = Kinlink::serve("intake", config).await?;
    let mut started = Vec::new();
    for service in workers {
        started.push(Kinlink::serve(service, config).await?);
    }
    Ok((intake, started))
}

/// Ctrl-C to every process; true when each drained and exited cleanly.
pub async fn interrupt_all(intake: Kinlink, workers: Vec<Kinlink>) -> TestResult<bool> {
    let mut clean = intake.interrupt().await?.success();
    for worker in workers {
        clean &= worker.interrupt().await?.success();
    }
    Ok(clean)
}

/// The scale-out backends for one test: a tansu broker and a fresh PostgreSQL database.
#[derive(Debug)]
pub struct KafkaStack {
    pub tansu: Tansu,
    pub database: kinlink_store::test_support::TempPostgres,
}

impl KafkaStack {
    pub async fn start(dir: &Path) -> TestResult<Self> {
        let tansu = Tansu::start(dir).await?;
        let database = kinlink_store::test_support::TempPostgres::create()
            .await
            .map_err(|e| format!("PostgreSQL is required: {e}"))?;
        Ok(Self { tansu, database })
    }

    /// Settings selecting this broker and database (append to a config file), and a master
    /// key file every process of the test shares.
    pub fn settings(&self, partitions: u32, group_prefix: &str) -> String {
        format!(
            "\n[log]\nbackend = \"kafka\"\npartitions = {partitions}\n\n[log.kafka]\nbrokers = \"{}\"\ngroup_prefix = \"{group_prefix}-{}-\"\n\n[store]\nurl = \"{}\"\n{}",
            self.tansu.bootstrap,
            self.database.name,
            self.database.url,
            test_master_key_settings()
        )
    }

    /// Stops the broker and drops the database.
    pub async fn stop(self) -> TestResult {
        drop(self.tansu);
        self.database.drop_database().await?;
        Ok(())
    }
}

/// The records of a persons CSV as `kinlink link` reads them (strict: a synthetic file has no
/// unreadable values).
pub fn read_persons_csv(path: &Path) -> TestResult<Vec<kinlink_linkage::PersonRecord>> {
    kinlink::linkage::read_persons(path, true, &mut kinlink::linkage::Unreadable::default())
        .map_err(|e| e.to_string().into())
}

/// Every message value in `topic`, read raw from the broker (no kinlink code in between):
/// what anyone with read access to the topic, or a copy of the broker's disks, would see.
pub fn raw_topic_values(bootstrap: &str, topic: &str) -> TestResult<Vec<Vec<u8>>> {
    use rdkafka::config::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::message::Message;
    use rdkafka::{Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kinlink-e2e-raw-reader")
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = 0;
    for t in metadata.topics() {
        for p in t.partitions() {
            let (low, high) = consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(10))?;
            remaining += high - low;
            assignment.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&assignment)?;
    let mut values = vec![];
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while remaining > 0 && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message?;
            values.push(message.payload().unwrap_or_default().to_vec());
            remaining -= 1;
        }
    }
    if remaining > 0 {
        return Err(format!("{remaining} messages of {topic} not read within 30 s").into());
    }
    Ok(values)
}
