//! What the pipeline did with a referral, as its agency sees it: ids, codes and states only.

use kinlink_store::Store;
use serde::Serialize;
use sqlx::Row;

/// A person the referral named, after linkage.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LinkedPerson {
    pub person_id: String,
    /// `subject` or `dependant`.
    pub role: String,
    pub dependant_index: i64,
}

/// An alert raised for the referral.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RaisedAlert {
    pub alert_id: String,
    /// Empty while in triage.
    pub authority_code: String,
    /// open, acknowledged, resolved or closed; `triage` when no body is known yet.
    pub state: String,
    /// pending, delivered, failed or triage.
    pub delivery: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReferralStatus {
    pub referral_id: String,
    /// pending (not yet in the log) or accepted.
    pub state: String,
    pub version: u32,
    pub anonymous_duty_to_notify: bool,
    pub persons: Vec<LinkedPerson>,
    pub alerts: Vec<RaisedAlert>,
    /// Lives/found hand-offs between the bodies alerted.
    pub handoffs: Vec<Handoff>,
}

/// A child who lives in one body's area and was found in another's: the home body is asked to
/// take responsibility.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Handoff {
    pub person_id: String,
    pub home_authority: String,
    pub found_authority: String,
    /// pending, accepted or declined.
    pub state: String,
}

pub async fn handoffs(store: &Store, referral_id: &str) -> Result<Vec<Handoff>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT person_id, home_authority, found_authority, state FROM handoffs WHERE referral_id = $1 \
         ORDER BY person_id, home_authority, found_authority",
    )
    .bind(referral_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Handoff {
                person_id: r.try_get("person_id")?,
                home_authority: r.try_get("home_authority")?,
                found_authority: r.try_get("found_authority")?,
                state: r.try_get("state")?,
            })
        })
        .collect()
}

pub async fn persons(store: &Store, referral_id: &str) -> Result<Vec<LinkedPerson>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT person_id, role, dependant_index FROM referral_persons WHERE referral_id = $1 ORDER BY role, dependant_index",
    )
    .bind(referral_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let role: i64 = r.try_get("role")?;
            Ok(LinkedPerson {
                person_id: r.try_get("person_id")?,
                role: if role == 1 { "subject" } else { "dependant" }.to_owned(),
                dependant_index: r.try_get("dependant_index")?,
            })
        })
        .collect()
}

pub async fn alerts(store: &Store, referral_id: &str) -> Result<Vec<RaisedAlert>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT d.alert_id, d.authority_code, d.state AS delivery, a.state FROM deliveries d \
         LEFT JOIN alerts a ON a.alert_id = d.alert_id WHERE d.referral_id = $1 ORDER BY d.created_at_ms, d.alert_id",
    )
    .bind(referral_id)
    .fetch_all(store.reader())
    .await?;
    rows.iter()
        .map(|r| {
            let delivery: String = r.try_get("delivery")?;
            Ok(RaisedAlert {
                alert_id: r.try_get("alert_id")?,
                authority_code: r.try_get("authority_code")?,
                state: r
                    .try_get::<Option<String>, _>("state")?
                    .unwrap_or_else(|| "triage".to_owned()),
                delivery,
            })
        })
        .collect()
}
