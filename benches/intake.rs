//! Benchmark (not a test): referrals accepted durably per second through `POST /v1/referrals`,
//! on the embedded default and on Kafka (tansu) + PostgreSQL, with the whole pipeline running
//! in the same process as `kinlink up` runs it.
//!
//! Run: `cargo bench --bench intake` (the Kafka part needs `tansu` on PATH or
//! `KINLINK_TANSU_BIN`, and PostgreSQL at `KINLINK_TEST_POSTGRES_URL`).

use std::time::{Duration, Instant};

use kinlink_runtime::Settings;
use kinlink_runtime::settings::LogBackend;
use kinlink_store::test_support::TempPostgres;

const CONCURRENCY: usize = 16;
const DURATION: Duration = Duration::from_secs(8);

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// A name of its own for referral `n`, so linkage sees distinct people (digits are not part of
/// a name, so `Child1` and `Child2` would be the same child).
fn name(n: usize, salt: usize) -> String {
    const SYLLABLES: [&str; 16] = [
        "ba", "ko", "mi", "ra", "tu", "le", "si", "no", "da", "fe", "gi", "ho", "ju", "ly", "pa",
        "ve",
    ];
    let mut x = n * 7 + salt;
    let mut out = String::new();
    loop {
        out.push_str(SYLLABLES[x % 16]);
        x /= 16;
        if x == 0 {
            break;
        }
    }
    let mut chars = out.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn referral(n: usize) -> serde_json::Value {
    serde_json::json!({
        "external_reference": format!("BENCH-{n}"),
        "subject": { "given_name": name(n, 1), "family_name": name(n, 3), "date_of_birth": { "value": "1985-05-05" } },
        "dependants": [{ "relationship": "child", "person": { "given_name": name(n, 5), "family_name": name(n, 3), "claimed_age": 7,
            "locations": [{ "role": "lives", "postcode": "CT1 2RR" }] } }]
    })
}

async fn measure(label: &str, settings: Settings) -> Result<()> {
    let (process, api) = kinlink::assemble(settings)
        .await
        .map_err(|e| e.to_string())?;
    let token = kinlink_store::tokens::create(&process.store, "agency", "bench", "")
        .await?
        .secret;
    let base = format!("http://{}", process.local_addr()?);
    let shutdown = process.shutdown.clone();
    let server = tokio::spawn(process.run_until_stopped(api));
    let client = reqwest::Client::new();
    let started = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..CONCURRENCY {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        workers.push(tokio::spawn(async move {
            let mut accepted = 0usize;
            let mut n = worker;
            while started.elapsed() < DURATION {
                let response = client
                    .post(format!("{base}/v1/referrals"))
                    .bearer_auth(&token)
                    .json(&referral(n))
                    .send()
                    .await;
                if response.is_ok_and(|r| r.status() == reqwest::StatusCode::ACCEPTED) {
                    accepted += 1;
                }
                n += CONCURRENCY;
            }
            accepted
        }));
    }
    let mut accepted = 0;
    for worker in workers {
        accepted += worker.await?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{label}: {accepted} referrals accepted durably in {elapsed:.1} s = {:.0}/s ({CONCURRENCY} concurrent clients)",
        accepted as f64 / elapsed
    );
    shutdown.cancel();
    let _ = server.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let dir = std::env::temp_dir().join(format!("kinlink-bench-{}", std::process::id()));
    let quiet = |mut settings: Settings| {
        settings.http.address = "127.0.0.1:0".into();
        settings.telemetry.filter = "error".into();
        settings
    };
    measure(
        "embedded (SQLite)",
        quiet(Settings {
            data_dir: dir.join("embedded"),
            ..Settings::default()
        }),
    )
    .await?;

    let tansu_bin = std::env::var("KINLINK_TANSU_BIN").unwrap_or_else(|_| "tansu".into());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    std::fs::create_dir_all(dir.join("tansu"))?;
    let mut tansu = std::process::Command::new(tansu_bin)
        .args([
            "broker",
            "--listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{port}"),
            "--storage-engine",
            "sqlite://tansu.db",
        ])
        .current_dir(dir.join("tansu"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let database = TempPostgres::create().await?;
    let mut kafka = quiet(Settings::default());
    kafka.log.backend = LogBackend::Kafka;
    kafka.log.kafka.brokers = format!("127.0.0.1:{port}");
    kafka.store.url = Some(database.url.clone());
    let outcome = measure("Kafka (tansu) + PostgreSQL", kafka).await;
    let _ = tansu.kill();
    database.drop_database().await?;
    let _ = std::fs::remove_dir_all(&dir);
    outcome
}
