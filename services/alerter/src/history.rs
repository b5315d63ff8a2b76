//! What the store knows about a child before this event: where they were routed and when
//! they were last on a referral. Read inside the alerter's transaction. A person's history
//! includes the persons merged into them (`persons.merged_into`), so a reviewed merge joins
//! the child's earlier referrals and authorities to the next alert.

use sqlx::{AnyConnection, Row};

/// The ids of the person `$1` and of every person merged into them, for `IN`.
macro_rules! the_person {
    () => {
        "(SELECT person_id FROM persons WHERE person_id = $1 OR merged_into = $1)"
    };
}

use kinlink_proto::v1::{SubjectRef, subject_ref::Target};

/// Bodies the person was routed to by earlier referrals (not `except_referral`), oldest first.
pub async fn previous_bodies(
    conn: &mut AnyConnection,
    person_id: &str,
    except_referral: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT authority_code, MIN(decided_at_ms) AS first FROM routing_decisions \
         WHERE person_id IN ",
        the_person!(),
        " AND referral_id <> $2 AND authority_code <> '' \
         GROUP BY authority_code ORDER BY first, authority_code"
    ))
    .bind(person_id)
    .bind(except_referral)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("authority_code")).collect()
}

/// When the person was last on a referral other than `except_referral`.
pub async fn previously_seen(
    conn: &mut AnyConnection,
    person_id: &str,
    except_referral: &str,
) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT MAX(seen_at_ms) AS seen FROM referral_persons \
         WHERE person_id IN ",
        the_person!(),
        " AND referral_id <> $2"
    ))
    .bind(person_id)
    .bind(except_referral)
    .fetch_one(conn)
    .await?;
    row.try_get::<Option<i64>, _>("seen")
}

/// The person a follow-up event points at, if the referral has been enriched.
pub async fn person_of(
    conn: &mut AnyConnection,
    referral_id: &str,
    subject: Option<&SubjectRef>,
) -> Result<Option<String>, sqlx::Error> {
    let (role, index) = match subject.and_then(|s| s.target.as_ref()) {
        Some(Target::PersonId(id)) => return Ok(Some(id.clone())),
        Some(Target::DependantIndex(index)) => (2i64, i64::from(*index)),
        Some(Target::ReferralSubject(_)) | None => (1i64, 0i64),
    };
    let row = sqlx::query(
        "SELECT COALESCE(p.merged_into, rp.person_id) AS person_id FROM referral_persons rp \
         JOIN persons p ON p.person_id = rp.person_id \
         WHERE rp.referral_id = $1 AND rp.role = $2 AND rp.dependant_index = $3",
    )
    .bind(referral_id)
    .bind(role)
    .bind(index)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("person_id")).transpose()
}

/// The children linked to a person (their dependants).
pub async fn children_of(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT DISTINCT COALESCE(p.merged_into, l.to_person_id) AS to_person_id \
         FROM person_links l JOIN persons p ON p.person_id = l.to_person_id \
         WHERE l.from_person_id IN ",
        the_person!(),
        " AND l.kind = $2 ORDER BY to_person_id"
    ))
    .bind(person_id)
    .bind(kinlink_proto::v1::LinkKind::Child as i64)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("to_person_id")).collect()
}

/// Whether the person was ever routed as a child.
pub async fn was_routed(conn: &mut AnyConnection, person_id: &str) -> Result<bool, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT COUNT(*) AS n FROM routing_decisions WHERE person_id IN ",
        the_person!()
    ))
    .bind(person_id)
    .fetch_one(conn)
    .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// The latest referral the person (or a person merged into them) was on.
pub async fn latest_referral(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = sqlx::query(concat!(
        "SELECT referral_id FROM referral_persons \
         WHERE person_id IN ",
        the_person!(),
        " ORDER BY seen_at_ms DESC, referral_id DESC LIMIT 1"
    ))
    .bind(person_id)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("referral_id")).transpose()
}

/// Whether the enricher has recorded the persons of this referral yet.
pub async fn referral_enriched(
    conn: &mut AnyConnection,
    referral_id: &str,
) -> Result<bool, sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*) AS n FROM referral_persons WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_one(conn)
        .await?;
    Ok(row.try_get::<i64, _>("n")? > 0)
}

/// Every alert raised for a referral (its own alerts and its follow-ups'), oldest first.
pub async fn alerts_of_referral(
    conn: &mut AnyConnection,
    referral_id: &str,
) -> Result<Vec<kinlink_domain::alerting::planning::RaisedAlert>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT alert_id, MAX(referral_id) AS referral_id, MAX(authority_code) AS authority_code, \
         MIN(decided_at_ms) AS first FROM routing_decisions WHERE referral_id = $1 \
         GROUP BY alert_id ORDER BY first, alert_id",
    )
    .bind(referral_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(raised_alert).collect()
}

/// The missing-child alerts raised about a person (or a person merged into them).
pub async fn missing_alerts_of(
    conn: &mut AnyConnection,
    person_id: &str,
) -> Result<Vec<kinlink_domain::alerting::planning::RaisedAlert>, sqlx::Error> {
    let rows = sqlx::query(concat!(
        "SELECT alert_id, MAX(referral_id) AS referral_id, MAX(authority_code) AS authority_code, \
         MIN(decided_at_ms) AS first FROM routing_decisions WHERE person_id IN ",
        the_person!(),
        " AND (',' || rules || ',') LIKE '%,missing_child,%' GROUP BY alert_id ORDER BY first, alert_id"
    ))
    .bind(person_id)
    .fetch_all(conn)
    .await?;
    rows.iter().map(raised_alert).collect()
}

fn raised_alert(
    row: &sqlx::any::AnyRow,
) -> Result<kinlink_domain::alerting::planning::RaisedAlert, sqlx::Error> {
    Ok(kinlink_domain::alerting::planning::RaisedAlert {
        alert_id: row.try_get("alert_id")?,
        referral_id: row.try_get("referral_id")?,
        authority_code: row.try_get("authority_code")?,
    })
}
