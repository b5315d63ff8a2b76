//! Council staff: the inbox, an alert, and what they do with it (acknowledge, decide a
//! lives/found hand-off, resolve). Each action calls the notifier's alert actions with the
//! signed-in person as the actor, exactly as the authority API does with a token.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kinlink_domain::lifecycle::{AlertState, HandoffDecision};
use kinlink_notifier::authority_api::{self, ActionError, Actor, InboxFilter, OUTCOME_CODES};
use kinlink_proto::v1;
use serde::Deserialize;
use sqlx::Row;

use crate::accounts::Role;
use crate::sessions::Session;
use crate::view::{self, Chrome};
use crate::{Console, signed_in, signed_in_form};

/// Alerts on one page of the inbox.
pub const PAGE_SIZE: i64 = 50;

fn actor(session: &Session) -> Actor {
    Actor {
        authority: session.user.authority_code.clone(),
        actor: session.user.audit_actor(),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct InboxQuery {
    state: Option<String>,
    rag: Option<String>,
    priority: Option<String>,
    basis: Option<String>,
    rule: Option<String>,
    page: Option<i64>,
}

/// One option of a filter's select.
pub struct Choice {
    value: String,
    label: String,
    selected: bool,
}

fn choices(options: &[(&str, &str)], current: &str) -> Vec<Choice> {
    options
        .iter()
        .map(|(value, label)| Choice {
            value: (*value).to_owned(),
            label: (*label).to_owned(),
            selected: *value == current,
        })
        .collect()
}

pub struct Row_ {
    alert_id: String,
    referral_id: String,
    rag_class: &'static str,
    rag_label: &'static str,
    state_class: &'static str,
    state_label: &'static str,
    rule: String,
    basis: &'static str,
    urgent: bool,
    child_count: i64,
    deadline: String,
    time_left: String,
    overdue: bool,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxPage {
    chrome: Chrome,
    rows: Vec<Row_>,
    total: i64,
    page: i64,
    pages: i64,
    first_shown: i64,
    last_shown: i64,
    previous: Option<String>,
    next: Option<String>,
    state: Vec<Choice>,
    rag: Vec<Choice>,
    priority: Vec<Choice>,
    basis: Vec<Choice>,
    rule: Vec<Choice>,
}

fn page_link(query: &InboxQuery, page: i64) -> String {
    let filters = [
        ("state", &query.state),
        ("rag", &query.rag),
        ("priority", &query.priority),
        ("basis", &query.basis),
        ("rule", &query.rule),
    ];
    let mut pairs: Vec<(&str, String)> = filters
        .iter()
        .filter_map(|(key, value)| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| (*key, v.to_owned()))
        })
        .collect();
    pairs.push(("page", page.to_string()));
    format!(
        "/console/inbox?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

pub async fn inbox(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Response {
    let session = match crate::session_as(&console, &headers, Role::is_council).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let authority = session.user.authority_code.clone();
    let known = |value: &Option<String>, allowed: &[&str]| {
        value
            .as_deref()
            .filter(|v| allowed.contains(v))
            .map(str::to_owned)
    };
    let state_value = query
        .state
        .clone()
        .unwrap_or_else(|| "needs_action".to_owned());
    let filter = InboxFilter {
        state: AlertState::parse(&state_value),
        needs_action: state_value == "needs_action",
        rule: query
            .rule
            .as_deref()
            .filter(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            .map(str::to_owned),
        basis: known(&query.basis, &authority_api::BASES),
        priority: known(&query.priority, &["standard", "urgent"]),
        rag: known(&query.rag, &["red", "amber", "green"]),
    };
    let page = query.page.unwrap_or(1).max(1);
    let (rows, total) = match authority_api::inbox_page(
        &console.store,
        &authority,
        &filter,
        PAGE_SIZE,
        (page - 1).saturating_mul(PAGE_SIZE),
    )
    .await
    {
        Ok(found) => found,
        Err(error) => return crate::unavailable(&error),
    };
    let rules: Vec<String> = match sqlx::query(
        "SELECT DISTINCT rule FROM alerts WHERE authority_code = $1 AND rule NOT IN ('', '-') ORDER BY rule",
    )
    .bind(&authority)
    .fetch_all(console.store.pool())
    .await
    {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get("rule").ok()).collect(),
        Err(error) => return crate::unavailable(&error),
    };
    let now = kinlink_store::now_millis();
    let pages = ((total + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let shown = i64::try_from(rows.len()).unwrap_or(0);
    let first_shown = if shown == 0 {
        0
    } else {
        (page - 1) * PAGE_SIZE + 1
    };
    let rows = rows
        .into_iter()
        .map(|r| {
            let (rag_class, rag_label) = view::rag_tag(&r.rag);
            let (state_class, state_label) = view::state_tag(&r.state);
            let live = matches!(r.state.as_str(), "open" | "acknowledged");
            Row_ {
                rag_class,
                rag_label,
                state_class,
                state_label,
                rule: view::words(&r.rule),
                basis: view::basis_words(&r.basis),
                urgent: r.priority == "urgent",
                child_count: r.child_count,
                deadline: view::when(r.deadline_ms),
                time_left: if live {
                    kinlink_domain::deadline::time_left_in_words(now, r.deadline_ms)
                } else {
                    String::new()
                },
                overdue: live && r.deadline_ms < now,
                alert_id: r.alert_id,
                referral_id: r.referral_id,
            }
        })
        .collect();
    let mut rule_options: Vec<(&str, String)> = vec![("", "Any rule".to_owned())];
    rule_options.extend(rules.iter().map(|r| (r.as_str(), view::words(r))));
    let rule_options: Vec<(&str, &str)> =
        rule_options.iter().map(|(v, l)| (*v, l.as_str())).collect();
    let template = InboxPage {
        chrome: Chrome::new("Inbox", Some(&session), "/console/inbox"),
        rows,
        total,
        page,
        pages,
        first_shown,
        last_shown: first_shown + shown - 1,
        previous: (page > 1).then(|| page_link(&query, page - 1)),
        next: (page < pages).then(|| page_link(&query, page + 1)),
        state: choices(
            &[
                ("needs_action", "Needs action (new or acknowledged)"),
                ("open", "New"),
                ("acknowledged", "Acknowledged"),
                ("resolved", "Resolved"),
                ("closed", "Closed"),
                ("all", "Any state"),
            ],
            &state_value,
        ),
        rag: choices(
            &[
                ("", "Any rating"),
                ("red", "Red"),
                ("amber", "Amber"),
                ("green", "Green"),
            ],
            query.rag.as_deref().unwrap_or_default(),
        ),
        priority: choices(
            &[
                ("", "Any priority"),
                ("urgent", "Urgent"),
                ("standard", "Standard"),
            ],
            query.priority.as_deref().unwrap_or_default(),
        ),
        basis: choices(
            &[
                ("", "Any basis"),
                ("lives", "Lives here"),
                ("found", "Found here"),
                ("placing_authority", "Placed by you"),
                ("previous_authority", "Known to you before"),
            ],
            query.basis.as_deref().unwrap_or_default(),
        ),
        rule: choices(&rule_options, query.rule.as_deref().unwrap_or_default()),
    };
    view::render(StatusCode::OK, &template)
}

/// One child of an alert as the page shows it.
pub struct ChildView {
    heading: String,
    details_shown: bool,
    name: String,
    aliases: String,
    date_of_birth: String,
    sex: String,
    nationalities: String,
    rules: String,
    basis: &'static str,
    other_authority: String,
    recognised: String,
    earlier_referrals: Vec<String>,
    previous_authorities: String,
}

/// One event of the alert's history.
pub struct Event {
    when: String,
    what: String,
    who: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
struct AlertPage {
    chrome: Chrome,
    alert_id: String,
    referral_id: String,
    /// The alert's version: above 1 after the referral was updated or the case changed.
    revision: u32,
    state: String,
    state_class: &'static str,
    state_label: &'static str,
    rag_class: &'static str,
    rag_label: &'static str,
    urgent: bool,
    deadline: String,
    time_left: String,
    overdue: bool,
    rule: String,
    basis: &'static str,
    exploitation: String,
    county_lines: bool,
    concern: String,
    referrer: Option<v1::AlertReferrer>,
    children: Vec<ChildView>,
    handoff: Option<HandoffView>,
    closed: String,
    outcome: String,
    history: Vec<Event>,
    may_acknowledge: bool,
    may_resolve: bool,
    may_decide_handoff: bool,
    outcomes: Vec<Choice>,
    flash: String,
    error: String,
}

pub struct HandoffView {
    summary: String,
    pending_for_us: bool,
}

fn recognised_words(section: &v1::AlertSection) -> String {
    match v1::MatchMethod::try_from(section.match_method).unwrap_or_default() {
        v1::MatchMethod::NewPerson | v1::MatchMethod::Unspecified => {
            "First time kinlink has seen this child.".to_owned()
        }
        v1::MatchMethod::StrongIdentifier => {
            "Same official identifier as an earlier referral.".to_owned()
        }
        v1::MatchMethod::ExactNameAndDob => {
            "Same names and date of birth as an earlier referral.".to_owned()
        }
        v1::MatchMethod::Probabilistic => format!(
            "Matched an earlier record on names, date of birth and address: {:.0}% likely the same child.",
            (section.match_probability * 100.0).clamp(0.0, 100.0)
        ),
        v1::MatchMethod::LinkageReview => {
            "A linkage reviewer decided this is the same child as an earlier record.".to_owned()
        }
    }
}

fn sex_words(sex: i32) -> &'static str {
    match v1::Sex::try_from(sex).unwrap_or_default() {
        v1::Sex::Female => "Female",
        v1::Sex::Male => "Male",
        v1::Sex::Other => "Other",
        v1::Sex::Unknown | v1::Sex::Unspecified => "Not known",
    }
}

fn child_view(index: usize, section: &v1::AlertSection) -> ChildView {
    let basis = kinlink_notifier::inbox::basis_code(section.basis);
    let person = section.child.as_ref();
    let name = person
        .map(|p| {
            format!("{} {}", p.given_name, p.family_name)
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    ChildView {
        heading: if name.is_empty() {
            format!("Child {}", index + 1)
        } else {
            name.clone()
        },
        details_shown: person.is_some(),
        name,
        aliases: person.map(|p| p.aliases.join(", ")).unwrap_or_default(),
        date_of_birth: person
            .and_then(|p| p.date_of_birth.as_ref())
            .map(|d| {
                let estimated = d.precision != v1::DobPrecision::Exact as i32;
                if estimated {
                    format!("{} (estimated)", d.value)
                } else {
                    d.value.clone()
                }
            })
            .or_else(|| {
                person
                    .and_then(|p| p.claimed_age)
                    .map(|age| format!("Not known; says they are {age}"))
            })
            .unwrap_or_else(|| "Not known".to_owned()),
        sex: person
            .map(|p| sex_words(p.sex))
            .unwrap_or("Not known")
            .to_owned(),
        nationalities: person
            .map(|p| p.nationalities.join(", "))
            .unwrap_or_default(),
        rules: section
            .rules
            .iter()
            .map(|r| view::words(r))
            .collect::<Vec<_>>()
            .join(", "),
        basis: view::basis_words(basis),
        other_authority: section.other_authority_code.clone(),
        recognised: recognised_words(section),
        earlier_referrals: section.earlier_referral_ids.clone(),
        previous_authorities: section.previous_authority_codes.join(", "),
    }
}

fn audit_words(action: &str, detail: &str) -> String {
    let what = match action {
        "alert_read" => "Opened the alert",
        "acknowledged" => "Acknowledged",
        "resolved" => "Resolved",
        "handoff_accepted" => "Accepted responsibility",
        "handoff_declined" => "Declined responsibility",
        "handoff_transferred" => "Transferred responsibility",
        "triage_routed" => "Routed from triage",
        "access_denied" => "Access refused",
        "alert_filed" => "Alert received",
        other => return view::words(other),
    };
    if detail.is_empty() {
        what.to_owned()
    } else {
        format!("{what} ({})", view::words(detail))
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AlertQuery {
    done: Option<String>,
    error: Option<String>,
}

pub async fn alert(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<AlertQuery>,
) -> Response {
    let session = match signed_in(&console, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if !session.user.role.is_council() {
        return view::not_found(Some(&session));
    }
    let stored =
        match authority_api::read_alert_audited(&console.store, &actor(&session), &id).await {
            Ok(stored) => stored,
            Err(ActionError::NotFound) => return view::not_found(Some(&session)),
            Err(error) => return crate::unavailable(&error),
        };
    let history = match sqlx::query(
        "SELECT a.at_ms, a.action, a.actor, a.detail, u.display_name FROM audit_log a \
         LEFT JOIN console_users u ON a.actor = 'user:' || u.username \
         WHERE a.alert_id = $1 AND a.action <> 'alert_read' AND a.action <> 'access_denied' ORDER BY a.seq DESC LIMIT 50",
    )
    .bind(&id)
    .fetch_all(console.store.pool())
    .await
    {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| {
                let at: i64 = r.try_get("at_ms").ok()?;
                let action: String = r.try_get("action").ok()?;
                let detail: String = r.try_get("detail").ok()?;
                let actor: String = r.try_get("actor").ok()?;
                let name: Option<String> = r.try_get("display_name").ok()?;
                Some(Event {
                    when: view::when(at),
                    what: audit_words(&action, &detail),
                    who: name.unwrap_or(if actor.starts_with("user:") { actor } else { "Integration (API token)".to_owned() }),
                })
            })
            .collect(),
        Err(error) => return crate::unavailable(&error),
    };
    let mut history: Vec<Event> = history;
    history.push(Event {
        when: view::when(stored.created_at_ms),
        what: "Alert received".to_owned(),
        who: "kinlink".to_owned(),
    });
    let alert = &stored.alert;
    let summary = kinlink_notifier::inbox::InboxSummary::of(alert);
    let (rag_class, rag_label) = view::rag_tag(summary.rag);
    let state = stored.state.as_str();
    let (state_class, state_label) = view::state_tag(state);
    let deadline_ms = alert
        .deadline
        .as_ref()
        .map(kinlink_proto::millis_from_timestamp)
        .unwrap_or_default();
    let now = kinlink_store::now_millis();
    let live = matches!(stored.state, AlertState::Open | AlertState::Acknowledged);
    // The hand-off as recorded now (the alert's own copy may predate the decision).
    let ours = &session.user.authority_code;
    let recorded = {
        let mut conn = match console.store.pool().acquire().await {
            Ok(conn) => conn,
            Err(error) => return crate::unavailable(&error),
        };
        match kinlink_alerter::records::handoffs_of(&mut conn, &alert.referral_id, ours).await {
            Ok(handoffs) => handoffs,
            Err(error) => return crate::unavailable(&error),
        }
    };
    let pending_for_us = recorded
        .iter()
        .any(|(home, _, state)| home == ours && state == "pending");
    let handoff = match (&alert.handoff, recorded.first()) {
        // The found authority's alert, amended with the decision (and any transfer).
        (Some(h), _) if h.state != "pending" => Some(HandoffView {
            summary: format!(
                "Lives in {}, found in {}: {}{}",
                h.home_authority,
                h.found_authority,
                view::words(&h.state),
                if h.transferred_to.is_empty() {
                    String::new()
                } else {
                    format!(" to {}", h.transferred_to)
                }
            ),
            pending_for_us,
        }),
        (_, Some((home, found, state))) => Some(HandoffView {
            summary: if pending_for_us {
                format!(
                    "The child lives in your area ({home}) and was found in {found}. You are asked to take responsibility."
                )
            } else {
                format!("Lives in {home}, found in {found}: {}", view::words(state))
            },
            pending_for_us,
        }),
        (Some(h), None) => Some(HandoffView {
            summary: format!(
                "Lives in {}, found in {}: {}",
                h.home_authority,
                h.found_authority,
                view::words(&h.state)
            ),
            pending_for_us,
        }),
        (None, None) => None,
    };
    let role = session.user.role;
    let exploitation = alert
        .exploitation_types
        .iter()
        .filter_map(|t| v1::ExploitationType::try_from(*t).ok())
        .map(|t| {
            view::words(
                &t.as_str_name()
                    .trim_start_matches("EXPLOITATION_TYPE_")
                    .to_lowercase(),
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let closed = if alert.closed_reason != 0 {
        let reason = v1::AlertCloseReason::try_from(alert.closed_reason).unwrap_or_default();
        view::words(
            &reason
                .as_str_name()
                .trim_start_matches("ALERT_CLOSE_REASON_")
                .to_lowercase(),
        )
    } else {
        String::new()
    };
    let template = AlertPage {
        chrome: Chrome::new("Alert", Some(&session), "/console/inbox"),
        alert_id: id.clone(),
        referral_id: alert.referral_id.clone(),
        revision: alert.revision,
        state: state.to_owned(),
        state_class,
        state_label,
        rag_class,
        rag_label,
        urgent: summary.priority == "urgent",
        deadline: view::when(deadline_ms),
        time_left: if live { kinlink_domain::deadline::time_left_in_words(now, deadline_ms) } else { String::new() },
        overdue: live && deadline_ms < now,
        rule: view::words(&alert.rule),
        basis: view::basis_words(summary.basis),
        exploitation,
        county_lines: alert.county_lines,
        concern: alert.concern.clone(),
        referrer: alert.referrer.clone(),
        children: alert.sections.iter().enumerate().map(|(i, s)| child_view(i, s)).collect(),
        handoff,
        closed,
        outcome: stored.outcome_code.as_deref().map(view::words).unwrap_or_default(),
        history,
        may_acknowledge: role.may_acknowledge() && stored.state == AlertState::Open,
        may_resolve: role.may_resolve() && live,
        may_decide_handoff: role.may_decide_handoff(),
        outcomes: OUTCOME_CODES.iter().map(|c| Choice { value: (*c).to_owned(), label: view::words(c), selected: false }).collect(),
        flash: match query.done.as_deref() {
            Some("acknowledge") => "Alert acknowledged. Escalation has stopped.",
            Some("accept") => "You accepted responsibility. The authority where the child was found has been told.",
            Some("decline") => "You declined responsibility. The authority where the child was found has been told.",
            Some("transfer") => "You named another body. It has been alerted and asked to take responsibility.",
            Some("resolve") => "Alert resolved.",
            _ => "",
        }
        .to_owned(),
        error: query.error.as_deref().map(|e| match e {
            "reason" => "Enter a reason code: 1 to 64 letters, digits, '_' or '-'",
            "authority" => "Enter the code of a body that runs children's services (a GSS code or HSCT-...), not your own",
            "outcome" => "Choose an outcome",
            "no_handoff" => "There is no hand-off waiting for your decision",
            _ => "That could not be done",
        }).unwrap_or_default().to_owned(),
    };
    view::render(StatusCode::OK, &template)
}

/// `POST /console/alerts/{id}/{action}`: acknowledge, accept, decline, transfer or resolve.
pub async fn act(
    State(console): State<Console>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session = match signed_in_form(&console, &headers, &form).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let role = session.user.role;
    let allowed = match action.as_str() {
        "acknowledge" => role.may_acknowledge(),
        "resolve" => role.may_resolve(),
        "accept" | "decline" | "transfer" => role.may_decide_handoff(),
        _ => return view::not_found(Some(&session)),
    };
    if !allowed {
        return crate::forbidden(&session);
    }
    let who = actor(&session);
    let field = |name: &str| {
        form.get(name)
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let result: Result<(), ActionError> = match action.as_str() {
        "acknowledge" => authority_api::acknowledge_alert(&console.store, &console.log, &who, &id)
            .await
            .map(|_| ()),
        "resolve" => authority_api::resolve_alert(
            &console.store,
            &console.log,
            &who,
            &id,
            &field("outcome_code"),
        )
        .await
        .map(|_| ()),
        "accept" => authority_api::decide_handoff(
            &console.store,
            &console.log,
            &who,
            &id,
            HandoffDecision::Accept,
            "",
            None,
        )
        .await
        .map(|_| ()),
        "decline" => authority_api::decide_handoff(
            &console.store,
            &console.log,
            &who,
            &id,
            HandoffDecision::Decline,
            &field("reason_code"),
            None,
        )
        .await
        .map(|_| ()),
        _ => {
            let code = field("authority_code");
            authority_api::decide_handoff(
                &console.store,
                &console.log,
                &who,
                &id,
                HandoffDecision::Transfer,
                &field("reason_code"),
                Some(&code),
            )
            .await
            .map(|_| ())
        }
    };
    let base = format!("/console/alerts/{}", view::id_only(&id));
    match result {
        Ok(()) => Redirect::to(&format!("{base}?done={action}#main-content")).into_response(),
        Err(ActionError::NotFound) => view::not_found(Some(&session)),
        Err(ActionError::Invalid { pointer, .. }) => {
            let error = match pointer {
                "/reason_code" => "reason",
                "/authority_code" => "authority",
                _ => "outcome",
            };
            Redirect::to(&format!("{base}?error={error}#main-content")).into_response()
        }
        Err(ActionError::Conflict(_)) => {
            Redirect::to(&format!("{base}?error=no_handoff#main-content")).into_response()
        }
        Err(error) => crate::unavailable(&error),
    }
}
