//! Council staff sign in with their organisation's OpenID Connect provider (as with Microsoft
//! Entra ID): a local fake provider publishes its discovery document and keys, checks the PKCE
//! verifier and signs ID tokens (EdDSA). kinlink signs in only a person who has a kinlink
//! account of the provider's authority, and only with the state and nonce it issued.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect};
use base64::Engine;
use sha2::{Digest, Sha256};

use crate::helpers::*;

const KENT: &str = "E10000016";
const CLIENT_ID: &str = "kinlink-kent";
const CLIENT_SECRET: &str = "test-client-secret";

/// What the fake provider remembers of an authorization request, by code.
#[derive(Debug, Clone)]
struct Pending {
    nonce: String,
    challenge: String,
    redirect_uri: String,
}

#[derive(Clone)]
struct FakeIdp {
    issuer: String,
    pkcs8: Arc<Vec<u8>>,
    public: Arc<Vec<u8>>,
    /// The email the next sign-in asserts.
    email: Arc<Mutex<String>>,
    codes: Arc<Mutex<HashMap<String, Pending>>>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn discovery(State(idp): State<FakeIdp>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "issuer": idp.issuer,
        "authorization_endpoint": format!("{}/authorize", idp.issuer),
        "token_endpoint": format!("{}/token", idp.issuer),
        "jwks_uri": format!("{}/keys", idp.issuer),
    }))
}

async fn keys(State(idp): State<FakeIdp>) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({ "keys": [{
        "kty": "OKP", "crv": "Ed25519", "x": b64(&idp.public), "kid": "k1", "alg": "EdDSA", "use": "sig"
    }] }))
}

/// Signs the person in at once (the fake has no login page) and sends them back.
async fn authorize(
    State(idp): State<FakeIdp>,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    if get("client_id") != CLIENT_ID || get("code_challenge_method") != "S256" {
        return (axum::http::StatusCode::BAD_REQUEST, "bad request").into_response();
    }
    let code = uuid::Uuid::new_v4().to_string();
    if let Ok(mut codes) = idp.codes.lock() {
        codes.insert(
            code.clone(),
            Pending {
                nonce: get("nonce"),
                challenge: get("code_challenge"),
                redirect_uri: get("redirect_uri"),
            },
        );
    }
    Redirect::to(&format!(
        "{}?code={code}&state={}",
        get("redirect_uri"),
        get("state")
    ))
    .into_response()
}

async fn token(
    State(idp): State<FakeIdp>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> axum::response::Response {
    let get = |k: &str| form.get(k).cloned().unwrap_or_default();
    let Some(Pending {
        nonce,
        challenge,
        redirect_uri: redirect,
    }) = idp
        .codes
        .lock()
        .ok()
        .and_then(|mut c| c.remove(&get("code")))
    else {
        return (axum::http::StatusCode::BAD_REQUEST, "invalid_grant").into_response();
    };
    let verified = b64(&Sha256::digest(get("code_verifier").as_bytes())) == challenge;
    if !verified || get("client_secret") != CLIENT_SECRET || get("redirect_uri") != redirect {
        return (axum::http::StatusCode::BAD_REQUEST, "invalid_grant").into_response();
    }
    let now = chrono::Utc::now().timestamp();
    let email = idp.email.lock().map(|e| e.clone()).unwrap_or_default();
    let claims = serde_json::json!({ "iss": idp.issuer, "aud": CLIENT_ID, "sub": "s-1", "iat": now,
        "exp": now + 300, "nonce": nonce, "email": email });
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
    header.kid = Some("k1".into());
    let Ok(id_token) = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_ed_der(&idp.pkcs8),
    ) else {
        return (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "signing failed",
        )
            .into_response();
    };
    axum::Json(serde_json::json!({ "id_token": id_token, "token_type": "Bearer" })).into_response()
}

fn set_cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
}

/// Runs the sign-in: kinlink -> provider -> callback. Returns the callback's response.
async fn sign_in(
    client: &reqwest::Client,
    base: &str,
    keep_flow_cookie: bool,
) -> TestResult<reqwest::Response> {
    let start = client
        .get(format!("{base}/console/sign-in/kent"))
        .send()
        .await?;
    assert_eq!(start.status(), 303);
    let flow = set_cookie_value(&start, "kinlink_oidc").ok_or("no flow cookie")?;
    let to_idp = start
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or("no location")?
        .to_owned();
    let back = client.get(&to_idp).send().await?;
    assert_eq!(back.status(), 303, "the provider sends the browser back");
    let callback = back
        .headers()
        .get("location")
        .and_then(|l| l.to_str().ok())
        .ok_or("no callback")?
        .to_owned();
    let mut request = client.get(&callback);
    if keep_flow_cookie {
        request = request.header("cookie", flow);
    }
    Ok(request.send().await?)
}

#[tokio::test]
async fn council_staff_sign_in_with_their_organisations_openid_connect_provider() -> TestResult {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
        .map_err(|_| "key generation failed")?;
    let pair =
        ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "bad key")?;
    let public = ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let issuer = format!("http://{}", listener.local_addr()?);
    let idp = FakeIdp {
        issuer: issuer.clone(),
        pkcs8: Arc::new(pkcs8.as_ref().to_vec()),
        public: Arc::new(public),
        email: Arc::new(Mutex::new("duty@kent.example".into())),
        codes: Arc::default(),
    };
    let app = axum::Router::new()
        .route(
            "/.well-known/openid-configuration",
            axum::routing::get(discovery),
        )
        .route("/keys", axum::routing::get(keys))
        .route("/authorize", axum::routing::get(authorize))
        .route("/token", axum::routing::post(token))
        .with_state(idp.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = TempDir::new("e2e-oidc")?;
    let receiver = WebhookReceiver::start().await?;
    let extra = format!(
        "\n[[console.oidc]]\nname = \"kent\"\nlabel = \"Kent County Council\"\nissuer = \"{issuer}\"\n\
         client_id = \"{CLIENT_ID}\"\nclient_secret = \"env:TEST_OIDC_SECRET\"\nauthority = \"{KENT}\"\n"
    );
    let config = write_config(&dir.0, &receiver, &[KENT], &extra)?;
    let data = dir.0.join("data");
    let kinlink =
        Kinlink::up_with_env(&data, &config, &[("TEST_OIDC_SECRET", CLIENT_SECRET)]).await?;
    let base = kinlink.base_url.clone();
    let created = std::process::Command::new(kinlink_bin())
        .args([
            "users",
            "create",
            "duty@kent.example",
            "--role",
            "practitioner",
            "--authority",
            KENT,
            "--name",
            "Kent duty desk",
            "--oidc",
            "--data-dir",
        ])
        .arg(&data)
        .arg("--config")
        .arg(&config)
        .output()?;
    assert!(created.status.success(), "{created:?}");
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The sign-in page offers the provider.
    let page = client
        .get(format!("{base}/console/sign-in"))
        .send()
        .await?
        .text()
        .await?;
    assert!(page.contains("Sign in with Kent County Council"), "{page}");

    // Signed in: the session opens the council's inbox.
    let done = sign_in(&client, &base, true).await?;
    assert_eq!(done.status(), 200);
    let session = set_cookie_value(&done, "kinlink_session").ok_or("no session")?;
    let inbox = client
        .get(format!("{base}/console/inbox"))
        .header("cookie", &session)
        .send()
        .await?;
    assert_eq!(inbox.status(), 200);
    assert!(inbox.text().await?.contains("Kent duty desk"));

    // A callback without the flow it belongs to is refused.
    let stray = sign_in(&client, &base, false).await?;
    assert_eq!(stray.status(), 400);
    assert!(set_cookie_value(&stray, "kinlink_session").is_none());

    // Someone the provider knows but kinlink does not: no session.
    if let Ok(mut email) = idp.email.lock() {
        *email = "stranger@kent.example".into();
    }
    let stranger = sign_in(&client, &base, true).await?;
    assert_eq!(stranger.status(), 403);
    assert!(set_cookie_value(&stranger, "kinlink_session").is_none());

    // An OIDC-only account has no password to guess.
    kinlink.interrupt().await?;
    Ok(())
}
