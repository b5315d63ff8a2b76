//! What operators do with linkage: decide review tasks, merge two persons, split records off
//! a person they were wrongly linked to, and explain how a person came to be. Nothing is
//! merged or split silently: each change is a `PersonsMerged` or `PersonSplit` event on
//! `kinlink.persons.changes`, a row in `person_changes` and an audit-log entry, written in
//! one transaction.
//!
//! Explanations hold ids, comparison levels and weights, never names or dates.

use kinlink_eventlog::{Envelope, EventLog, topics};
use kinlink_proto::v1;
use serde::{Deserialize, Serialize};
use sqlx::{AnyConnection, Row};

use kinlink_domain::linking;

use crate::{Error, SOURCE, registry};

/// One field's evidence as stored with a decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldEvidence {
    pub field: String,
    pub level: String,
    pub weight: f64,
}

/// A review task: a record scored between the thresholds against an existing person.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReviewTask {
    pub task_id: String,
    pub referral_id: String,
    pub record_id: String,
    pub person_id: String,
    pub candidate_record_id: String,
    pub candidate_person_id: String,
    pub match_probability: f64,
    pub match_weight: f64,
    pub evidence: Vec<FieldEvidence>,
    pub model_version: String,
    /// open, merged or distinct.
    pub state: String,
    pub created_at_ms: i64,
    pub decided_by: Option<String>,
}

/// A person's decision for a review task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The same person: merge them.
    Same,
    /// Different people: close the task, merge nothing.
    Different,
}

fn evidence(text: &str) -> Vec<FieldEvidence> {
    serde_json::from_str(text).unwrap_or_default()
}

fn task_from_row(row: &sqlx::any::AnyRow) -> Result<ReviewTask, sqlx::Error> {
    Ok(ReviewTask {
        task_id: row.try_get("task_id")?,
        referral_id: row.try_get("referral_id")?,
        record_id: row.try_get("record_id")?,
        person_id: row.try_get("person_id")?,
        candidate_record_id: row.try_get("candidate_record_id")?,
        candidate_person_id: row.try_get("candidate_person_id")?,
        match_probability: row.try_get("match_probability")?,
        match_weight: row.try_get("match_weight")?,
        evidence: evidence(&row.try_get::<String, _>("evidence")?),
        model_version: row.try_get("model_version")?,
        state: row.try_get("state")?,
        created_at_ms: row.try_get("created_at_ms")?,
        decided_by: row.try_get("decided_by")?,
    })
}

/// Review tasks, oldest first; only open ones unless `all`.
pub async fn list(conn: &mut AnyConnection, all: bool) -> Result<Vec<ReviewTask>, Error> {
    let sql = if all {
        "SELECT * FROM linkage_reviews ORDER BY created_at_ms, task_id"
    } else {
        "SELECT * FROM linkage_reviews WHERE state = 'open' ORDER BY created_at_ms, task_id"
    };
    let rows = sqlx::query(sql).fetch_all(&mut *conn).await?;
    Ok(rows.iter().map(task_from_row).collect::<Result<_, _>>()?)
}

/// The review task `task_id`, in whatever state.
pub async fn task(conn: &mut AnyConnection, task_id: &str) -> Result<Option<ReviewTask>, Error> {
    let row = sqlx::query("SELECT * FROM linkage_reviews WHERE task_id = $1")
        .bind(task_id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(task_from_row).transpose()?)
}

/// Decides an open review task. `Same` merges the task's new person into the existing
/// candidate and returns the merge; `Different` closes the task.
pub async fn decide(
    conn: &mut AnyConnection,
    log: &EventLog,
    task_id: &str,
    verdict: Verdict,
    by: &str,
) -> Result<Option<v1::PersonsMerged>, Error> {
    let task = task(conn, task_id).await?.ok_or_else(|| Error::NotFound {
        what: "review task",
        id: task_id.to_owned(),
    })?;
    if task.state != "open" {
        return Err(Error::Conflict(format!(
            "review task {task_id} was already decided ({})",
            task.state
        )));
    }
    let merged = match verdict {
        Verdict::Same => Some(
            merge(
                conn,
                log,
                &task.candidate_person_id,
                &task.person_id,
                Some(task_id),
                by,
            )
            .await?,
        ),
        Verdict::Different => None,
    };
    sqlx::query(
        "UPDATE linkage_reviews SET state = $1, decided_at_ms = $2, decided_by = $3 WHERE task_id = $4",
    )
    .bind(if merged.is_some() { "merged" } else { "distinct" })
    .bind(kinlink_store::now_millis())
    .bind(by)
    .bind(task_id)
    .execute(&mut *conn)
    .await?;
    kinlink_store::audit::append(
        conn,
        &kinlink_store::audit::AuditEntry {
            action: "linkage_review_decided",
            actor: by,
            authority_code: "",
            alert_id: "",
            detail: &format!(
                "task={task_id} verdict={}",
                if merged.is_some() {
                    "same"
                } else {
                    "different"
                }
            ),
        },
    )
    .await?;
    Ok(merged)
}

/// Merges `merged` into `surviving`: its records, identifiers and appearances count for the
/// surviving person from now on, and its id resolves to the surviving one. Only through a
/// decided review task ([`decide`]), which audits it.
async fn merge(
    conn: &mut AnyConnection,
    log: &EventLog,
    surviving: &str,
    merged: &str,
    task_id: Option<&str>,
    by: &str,
) -> Result<v1::PersonsMerged, Error> {
    let surviving = registry::canonical(conn, surviving).await?;
    let merged = registry::canonical(conn, merged).await?;
    for id in [&surviving, &merged] {
        exists(conn, id).await?;
    }
    if surviving == merged {
        return Err(Error::Conflict(format!(
            "{merged} and {surviving} are already the same person"
        )));
    }
    for sql in [
        "UPDATE persons SET merged_into = $1 WHERE person_id = $2 OR merged_into = $2",
        "UPDATE linkage_records SET person_id = $1 WHERE person_id = $2",
        "UPDATE person_identifiers SET person_id = $1 WHERE person_id = $2",
        "UPDATE linkage_reviews SET person_id = $1 WHERE person_id = $2 AND state = 'open'",
        "UPDATE linkage_reviews SET candidate_person_id = $1 WHERE candidate_person_id = $2 AND state = 'open'",
    ] {
        sqlx::query(sql)
            .bind(&surviving)
            .bind(&merged)
            .execute(&mut *conn)
            .await?;
    }
    sqlx::query(
        "UPDATE persons SET referred_in_own_right = 1 WHERE person_id = $1 AND EXISTS \
         (SELECT 1 FROM persons WHERE person_id = $2 AND referred_in_own_right = 1)",
    )
    .bind(&surviving)
    .bind(&merged)
    .execute(&mut *conn)
    .await?;
    // Other open tasks between the two are answered by this merge.
    sqlx::query(
        "UPDATE linkage_reviews SET state = 'merged', decided_at_ms = $2, decided_by = $3 \
         WHERE state = 'open' AND person_id = $1 AND candidate_person_id = $1",
    )
    .bind(&surviving)
    .bind(kinlink_store::now_millis())
    .bind(by)
    .execute(&mut *conn)
    .await?;
    let now = kinlink_store::now_millis();
    let merge_id = kinlink_eventlog::envelope::derive_id(&merged, &format!("merge/{surviving}"));
    let event = v1::PersonsMerged {
        merge_id: merge_id.clone(),
        surviving_person_id: surviving.clone(),
        merged_person_id: merged.clone(),
        task_id: task_id.unwrap_or_default().to_owned(),
        decided_by: by.to_owned(),
        decided_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    record_change(
        conn,
        &merge_id,
        "merge",
        &surviving,
        &merged,
        task_id,
        &[],
        by,
        now,
    )
    .await?;
    let envelope = Envelope::new(
        merge_id.clone(),
        SOURCE,
        &surviving,
        &surviving,
        now,
        &event,
    );
    log.append_in(conn, topics::PERSONS_CHANGES, &envelope)
        .await?;
    Ok(event)
}

/// Moves `record_ids` off `person_id` to a new person of their own.
pub async fn split(
    conn: &mut AnyConnection,
    log: &EventLog,
    person_id: &str,
    record_ids: &[String],
    reason: &str,
    by: &str,
) -> Result<v1::PersonSplit, Error> {
    let person_id = registry::canonical(conn, person_id).await?;
    exists(conn, &person_id).await?;
    let held: Vec<(String, String)> = sqlx::query(
        "SELECT record_id, referral_id FROM linkage_records WHERE person_id = $1 ORDER BY decided_at_ms, record_id",
    )
    .bind(&person_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| Ok((row.try_get("record_id")?, row.try_get("referral_id")?)))
    .collect::<Result<_, sqlx::Error>>()?;
    let mut moving: Vec<&(String, String)> = Vec::new();
    for id in record_ids {
        let found = held.iter().find(|(r, _)| r == id).ok_or_else(|| {
            Error::Conflict(format!("record {id} does not belong to person {person_id}"))
        })?;
        if !moving.contains(&found) {
            moving.push(found);
        }
    }
    if moving.is_empty() {
        return Err(Error::Conflict("no records to split off".to_owned()));
    }
    if moving.len() == held.len() {
        return Err(Error::Conflict(format!(
            "splitting every record off {person_id} would leave it empty; split the others instead"
        )));
    }
    let mut sorted: Vec<&str> = moving.iter().map(|(r, _)| r.as_str()).collect();
    sorted.sort_unstable();
    let split_id =
        kinlink_eventlog::envelope::derive_id(&person_id, &format!("split/{}", sorted.join(",")));
    let new_person_id = kinlink_eventlog::envelope::derive_id(&split_id, "person");
    let now = kinlink_store::now_millis();
    let first_referral = moving.first().map(|(_, r)| r.clone()).unwrap_or_default();
    sqlx::query(
        "INSERT INTO persons (person_id, match_key, first_referral_id, referred_in_own_right, created_at_ms) \
         VALUES ($1, NULL, $2, 0, $3)",
    )
    .bind(&new_person_id)
    .bind(&first_referral)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    for (record_id, referral_id) in &moving {
        sqlx::query("UPDATE linkage_records SET person_id = $1 WHERE record_id = $2")
            .bind(&new_person_id)
            .bind(record_id)
            .execute(&mut *conn)
            .await?;
        sqlx::query(
            "UPDATE referral_persons SET person_id = $1 WHERE person_id = $2 AND referral_id = $3",
        )
        .bind(&new_person_id)
        .bind(&person_id)
        .bind(referral_id)
        .execute(&mut *conn)
        .await?;
    }
    // Whether each side has been referred in its own right follows its appearances now.
    for id in [&person_id, &new_person_id] {
        sqlx::query(
            "UPDATE persons SET referred_in_own_right = CASE WHEN EXISTS (SELECT 1 FROM referral_persons \
             WHERE person_id = $1 AND role = $2) THEN 1 ELSE 0 END WHERE person_id = $1",
        )
        .bind(id)
        .bind(v1::SubjectRole::ReferralSubject as i64)
        .execute(&mut *conn)
        .await?;
    }
    let ids: Vec<String> = sorted.iter().map(|s| (*s).to_owned()).collect();
    record_change(
        conn,
        &split_id,
        "split",
        &person_id,
        &new_person_id,
        None,
        &ids,
        by,
        now,
    )
    .await?;
    kinlink_store::audit::append(
        conn,
        &kinlink_store::audit::AuditEntry {
            action: "person_split",
            actor: by,
            authority_code: "",
            alert_id: "",
            detail: &format!("split={split_id} from={person_id} to={new_person_id}"),
        },
    )
    .await?;
    let event = v1::PersonSplit {
        split_id: split_id.clone(),
        from_person_id: person_id.clone(),
        new_person_id,
        record_ids: ids,
        reason: reason.to_owned(),
        decided_by: by.to_owned(),
        decided_at: Some(kinlink_proto::timestamp_from_millis(now)),
    };
    let envelope = Envelope::new(split_id, SOURCE, &person_id, &person_id, now, &event);
    log.append_in(conn, topics::PERSONS_CHANGES, &envelope)
        .await?;
    Ok(event)
}

async fn exists(conn: &mut AnyConnection, person_id: &str) -> Result<(), Error> {
    let found = sqlx::query("SELECT 1 AS one FROM persons WHERE person_id = $1")
        .bind(person_id)
        .fetch_optional(&mut *conn)
        .await?;
    found.map(|_| ()).ok_or_else(|| Error::NotFound {
        what: "person",
        id: person_id.to_owned(),
    })
}

#[allow(clippy::too_many_arguments)]
async fn record_change(
    conn: &mut AnyConnection,
    change_id: &str,
    kind: &str,
    person_id: &str,
    other_person_id: &str,
    task_id: Option<&str>,
    record_ids: &[String],
    by: &str,
    at_ms: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO person_changes (change_id, kind, person_id, other_person_id, task_id, record_ids, decided_by, decided_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(change_id)
    .bind(kind)
    .bind(person_id)
    .bind(other_person_id)
    .bind(task_id)
    .bind(record_ids.join(","))
    .bind(by)
    .bind(at_ms)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// One linkage decision behind a person.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RecordDecision {
    pub record_id: String,
    pub referral_id: String,
    /// new_person, strong_identifier or probabilistic.
    pub method: String,
    pub matched_record_id: Option<String>,
    pub match_probability: f64,
    pub match_weight: f64,
    pub evidence: Vec<FieldEvidence>,
    pub model_version: String,
    pub decided_at_ms: i64,
}

/// A merge or split the person took part in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub change_id: String,
    pub kind: String,
    pub person_id: String,
    pub other_person_id: String,
    pub task_id: Option<String>,
    pub record_ids: String,
    pub decided_by: String,
    pub decided_at_ms: i64,
}

/// How a person came to be: every record's decision with its evidence, merged ids, review
/// tasks and changes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub person_id: String,
    /// The id asked about, when it was merged into `person_id`.
    pub asked_for: String,
    pub merged_person_ids: Vec<String>,
    pub records: Vec<RecordDecision>,
    pub reviews: Vec<ReviewTask>,
    pub changes: Vec<Change>,
}

/// Explains a person (a merged id explains the person it was merged into).
pub async fn explain(conn: &mut AnyConnection, person_id: &str) -> Result<Explanation, Error> {
    let canonical = registry::canonical(conn, person_id).await?;
    exists(conn, &canonical).await?;
    let merged_person_ids = sqlx::query(
        "SELECT person_id FROM persons WHERE merged_into = $1 ORDER BY created_at_ms, person_id",
    )
    .bind(&canonical)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| row.try_get("person_id"))
    .collect::<Result<_, _>>()?;
    let records = sqlx::query(
        "SELECT record_id, referral_id, method, matched_record_id, match_probability, match_weight, \
         evidence, model_version, decided_at_ms FROM linkage_records WHERE person_id = $1 \
         ORDER BY decided_at_ms, record_id",
    )
    .bind(&canonical)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(RecordDecision {
            record_id: row.try_get("record_id")?,
            referral_id: row.try_get("referral_id")?,
            method: linking::method_name(linking::method_from_column(row.try_get("method")?)),
            matched_record_id: row.try_get("matched_record_id")?,
            match_probability: row.try_get("match_probability")?,
            match_weight: row.try_get("match_weight")?,
            evidence: evidence(&row.try_get::<String, _>("evidence")?),
            model_version: row.try_get("model_version")?,
            decided_at_ms: row.try_get("decided_at_ms")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    let reviews = sqlx::query(
        "SELECT * FROM linkage_reviews WHERE person_id = $1 OR candidate_person_id = $1 \
         ORDER BY created_at_ms, task_id",
    )
    .bind(&canonical)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(task_from_row)
    .collect::<Result<_, _>>()?;
    let changes = sqlx::query(
        "SELECT * FROM person_changes WHERE person_id = $1 OR other_person_id = $1 \
         ORDER BY decided_at_ms, change_id",
    )
    .bind(&canonical)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|row| {
        Ok(Change {
            change_id: row.try_get("change_id")?,
            kind: row.try_get("kind")?,
            person_id: row.try_get("person_id")?,
            other_person_id: row.try_get("other_person_id")?,
            task_id: row.try_get("task_id")?,
            record_ids: row.try_get("record_ids")?,
            decided_by: row.try_get("decided_by")?,
            decided_at_ms: row.try_get("decided_at_ms")?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    Ok(Explanation {
        person_id: canonical,
        asked_for: person_id.to_owned(),
        merged_person_ids,
        records,
        reviews,
        changes,
    })
}
