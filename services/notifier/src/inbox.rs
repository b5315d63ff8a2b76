//! The stage that files raised alerts: a pending delivery, the alert's life-cycle row and its
//! escalation timers, all in the stage's transaction, so an alert is never lost or filed
//! twice. The escalation policy (secondary contact, on-call delay) is snapshotted here.

use std::sync::Arc;

use kinlink_eventlog::{Output, Record, Stage, StageError};
use kinlink_proto::v1;
use prost::Message;
use sqlx::AnyConnection;

use kinlink_domain::lifecycle::{AlertCommand, AlertState, DeliveryState, Step};
use kinlink_store::audit::{self, AuditEntry};

use crate::directory::Directory;

/// A routing basis as the inbox, the API and the console name it (empty when unset).
pub fn basis_code(basis: i32) -> &'static str {
    match v1::RoutingBasis::try_from(basis).unwrap_or_default() {
        v1::RoutingBasis::Lives => "lives",
        v1::RoutingBasis::Found => "found",
        v1::RoutingBasis::Triage => "triage",
        v1::RoutingBasis::PlacingAuthority => "placing_authority",
        v1::RoutingBasis::PreviousAuthority => "previous_authority",
        v1::RoutingBasis::Unspecified => "",
    }
}

/// What an authority's inbox sorts and filters on, copied into `alerts` beside the stored
/// alert so that a page of a large inbox decodes only the alerts it shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxSummary {
    /// `red`, `amber` or `green` (empty when unset).
    pub rag: &'static str,
    pub rule: String,
    /// `lives`, `found`, `both` (children on both bases), `triage`, `placing_authority` or
    /// `previous_authority`.
    pub basis: &'static str,
    /// `standard` or `urgent`.
    pub priority: &'static str,
    pub child_count: i64,
}

impl InboxSummary {
    pub fn of(alert: &v1::AlertRaised) -> Self {
        let rag = match v1::Rag::try_from(alert.rag).unwrap_or_default() {
            v1::Rag::Red => "red",
            v1::Rag::Amber => "amber",
            v1::Rag::Green => "green",
            v1::Rag::Unspecified => "",
        };
        let mut bases: Vec<&'static str> = alert
            .sections
            .iter()
            .map(|s| basis_code(s.basis))
            .filter(|b| !b.is_empty())
            .collect();
        bases.sort_unstable();
        bases.dedup();
        let basis = match bases.as_slice() {
            [] => basis_code(alert.basis),
            [one] => one,
            [_, _] if bases.contains(&"lives") && bases.contains(&"found") => "both",
            _ => basis_code(alert.basis),
        };
        let priority = match v1::Priority::try_from(alert.priority).unwrap_or_default() {
            v1::Priority::Urgent => "urgent",
            v1::Priority::Standard => "standard",
            v1::Priority::Unspecified => "",
        };
        Self {
            rag,
            rule: alert.rule.clone(),
            basis,
            priority,
            child_count: i64::try_from(alert.sections.len().max(1)).unwrap_or(i64::MAX),
        }
    }
}

/// Fills the inbox columns of alerts filed before they existed (migration 0016), in batches;
/// returns how many were filled. Safe to run on every start and from several instances.
pub async fn backfill_summaries(store: &kinlink_store::Store) -> Result<u64, crate::Error> {
    let mut filled = 0u64;
    loop {
        let rows = sqlx::query("SELECT alert_id, alert FROM alerts WHERE rule = '' LIMIT 500")
            .fetch_all(store.pool())
            .await?;
        let mut tx = store.begin().await?;
        let mut changed = 0u64;
        for row in &rows {
            let alert_id: String = sqlx::Row::try_get(row, "alert_id")?;
            let bytes: Vec<u8> = sqlx::Row::try_get(row, "alert")?;
            let alert = crate::stored_alert(&alert_id, &bytes)?;
            let summary = InboxSummary::of(&alert);
            // An alert with no rule keeps '' and would be read again: mark it with '-'.
            let rule = if summary.rule.is_empty() {
                "-".to_owned()
            } else {
                summary.rule
            };
            sqlx::query(
                "UPDATE alerts SET rag = $1, rule = $2, basis = $3, priority = $4, child_count = $5 \
                 WHERE alert_id = $6 AND rule = ''",
            )
            .bind(summary.rag)
            .bind(rule)
            .bind(summary.basis)
            .bind(summary.priority)
            .bind(summary.child_count)
            .bind(&alert_id)
            .execute(&mut *tx)
            .await?;
            changed += 1;
        }
        tx.commit().await?;
        filled += changed;
        if rows.len() < 500 {
            return Ok(filled);
        }
    }
}

/// The stage that files raised alerts.
#[derive(Debug, Clone)]
pub struct AlertInbox {
    directory: Arc<Directory>,
    clock: kinlink_store::Clock,
}

impl AlertInbox {
    pub fn new(directory: Arc<Directory>) -> Self {
        Self {
            directory,
            clock: kinlink_store::Clock::system(),
        }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: kinlink_store::Clock) -> Self {
        self.clock = clock;
        self
    }
}

impl Stage for AlertInbox {
    fn name(&self) -> &'static str {
        "notifier"
    }

    async fn handle(
        &self,
        conn: &mut AnyConnection,
        record: &Record,
    ) -> Result<Vec<Output>, StageError> {
        use prost::Name;
        if record.envelope.event_type == v1::AlertClosed::full_name() {
            let closed: v1::AlertClosed = record.envelope.decode()?;
            self.close(conn, &closed).await?;
            return Ok(Vec::new());
        }
        let alert: v1::AlertRaised = record.envelope.decode()?;
        if alert.alert_id.is_empty() {
            return Err(StageError::Rejected("alert has no alert_id".to_owned()));
        }
        let triage = alert.authority_code.is_empty();
        let initial = DeliveryState::filed(!triage).as_str();
        let now = self.clock.now_ms();
        let deadline = alert
            .deadline
            .as_ref()
            .map_or(now, kinlink_proto::millis_from_timestamp);
        let bytes = alert.encode_to_vec();
        let filed = sqlx::query(
            "INSERT INTO deliveries (alert_id, referral_id, authority_code, state, attempts, next_attempt_at_ms, \
             alert, created_at_ms, updated_at_ms, revision, source_revision) \
             VALUES ($1, $2, $3, $4, 0, $5, $6, $5, $5, $7, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(initial)
        .bind(now)
        .bind(bytes.clone())
        // An alert first raised by a later version of its referral starts at that revision.
        .bind(i64::from(alert.revision.max(1)))
        .execute(&mut *conn)
        .await?;
        if filed.rows_affected() == 0 {
            // Filed before. A higher revision from the alerter amends it and is delivered
            // again as the next delivered revision (the notifier may have amended it itself,
            // for a closure or a hand-off decision, whose facts are kept); the same revision
            // again (a replay) changes nothing.
            let Some(stored) = sqlx::query(
                "SELECT revision, source_revision, alert FROM deliveries WHERE alert_id = $1",
            )
            .bind(&alert.alert_id)
            .fetch_optional(&mut *conn)
            .await?
            else {
                return Ok(Vec::new());
            };
            let delivered: i64 = sqlx::Row::try_get(&stored, "revision")?;
            let source: i64 = sqlx::Row::try_get(&stored, "source_revision")?;
            let incoming = i64::from(alert.revision.max(1));
            if incoming <= source {
                return Ok(Vec::new());
            }
            let previous: Vec<u8> = sqlx::Row::try_get(&stored, "alert")?;
            let previous = crate::stored_alert(&alert.alert_id, &previous)
                .map_err(|e| StageError::Rejected(e.to_string()))?;
            let mut amended = alert.clone();
            amended.revision = u32::try_from(delivered + 1).unwrap_or(u32::MAX);
            amended.handoff = previous.handoff;
            // Closed as re-routed, and now planned for this body again: a later correction
            // routed the child back, so the alert is open again and escalates. Any other
            // closure (withdrawn, found) stands, and the amendment still says so.
            let reopen = previous.closed_reason == v1::AlertCloseReason::Rerouted as i32;
            if !reopen {
                amended.closed_reason = previous.closed_reason;
                amended.closed_reason_code = previous.closed_reason_code;
                amended.closed_at = previous.closed_at;
                amended.closed_rerouted_to = previous.closed_rerouted_to;
            }
            let bytes = amended.encode_to_vec();
            let updated = sqlx::query(
                "UPDATE deliveries SET alert = $1, revision = $2, source_revision = $3, \
                 state = CASE WHEN state = $4 THEN state ELSE $5 END, base_attempts = attempts, \
                 next_attempt_at_ms = $6, updated_at_ms = $6 WHERE alert_id = $7 AND revision = $8",
            )
            .bind(bytes.clone())
            .bind(i64::from(amended.revision))
            .bind(incoming)
            // `DeliveryState::amended`: a triage item stays in triage, anything else is due again.
            .bind(DeliveryState::Triage.as_str())
            .bind(DeliveryState::Delivered.amended().as_str())
            .bind(now)
            .bind(&alert.alert_id)
            .bind(delivered)
            .execute(&mut *conn)
            .await?;
            if updated.rows_affected() == 1 {
                let summary = InboxSummary::of(&amended);
                sqlx::query(
                    "UPDATE alerts SET alert = $1, deadline_ms = $2, rag = $3, rule = $4, basis = $5, \
                     priority = $6, child_count = $7 WHERE alert_id = $8",
                )
                .bind(bytes)
                .bind(deadline)
                .bind(summary.rag)
                .bind(summary.rule)
                .bind(summary.basis)
                .bind(summary.priority)
                .bind(summary.child_count)
                .bind(&alert.alert_id)
                    .execute(&mut *conn)
                    .await?;
                if reopen && !triage {
                    self.reopen(conn, &alert, deadline).await?;
                }
                if !triage {
                    crate::channels::file(conn, &self.directory, &amended, amended.revision, now)
                        .await?;
                }
                tracing::info!(alert_id = %alert.alert_id, revision = amended.revision, "Alert amended; delivering again.");
            }
            return Ok(Vec::new());
        }
        let summary = InboxSummary::of(&alert);
        sqlx::query(
            "INSERT INTO alerts (alert_id, referral_id, authority_code, state, deadline_ms, alert, created_at_ms, \
             rag, rule, basis, priority, child_count) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) ON CONFLICT DO NOTHING",
        )
        .bind(&alert.alert_id)
        .bind(&alert.referral_id)
        .bind(&alert.authority_code)
        .bind(AlertState::Open.as_str())
        .bind(deadline)
        .bind(bytes)
        .bind(now)
        .bind(summary.rag)
        .bind(summary.rule)
        .bind(summary.basis)
        .bind(summary.priority)
        .bind(summary.child_count)
        .execute(&mut *conn)
        .await?;
        if triage {
            // Nobody to tell yet: on-call is paged if no one routes it within its SLA.
            let sla = alert
                .triage_sla_deadline
                .as_ref()
                .map_or(now, kinlink_proto::millis_from_timestamp);
            let timer = kinlink_domain::lifecycle::schedule_triage_escalation(sla);
            crate::escalation::file_timers(conn, &alert.alert_id, &[timer]).await?;
        } else {
            let timers = self
                .directory
                .escalation_timers(&alert.authority_code, deadline);
            crate::escalation::file_timers(conn, &alert.alert_id, &timers).await?;
            crate::channels::file(conn, &self.directory, &alert, alert.revision.max(1), now)
                .await?;
            // The authority where a child lives is asked to take responsibility from the one
            // where the child was found: on-call hears if it has not decided by the deadline.
            let asks_handoff = alert.sections.iter().any(|s| {
                s.basis == v1::RoutingBasis::Lives as i32 && !s.other_authority_code.is_empty()
            });
            if asks_handoff {
                let timer = kinlink_domain::lifecycle::schedule_handoff_escalation(deadline);
                crate::escalation::file_timers(conn, &alert.alert_id, &[timer]).await?;
            }
        }
        Ok(Vec::new())
    }
}

impl AlertInbox {
    /// Closes a filed alert that no longer needs action: its state moves to closed (unless
    /// the authority already resolved it), its escalation timers stop, and the closure is
    /// delivered to the authority as an amendment (next revision, its own webhook-id). An
    /// alert never filed, or already closed, is left as it is.
    async fn close(
        &self,
        conn: &mut AnyConnection,
        closed: &v1::AlertClosed,
    ) -> Result<(), StageError> {
        let row = sqlx::query("SELECT state, alert FROM alerts WHERE alert_id = $1")
            .bind(&closed.alert_id)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(row) = row else {
            return Ok(());
        };
        let state: String = sqlx::Row::try_get(&row, "state")?;
        let Some(state) = AlertState::parse(&state) else {
            return Err(StageError::Rejected(format!(
                "alert {} has an unknown state",
                closed.alert_id
            )));
        };
        let Step::Move { from, to } = state.apply(AlertCommand::Close) else {
            return Ok(());
        };
        let now = self.clock.now_ms();
        let revision = amend_alert(conn, &closed.alert_id, now, Some((from, to)), |alert| {
            alert.closed_reason = closed.reason;
            alert.closed_reason_code = closed.reason_code.clone();
            alert.closed_at = closed.closed_at;
            alert.closed_rerouted_to = closed.rerouted_to.clone();
        })
        .await
        .map_err(|e| match e {
            crate::Error::Database(e) => StageError::from(e),
            other => StageError::Rejected(other.to_string()),
        })?;
        crate::escalation::stop_timers(
            conn,
            &closed.alert_id,
            &kinlink_domain::lifecycle::EscalationLevel::ALL,
        )
        .await?;
        let detail = format!("closed: {}", closed.reason);
        audit::append(
            conn,
            &AuditEntry {
                action: "closed",
                actor: "notifier",
                authority_code: &closed.authority_code,
                alert_id: &closed.alert_id,
                detail: &detail,
            },
        )
        .await
        .map_err(|e| StageError::Retry(e.to_string()))?;
        tracing::info!(alert_id = %closed.alert_id, ?revision, "Alert closed; the authority is told and escalation stopped.");
        Ok(())
    }
}

/// Amends a filed alert: `change` edits the stored alert, which becomes the next revision and
/// is delivered again (its own `webhook-id`; a triage item waits for routing). With `step`, the
/// alert's state moves too, guarded on the state it moves from. Returns the new revision, or
/// `None` when the alert was never filed.
pub(crate) async fn amend_alert(
    conn: &mut AnyConnection,
    alert_id: &str,
    now_ms: i64,
    step: Option<(AlertState, AlertState)>,
    change: impl FnOnce(&mut v1::AlertRaised),
) -> Result<Option<u32>, crate::Error> {
    let Some(row) = sqlx::query("SELECT alert FROM alerts WHERE alert_id = $1")
        .bind(alert_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    let bytes: Vec<u8> = sqlx::Row::try_get(&row, "alert")?;
    let mut alert = crate::stored_alert(alert_id, &bytes)?;
    let delivery = sqlx::query("SELECT revision, state FROM deliveries WHERE alert_id = $1")
        .bind(alert_id)
        .fetch_optional(&mut *conn)
        .await?;
    let (revision, delivery_state) = match delivery {
        Some(row) => (
            sqlx::Row::try_get::<i64, _>(&row, "revision")?,
            sqlx::Row::try_get::<String, _>(&row, "state")?,
        ),
        None => (i64::from(alert.revision.max(1)), String::new()),
    };
    change(&mut alert);
    alert.revision = u32::try_from(revision + 1).unwrap_or(u32::MAX);
    let bytes = alert.encode_to_vec();
    match step {
        Some((from, to)) => {
            sqlx::query(
                "UPDATE alerts SET state = $1, alert = $2 WHERE alert_id = $3 AND state = $4",
            )
            .bind(to.as_str())
            .bind(bytes.clone())
            .bind(alert_id)
            .bind(from.as_str())
            .execute(&mut *conn)
            .await?;
        }
        None => {
            sqlx::query("UPDATE alerts SET alert = $1 WHERE alert_id = $2")
                .bind(bytes.clone())
                .bind(alert_id)
                .execute(&mut *conn)
                .await?;
        }
    }
    let next =
        DeliveryState::parse(&delivery_state).map_or(DeliveryState::Triage, DeliveryState::amended);
    sqlx::query(
        "UPDATE deliveries SET alert = $1, revision = $2, state = $3, base_attempts = attempts, \
         next_attempt_at_ms = $4, updated_at_ms = $4 WHERE alert_id = $5",
    )
    .bind(bytes)
    .bind(i64::from(alert.revision))
    .bind(next.as_str())
    .bind(now_ms)
    .bind(alert_id)
    .execute(&mut *conn)
    .await?;
    Ok(Some(alert.revision))
}

impl AlertInbox {
    /// An alert closed as re-routed is this body's again: open, with fresh escalation timers
    /// from its new deadline.
    async fn reopen(
        &self,
        conn: &mut AnyConnection,
        alert: &v1::AlertRaised,
        deadline: i64,
    ) -> Result<(), StageError> {
        let Step::Move { from, to } = AlertState::Closed.apply(AlertCommand::Reopen) else {
            return Ok(());
        };
        let reopened =
            sqlx::query("UPDATE alerts SET state = $1 WHERE alert_id = $2 AND state = $3")
                .bind(to.as_str())
                .bind(&alert.alert_id)
                .bind(from.as_str())
                .execute(&mut *conn)
                .await?;
        if reopened.rows_affected() == 0 {
            return Ok(());
        }
        let timers = self
            .directory
            .escalation_timers(&alert.authority_code, deadline);
        crate::escalation::refile_timers(conn, &alert.alert_id, &timers).await?;
        tracing::info!(alert_id = %alert.alert_id, "Alert re-opened: the child was routed back to this body.");
        Ok(())
    }
}

/// Erasure: in every stored alert about one of `person_ids` (the alert and its delivery
/// copy), that child's section loses their details, and the alert loses the referrer's free
/// text and the last-seen location, which can describe them. Ids, codes, states and times
/// stay, so inboxes, deadlines and figures still add up. Returns the alert ids touched.
pub async fn erase_person(
    conn: &mut AnyConnection,
    person_ids: &[String],
) -> Result<Vec<String>, sqlx::Error> {
    erase_in_alerts(conn, Some(person_ids), None).await
}

/// Erasure: the referrer's free text, which can name anyone on the referral, goes from every
/// stored alert of these referrals (the alerts about other children included).
pub async fn erase_concern(
    conn: &mut AnyConnection,
    referral_ids: &[String],
) -> Result<u64, sqlx::Error> {
    use sqlx::Row;
    let mut scrubbed = 0;
    for referral_id in referral_ids {
        for table in ["alerts", "deliveries"] {
            let rows = sqlx::query(&format!(
                "SELECT alert_id, alert FROM {table} WHERE referral_id = $1"
            ))
            .bind(referral_id)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let mut alert =
                    v1::AlertRaised::decode(row.try_get::<Vec<u8>, _>("alert")?.as_slice())
                        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                if alert.concern.is_empty() {
                    continue;
                }
                alert.concern.clear();
                sqlx::query(&format!(
                    "UPDATE {table} SET alert = $1 WHERE alert_id = $2"
                ))
                .bind(alert.encode_to_vec())
                .bind(row.try_get::<String, _>("alert_id")?)
                .execute(&mut *conn)
                .await?;
                scrubbed += 1;
            }
        }
    }
    Ok(scrubbed)
}

/// Retention: every stored alert of one referral loses every child's details, the free text
/// and the last-seen location. Returns the alert ids touched.
pub async fn erase_referral(
    conn: &mut AnyConnection,
    referral_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    erase_in_alerts(conn, None, Some(referral_id)).await
}

async fn erase_in_alerts(
    conn: &mut AnyConnection,
    person_ids: Option<&[String]>,
    referral_id: Option<&str>,
) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    let mut alert_ids = vec![];
    if let Some(referral_id) = referral_id {
        for row in
            sqlx::query("SELECT alert_id FROM alerts WHERE referral_id = $1 ORDER BY alert_id")
                .bind(referral_id)
                .fetch_all(&mut *conn)
                .await?
        {
            alert_ids.push(row.try_get::<String, _>("alert_id")?);
        }
    }
    let person_ids = person_ids.unwrap_or_default();
    for person_id in person_ids {
        for row in sqlx::query(
            "SELECT DISTINCT alert_id FROM routing_decisions WHERE person_id = $1 ORDER BY alert_id",
        )
        .bind(person_id)
        .fetch_all(&mut *conn)
        .await?
        {
            let alert_id: String = row.try_get("alert_id")?;
            if !alert_ids.contains(&alert_id) {
                alert_ids.push(alert_id);
            }
        }
    }
    let scrub = |bytes: &[u8]| -> Result<Vec<u8>, sqlx::Error> {
        let mut alert =
            v1::AlertRaised::decode(bytes).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        for section in &mut alert.sections {
            if referral_id.is_some() || person_ids.contains(&section.person_id) {
                section.child = Some(v1::Person {
                    erased: true,
                    ..Default::default()
                });
            }
        }
        alert.concern.clear();
        if let Some(episode) = alert.missing_episode.as_mut() {
            episode.last_seen = None;
        }
        Ok(alert.encode_to_vec())
    };
    for alert_id in &alert_ids {
        for table in ["alerts", "deliveries"] {
            let row = sqlx::query(&format!("SELECT alert FROM {table} WHERE alert_id = $1"))
                .bind(alert_id)
                .fetch_optional(&mut *conn)
                .await?;
            if let Some(row) = row {
                let scrubbed = scrub(&row.try_get::<Vec<u8>, _>("alert")?)?;
                sqlx::query(&format!(
                    "UPDATE {table} SET alert = $1 WHERE alert_id = $2"
                ))
                .bind(scrubbed)
                .bind(alert_id)
                .execute(&mut *conn)
                .await?;
            }
        }
    }
    Ok(alert_ids)
}
