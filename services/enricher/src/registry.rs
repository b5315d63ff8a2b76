//! The person registry in the store: finding a person by strong identifier or exact match
//! key, creating new persons, and recording household links. All calls run inside the
//! enricher's transaction, so a referral's persons and links appear together or not at all.

use kinlink_proto::v1::{self, MatchMethod};
use sqlx::{AnyConnection, Row};

use crate::linking::{match_key, normalise_identifier};

/// The person a referral's subject or dependant resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub person_id: String,
    pub method: MatchMethod,
}

/// Finds the registered person this record is, or registers a new one with `new_person_id`.
///
/// A single person behind the record's strong identifiers is a match. Identifiers pointing at
/// two different persons conflict: nothing is merged automatically and a new person is made.
pub async fn resolve(
    conn: &mut AnyConnection,
    person: &v1::Person,
    new_person_id: &str,
    referral_id: &str,
) -> Result<Resolved, sqlx::Error> {
    let mut by_identifier: Vec<String> = Vec::new();
    for identifier in &person.identifiers {
        let row =
            sqlx::query("SELECT person_id FROM person_identifiers WHERE kind = $1 AND value = $2")
                .bind(i64::from(identifier.kind))
                .bind(normalise_identifier(&identifier.value))
                .fetch_optional(&mut *conn)
                .await?;
        if let Some(row) = row {
            let id: String = row.try_get("person_id")?;
            if !by_identifier.contains(&id) {
                by_identifier.push(id);
            }
        }
    }
    let key = match_key(person);
    let resolved = match by_identifier.as_slice() {
        [one] => Some(Resolved {
            person_id: one.clone(),
            method: MatchMethod::StrongIdentifier,
        }),
        [] => match &key {
            Some(key) => sqlx::query("SELECT person_id FROM persons WHERE match_key = $1")
                .bind(key)
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| row.try_get::<String, _>("person_id"))
                .transpose()?
                .map(|person_id| Resolved {
                    person_id,
                    method: MatchMethod::ExactNameAndDob,
                }),
            None => None,
        },
        _ => {
            tracing::warn!(%referral_id, "Conflicting strong identifiers; not merging, creating a new person.");
            None
        }
    };
    let resolved = match resolved {
        Some(found) => found,
        None => {
            // A conflicting record must not claim a key another person already holds.
            let key = if by_identifier.len() > 1 { None } else { key };
            sqlx::query(
                "INSERT INTO persons (person_id, match_key, first_referral_id, referred_in_own_right, created_at_ms) \
                 VALUES ($1, $2, $3, 0, $4) ON CONFLICT DO NOTHING",
            )
            .bind(new_person_id)
            .bind(key)
            .bind(referral_id)
            .bind(kinlink_store::now_millis())
            .execute(&mut *conn)
            .await?;
            Resolved {
                person_id: new_person_id.to_owned(),
                method: MatchMethod::NewPerson,
            }
        }
    };
    for identifier in &person.identifiers {
        sqlx::query("INSERT INTO person_identifiers (kind, value, person_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
            .bind(i64::from(identifier.kind))
            .bind(normalise_identifier(&identifier.value))
            .bind(&resolved.person_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(resolved)
}

/// Records that `person_id` appears on the referral in `role` at `index`; for the referral's
/// own subject, also that the person has been referred in their own right.
pub async fn record_appearance(
    conn: &mut AnyConnection,
    referral_id: &str,
    person_id: &str,
    role: v1::SubjectRole,
    index: u32,
    seen_at_ms: i64,
) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "INSERT INTO referral_persons (referral_id, person_id, role, dependant_index, seen_at_ms) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(referral_id)
    .bind(person_id)
    .bind(role as i64)
    .bind(i64::from(index))
    .bind(seen_at_ms)
    .execute(&mut *conn)
    .await?;
    if role == v1::SubjectRole::ReferralSubject {
        sqlx::query("UPDATE persons SET referred_in_own_right = 1 WHERE person_id = $1")
            .bind(person_id)
            .execute(&mut *conn)
            .await?;
    }
    let row = sqlx::query("SELECT referred_in_own_right FROM persons WHERE person_id = $1")
        .bind(person_id)
        .fetch_one(&mut *conn)
        .await?;
    Ok(row.try_get::<i64, _>("referred_in_own_right")? != 0)
}

/// Records a directed link: `to` is `kind` of `from`.
pub async fn link(
    conn: &mut AnyConnection,
    from: &str,
    to: &str,
    kind: v1::LinkKind,
    relationship: i32,
    referral_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO person_links (from_person_id, to_person_id, kind, relationship, referral_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
    )
    .bind(from)
    .bind(to)
    .bind(kind as i64)
    .bind(i64::from(relationship))
    .bind(referral_id)
    .execute(conn)
    .await?;
    Ok(())
}
