//! The alerter's tables: `routing_decisions` (every child routed, to which body, on what
//! basis, with which rules and data versions), `handoffs` (lives/found hand-offs),
//! `triage_queue` (alerts waiting for a person to route them) and `age_assessments` (what an
//! age assessment decided about a known person). This module is their only
//! writer; the notifier and the CLI move hand-offs and triage items through the functions
//! below, which apply the domain's state machines.

use kinlink_domain::child::AssessedAge;
use kinlink_domain::lifecycle::{HandoffDecision, HandoffState, Step, TriageState};
use kinlink_eventlog::StageError;
use kinlink_proto::v1::{self, RoutingBasis};
use sqlx::{AnyConnection, Row};

/// Records that the adult of an anonymous Duty-to-Notify report was not shared (s52(3));
/// children of the report still are.
pub async fn not_shared(conn: &mut AnyConnection, referral_id: &str) -> Result<(), StageError> {
    kinlink_store::audit::append(
        conn,
        &kinlink_store::audit::AuditEntry {
            action: "not_shared",
            actor: "alerter",
            authority_code: "",
            alert_id: "",
            detail: &format!(
                "referral {referral_id}: adult subject of an anonymous Duty to Notify report (s52(3))"
            ),
        },
    )
    .await
    .map_err(|e| StageError::Retry(e.to_string()))
}

/// Records a raised alert: a routing decision per section, a pending hand-off for each child
/// who lives in one body and was found in another, and a triage entry when no body was found.
pub async fn record(
    conn: &mut AnyConnection,
    alert: &v1::AlertRaised,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    for part in &alert.sections {
        if part.person_id.is_empty() {
            continue;
        }
        if part.basis == RoutingBasis::Lives as i32 && !part.other_authority_code.is_empty() {
            sqlx::query(
                "INSERT INTO handoffs (referral_id, person_id, home_authority, found_authority, state, created_at_ms, \
                 updated_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&alert.referral_id)
            .bind(&part.person_id)
            .bind(&alert.authority_code)
            .bind(&part.other_authority_code)
            .bind(HandoffState::Pending.as_str())
            .bind(now_ms)
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(
            "INSERT INTO routing_decisions (referral_id, person_id, authority_code, basis, alert_id, rules, reasons, \
             data_version, rules_version, decided_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&alert.referral_id)
        .bind(&part.person_id)
        .bind(&alert.authority_code)
        .bind(i64::from(part.basis))
        .bind(&alert.alert_id)
        .bind(part.rules.join(","))
        .bind(alert.triage_reasons.join(","))
        .bind(&alert.routing_data_version)
        .bind(&alert.rules_version)
        .bind(now_ms)
        .execute(&mut *conn)
        .await?;
    }
    if alert.authority_code.is_empty() {
        sqlx::query(
            "INSERT INTO triage_queue (alert_id, referral_id, reasons, candidates, state, created_at_ms, sla_deadline_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(alert.triage_reasons.join(","))
        .bind(alert.candidate_authority_codes.join(","))
        .bind(TriageState::Open.as_str())
        .bind(now_ms)
        .bind(
            alert
                .triage_sla_deadline
                .as_ref()
                .map_or(now_ms, kinlink_proto::millis_from_timestamp),
        )
        .execute(conn)
        .await?;
    }
    Ok(())
}

/// An operator routed the triage item `alert_id` to `code`: its routing decisions name the
/// body and the item leaves the queue.
pub async fn route_triage_item(
    conn: &mut AnyConnection,
    alert_id: &str,
    code: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE routing_decisions SET authority_code = $1 WHERE alert_id = $2 AND authority_code = ''",
    )
    .bind(code)
    .bind(alert_id)
    .execute(&mut *conn)
    .await?;
    if let Step::Move { from, to } = TriageState::Open.route() {
        sqlx::query("UPDATE triage_queue SET state = $1 WHERE alert_id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(alert_id)
            .bind(from.as_str())
            .execute(conn)
            .await?;
    }
    Ok(())
}

/// A hand-off the home authority decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoffDecided {
    pub person_id: String,
    pub found_authority: String,
    pub state: HandoffState,
}

/// The home authority `home_authority` decides the pending hand-offs of `referral_id`
/// (accepts responsibility, or declines with `reason`). Returns the hand-offs that moved
/// (none when none was pending), so the authorities where the children were found are told.
pub async fn decide_handoffs(
    conn: &mut AnyConnection,
    referral_id: &str,
    home_authority: &str,
    decision: HandoffDecision,
    reason: &str,
    now_ms: i64,
) -> Result<Vec<HandoffDecided>, sqlx::Error> {
    let Step::Move { from, to } = HandoffState::Pending.decide(decision) else {
        return Ok(Vec::new());
    };
    let pending = sqlx::query(
        "SELECT person_id, found_authority FROM handoffs WHERE referral_id = $1 AND home_authority = $2 AND state = $3 \
         ORDER BY person_id, found_authority",
    )
    .bind(referral_id)
    .bind(home_authority)
    .bind(from.as_str())
    .fetch_all(&mut *conn)
    .await?;
    let mut decided = Vec::new();
    for row in pending {
        let person_id: String = row.try_get("person_id")?;
        let found_authority: String = row.try_get("found_authority")?;
        let moved = sqlx::query(
            "UPDATE handoffs SET state = $1, reason = $2, updated_at_ms = $3 WHERE referral_id = $4 \
             AND person_id = $5 AND home_authority = $6 AND found_authority = $7 AND state = $8",
        )
        .bind(to.as_str())
        .bind(reason)
        .bind(now_ms)
        .bind(referral_id)
        .bind(&person_id)
        .bind(home_authority)
        .bind(&found_authority)
        .bind(from.as_str())
        .execute(&mut *conn)
        .await?;
        if moved.rows_affected() == 1 {
            decided.push(HandoffDecided {
                person_id,
                found_authority,
                state: to,
            });
        }
    }
    Ok(decided)
}

/// The hand-offs of a referral an authority is part of (as home or found), for its inbox:
/// (home, found, state).
pub async fn handoffs_of(
    conn: &mut AnyConnection,
    referral_id: &str,
    authority: &str,
) -> Result<Vec<(String, String, String)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT home_authority, found_authority, state FROM handoffs WHERE referral_id = $1 \
         AND (home_authority = $2 OR found_authority = $2) ORDER BY home_authority, found_authority",
    )
    .bind(referral_id)
    .bind(authority)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("home_authority")?,
                r.try_get("found_authority")?,
                r.try_get("state")?,
            ))
        })
        .collect()
}

/// Records what an age assessment decided about a person (idempotent on the event id).
pub async fn record_assessment(
    conn: &mut AnyConnection,
    event_id: &str,
    person_id: &str,
    referral_id: &str,
    outcome: AssessedAge,
    assessed_at_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO age_assessments (event_id, person_id, referral_id, outcome, assessed_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(event_id)
    .bind(person_id)
    .bind(referral_id)
    .bind(outcome.as_str())
    .bind(assessed_at_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// Alerts waiting in triage that no longer need action (their referral was withdrawn) leave
/// the queue.
pub async fn close_triage_items(
    conn: &mut AnyConnection,
    alert_ids: &[&str],
) -> Result<(), sqlx::Error> {
    let Step::Move { from, to } = TriageState::Open.close() else {
        return Ok(());
    };
    for alert_id in alert_ids {
        sqlx::query("UPDATE triage_queue SET state = $1 WHERE alert_id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(alert_id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
