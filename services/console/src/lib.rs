//! The web console: what council staff, kinlink operators and linkage reviewers use in a
//! browser. Pages are rendered on the server from askama templates on the GOV.UK Design System
//! and MOJ Frontend, and work without JavaScript. The console holds no rules of its own: every
//! action calls the same functions as the API (the notifier's alert actions, the alerter's
//! triage routing, the enricher's review decisions), with the signed-in person as the actor in
//! the audit log.
//!
//! Security: sessions live in the store (`sessions.rs`), cookies are `HttpOnly; Secure;
//! SameSite=Strict`, every form carries the session's CSRF token and a POST without it is
//! refused, and every response carries a content security policy with no inline script and
//! `frame-ancestors 'none'`. A council user asking for another authority's alert gets the same
//! 404 as for an alert that does not exist, and the attempt is audited.

pub mod accounts;
mod assets;
mod council;
pub mod dead_letters;
mod oidc;
mod operators;
pub mod returns;
mod reviews;
pub mod sessions;
mod sign_in;
pub mod status;
mod view;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use kinlink_domain::routing::authorities::{AuthorityRegistry, ChildrensServices};
use kinlink_eventlog::EventLog;
use kinlink_notifier::directory::Directory;
use kinlink_runtime::settings::ConsoleSettings;
use kinlink_store::Store;

use crate::accounts::Role;
use crate::sessions::Session;

/// Errors of the console.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] kinlink_store::Error),
    #[error("{field}: {reason}")]
    Invalid {
        field: &'static str,
        reason: &'static str,
    },
    #[error("no such user")]
    NoSuchUser,
    #[error("password hashing failed")]
    Hashing,
    #[error("reference data: {0}")]
    Reference(String),
    #[error("page could not be rendered: {0}")]
    Render(#[from] askama::Error),
    #[error(transparent)]
    Notifier(#[from] kinlink_notifier::Error),
    #[error(transparent)]
    Log(#[from] kinlink_eventlog::Error),
    #[error("HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Everything a page needs.
#[derive(Debug, Clone)]
pub struct Console {
    store: Store,
    log: EventLog,
    settings: ConsoleSettings,
    directory: Arc<Directory>,
    registry: Arc<AuthorityRegistry>,
    /// Every body that runs children's services, by name (the register does not change while
    /// the process runs).
    bodies: Arc<Vec<ChildrensServices>>,
    /// A stage with lag and no progress for this long is stalled (`ops.stalled_after_seconds`).
    stalled_after: std::time::Duration,
    /// For OpenID Connect providers.
    http: reqwest::Client,
}

impl Console {
    /// The console of a process with these settings, on its store and log.
    pub fn new(
        store: Store,
        log: EventLog,
        settings: &kinlink_runtime::Settings,
    ) -> Result<Self, Error> {
        let registry = AuthorityRegistry::shipped().map_err(|e| Error::Reference(e.to_string()))?;
        Ok(Self {
            store,
            log,
            settings: settings.console.clone(),
            directory: Arc::new(
                Directory::from_settings(&settings.notifier)
                    .map_err(|e| Error::Notifier(e.into()))?,
            ),
            bodies: Arc::new(registry.bodies()),
            registry: Arc::new(registry),
            stalled_after: std::time::Duration::from_secs(settings.ops.stalled_after_seconds),
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
        })
    }

    fn idle_ms(&self) -> i64 {
        i64::try_from(self.settings.idle_timeout_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX)
    }
}

/// The console's routes for a process (the notifier's, or `kinlink up`'s). Empty when the
/// console is disabled in settings.
pub fn install(process: &kinlink_runtime::Process) -> Result<Router, Error> {
    if !process.settings.console.enabled {
        return Ok(Router::new());
    }
    let console = Console::new(
        process.store.clone(),
        process.log.clone(),
        &process.settings,
    )?;
    Ok(router(console))
}

/// The console's routes.
pub fn router(console: Console) -> Router {
    let pages = Router::new()
        .route("/console", get(home))
        .route("/console/", get(home))
        .route("/console/sign-in", get(sign_in::page).post(sign_in::submit))
        .route("/console/sign-out", post(sign_in::sign_out))
        .route("/console/sign-in/{name}", get(oidc::start))
        .route("/console/oidc/{name}/callback", get(oidc::callback))
        .route("/console/inbox", get(council::inbox))
        .route("/console/alerts/{id}", get(council::alert))
        .route("/console/alerts/{id}/{action}", post(council::act))
        .route("/console/triage", get(operators::queue))
        .route(
            "/console/triage/{id}",
            get(operators::item).post(operators::route),
        )
        .route("/console/deliveries", get(operators::health))
        .route("/console/status", get(operators::stages))
        .route("/console/returns", get(returns::page))
        .route("/console/dead-letters", get(operators::dead_letters))
        .route(
            "/console/dead-letters/{stage}/{event_id}",
            post(operators::replay_letter),
        )
        .route("/console/deliveries/{id}", post(operators::redeliver))
        .route("/console/reviews", get(reviews::queue))
        .route(
            "/console/reviews/{id}",
            get(reviews::compare).post(reviews::decide),
        )
        .route("/console/persons", get(reviews::find_person))
        .route(
            "/console/persons/{id}",
            get(reviews::person).post(reviews::split),
        )
        .route("/console/{*rest}", get(not_found_page))
        .with_state(console.clone());
    let assets = Router::new()
        .route("/console/static/{name}", get(assets::console_static))
        .route("/assets/images/{name}", get(assets::image))
        .route("/assets/fonts/{name}", get(font))
        .with_state(console);
    pages
        .layer(axum::middleware::map_response(no_store))
        .merge(assets)
        .layer(axum::middleware::map_response(security_headers))
}

async fn font(State(console): State<Console>, Path(name): Path<String>) -> Response {
    assets::font(&name, console.settings.gds_transport_font)
}

/// The content security policy: scripts, styles, images and fonts from this origin only, no
/// inline script, no framing, forms post only here.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; object-src 'none'";

async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "permissions-policy",
        HeaderValue::from_static("camera=(), microphone=(), geolocation=()"),
    );
    response
}

/// Pages hold personal data: no cache keeps them.
async fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The session cookie's name.
const SESSION_COOKIE: &str = "kinlink_session";

/// A cookie's value from the request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value with the console's attributes.
fn set_cookie(
    console: &Console,
    name: &str,
    value: &str,
    path: &str,
    max_age: Option<i64>,
) -> String {
    let mut cookie = format!("{name}={value}; Path={path}; HttpOnly; SameSite=Strict");
    if console.settings.secure_cookies {
        cookie.push_str("; Secure");
    }
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    cookie
}

/// The signed-in session, or a redirect to the sign-in page.
async fn signed_in(console: &Console, headers: &HeaderMap) -> Result<Session, Response> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else {
        return Err(Redirect::to("/console/sign-in").into_response());
    };
    match sessions::find(
        &console.store,
        secret,
        console.idle_ms(),
        kinlink_store::now_millis(),
    )
    .await
    {
        Ok(Some(session)) => Ok(session),
        Ok(None) => Err(Redirect::to("/console/sign-in").into_response()),
        Err(error) => Err(unavailable(&error)),
    }
}

/// The session, when the form carried its CSRF token; otherwise 403 and nothing done.
async fn signed_in_form(
    console: &Console,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
) -> Result<Session, Response> {
    let session = signed_in(console, headers).await?;
    let presented = form
        .get("csrf_token")
        .map(String::as_str)
        .unwrap_or_default();
    if !sessions::same_secret(presented, &session.csrf_token) {
        tracing::warn!(user = %session.user.user_id, "Refused a console form without its CSRF token.");
        return Err(view::message_page(
            StatusCode::FORBIDDEN,
            "This form has expired",
            "Nothing was changed. Go back, reload the page and try again.",
            Some(&session),
        ));
    }
    Ok(session)
}

/// The signed-in session, if its role passes `allowed`; otherwise the sign-in redirect or the
/// 403 page.
async fn session_as(
    console: &Console,
    headers: &HeaderMap,
    allowed: impl Fn(Role) -> bool,
) -> Result<Session, Response> {
    let session = signed_in(console, headers).await?;
    match refused(&session, allowed) {
        Some(response) => Err(response),
        None => Ok(session),
    }
}

/// As [`session_as`], for a form that must carry the session's CSRF token.
async fn form_session_as(
    console: &Console,
    headers: &HeaderMap,
    form: &std::collections::HashMap<String, String>,
    allowed: impl Fn(Role) -> bool,
) -> Result<Session, Response> {
    let session = signed_in_form(console, headers, form).await?;
    match refused(&session, allowed) {
        Some(response) => Err(response),
        None => Ok(session),
    }
}

/// The 403 page for an action the session's role does not allow.
fn forbidden(session: &Session) -> Response {
    view::message_page(
        StatusCode::FORBIDDEN,
        "You cannot do this",
        "Your role does not allow this. Ask a manager or a kinlink administrator.",
        Some(session),
    )
}

/// The 403 page, unless the session's role passes `allowed`.
fn refused(session: &Session, allowed: impl Fn(Role) -> bool) -> Option<Response> {
    (!allowed(session.user.role)).then(|| forbidden(session))
}

fn unavailable(error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "Console page failed.");
    view::message_page(
        StatusCode::SERVICE_UNAVAILABLE,
        "Sorry, there is a problem with the service",
        "Try again later. Nothing you submitted was half done: each action is one transaction.",
        None,
    )
}

/// Appends one audit entry in a transaction of its own.
async fn audit(
    console: &Console,
    entry: kinlink_store::audit::AuditEntry<'_>,
) -> Result<(), Error> {
    let mut tx = console.store.begin().await?;
    kinlink_store::audit::append(&mut tx, &entry).await?;
    tx.commit().await?;
    Ok(())
}

/// Where each role starts.
async fn home(State(console): State<Console>, headers: HeaderMap) -> Response {
    match signed_in(&console, &headers).await {
        Ok(session) => Redirect::to(view::start_page(session.user.role)).into_response(),
        Err(response) => response,
    }
}

async fn not_found_page(State(console): State<Console>, headers: HeaderMap) -> Response {
    let session = signed_in(&console, &headers).await.ok();
    view::not_found(session.as_ref())
}
