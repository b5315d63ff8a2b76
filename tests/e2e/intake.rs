//! The intake API as an integration engineer meets it, on the embedded default and on Kafka
//! (tansu) + PostgreSQL: authentication, problem details naming every field, all-or-nothing
//! acceptance, idempotent replays, the s51 and s52(3) rules, protobuf bodies, status, updates
//! and follow-up events.

use std::time::Duration;

use prost::Message;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const WESTMINSTER: &str = "E09000033";

struct Api {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Api {
    async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        key: Option<&str>,
        body: &Value,
    ) -> TestResult<(StatusCode, Value)> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(key) = key {
            request = request.header("idempotency-key", key);
        }
        let response = request.send().await?;
        let status = response.status();
        let problem = response.headers().get("content-type").is_some_and(|v| {
            v.to_str()
                .is_ok_and(|v| v.starts_with("application/problem+json"))
        });
        let raw = response.bytes().await?;
        let body: Value = serde_json::from_slice(&raw).map_err(|e| {
            format!(
                "{path}: {status} with a body that is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&raw)
            )
        })?;
        if status.is_client_error() {
            assert!(
                problem,
                "{path}: {status} must be application/problem+json: {body}"
            );
        }
        Ok((status, body))
    }

    async fn get(&self, path: &str, token: &str) -> TestResult<(StatusCode, Value)> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = response.status();
        Ok((status, response.json().await.unwrap_or(Value::Null)))
    }
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|e| {
            e.iter()
                .filter_map(|x| x["pointer"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn family(reference: &str) -> Value {
    json!({
        "external_reference": reference,
        "subject": { "given_name": "Ilir", "family_name": "Gashi", "date_of_birth": { "value": "1984-02-02" } },
        "dependants": [{ "relationship": "child", "person": { "given_name": "Besa", "family_name": "Gashi", "claimed_age": 6,
            "locations": [{ "role": "lives", "authority_code": WESTMINSTER }] } }],
        "consent": "given"
    })
}

async fn intake_rules(api: &Api, other_agency_token: &str) -> TestResult {
    // Authentication.
    let (status, _) = api
        .post("/v1/referrals", None, None, &family("A-1"))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = api
        .post("/v1/referrals", Some("klk_wrong"), None, &family("A-1"))
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Every failing field, by JSON pointer; nothing is accepted, so the key stays free.
    let invalid = json!({
        "subject": { "date_of_birth": { "value": "1990-02-30" }, "locations": [{ "role": "lives", "authority_code": "X" }] },
        "dependants": [{ "relationship": "child", "person": { "given_name": "" } }]
    });
    let (status, problem) = api
        .post("/v1/referrals", Some(&api.token), Some("key-1"), &invalid)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        pointers(&problem),
        [
            "/subject/date_of_birth/value",
            "/subject/locations/0/authority_code",
            "/subject/given_name",
            "/dependants/0/person/given_name"
        ]
    );
    let (status, problem) = api
        .post(
            "/v1/referrals",
            Some(&api.token),
            None,
            &json!({ "subject": { "given_name": "A", "sex": "martian" } }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(pointers(&problem), ["/subject/sex"]);
    assert!(
        !problem.to_string().contains("martian"),
        "values are not echoed"
    );

    // Accepted, then replayed: same response; the same key with another body is a conflict.
    let (status, first) = api
        .post(
            "/v1/referrals",
            Some(&api.token),
            Some("key-1"),
            &family("A-1"),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let referral_id = first["referral_id"].as_str().ok_or("no id")?.to_owned();
    let (status, replay) = api
        .post(
            "/v1/referrals",
            Some(&api.token),
            Some("key-1"),
            &family("A-1"),
        )
        .await?;
    assert_eq!((status, &replay), (StatusCode::ACCEPTED, &first));
    let (status, _) = api
        .post(
            "/v1/referrals",
            Some(&api.token),
            Some("key-1"),
            &family("A-2"),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    // The external reference is unique per agency: same body replays, another body conflicts.
    let (status, again) = api
        .post("/v1/referrals", Some(&api.token), None, &family("A-1"))
        .await?;
    assert_eq!(
        (status, again["referral_id"].as_str()),
        (StatusCode::ACCEPTED, Some(referral_id.as_str()))
    );
    let mut changed = family("A-1");
    changed["urgency"] = json!("urgent");
    let (status, _) = api
        .post("/v1/referrals", Some(&api.token), None, &changed)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT);
    // Another agency may use the same reference.
    let (status, _) = api
        .post(
            "/v1/referrals",
            Some(other_agency_token),
            None,
            &family("A-1"),
        )
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED);

    // Status, for the submitting agency only.
    let path = format!("/v1/referrals/{referral_id}");
    let mut status_body = Value::Null;
    for _ in 0..100 {
        let (status, body) = api.get(&path, &api.token).await?;
        assert_eq!(status, StatusCode::OK);
        if body["alerts"].as_array().is_some_and(|a| !a.is_empty()) {
            status_body = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        status_body["persons"].as_array().map(Vec::len),
        Some(2),
        "{status_body}"
    );
    assert_eq!(status_body["alerts"][0]["authority_code"], WESTMINSTER);
    assert_eq!(
        api.get(&path, other_agency_token).await?.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api.get("/v1/referrals/nope", &api.token).await?.0,
        StatusCode::NOT_FOUND
    );

    // s52(3): an adult without consent is reported anonymously, or not at all.
    let named = json!({ "subject": { "given_name": "Arta", "date_of_birth": { "value": "1980-01-01" },
        "locations": [{ "role": "found", "postcode": "SW1A 2AA" }] }, "consent": "not_given" });
    let (status, problem) = api
        .post("/v1/referrals", Some(&api.token), None, &named)
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        pointers(&problem),
        [
            "/subject/given_name",
            "/subject/date_of_birth",
            "/subject/locations/0/postcode"
        ]
    );
    let anonymous = json!({ "subject": { "date_of_birth": { "value": "1980" }, "locations": [{ "role": "found", "postcode": "SW1A" }] },
        "consent": "not_given",
        "dependants": [{ "relationship": "child", "person": { "given_name": "Dua", "claimed_age": 4,
            "locations": [{ "role": "lives", "authority_code": WESTMINSTER }] } }] });
    let (status, accepted) = api
        .post("/v1/referrals", Some(&api.token), None, &anonymous)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted}");
    let (_, body) = api
        .get(
            &format!(
                "/v1/referrals/{}",
                accepted["referral_id"].as_str().unwrap_or_default()
            ),
            &api.token,
        )
        .await?;
    assert_eq!(body["anonymous_duty_to_notify"], true);
    // s51: someone who may be under 18 needs no consent and is reported by name.
    let child =
        json!({ "subject": { "given_name": "Sokol", "claimed_age": 16 }, "consent": "not_given" });
    assert_eq!(
        api.post("/v1/referrals", Some(&api.token), None, &child)
            .await?
            .0,
        StatusCode::ACCEPTED
    );

    // Protobuf bodies take the same validation.
    let submission = kinlink_proto::v1::ReferralSubmission {
        subject: Some(kinlink_proto::v1::Person {
            given_name: "Proto".into(),
            claimed_age: Some(12),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = api
        .client
        .post(format!("{}/v1/referrals", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/x-protobuf")
        .body(submission.encode_to_vec())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let bad = kinlink_proto::v1::ReferralSubmission {
        subject: Some(kinlink_proto::v1::Person {
            given_name: "Proto".into(),
            sex: 99,
            ..Default::default()
        }),
        ..Default::default()
    };
    let response = api
        .client
        .post(format!("{}/v1/referrals", api.base))
        .bearer_auth(&api.token)
        .header("content-type", "application/x-protobuf")
        .body(bad.encode_to_vec())
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = api
        .client
        .post(format!("{}/v1/referrals", api.base))
        .bearer_auth(&api.token)
        .body("x")
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Updates are versioned.
    let update = json!({ "expected_version": 1, "urgency": "urgent" });
    let (status, updated) = api
        .post(&format!("{path}/updates"), Some(&api.token), None, &update)
        .await?;
    assert_eq!(
        (status, updated["version"].as_u64()),
        (StatusCode::ACCEPTED, Some(2))
    );
    let (status, _) = api
        .post(&format!("{path}/updates"), Some(&api.token), None, &update)
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "stale expected_version");

    // Follow-up events on one's own referrals only.
    let missing = json!({ "type": "missing_episode", "referral_id": referral_id, "subject": { "dependant_index": 0 },
        "missing_since": "2026-11-20T08:00:00Z" });
    let (status, event) = api
        .post("/v1/events", Some(&api.token), Some("ev-1"), &missing)
        .await?;
    assert_eq!(status, StatusCode::ACCEPTED, "{event}");
    assert_eq!(
        api.post("/v1/events", Some(&api.token), Some("ev-1"), &missing)
            .await?
            .1,
        event,
        "replayed"
    );
    assert_eq!(
        api.post("/v1/events", Some(other_agency_token), None, &missing)
            .await?
            .0,
        StatusCode::NOT_FOUND
    );
    let (status, problem) = api
        .post(
            "/v1/events",
            Some(&api.token),
            None,
            &json!({ "type": "teleported", "referral_id": "x" }),
        )
        .await?;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // The OpenAPI document is generated from the code.
    let doc: Value = api
        .client
        .get(format!("{}/openapi.json", api.base))
        .send()
        .await?
        .json()
        .await?;
    assert!(
        doc["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1"))
    );
    for path in [
        "/v1/referrals",
        "/v1/referrals/{id}",
        "/v1/events",
        "/v1/alerts/{id}",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
    Ok(())
}

#[tokio::test]
async fn intake_rules_on_the_embedded_default() -> TestResult {
    let dir = TempDir::new("e2e-intake")?;
    let receiver = WebhookReceiver::start().await?;
    let config = write_config(&dir.0, &receiver, &[WESTMINSTER], "")?;
    let data = dir.0.join("data");
    let kinlink = Kinlink::up(&data, &config).await?;
    let other = create_token(Some(&data), &config, "--agency", "other-agency")?;
    let api = Api {
        base: kinlink.base_url.clone(),
        token: kinlink.agency_token.clone(),
        client: reqwest::Client::new(),
    };
    intake_rules(&api, &other).await?;
    assert!(kinlink.interrupt().await?.success());
    Ok(())
}

#[tokio::test]
async fn intake_rules_on_kafka_and_postgres() -> TestResult {
    let dir = TempDir::new("e2e-intake-kafka")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let extra = stack.settings(2, "intake");
    let config = write_config(&dir.0, &receiver, &[WESTMINSTER], &extra)?;
    let kinlink = Kinlink::up(&dir.0.join("data"), &config).await?;
    let other = create_token(None, &config, "--agency", "other-agency")?;
    let api = Api {
        base: kinlink.base_url.clone(),
        token: kinlink.agency_token.clone(),
        client: reqwest::Client::new(),
    };
    let outcome = intake_rules(&api, &other).await;
    let status = kinlink.interrupt().await;
    stack.stop().await?;
    outcome?;
    assert!(status?.success());
    Ok(())
}

#[test]
fn import_reports_bad_lines_and_resumes_without_duplicates() -> TestResult {
    use sqlx::Connection;
    let dir = TempDir::new("e2e-import")?;
    let data = dir.0.join("data");
    let line =
        |name: &str| json!({ "subject": { "given_name": name, "claimed_age": 15 } }).to_string();
    let all = [
        line("Agim"),
        line("Blerta"),
        "{\"subject\": {\"sex\": \"x\"}}".to_owned(),
        line("Drita"),
        line("Elona"),
    ];
    let first_two = dir.0.join("part.jsonl");
    std::fs::write(&first_two, all[..2].join("\n"))?;
    let whole = dir.0.join("all.jsonl");
    std::fs::write(&whole, all.join("\n"))?;
    let import = |file: &std::path::Path| -> TestResult<Value> {
        let output = std::process::Command::new(crate::helpers::kinlink_bin())
            .args(["import", "--agency", "backlog-agency", "--json", "--errors"])
            .arg(dir.0.join("errors.jsonl"))
            .arg("--data-dir")
            .arg(&data)
            .arg(file)
            .output()?;
        assert!(output.status.success(), "{output:?}");
        Ok(serde_json::from_slice(&output.stdout)?)
    };
    // An interrupted run got through the first two lines...
    assert_eq!(
        import(&first_two)?,
        json!({ "accepted": 2, "already_imported": 0, "rejected": 0 })
    );
    // ...the full run resumes: nothing twice, the bad line reported with its field.
    assert_eq!(
        import(&whole)?,
        json!({ "accepted": 2, "already_imported": 2, "rejected": 1 })
    );
    let errors = std::fs::read_to_string(dir.0.join("errors.jsonl"))?;
    let report: Value = serde_json::from_str(errors.lines().next().ok_or("no error report")?)?;
    assert_eq!(report["line"], 3);
    assert_eq!(report["errors"][0]["pointer"], "/subject/sex");
    assert_eq!(
        import(&whole)?,
        json!({ "accepted": 0, "already_imported": 4, "rejected": 1 })
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let events = runtime.block_on(async {
        sqlx::any::install_default_drivers();
        let url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
        let mut conn = sqlx::AnyConnection::connect(&url).await?;
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM log_events WHERE topic = 'kinlink.referrals.received'",
        )
        .fetch_one(&mut conn)
        .await?;
        sqlx::Row::try_get::<i64, _>(&row, "n")
    })?;
    assert_eq!(events, 4, "each referral once in the log");
    Ok(())
}

/// Produces `submission` to `topic` as a streaming agency does: CloudEvents binary mode,
/// keyed by its id, with `source` as given.
async fn produce_submission(
    bootstrap: &str,
    topic: &str,
    id: &str,
    source: &str,
    submission: &kinlink_proto::v1::ReferralSubmission,
) -> TestResult {
    use rdkafka::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let envelope = kinlink_eventlog::Envelope::new(id.into(), source, id, id, 0, submission);
    let mut headers = OwnedHeaders::new();
    for (key, value) in envelope.kafka_headers() {
        headers = headers.insert(Header {
            key: &key,
            value: Some(&value),
        });
    }
    producer
        .send(
            FutureRecord::to(topic)
                .key(id)
                .payload(&envelope.data)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    Ok(())
}

/// The first `count` events on intake's dead-letter topic: event id -> reason.
async fn intake_dead_letters(
    bootstrap: &str,
    count: usize,
) -> TestResult<std::collections::BTreeMap<String, String>> {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::message::{Headers, Message};

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-intake-dlq-reader")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&["kinlink.intake.dlq"])?;
    let mut letters = std::collections::BTreeMap::new();
    while letters.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        let header = |name: &str| {
            message.headers().and_then(|h| {
                h.iter()
                    .find(|x| x.key == name)
                    .and_then(|x| x.value.map(|v| String::from_utf8_lossy(v).into_owned()))
            })
        };
        letters.insert(
            header("ce_id").unwrap_or_default(),
            header("ce_kinlinkdlqreason").unwrap_or_default(),
        );
    }
    Ok(letters)
}

/// A streamed referral of a child living in Westminster.
fn streamed_child(name: &str) -> kinlink_proto::v1::ReferralSubmission {
    kinlink_proto::v1::ReferralSubmission {
        subject: Some(kinlink_proto::v1::Person {
            given_name: name.into(),
            claimed_age: Some(10),
            locations: vec![kinlink_proto::v1::Location {
                role: kinlink_proto::v1::LocationRole::Lives as i32,
                authority_code: WESTMINSTER.into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Agencies that stream: a valid submission produced to the intake topic becomes a referral
/// and an alert; an invalid one lands on the dead-letter topic with every failing field.
#[tokio::test]
async fn streamed_submissions_on_kafka_take_the_http_path_or_the_dead_letter_topic() -> TestResult {
    let dir = TempDir::new("e2e-stream")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let extra = stack.settings(1, "stream");
    let config = write_config(&dir.0, &receiver, &[WESTMINSTER], &extra)?;
    let kinlink = Kinlink::up(&dir.0.join("data"), &config).await?;

    let invalid = kinlink_proto::v1::ReferralSubmission {
        subject: Some(kinlink_proto::v1::Person {
            sex: 42,
            ..Default::default()
        }),
        ..Default::default()
    };
    for (id, submission) in [
        ("stream-ok", streamed_child("Streamed")),
        ("stream-bad", invalid),
    ] {
        produce_submission(
            &stack.tansu.bootstrap,
            kinlink_eventlog::topics::INTAKE_SUBMISSIONS,
            id,
            "/agencies/streaming-agency",
            &submission,
        )
        .await?;
    }

    let received = receiver
        .wait_for(Duration::from_secs(60), |r| !r.is_empty())
        .await?;
    assert_eq!(
        received[0].authority, WESTMINSTER,
        "the valid submission became an alert"
    );

    let letters = intake_dead_letters(&stack.tansu.bootstrap, 1).await?;
    let reason = letters
        .get("stream-bad")
        .ok_or("stream-bad not dead-lettered")?;
    assert!(
        reason.contains("/subject/sex") && reason.contains("/subject/given_name"),
        "{reason}"
    );

    let status = kinlink.interrupt().await;
    stack.stop().await?;
    assert!(status?.success());
    Ok(())
}

/// An agency with its own submissions topic (writable only by its Kafka principal, through
/// broker ACLs): the topic, not the event's `source`, names the agency. A `source` naming
/// another agency on that topic is refused, and so is the agency's `source` on the shared
/// topic, where anyone allowed to produce could claim it.
#[tokio::test]
async fn an_agencys_own_topic_binds_its_submissions_to_the_producer() -> TestResult {
    use sqlx::Connection;

    let dir = TempDir::new("e2e-principal")?;
    let stack = KafkaStack::start(&dir.0).await?;
    let receiver = WebhookReceiver::start().await?;
    let extra = format!(
        "{}\n[[intake.agencies]]\nid = \"met-police\"\nname = \"Metropolitan Police\"\nown_submissions_topic = true\n",
        stack.settings(1, "principal")
    );
    let config = write_config(&dir.0, &receiver, &[WESTMINSTER], &extra)?;
    let kinlink = Kinlink::up(&dir.0.join("data"), &config).await?;

    let own_topic = kinlink_eventlog::topics::agency_submissions("met-police");
    let shared_topic = kinlink_eventlog::topics::INTAKE_SUBMISSIONS;
    for (id, topic, source) in [
        (
            "own-topic-own-source",
            own_topic.as_str(),
            "/agencies/met-police",
        ),
        (
            "own-topic-other-source",
            own_topic.as_str(),
            "/agencies/kent-police",
        ),
        (
            "shared-topic-bound-source",
            shared_topic,
            "/agencies/met-police",
        ),
        (
            "shared-topic-unbound-source",
            shared_topic,
            "/agencies/kent-police",
        ),
    ] {
        produce_submission(
            &stack.tansu.bootstrap,
            topic,
            id,
            source,
            &streamed_child(id),
        )
        .await?;
    }

    // Two refused, with the reason naming the agencies (ids, not personal data).
    let refused = intake_dead_letters(&stack.tansu.bootstrap, 2).await?;
    assert!(
        refused
            .get("own-topic-other-source")
            .is_some_and(|r| r.contains(
                "source names agency kent-police on the submissions topic of agency met-police"
            )),
        "{refused:?}"
    );
    assert!(
        refused
            .get("shared-topic-bound-source")
            .is_some_and(|r| r.contains(
                "agency met-police submits on its own topic kinlink.intake.submissions.met-police"
            )),
        "{refused:?}"
    );

    // Two accepted: one alert each, and each referral recorded under the right agency.
    receiver
        .wait_for(Duration::from_secs(60), |r| r.len() >= 2)
        .await?;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(
        receiver.received().len(),
        2,
        "exactly the two accepted submissions alert"
    );
    let mut conn = sqlx::PgConnection::connect(&stack.database.url).await?;
    let agencies: Vec<(String,)> =
        sqlx::query_as("SELECT agency_id FROM intake_referrals ORDER BY agency_id")
            .fetch_all(&mut conn)
            .await?;
    conn.close().await?;
    assert_eq!(
        agencies,
        vec![("kent-police".to_owned(),), ("met-police".to_owned(),)]
    );

    let status = kinlink.interrupt().await;
    stack.stop().await?;
    assert!(status?.success());
    Ok(())
}
