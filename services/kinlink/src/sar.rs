//! `kinlink sar export <person-id>`: everything kinlink holds about one person, for a subject
//! access request (UK GDPR article 15), as JSON and as a readable HTML page.
//!
//! What is in it: the person's own details as each referral gave them, how each record was
//! linked (method, probability, evidence), the referrals they are on (agency, dates, their
//! role), every alert about them with who it was disclosed to and when (from the audit log),
//! and review tasks, merges and splits. What is not: anyone else's details. Other people on
//! the same referrals are counted, never described; other children in a grouped alert are
//! counted; the referrer's free-text account of the concern is withheld because it can name
//! others, and has to be reviewed by a person before release. The export itself is audited.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use kinlink_enricher::review::{self, Change, RecordDecision, ReviewTask};
use kinlink_notifier::webhook::ChildDetails;
use kinlink_proto::v1;
use prost::Message;
use serde::Serialize;
use sqlx::Row;

use crate::StoreArgs;
use crate::support::{rfc3339, settings};

#[derive(Debug, clap::Subcommand)]
pub enum SarCommand {
    /// Export everything held about a person (JSON on stdout; `--html` also writes a page).
    Export {
        person_id: String,
        /// Who asked for the export, for the audit log (an operator id, not a name).
        #[arg(long)]
        by: String,
        /// Also write a readable HTML report to this file.
        #[arg(long)]
        html: Option<PathBuf>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// One referral the person is on, with only their own part of it.
#[derive(Debug, Serialize)]
pub struct HeldReferral {
    pub referral_id: String,
    pub agency_id: String,
    pub external_reference: String,
    pub received_at: String,
    pub version: u32,
    /// `subject` or `dependant`.
    pub role: &'static str,
    /// The person as this referral describes them.
    pub details: Option<serde_json::Value>,
    pub exploitation_types: Vec<String>,
    /// Other people on the referral: counted, never described.
    pub other_people_withheld: usize,
    /// The referrer's free text can name others: withheld until a person has reviewed it.
    pub concern_withheld: bool,
}

/// An alert about the person, and what happened to it.
#[derive(Debug, Serialize)]
pub struct HeldAlert {
    pub alert_id: String,
    pub referral_id: String,
    pub authority_code: String,
    pub rule: String,
    pub state: String,
    pub raised_at: String,
    pub acknowledged_at: Option<String>,
    pub resolved_at: Option<String>,
    /// Other children in the same grouped alert: counted, never described.
    pub other_children_withheld: usize,
}

/// Who was given or shown the person's data, and when (audit log entries).
#[derive(Debug, Serialize)]
pub struct Disclosure {
    pub at: String,
    pub action: String,
    pub actor: String,
    pub authority_code: String,
    pub alert_id: String,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct SubjectAccessExport {
    pub person_id: String,
    pub asked_for: String,
    pub merged_person_ids: Vec<String>,
    pub generated_at: String,
    pub referrals: Vec<HeldReferral>,
    pub linkage_decisions: Vec<RecordDecision>,
    pub alerts: Vec<HeldAlert>,
    pub disclosures: Vec<Disclosure>,
    pub reviews: Vec<ReviewTask>,
    pub changes: Vec<Change>,
    /// What was left out and why.
    pub withheld: Vec<&'static str>,
}

/// `kinlink sar ...`.
pub async fn run(command: SarCommand) -> anyhow::Result<()> {
    let SarCommand::Export {
        person_id,
        by,
        html,
        store,
    } = command;
    if by.trim().is_empty() {
        anyhow::bail!("--by must name who asked for the export (an operator id)");
    }
    let settings = settings(&store)?;
    let (db, _log) =
        kinlink_runtime::open_backends(&settings, kinlink_eventlog::LogMetrics::default()).await?;
    let mut tx = db.begin().await?;
    let export = collect(&mut tx, &person_id).await;
    let export = match export {
        Ok(export) => export,
        Err(error) => {
            drop(tx);
            db.close().await;
            return Err(error);
        }
    };
    let detail = format!(
        "person={} referrals={} alerts={}",
        export.person_id,
        export.referrals.len(),
        export.alerts.len()
    );
    crate::support::audit(&mut tx, "subject_access_export", &by, &detail).await?;
    tx.commit().await?;
    db.close().await;
    if let Some(path) = &html {
        std::fs::write(path, render_html(&export))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&export)?)?;
    Ok(())
}

async fn collect(
    conn: &mut sqlx::AnyConnection,
    person_id: &str,
) -> anyhow::Result<SubjectAccessExport> {
    let explained = review::explain(conn, person_id)
        .await
        .with_context(|| format!("person {person_id}"))?;
    let mut ids = vec![explained.person_id.clone()];
    ids.extend(explained.merged_person_ids.iter().cloned());

    let mut referrals = vec![];
    let mut alert_ids = BTreeSet::new();
    let mut alerts = vec![];
    for id in &ids {
        let places = sqlx::query(
            "SELECT referral_id, role, dependant_index FROM referral_persons WHERE person_id = $1 \
             ORDER BY referral_id, role, dependant_index",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for place in places {
            let referral_id: String = place.try_get("referral_id")?;
            let role: i64 = place.try_get("role")?;
            let index: i64 = place.try_get("dependant_index")?;
            if let Some(held) = held_referral(conn, &referral_id, role, index).await? {
                referrals.push(held);
            }
        }
        let rows = sqlx::query(
            "SELECT d.alert_id, a.state, a.acknowledged_at_ms, a.resolved_at_ms, a.alert \
             FROM routing_decisions d JOIN alerts a ON a.alert_id = d.alert_id \
             WHERE d.person_id = $1 ORDER BY a.created_at_ms, d.alert_id",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        for row in rows {
            let alert_id: String = row.try_get("alert_id")?;
            if !alert_ids.insert(alert_id.clone()) {
                continue;
            }
            let raised = v1::AlertRaised::decode(row.try_get::<Vec<u8>, _>("alert")?.as_slice())
                .with_context(|| format!("alert {alert_id}"))?;
            let ours = raised
                .sections
                .iter()
                .filter(|s| ids.contains(&s.person_id))
                .count()
                .max(1);
            alerts.push(HeldAlert {
                other_children_withheld: raised.sections.len().saturating_sub(ours),
                alert_id,
                referral_id: raised.referral_id.clone(),
                authority_code: raised.authority_code.clone(),
                rule: raised.rule.clone(),
                state: row.try_get("state")?,
                raised_at: raised
                    .raised_at
                    .as_ref()
                    .map(|t| rfc3339(kinlink_proto::millis_from_timestamp(t)))
                    .unwrap_or_default(),
                acknowledged_at: row
                    .try_get::<Option<i64>, _>("acknowledged_at_ms")?
                    .map(rfc3339),
                resolved_at: row
                    .try_get::<Option<i64>, _>("resolved_at_ms")?
                    .map(rfc3339),
            });
        }
    }
    referrals
        .sort_by(|a, b| (&a.received_at, &a.referral_id).cmp(&(&b.received_at, &b.referral_id)));

    let mut disclosures = vec![];
    let person_details: Vec<String> = ids.iter().map(|id| format!("person={id}")).collect();
    let rows = sqlx::query(
        "SELECT at_ms, action, actor, authority_code, alert_id, detail FROM audit_log ORDER BY seq",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let alert_id: String = row.try_get("alert_id")?;
        let detail: String = row.try_get("detail")?;
        let about_person = person_details
            .iter()
            .any(|p| detail.split_whitespace().any(|word| word == p));
        if alert_ids.contains(&alert_id) || about_person {
            disclosures.push(Disclosure {
                at: rfc3339(row.try_get("at_ms")?),
                action: row.try_get("action")?,
                actor: row.try_get("actor")?,
                authority_code: row.try_get("authority_code")?,
                alert_id,
                detail,
            });
        }
    }

    Ok(SubjectAccessExport {
        person_id: explained.person_id,
        asked_for: explained.asked_for,
        merged_person_ids: explained.merged_person_ids,
        generated_at: rfc3339(chrono::Utc::now().timestamp_millis()),
        referrals,
        linkage_decisions: explained.records,
        alerts,
        disclosures,
        reviews: explained.reviews,
        changes: explained.changes,
        withheld: vec![
            "other people on the same referrals (counted in other_people_withheld)",
            "other children in the same alerts (counted in other_children_withheld)",
            "the referrer's free-text account of the concern (may name others: release after review)",
            "review tasks and merges give other persons' ids only, never their details",
        ],
    })
}

/// The person's part of one referral, from intake's copy of its latest version.
async fn held_referral(
    conn: &mut sqlx::AnyConnection,
    referral_id: &str,
    role: i64,
    index: i64,
) -> anyhow::Result<Option<HeldReferral>> {
    let Some(row) = sqlx::query(
        "SELECT agency_id, external_reference, referral FROM intake_referrals WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(None);
    };
    let referral = v1::ReferralReceived::decode(row.try_get::<Vec<u8>, _>("referral")?.as_slice())
        .with_context(|| format!("referral {referral_id}"))?;
    let is_subject = role == v1::SubjectRole::ReferralSubject as i64;
    let person = if is_subject {
        referral.subject.as_ref()
    } else {
        usize::try_from(index)
            .ok()
            .and_then(|i| referral.dependants.get(i))
            .and_then(|d| d.person.as_ref())
    };
    let everyone = usize::from(referral.subject.is_some()) + referral.dependants.len();
    Ok(Some(HeldReferral {
        referral_id: referral.referral_id.clone(),
        agency_id: row.try_get("agency_id")?,
        external_reference: row.try_get("external_reference")?,
        received_at: referral
            .received_at
            .as_ref()
            .map(|t| rfc3339(kinlink_proto::millis_from_timestamp(t)))
            .unwrap_or_default(),
        version: referral.version,
        role: if is_subject { "subject" } else { "dependant" },
        details: person
            .filter(|_| !(is_subject && referral.anonymous_duty_to_notify))
            .map(|p| serde_json::to_value(ChildDetails::from_person(p)))
            .transpose()?,
        exploitation_types: referral
            .exploitation_types
            .iter()
            .map(|t| {
                v1::ExploitationType::try_from(*t)
                    .map(|t| {
                        t.as_str_name()
                            .trim_start_matches("EXPLOITATION_TYPE_")
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default()
            })
            .collect(),
        other_people_withheld: everyone.saturating_sub(usize::from(person.is_some())),
        concern_withheld: !referral.concern.is_empty(),
    }))
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A plain, self-contained page (no scripts, no external assets) a caseworker can print.
fn render_html(export: &SubjectAccessExport) -> String {
    let mut page = String::new();
    let mut add = |s: String| page.push_str(&s);
    add(format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>Subject access export: {}</title>\
         <style>body{{font-family:Arial,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin-bottom:1.5em}}\
         th,td{{border:1px solid #505a5f;padding:.3em .6em;text-align:left;vertical-align:top}}caption{{text-align:left;font-weight:bold;margin-bottom:.3em}}</style></head>\n<body>\n<main>\n<h1>Subject access export</h1>\n",
        escape(&export.person_id)
    ));
    add(format!(
        "<p>Person <code>{}</code>{}, generated {}.</p>\n",
        escape(&export.person_id),
        if export.merged_person_ids.is_empty() {
            String::new()
        } else {
            format!(
                " (merged from {})",
                escape(&export.merged_person_ids.join(", "))
            )
        },
        escape(&export.generated_at)
    ));
    add("<h2>Referrals</h2>\n".to_owned());
    for r in &export.referrals {
        add(format!(
            "<table><caption>Referral {} ({}), received {}</caption>\n<tr><th scope=\"row\">Agency</th><td>{}</td></tr>\n<tr><th scope=\"row\">Role</th><td>{}</td></tr>\n<tr><th scope=\"row\">Exploitation types</th><td>{}</td></tr>\n",
            escape(&r.referral_id),
            escape(&r.external_reference),
            escape(&r.received_at),
            escape(&r.agency_id),
            r.role,
            escape(&r.exploitation_types.join(", "))
        ));
        if let Some(serde_json::Value::Object(details)) = &r.details {
            for (field, value) in details {
                let shown = match value {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                add(format!(
                    "<tr><th scope=\"row\">{}</th><td>{}</td></tr>\n",
                    escape(&field.replace('_', " ")),
                    escape(&shown)
                ));
            }
        }
        add(format!(
            "<tr><th scope=\"row\">Withheld</th><td>{} other people on this referral{}</td></tr>\n</table>\n",
            r.other_people_withheld,
            if r.concern_withheld {
                "; the referrer's account of the concern"
            } else {
                ""
            }
        ));
    }
    add("<h2>Alerts and who they went to</h2>\n<table><caption>Alerts</caption>\n<tr><th scope=\"col\">Alert</th><th scope=\"col\">Authority</th><th scope=\"col\">Rule</th><th scope=\"col\">Raised</th><th scope=\"col\">State</th><th scope=\"col\">Acknowledged</th></tr>\n".to_owned());
    for a in &export.alerts {
        add(format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&a.alert_id),
            escape(&a.authority_code),
            escape(&a.rule),
            escape(&a.raised_at),
            escape(&a.state),
            escape(a.acknowledged_at.as_deref().unwrap_or("-"))
        ));
    }
    add("</table>\n<table><caption>Disclosures and access (audit log)</caption>\n<tr><th scope=\"col\">When</th><th scope=\"col\">What</th><th scope=\"col\">By</th><th scope=\"col\">Authority</th><th scope=\"col\">Alert</th></tr>\n".to_owned());
    for d in &export.disclosures {
        add(format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&d.at),
            escape(&d.action),
            escape(&d.actor),
            escape(&d.authority_code),
            escape(&d.alert_id)
        ));
    }
    add("</table>\n<h2>How records were linked</h2>\n<table><caption>Linkage decisions</caption>\n<tr><th scope=\"col\">Record</th><th scope=\"col\">Referral</th><th scope=\"col\">Method</th><th scope=\"col\">Probability</th></tr>\n".to_owned());
    for d in &export.linkage_decisions {
        add(format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.4}</td></tr>\n",
            escape(&d.record_id),
            escape(&d.referral_id),
            escape(&d.method),
            d.match_probability
        ));
    }
    add("</table>\n<h2>Withheld from this export</h2>\n<ul>\n".to_owned());
    for w in &export.withheld {
        add(format!("<li>{}</li>\n", escape(w)));
    }
    add("</ul>\n</main>\n</body>\n</html>\n".to_owned());
    page
}
