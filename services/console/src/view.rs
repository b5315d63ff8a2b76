//! What every page shares: the header and navigation for the signed-in person, message pages,
//! and the words the pages use for codes.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::accounts::Role;
use crate::sessions::Session;

/// One link of the service navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub href: &'static str,
    pub label: &'static str,
    pub current: bool,
}

/// The frame around a page: title, who is signed in, where they can go.
#[derive(Debug, Clone)]
pub struct Chrome {
    pub title: String,
    pub signed_in: bool,
    pub display_name: String,
    pub role_label: String,
    pub authority: String,
    pub csrf_token: String,
    pub nav: Vec<NavItem>,
}

impl Chrome {
    pub fn new(title: &str, session: Option<&Session>, current: &str) -> Self {
        let Some(session) = session else {
            return Self {
                title: title.to_owned(),
                signed_in: false,
                display_name: String::new(),
                role_label: String::new(),
                authority: String::new(),
                csrf_token: String::new(),
                nav: Vec::new(),
            };
        };
        let role = session.user.role;
        let mut nav = Vec::new();
        if role.is_council() {
            nav.push(("/console/inbox", "Inbox"));
        }
        if role == Role::Operator {
            nav.push(("/console/triage", "Triage queue"));
            nav.push(("/console/deliveries", "Delivery health"));
            nav.push(("/console/status", "Stage status"));
            nav.push(("/console/dead-letters", "Dead letters"));
            nav.push(("/console/returns", "Returns"));
        }
        if role == Role::Reviewer {
            nav.push(("/console/reviews", "Linkage reviews"));
        }
        Self {
            title: title.to_owned(),
            signed_in: true,
            display_name: session.user.display_name.clone(),
            role_label: role_label(role).to_owned(),
            authority: session.user.authority_code.clone(),
            csrf_token: session.csrf_token.clone(),
            nav: nav
                .into_iter()
                .map(|(href, label)| NavItem {
                    href,
                    label,
                    current: href == current,
                })
                .collect(),
        }
    }
}

pub fn role_label(role: Role) -> &'static str {
    match role {
        Role::Viewer => "Viewer",
        Role::Practitioner => "Practitioner",
        Role::Manager => "Manager",
        Role::Operator => "kinlink operator",
        Role::Reviewer => "Linkage reviewer",
    }
}

/// Where a role lands after signing in.
pub fn start_page(role: Role) -> &'static str {
    match role {
        Role::Viewer | Role::Practitioner | Role::Manager => "/console/inbox",
        Role::Operator => "/console/triage",
        Role::Reviewer => "/console/reviews",
    }
}

/// Renders a template, or the service's error page if it cannot be.
pub fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(error) => {
            tracing::error!(%error, "Console template failed to render.");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "The page could not be shown.",
            )
                .into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    chrome: Chrome,
    heading: &'a str,
    body: &'a str,
}

/// A page that only says something (errors, refusals).
pub fn message_page(
    status: StatusCode,
    heading: &str,
    body: &str,
    session: Option<&Session>,
) -> Response {
    render(
        status,
        &MessagePage {
            chrome: Chrome::new(heading, session, ""),
            heading,
            body,
        },
    )
}

/// The 404 page: also what another authority's alert looks like.
pub fn not_found(session: Option<&Session>) -> Response {
    message_page(
        StatusCode::NOT_FOUND,
        "Page not found",
        "If you typed the web address, check it is correct. If you followed a link to an alert, it may belong to another authority.",
        session,
    )
}

/// A code such as `child_referral` as words: "Child referral".
pub fn words(code: &str) -> String {
    let text = code.replace('_', " ");
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// How a basis reads in an inbox.
pub fn basis_words(basis: &str) -> &'static str {
    match basis {
        "lives" => "Lives here",
        "found" => "Found here",
        "both" => "Lives or found here",
        "triage" => "Triage",
        "placing_authority" => "Placed by you",
        "previous_authority" => "Known to you before",
        _ => "Not recorded",
    }
}

/// The tag colour class and label for a RAG rating.
pub fn rag_tag(rag: &str) -> (&'static str, &'static str) {
    match rag {
        "red" => ("govuk-tag--red", "Red"),
        "amber" => ("govuk-tag--orange", "Amber"),
        "green" => ("govuk-tag--green", "Green"),
        _ => ("govuk-tag--grey", "Not rated"),
    }
}

/// The tag colour class and label for an alert's state.
pub fn state_tag(state: &str) -> (&'static str, &'static str) {
    match state {
        "open" => ("govuk-tag--blue", "New"),
        "acknowledged" => ("govuk-tag--light-blue", "Acknowledged"),
        "resolved" => ("govuk-tag--grey", "Resolved"),
        "closed" => ("govuk-tag--grey", "Closed"),
        _ => ("govuk-tag--grey", "Unknown"),
    }
}

/// A time as people read it in the UK: "3 December 2026, 14:05 UTC".
pub fn when(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|d| d.format("%-d %B %Y, %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// An id as it may go into a URL or a page: its letters, digits and '-' only (ids are UUIDs
/// and GSS codes; anything else in a query string is dropped, never echoed).
pub fn id_only(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect()
}
