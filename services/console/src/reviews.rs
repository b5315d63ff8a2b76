//! Linkage reviewers: the review queue, the two records of a task side by side with the
//! evidence per field, and the decision (same person: merge; not the same; unsure: leave it
//! open). Decisions go through the enricher's `review::decide`, which audits them and emits the
//! merge; opening a comparison is audited as a disclosure of both records.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use kinlink_enricher::review::{self, ReviewTask, Verdict};
use kinlink_store::audit::AuditEntry;
use serde::Deserialize;
use sqlx::Row;

use crate::Console;
use crate::accounts::Role;
use crate::view::{self, Chrome};

pub struct QueueRow {
    task_id: String,
    referral_id: String,
    probability: String,
    opened: String,
}

#[derive(Template)]
#[template(path = "reviews.html")]
struct QueuePage {
    chrome: Chrome,
    rows: Vec<QueueRow>,
    flash: String,
    /// After a merge: the person, whose records a reviewer can split if it was wrong.
    merged_person: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Done {
    done: Option<String>,
    person: Option<String>,
}

fn percent(p: f64) -> String {
    if p >= 0.995 {
        "over 99%".to_owned()
    } else if p > 0.0 && p < 0.005 {
        "under 1%".to_owned()
    } else {
        format!("{:.0}%", (p * 100.0).clamp(0.0, 100.0))
    }
}

/// Why a pair the model scores as likely the same was left to a person, in words.
fn held_back(task: &ReviewTask) -> String {
    let other_household = task
        .evidence
        .iter()
        .any(|e| e.field == "household" && e.level == "child_of_another_adult");
    if other_household {
        "It was not linked automatically: the earlier child is known with another adult, at another address.".to_owned()
    } else if task.match_probability >= 0.5 {
        "It was not linked automatically: a rule holds such pairs for a person (for example, given names that differ, or more than one likely match).".to_owned()
    } else {
        String::new()
    }
}

async fn open_tasks(console: &Console) -> Result<Vec<ReviewTask>, Response> {
    let mut conn = console
        .store
        .pool()
        .acquire()
        .await
        .map_err(|e| crate::unavailable(&e))?;
    review::list(&mut conn, false)
        .await
        .map_err(|e| crate::unavailable(&e))
}

pub async fn queue(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(done): Query<Done>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Reviewer).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let tasks = match open_tasks(&console).await {
        Ok(tasks) => tasks,
        Err(response) => return response,
    };
    let rows = tasks
        .into_iter()
        .map(|t| QueueRow {
            probability: percent(t.match_probability),
            opened: view::when(t.created_at_ms),
            task_id: t.task_id,
            referral_id: t.referral_id,
        })
        .collect();
    let flash = match done.done.as_deref() {
        Some("same") => {
            "Merged: the two records are one person now, and later alerts carry the merged history."
        }
        Some("different") => "Recorded as different people. Nothing was merged.",
        Some("unsure") => "Left open for another reviewer.",
        _ => "",
    };
    view::render(
        StatusCode::OK,
        &QueuePage {
            chrome: Chrome::new("Linkage reviews", Some(&session), "/console/reviews"),
            rows,
            flash: flash.to_owned(),
            merged_person: done.person.map(|p| view::id_only(&p)).unwrap_or_default(),
        },
    )
}

/// One field of the two records, side by side.
pub struct FieldRow {
    label: String,
    new_value: String,
    earlier_value: String,
    level: String,
    weight: String,
}

#[derive(Template)]
#[template(path = "review.html")]
struct ComparePage {
    chrome: Chrome,
    task_id: String,
    probability: String,
    weight: String,
    held_back: String,
    new_referral: String,
    earlier_referral: String,
    fields: Vec<FieldRow>,
}

struct RecordView {
    referral_id: String,
    values: HashMap<&'static str, String>,
}

async fn record(console: &Console, record_id: &str) -> Result<Option<RecordView>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT referral_id, given_name, family_name, aliases, date_of_birth, dob_estimated, sex, nationality, postcode \
         FROM linkage_records WHERE record_id = $1",
    )
    .bind(record_id)
    .fetch_optional(console.store.pool())
    .await?;
    let Some(row) = row else { return Ok(None) };
    let aliases: Vec<String> =
        serde_json::from_str(&row.try_get::<String, _>("aliases")?).unwrap_or_default();
    let dob: String = row.try_get("date_of_birth")?;
    let estimated: i64 = row.try_get("dob_estimated")?;
    let mut values = HashMap::new();
    values.insert("given_name", row.try_get("given_name")?);
    values.insert("family_name", row.try_get("family_name")?);
    values.insert("aliases", aliases.join(", "));
    values.insert(
        "date_of_birth",
        if dob.is_empty() {
            String::new()
        } else if estimated != 0 {
            format!("{dob} (estimated)")
        } else {
            dob
        },
    );
    values.insert("sex", row.try_get("sex")?);
    values.insert("nationality", row.try_get("nationality")?);
    values.insert("postcode", row.try_get("postcode")?);
    Ok(Some(RecordView {
        referral_id: row.try_get("referral_id")?,
        values,
    }))
}

const FIELDS: [(&str, &str); 7] = [
    ("given_name", "Given name"),
    ("family_name", "Family name"),
    ("aliases", "Also known as"),
    ("date_of_birth", "Date of birth"),
    ("sex", "Sex"),
    ("nationality", "Nationality"),
    ("postcode", "Postcode"),
];

pub async fn compare(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Reviewer).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let task = async {
        let mut conn = console.store.pool().acquire().await?;
        review::task(&mut conn, &id).await
    }
    .await;
    let task = match task {
        Ok(Some(task)) if task.state == "open" => task,
        Ok(_) => return view::not_found(Some(&session)),
        Err(error) => return crate::unavailable(&error),
    };
    let (new, earlier) = match (
        record(&console, &task.record_id).await,
        record(&console, &task.candidate_record_id).await,
    ) {
        (Ok(Some(new)), Ok(Some(earlier))) => (new, earlier),
        (Err(error), _) | (_, Err(error)) => return crate::unavailable(&error),
        _ => return view::not_found(Some(&session)),
    };
    // Both records are disclosed to the reviewer: audited, ids only.
    let actor = session.user.audit_actor();
    let detail = format!(
        "task={} records={},{}",
        task.task_id, task.record_id, task.candidate_record_id
    );
    let audited = crate::audit(
        &console,
        AuditEntry {
            action: "linkage_review_read",
            actor: &actor,
            authority_code: "",
            alert_id: "",
            detail: &detail,
        },
    )
    .await;
    if let Err(error) = audited {
        return crate::unavailable(&error);
    }
    let mut fields: Vec<FieldRow> = FIELDS
        .iter()
        .map(|(key, label)| {
            let evidence = task.evidence.iter().find(|e| e.field == *key);
            FieldRow {
                label: (*label).to_owned(),
                new_value: new.values.get(key).cloned().unwrap_or_default(),
                earlier_value: earlier.values.get(key).cloned().unwrap_or_default(),
                level: evidence
                    .map(|e| view::words(&e.level))
                    .unwrap_or_else(|| "Not compared".to_owned()),
                weight: evidence
                    .map(|e| format!("{:+.1}", e.weight))
                    .unwrap_or_default(),
            }
        })
        .collect();
    // Evidence beyond the record's own fields (household context, term frequency, caps).
    fields.extend(
        task.evidence
            .iter()
            .filter(|e| !FIELDS.iter().any(|(key, _)| *key == e.field))
            .map(|e| FieldRow {
                label: view::words(&e.field),
                new_value: String::new(),
                earlier_value: String::new(),
                level: view::words(&e.level),
                weight: format!("{:+.1}", e.weight),
            }),
    );
    view::render(
        StatusCode::OK,
        &ComparePage {
            chrome: Chrome::new("Compare two records", Some(&session), "/console/reviews"),
            probability: percent(task.match_probability),
            weight: format!("{:+.1}", task.match_weight),
            held_back: held_back(&task),
            new_referral: new.referral_id,
            earlier_referral: earlier.referral_id,
            fields,
            task_id: task.task_id,
        },
    )
}

/// `POST /console/reviews/{id}`: the reviewer's decision.
pub async fn decide(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let session =
        match crate::form_session_as(&console, &headers, &form, |r| r == Role::Reviewer).await {
            Ok(session) => session,
            Err(response) => return response,
        };
    let by = session.user.audit_actor();
    let verdict = match form.get("verdict").map(String::as_str) {
        Some("same") => Verdict::Same,
        Some("different") => Verdict::Different,
        Some("unsure") => {
            let detail = format!("task={id} verdict=unsure");
            let audited = crate::audit(
                &console,
                AuditEntry {
                    action: "linkage_review_unsure",
                    actor: &by,
                    authority_code: "",
                    alert_id: "",
                    detail: &detail,
                },
            )
            .await;
            return match audited {
                Ok(()) => Redirect::to("/console/reviews?done=unsure").into_response(),
                Err(error) => crate::unavailable(&error),
            };
        }
        _ => {
            return Redirect::to(&format!("/console/reviews/{}", view::id_only(&id)))
                .into_response();
        }
    };
    let result = async {
        let mut tx = console
            .store
            .begin()
            .await
            .map_err(kinlink_enricher::Error::from)?;
        let merged = review::decide(&mut tx, &console.log, &id, verdict, &by).await?;
        tx.commit().await.map_err(kinlink_enricher::Error::from)?;
        Ok::<_, kinlink_enricher::Error>(merged)
    }
    .await;
    match result {
        Ok(merged) => {
            console.log.notify_appended();
            let done = if verdict == Verdict::Same {
                "same"
            } else {
                "different"
            };
            let person = merged
                .map(|m| format!("&person={}", m.surviving_person_id))
                .unwrap_or_default();
            Redirect::to(&format!("/console/reviews?done={done}{person}")).into_response()
        }
        Err(kinlink_enricher::Error::NotFound { .. } | kinlink_enricher::Error::Conflict(_)) => {
            view::not_found(Some(&session))
        }
        Err(error) => crate::unavailable(&error),
    }
}

/// One record of a person, with what kinlink decided for it.
pub struct PersonRecord {
    record_id: String,
    referral_id: String,
    method: String,
    probability: String,
    given_name: String,
    family_name: String,
    date_of_birth: String,
    postcode: String,
}

#[derive(Template)]
#[template(path = "person.html")]
struct PersonPage {
    chrome: Chrome,
    person_id: String,
    merged: Vec<String>,
    records: Vec<PersonRecord>,
    flash: String,
    error: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct PersonQuery {
    done: Option<String>,
    error: Option<String>,
}

/// `GET /console/persons/{id}`: a person's records, to split off ones wrongly linked or merged.
pub async fn person(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<PersonQuery>,
) -> Response {
    let session = match crate::session_as(&console, &headers, |r| r == Role::Reviewer).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    let explained = async {
        let mut conn = console.store.pool().acquire().await?;
        review::explain(&mut conn, &id).await
    }
    .await;
    let explained = match explained {
        Ok(explained) => explained,
        Err(kinlink_enricher::Error::NotFound { .. }) => return view::not_found(Some(&session)),
        Err(error) => return crate::unavailable(&error),
    };
    let mut records = Vec::new();
    for decision in &explained.records {
        let details = match record(&console, &decision.record_id).await {
            Ok(details) => details,
            Err(error) => return crate::unavailable(&error),
        };
        let value = |key: &str| {
            details
                .as_ref()
                .and_then(|d| d.values.get(key).cloned())
                .unwrap_or_default()
        };
        records.push(PersonRecord {
            record_id: decision.record_id.clone(),
            referral_id: decision.referral_id.clone(),
            method: view::words(&decision.method),
            probability: percent(decision.match_probability),
            given_name: value("given_name"),
            family_name: value("family_name"),
            date_of_birth: value("date_of_birth"),
            postcode: value("postcode"),
        });
    }
    let actor = session.user.audit_actor();
    let detail = format!("person={}", explained.person_id);
    if let Err(error) = crate::audit(
        &console,
        AuditEntry {
            action: "person_read",
            actor: &actor,
            authority_code: "",
            alert_id: "",
            detail: &detail,
        },
    )
    .await
    {
        return crate::unavailable(&error);
    }
    view::render(
        StatusCode::OK,
        &PersonPage {
            chrome: Chrome::new("A person's records", Some(&session), "/console/reviews"),
            person_id: explained.person_id,
            merged: explained.merged_person_ids,
            records,
            flash: match query.done.as_deref() {
                Some(new_person) => format!(
                    "Split: the records chosen are person {} now.",
                    view::id_only(new_person)
                ),
                None => String::new(),
            },
            error: match query.error.as_deref() {
                Some("records") => "Choose the records to split off (not all of them)".to_owned(),
                Some("reason") => {
                    "Enter a reason code: 1 to 64 letters, digits, '_' or '-'".to_owned()
                }
                Some(_) => "Those records could not be split off".to_owned(),
                None => String::new(),
            },
        },
    )
}

/// `POST /console/persons/{id}`: split the chosen records off onto a new person.
pub async fn split(
    State(console): State<Console>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Form(form): Form<Vec<(String, String)>>,
) -> Response {
    let fields: HashMap<String, String> = form.iter().cloned().collect();
    let session =
        match crate::form_session_as(&console, &headers, &fields, |r| r == Role::Reviewer).await {
            Ok(session) => session,
            Err(response) => return response,
        };
    let base = format!("/console/persons/{}", view::id_only(&id));
    let records: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "record")
        .map(|(_, v)| v.clone())
        .collect();
    let reason = fields
        .get("reason_code")
        .map(|r| r.trim().to_owned())
        .unwrap_or_default();
    if records.is_empty() {
        return Redirect::to(&format!("{base}?error=records")).into_response();
    }
    if !kinlink_notifier::authority_api::valid_reason_code(&reason) {
        return Redirect::to(&format!("{base}?error=reason")).into_response();
    }
    let by = session.user.audit_actor();
    let result = async {
        let mut tx = console
            .store
            .begin()
            .await
            .map_err(kinlink_enricher::Error::from)?;
        let split = review::split(&mut tx, &console.log, &id, &records, &reason, &by).await?;
        tx.commit().await.map_err(kinlink_enricher::Error::from)?;
        Ok::<_, kinlink_enricher::Error>(split)
    }
    .await;
    match result {
        Ok(split) => {
            console.log.notify_appended();
            Redirect::to(&format!("{base}?done={}", split.new_person_id)).into_response()
        }
        Err(kinlink_enricher::Error::NotFound { .. }) => view::not_found(Some(&session)),
        Err(kinlink_enricher::Error::Conflict(_)) => {
            Redirect::to(&format!("{base}?error=conflict")).into_response()
        }
        Err(error) => crate::unavailable(&error),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct FindPerson {
    id: Option<String>,
}

/// `GET /console/persons?id=...`: the person-id form lands on the person's page.
pub async fn find_person(Query(query): Query<FindPerson>) -> Response {
    let id: String = query
        .id
        .map(|id| view::id_only(id.trim()))
        .unwrap_or_default();
    if id.is_empty() {
        Redirect::to("/console/reviews").into_response()
    } else {
        Redirect::to(&format!("/console/persons/{id}")).into_response()
    }
}
