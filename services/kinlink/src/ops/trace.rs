//! `kinlink ops trace <referral-id>`: everything that happened to one referral, in time order:
//! events in the log (embedded), persons and links, routing decisions, alerts, delivery
//! attempts, escalations, acknowledgements and audit entries. Ids and codes only.

use kinlink_eventlog::EventLog;
use kinlink_store::Store;
use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Serialize)]
pub struct Step {
    pub at_ms: i64,
    /// event, person, linkage, review, link, routing, alert, delivery, escalation,
    /// acknowledgement, handoff, audit
    pub kind: String,
    pub what: String,
    pub ids: Vec<String>,
}

fn step(at_ms: i64, kind: &str, what: String, ids: Vec<String>) -> Step {
    Step {
        at_ms,
        kind: kind.to_owned(),
        what,
        ids,
    }
}

pub async fn trace(store: &Store, log: &EventLog, referral_id: &str) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let pool = store.pool();
    let alert_ids: Vec<String> =
        sqlx::query("SELECT alert_id FROM deliveries WHERE referral_id = $1")
            .bind(referral_id)
            .fetch_all(pool)
            .await?
            .iter()
            .map(|r| r.try_get("alert_id"))
            .collect::<Result<_, _>>()?;

    if let EventLog::Embedded(_) = log {
        let rows = sqlx::query(
            "SELECT appended_at_ms, topic, event_type, event_id, subject FROM log_events WHERE partition_key = $1 OR subject = $1 \
             ORDER BY seq",
        )
        .bind(referral_id)
        .fetch_all(pool)
        .await?;
        for r in &rows {
            steps.push(step(
                r.try_get("appended_at_ms")?,
                "event",
                format!(
                    "{} on {}",
                    r.try_get::<String, _>("event_type")?,
                    r.try_get::<String, _>("topic")?
                ),
                vec![r.try_get("event_id")?],
            ));
        }
        for alert in &alert_ids {
            let rows = sqlx::query("SELECT appended_at_ms, topic, event_type, event_id FROM log_events WHERE partition_key = $1 ORDER BY seq")
                .bind(alert)
                .fetch_all(pool)
                .await?;
            for r in &rows {
                steps.push(step(
                    r.try_get("appended_at_ms")?,
                    "event",
                    format!(
                        "{} on {}",
                        r.try_get::<String, _>("event_type")?,
                        r.try_get::<String, _>("topic")?
                    ),
                    vec![r.try_get("event_id")?, alert.clone()],
                ));
            }
        }
    } else if let Some(row) = sqlx::query(
        "SELECT received_at_ms, version, state FROM intake_referrals WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_optional(pool)
    .await?
    {
        steps.push(step(
            row.try_get("received_at_ms")?,
            "event",
            format!(
                "referral received (version {}, {})",
                row.try_get::<i64, _>("version")?,
                row.try_get::<String, _>("state")?
            ),
            vec![referral_id.to_owned()],
        ));
    }

    for r in sqlx::query("SELECT person_id, role, dependant_index, seen_at_ms FROM referral_persons WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_all(pool)
        .await?
    {
        let role = if r.try_get::<i64, _>("role")? == 1 { "subject".to_owned() } else { format!("dependant {}", r.try_get::<i64, _>("dependant_index")?) };
        steps.push(step(r.try_get("seen_at_ms")?, "person", format!("linked as {role}"), vec![r.try_get("person_id")?]));
    }
    for r in sqlx::query(
        "SELECT record_id, person_id, method, match_probability, model_version, decided_at_ms \
         FROM linkage_records WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_all(pool)
    .await?
    {
        let method = kinlink_domain::linking::method_name(
            kinlink_domain::linking::method_from_column(r.try_get("method")?),
        );
        steps.push(step(
            r.try_get("decided_at_ms")?,
            "linkage",
            format!(
                "{method} p={:.4} model {} (kinlink explain <person>)",
                r.try_get::<f64, _>("match_probability")?,
                r.try_get::<String, _>("model_version")?
            ),
            vec![r.try_get("record_id")?, r.try_get("person_id")?],
        ));
    }
    for r in sqlx::query(
        "SELECT task_id, person_id, candidate_person_id, match_probability, state, created_at_ms \
         FROM linkage_reviews WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_all(pool)
    .await?
    {
        steps.push(step(
            r.try_get("created_at_ms")?,
            "review",
            format!(
                "possible match p={:.4}, {}",
                r.try_get::<f64, _>("match_probability")?,
                r.try_get::<String, _>("state")?
            ),
            vec![
                r.try_get("task_id")?,
                r.try_get("person_id")?,
                r.try_get("candidate_person_id")?,
            ],
        ));
    }
    for r in sqlx::query(
        "SELECT from_person_id, to_person_id, kind FROM person_links WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_all(pool)
    .await?
    {
        let kind = match r.try_get::<i64, _>("kind")? {
            1 => "parent",
            2 => "child",
            3 => "sibling",
            _ => "related",
        };
        steps.push(step(
            0,
            "link",
            format!("second is the first's {kind}"),
            vec![r.try_get("from_person_id")?, r.try_get("to_person_id")?],
        ));
    }
    for r in sqlx::query("SELECT person_id, authority_code, alert_id, rules, reasons, data_version, decided_at_ms FROM routing_decisions WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_all(pool)
        .await?
    {
        let authority: String = r.try_get("authority_code")?;
        let target = if authority.is_empty() { format!("triage ({})", r.try_get::<String, _>("reasons")?) } else { authority };
        steps.push(step(r.try_get("decided_at_ms")?, "routing", format!("{target}; rules {}; data {}", r.try_get::<String, _>("rules")?, r.try_get::<String, _>("data_version")?), vec![r.try_get("person_id")?, r.try_get("alert_id")?]));
    }
    for r in sqlx::query("SELECT person_id, home_authority, found_authority, state, reason, created_at_ms, updated_at_ms FROM handoffs WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_all(pool)
        .await?
    {
        let (home, found): (String, String) = (r.try_get("home_authority")?, r.try_get("found_authority")?);
        steps.push(step(r.try_get("created_at_ms")?, "handoff", format!("{home} asked to take responsibility from {found}"), vec![r.try_get("person_id")?]));
        let state: String = r.try_get("state")?;
        if state != "pending" {
            let reason: String = r.try_get("reason")?;
            let why = if reason.is_empty() { String::new() } else { format!(" ({reason})") };
            steps.push(step(r.try_get("updated_at_ms")?, "handoff", format!("{home} {state}{why}"), vec![r.try_get("person_id")?]));
        }
    }
    for alert in &alert_ids {
        if let Some(r) = sqlx::query("SELECT authority_code, state, created_at_ms, acknowledged_at_ms, resolved_at_ms, outcome_code FROM alerts WHERE alert_id = $1")
            .bind(alert)
            .fetch_optional(pool)
            .await?
        {
            let authority: String = r.try_get("authority_code")?;
            steps.push(step(r.try_get("created_at_ms")?, "alert", format!("filed for {} (now {})", if authority.is_empty() { "triage".to_owned() } else { authority.clone() }, r.try_get::<String, _>("state")?), vec![alert.clone()]));
            if let Some(at) = r.try_get::<Option<i64>, _>("acknowledged_at_ms")? {
                steps.push(step(at, "acknowledgement", format!("acknowledged by {authority}"), vec![alert.clone()]));
            }
            if let Some(at) = r.try_get::<Option<i64>, _>("resolved_at_ms")? {
                steps.push(step(at, "acknowledgement", format!("resolved: {}", r.try_get::<Option<String>, _>("outcome_code")?.unwrap_or_default()), vec![alert.clone()]));
            }
        }
        for a in sqlx::query("SELECT attempt, started_at_ms, http_status, outcome FROM delivery_attempts WHERE alert_id = $1 ORDER BY attempt")
            .bind(alert)
            .fetch_all(pool)
            .await?
        {
            steps.push(step(a.try_get("started_at_ms")?, "delivery", format!("attempt {}: {} (HTTP {})", a.try_get::<i64, _>("attempt")?, a.try_get::<String, _>("outcome")?, a.try_get::<Option<i64>, _>("http_status")?.unwrap_or(0)), vec![alert.clone()]));
        }
        for e in sqlx::query("SELECT level, state, due_at_ms, fired_at_ms FROM escalations WHERE alert_id = $1 ORDER BY level")
            .bind(alert)
            .fetch_all(pool)
            .await?
        {
            let at = e.try_get::<Option<i64>, _>("fired_at_ms")?.unwrap_or(e.try_get("due_at_ms")?);
            let level = if e.try_get::<i64, _>("level")? == 1 { "secondary contact" } else { "on-call" };
            steps.push(step(at, "escalation", format!("{level}: {}", e.try_get::<String, _>("state")?), vec![alert.clone()]));
        }
        for a in sqlx::query(
            "SELECT at_ms, action, actor, detail FROM audit_log WHERE alert_id = $1 ORDER BY seq",
        )
        .bind(alert)
        .fetch_all(pool)
        .await?
        {
            steps.push(step(
                a.try_get("at_ms")?,
                "audit",
                format!(
                    "{} by {} {}",
                    a.try_get::<String, _>("action")?,
                    a.try_get::<String, _>("actor")?,
                    a.try_get::<String, _>("detail")?
                ),
                vec![alert.clone()],
            ));
        }
    }
    steps.sort_by_key(|s| s.at_ms);
    Ok(steps)
}
