//! Councils without a webhook receiver still hear at once: GOV.UK Notify (email and SMS, the
//! API-key JWT checked by a local fake of its REST API) and SMTP (a local fake relay that
//! speaks the protocol). Messages carry no personal data, a failed send is retried, and an
//! authority with no webhook has its delivery settled by its messages.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::*;

const KENT: &str = "E10000016";
const WESTMINSTER: &str = "E09000033";
const SERVICE_ID: &str = "26785a09-ab16-4eb0-8407-a37497a57506";
const SECRET: &str = "3d844edf-8d35-48ac-975b-e847b4f122b0";

#[derive(Clone, Default)]
struct FakeNotify {
    /// (path, body) of each accepted request.
    received: Arc<Mutex<Vec<(String, serde_json::Value)>>>,
    /// Requests refused so far (the first email is answered 500).
    failed_once: Arc<Mutex<bool>>,
    bad_tokens: Arc<Mutex<usize>>,
}

#[derive(serde::Deserialize)]
struct Claims {
    iss: String,
    iat: i64,
}

async fn notify_endpoint(
    State(fake): State<FakeNotify>,
    UrlPath(kind): UrlPath<String>,
    headers: HeaderMap,
    body: axum::Json<serde_json::Value>,
) -> axum::response::Response {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Claims>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    );
    let now = chrono::Utc::now().timestamp();
    match claims {
        Ok(c) if c.claims.iss == SERVICE_ID && (c.claims.iat - now).abs() < 30 => {}
        _ => {
            if let Ok(mut bad) = fake.bad_tokens.lock() {
                *bad += 1;
            }
            return (StatusCode::FORBIDDEN, "invalid token").into_response();
        }
    }
    if kind == "email"
        && let Ok(mut failed) = fake.failed_once.lock()
        && !*failed
    {
        *failed = true;
        return (StatusCode::INTERNAL_SERVER_ERROR, "try again").into_response();
    }
    if let Ok(mut received) = fake.received.lock() {
        received.push((kind, body.0));
    }
    (
        StatusCode::CREATED,
        axum::Json(serde_json::json!({ "id": uuid::Uuid::new_v4().to_string() })),
    )
        .into_response()
}

/// Messages a fake relay received: recipients and data.
type Mailbox = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// A local SMTP relay: answers the protocol and keeps each message's recipients and data.
async fn fake_smtp() -> TestResult<(u16, Mailbox)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let mail: Mailbox = Arc::default();
    let store = mail.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let store = store.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                let _ = write.write_all(b"220 fake.relay ESMTP\r\n").await;
                let (mut rcpt, mut data, mut in_data) = (Vec::new(), String::new(), false);
                while let Ok(Some(line)) = lines.next_line().await {
                    if in_data {
                        if line == "." {
                            in_data = false;
                            if let Ok(mut m) = store.lock() {
                                m.push((std::mem::take(&mut rcpt), std::mem::take(&mut data)));
                            }
                            let _ = write.write_all(b"250 2.0.0 queued\r\n").await;
                        } else {
                            data.push_str(&line);
                            data.push('\n');
                        }
                        continue;
                    }
                    let upper = line.to_ascii_uppercase();
                    let reply: &[u8] = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                        b"250-fake.relay\r\n250 8BITMIME\r\n"
                    } else if upper.starts_with("RCPT TO:") {
                        rcpt.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
                        b"250 2.1.5 ok\r\n"
                    } else if upper.starts_with("DATA") {
                        in_data = true;
                        b"354 go ahead\r\n"
                    } else if upper.starts_with("QUIT") {
                        let _ = write.write_all(b"221 bye\r\n").await;
                        break;
                    } else {
                        b"250 ok\r\n"
                    };
                    let _ = write.write_all(reply).await;
                }
            });
        }
    });
    Ok((port, mail))
}

#[tokio::test]
async fn duty_teams_are_told_by_govuk_notify_and_smtp_without_personal_data() -> TestResult {
    use sqlx::{Connection, Row};
    sqlx::any::install_default_drivers();
    let dir = TempDir::new("e2e-channels")?;
    let receiver = WebhookReceiver::start().await?;
    let fake = FakeNotify::default();
    let notify = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let notify_url = format!("http://{}", notify.local_addr()?);
    let app = axum::Router::new()
        .route(
            "/v2/notifications/{kind}",
            axum::routing::post(notify_endpoint),
        )
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(notify, app).await });
    let (smtp_port, mail) = fake_smtp().await?;

    // Kent has a webhook, a duty mailbox (Notify) and a duty phone (Notify SMS); Westminster
    // has no webhook, only a mailbox on its own relay.
    let extra = format!(
        "\n[notifier.govuk_notify]\napi_key = \"env:TEST_NOTIFY_KEY\"\nbase_url = \"{notify_url}\"\n\
         email_template_id = \"f33517ff-2a88-4f6e-b855-c550268ce08a\"\nsms_template_id = \"9d1a5b3e-6c1f-4d33-8d2e-4bb2d9a1c0de\"\n\
         \n[notifier.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\nfrom = \"kinlink@example.org\"\n\
         \n[[notifier.authorities]]\ncode = \"{KENT}\"\nwebhook_url = \"{}\"\nemail = [\"mash@kent.example\"]\nsms = [\"+447700900123\"]\n\
         \n[[notifier.authorities]]\ncode = \"{WESTMINSTER}\"\nemail = [\"duty@westminster.example\"]\nemail_via = \"smtp\"\n",
        receiver.url(KENT)
    );
    let config = write_config(&dir.0, &receiver, &[], &extra)?;
    let data = dir.0.join("data");
    let key = format!("kinlink_test-{SERVICE_ID}-{SECRET}");
    let kinlink =
        Kinlink::up_with_env(&data, &config, &[("TEST_NOTIFY_KEY", key.as_str())]).await?;
    let accepted = kinlink.post_referral(&family_referral("ch")).await?;
    let referral_id = accepted["referral_id"]
        .as_str()
        .ok_or("no referral id")?
        .to_owned();

    // Wait for the email (after one 500), the SMS and the SMTP message.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let notified = fake.received.lock().map(|r| r.len()).unwrap_or(0);
        let mailed = mail.lock().map(|m| m.len()).unwrap_or(0);
        if notified >= 2 && mailed >= 1 {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("messages: {notified} by Notify, {mailed} by SMTP").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let received = fake.received.lock().map(|r| r.clone()).unwrap_or_default();
    let mail = mail.lock().map(|m| m.clone()).unwrap_or_default();
    assert_eq!(
        *fake.bad_tokens.lock().map_err(|e| e.to_string())?,
        0,
        "every request carried a valid Notify JWT"
    );
    assert_eq!(received.len(), 2, "one email and one SMS: {received:?}");
    let email = received
        .iter()
        .find(|(k, _)| k == "email")
        .ok_or("no email")?;
    let sms = received.iter().find(|(k, _)| k == "sms").ok_or("no sms")?;
    assert_eq!(email.1["email_address"], "mash@kent.example");
    assert_eq!(sms.1["phone_number"], "+447700900123");
    let kent_alert = kinlink_domain::alerting::planning::referral_alert_id(&referral_id, KENT);
    let westminster_alert =
        kinlink_domain::alerting::planning::referral_alert_id(&referral_id, WESTMINSTER);
    assert!(
        email.1["personalisation"]["link"]
            .as_str()
            .unwrap_or_default()
            .ends_with(&format!("/console/alerts/{kent_alert}")),
        "{email:?}"
    );
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(mail[0].0, vec!["duty@westminster.example".to_owned()]);
    assert!(
        mail[0]
            .1
            .contains(&format!("/console/alerts/{westminster_alert}")),
        "{}",
        mail[0].1
    );
    // No names, dates of birth or free text in any message.
    let everything = format!("{received:?} {mail:?}");
    for private in ["Hoxha", "Elira", "Arben", "2016-01-01", "free text"] {
        assert!(
            !everything.contains(private),
            "{private} in a message: {everything}"
        );
    }

    // The ledger: the email took two attempts; Westminster's delivery is settled without a
    // webhook, and nothing was posted to a webhook for it.
    let url = format!("sqlite://{}?mode=ro", data.join("kinlink.db").display());
    let mut conn = sqlx::AnyConnection::connect(&url).await?;
    let rows = sqlx::query("SELECT channel, state, attempts FROM notifications ORDER BY channel")
        .fetch_all(&mut conn)
        .await?;
    let ledger: Vec<(String, String, i64)> = rows
        .iter()
        .map(|r| {
            Ok((
                r.try_get("channel")?,
                r.try_get("state")?,
                r.try_get("attempts")?,
            ))
        })
        .collect::<Result<_, sqlx::Error>>()?;
    assert_eq!(
        ledger,
        vec![
            ("notify_email".to_owned(), "sent".to_owned(), 2),
            ("notify_sms".to_owned(), "sent".to_owned(), 1),
            ("smtp_email".to_owned(), "sent".to_owned(), 1),
        ]
    );
    let state: String = sqlx::query("SELECT state FROM deliveries WHERE alert_id = $1")
        .bind(&westminster_alert)
        .fetch_one(&mut conn)
        .await?
        .try_get("state")?;
    assert_eq!(state, "delivered");
    conn.close().await?;
    assert!(receiver.received_by(WESTMINSTER).is_empty());
    assert_eq!(receiver.received_by(KENT).len(), 1);
    kinlink.interrupt().await?;
    Ok(())
}
