//! Sign-in through a council's own identity provider (OpenID Connect: Microsoft Entra ID and
//! the like), configured per provider in `console.oidc`. The authorization code flow with PKCE
//! (S256), a `state` and a `nonce` kept in a short-lived cookie; the ID token's signature is
//! checked against the provider's published keys, with its issuer, audience, expiry and nonce.
//! Signing in proves who the person is; what they may do still comes from `kinlink users`:
//! the claim named by `username_claim` (the email address by default) must be the username of
//! an enabled user, of the provider's authority (or, for a provider with no authority, an
//! operator or reviewer).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use base64::Engine;
use kinlink_runtime::settings::OidcProvider;
use kinlink_store::audit::AuditEntry;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::accounts;
use crate::view;
use crate::{Console, SESSION_COOKIE, cookie, sessions, set_cookie};

const FLOW_COOKIE: &str = "kinlink_oidc";

/// The provider's endpoints, from its discovery document.
#[derive(Debug, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

fn provider<'a>(console: &'a Console, name: &str) -> Option<&'a OidcProvider> {
    console.settings.oidc.iter().find(|p| p.name == name)
}

async fn discover(console: &Console, provider: &OidcProvider) -> Result<Discovery, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        provider.issuer.trim_end_matches('/')
    );
    let discovery: Discovery = console
        .http
        .get(url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("discovery: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("discovery document: {}", e.without_url()))?;
    if discovery.issuer.trim_end_matches('/') != provider.issuer.trim_end_matches('/') {
        return Err("discovery: the issuer does not match the configured one".to_owned());
    }
    Ok(discovery)
}

/// Where the provider sends the browser back: fixed by `console.public_url` when set (it must
/// match the redirect URI registered with the provider), else this request's host.
fn redirect_uri(console: &Console, headers: &HeaderMap, name: &str) -> String {
    let base = if console.settings.public_url.is_empty() {
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        format!("http://{host}")
    } else {
        console.settings.public_url.trim_end_matches('/').to_owned()
    };
    format!("{base}/console/oidc/{name}/callback")
}

fn failed(status: StatusCode, body: &str) -> Response {
    view::message_page(status, "You could not be signed in", body, None)
}

/// `GET /console/sign-in/{name}`: off to the provider.
pub async fn start(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let Some(provider) = provider(&console, &name) else {
        return view::not_found(None);
    };
    let discovery = match discover(&console, provider).await {
        Ok(discovery) => discovery,
        Err(reason) => {
            tracing::error!(provider = %name, %reason, "OpenID Connect provider unavailable.");
            return failed(
                StatusCode::BAD_GATEWAY,
                "Your organisation's sign-in service did not answer. Try again, or sign in with a kinlink password.",
            );
        }
    };
    let (state, nonce, verifier) = (
        sessions::random_token(),
        sessions::random_token(),
        sessions::random_token(),
    );
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    let mut location = match reqwest::Url::parse(&discovery.authorization_endpoint) {
        Ok(url) => url,
        Err(_) => {
            return failed(
                StatusCode::BAD_GATEWAY,
                "The sign-in service is misconfigured.",
            );
        }
    };
    location
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &provider.client_id)
        .append_pair("redirect_uri", &redirect_uri(&console, &headers, &name))
        .append_pair("scope", "openid email profile")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let mut response = Redirect::to(location.as_str()).into_response();
    // Lax, not Strict: the provider's redirect back is a cross-site navigation.
    let mut flow = format!(
        "{FLOW_COOKIE}={name}.{state}.{nonce}.{verifier}; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=600"
    );
    if console.settings.secure_cookies {
        flow.push_str("; Secure");
    }
    if let Ok(value) = HeaderValue::from_str(&flow) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: String,
}

/// `GET /console/oidc/{name}/callback`: the provider sends the browser back with a code.
pub async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Query(callback): Query<Callback>,
) -> Response {
    let Some(provider) = provider(&console, &name) else {
        return view::not_found(None);
    };
    if let Some(error) = callback.error {
        tracing::warn!(provider = %name, error = %error.chars().filter(char::is_ascii_alphanumeric).take(40).collect::<String>(), "OpenID Connect sign-in refused by the provider.");
        return failed(
            StatusCode::UNAUTHORIZED,
            "Your organisation's sign-in service did not sign you in.",
        );
    }
    let flow = cookie(&headers, FLOW_COOKIE).unwrap_or_default();
    // The flow is bound to this provider, and every part must be present.
    let mut parts = flow.splitn(4, '.');
    let (Some(flow_provider), Some(state), Some(nonce), Some(verifier)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return failed(
            StatusCode::BAD_REQUEST,
            "The sign-in took too long or was started elsewhere. Start again.",
        );
    };
    let presented = callback.state.unwrap_or_default();
    if flow_provider != name
        || [state, nonce, verifier].iter().any(|p| p.len() < 32)
        || !sessions::same_secret(&presented, state)
    {
        return failed(
            StatusCode::BAD_REQUEST,
            "The sign-in took too long or was started elsewhere. Start again.",
        );
    }
    let Some(code) = callback.code else {
        return failed(
            StatusCode::BAD_REQUEST,
            "The sign-in service sent no code. Start again.",
        );
    };
    let claims = match verify(&console, provider, &headers, &name, &code, verifier, nonce).await {
        Ok(claims) => claims,
        Err(reason) => {
            tracing::warn!(provider = %name, %reason, "OpenID Connect sign-in failed.");
            return failed(
                StatusCode::UNAUTHORIZED,
                "Your sign-in could not be checked. Start again, or ask your administrator.",
            );
        }
    };
    let username = claims
        .get(&provider.username_claim)
        .and_then(serde_json::Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_lowercase();
    let user = match accounts::by_username(&console.store, &username).await {
        Ok(user) => user,
        Err(error) => return crate::unavailable(&error),
    };
    let allowed = user.as_ref().filter(|u| {
        !u.disabled
            && if provider.authority.is_empty() {
                !u.role.is_council()
            } else {
                u.role.is_council() && u.authority_code == provider.authority
            }
    });
    let Some(user) = allowed else {
        if accounts::valid_username(&username) {
            let actor = format!("user:{username}");
            let detail = format!("oidc:{name}");
            let _ = crate::audit(
                &console,
                AuditEntry {
                    action: "console_sign_in_failed",
                    actor: &actor,
                    authority_code: &provider.authority,
                    alert_id: "",
                    detail: &detail,
                },
            )
            .await;
        }
        return failed(
            StatusCode::FORBIDDEN,
            "You signed in, but you have no kinlink account for this organisation. Ask your kinlink administrator to add you.",
        );
    };
    let secret = match sessions::start(&console.store, user, kinlink_store::now_millis()).await {
        Ok(secret) => secret,
        Err(error) => return crate::unavailable(&error),
    };
    let actor = user.audit_actor();
    let detail = format!("oidc:{name}");
    if let Err(error) = crate::audit(
        &console,
        AuditEntry {
            action: "console_signed_in",
            actor: &actor,
            authority_code: &user.authority_code,
            alert_id: "",
            detail: &detail,
        },
    )
    .await
    {
        return crate::unavailable(&error);
    }
    tracing::info!(user = %user.user_id, provider = %name, "Console sign-in through OpenID Connect.");
    // A page of our own, not a redirect: the session cookie is SameSite=Strict, and a redirect
    // chain that began on the provider's site would not carry it.
    let start = view::start_page(user.role);
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed in – kinlink</title>\
         <meta http-equiv=\"refresh\" content=\"0;url={start}\"><link rel=\"stylesheet\" href=\"/console/static/govuk-frontend.min.css\"></head>\
         <body class=\"govuk-template__body\"><main class=\"govuk-main-wrapper govuk-width-container\" id=\"main-content\">\
         <h1 class=\"govuk-heading-l\">You are signed in</h1><p class=\"govuk-body\"><a class=\"govuk-link\" id=\"continue\" href=\"{start}\">Continue</a></p></main></body></html>"
    );
    let mut response = (StatusCode::OK, Html(html)).into_response();
    for value in [
        set_cookie(&console, SESSION_COOKIE, &secret, "/console", None),
        format!("{FLOW_COOKIE}=; Path=/console/oidc; HttpOnly; SameSite=Lax; Max-Age=0"),
    ] {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// Exchanges the code (with the PKCE verifier) and checks the ID token; returns its claims.
async fn verify(
    console: &Console,
    provider: &OidcProvider,
    headers: &HeaderMap,
    name: &str,
    code: &str,
    verifier: &str,
    nonce: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    use jsonwebtoken::Algorithm;
    let discovery = discover(console, provider).await?;
    let secret = kinlink_runtime::settings::secret_value(&provider.client_secret)
        .map_err(|name| format!("environment variable {name} is not set"))?;
    let token: TokenResponse = console
        .http
        .post(&discovery.token_endpoint)
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect_uri(console, headers, name)),
            ("client_id", &provider.client_id),
            ("client_secret", &secret),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("token exchange: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("token response: {}", e.without_url()))?;
    let keys: jsonwebtoken::jwk::JwkSet = console
        .http
        .get(&discovery.jwks_uri)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("keys: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("keys: {}", e.without_url()))?;
    let header =
        jsonwebtoken::decode_header(&token.id_token).map_err(|e| format!("ID token: {e}"))?;
    // Signed with a public key the provider publishes; never `none` or a shared secret.
    if !matches!(
        header.alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    ) {
        return Err(format!("ID token signed with {:?}", header.alg));
    }
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None => keys.keys.first(),
    }
    .ok_or("ID token signed with an unknown key")?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).map_err(|e| format!("key: {e}"))?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[&provider.client_id]);
    validation.set_issuer(&[&discovery.issuer]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(
        &token.id_token,
        &key,
        &validation,
    )
    .map_err(|e| format!("ID token: {e}"))?
    .claims;
    if claims.get("nonce").and_then(serde_json::Value::as_str) != Some(nonce) {
        return Err("ID token nonce does not match".to_owned());
    }
    // A provider that says the address is unverified is not trusted with it.
    if provider.username_claim == "email"
        && claims
            .get("email_verified")
            .and_then(serde_json::Value::as_bool)
            == Some(false)
    {
        return Err("the email address is not verified".to_owned());
    }
    Ok(claims)
}
