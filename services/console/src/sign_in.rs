//! Signing in and out. The sign-in form is protected by a CSRF token of its own (a short-lived
//! cookie the form must echo), because there is no session yet. Every outcome is audited with
//! the username, never the password.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use kinlink_store::audit::AuditEntry;

use crate::accounts::{self, SignInRefused};
use crate::view::{self, Chrome};
use crate::{Console, SESSION_COOKIE, cookie, sessions, set_cookie};

const SIGN_IN_COOKIE: &str = "kinlink_sign_in";

#[derive(Template)]
#[template(path = "sign_in.html")]
struct SignInPage {
    chrome: Chrome,
    /// (name, label) of each OpenID Connect provider.
    providers: Vec<(String, String)>,
    csrf_token: String,
    username: String,
    error: Option<&'static str>,
}

fn form_page(
    console: &Console,
    status: StatusCode,
    username: &str,
    error: Option<&'static str>,
) -> Response {
    let token = sessions::random_token();
    let mut response = view::render(
        status,
        &SignInPage {
            chrome: Chrome::new("Sign in", None, ""),
            providers: console
                .settings
                .oidc
                .iter()
                .map(|p| (p.name.clone(), p.label.clone()))
                .collect(),
            csrf_token: token.clone(),
            username: username.to_owned(),
            error,
        },
    );
    if let Ok(value) = set_cookie(
        console,
        SIGN_IN_COOKIE,
        &token,
        "/console/sign-in",
        Some(1800),
    )
    .parse()
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

pub async fn page(State(console): State<Console>) -> Response {
    form_page(&console, StatusCode::OK, "", None)
}

async fn audit_sign_in(console: &Console, action: &str, username: &str, authority: &str) {
    let actor = format!("user:{username}");
    let result = crate::audit(
        console,
        AuditEntry {
            action,
            actor: &actor,
            authority_code: authority,
            alert_id: "",
            detail: "",
        },
    )
    .await;
    if let Err(error) = result {
        tracing::error!(%error, "Could not audit a console sign-in.");
    }
}

pub async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let presented = form
        .get("csrf_token")
        .map(String::as_str)
        .unwrap_or_default();
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !sessions::same_secret(presented, expected) {
        return form_page(
            &console,
            StatusCode::FORBIDDEN,
            "",
            Some("The sign-in form expired. Enter your username and password again."),
        );
    }
    let username = form
        .get("username")
        .map(|u| u.trim().to_lowercase())
        .unwrap_or_default();
    let password = form.get("password").cloned().unwrap_or_default();
    if username.is_empty() || password.is_empty() {
        return form_page(
            &console,
            StatusCode::BAD_REQUEST,
            &username,
            Some("Enter your username and password"),
        );
    }
    let now = kinlink_store::now_millis();
    let lockout_ms =
        i64::try_from(console.settings.lockout_minutes.saturating_mul(60_000)).unwrap_or(i64::MAX);
    let checked = accounts::check_password(
        &console.store,
        &username,
        &password,
        console.settings.lockout_after_failures,
        lockout_ms,
        now,
    )
    .await;
    let user = match checked {
        Ok(Ok(user)) => user,
        Ok(Err(refused)) => {
            let action = match refused {
                SignInRefused::WrongCredentials => "console_sign_in_failed",
                SignInRefused::Locked => "console_sign_in_locked",
                SignInRefused::Disabled => "console_sign_in_disabled",
            };
            if accounts::valid_username(&username) {
                audit_sign_in(&console, action, &username, "").await;
            }
            // The same words whatever the reason, so the page tells an attacker nothing.
            return form_page(
                &console,
                StatusCode::UNAUTHORIZED,
                &username,
                Some(
                    "Your username or password is wrong, or your account is locked after repeated failed attempts. Try again later or ask your administrator.",
                ),
            );
        }
        Err(error) => return crate::unavailable(&error),
    };
    let secret = match sessions::start(&console.store, &user, now).await {
        Ok(secret) => secret,
        Err(error) => return crate::unavailable(&error),
    };
    audit_sign_in(
        &console,
        "console_signed_in",
        &user.username,
        &user.authority_code,
    )
    .await;
    tracing::info!(user = %user.user_id, role = user.role.as_str(), "Console sign-in.");
    let mut response = Redirect::to(view::start_page(user.role)).into_response();
    for value in [
        set_cookie(&console, SESSION_COOKIE, &secret, "/console", None),
        set_cookie(&console, SIGN_IN_COOKIE, "", "/console/sign-in", Some(0)),
    ] {
        if let Ok(value) = value.parse() {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

pub async fn sign_out(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session = match crate::signed_in_form(&console, &headers, &form).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && let Err(error) = sessions::end(&console.store, secret).await
    {
        return crate::unavailable(&error);
    }
    audit_sign_in(
        &console,
        "console_signed_out",
        &session.user.username,
        &session.user.authority_code,
    )
    .await;
    let mut response = Redirect::to("/console/sign-in").into_response();
    if let Ok(value) = set_cookie(&console, SESSION_COOKIE, "", "/console", Some(0)).parse() {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}
