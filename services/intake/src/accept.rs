//! Accepting a referral durably and exactly once.
//!
//! Replays are recognised by the `Idempotency-Key` header and by the agency's external
//! reference (unique per agency): the same key with the same body returns the original
//! response; with a different body it is a conflict. A referral is recorded and its event
//! appended together: in one transaction on the embedded log; on Kafka the record is written
//! as pending, the event produced and acknowledged, then the record marked accepted, so a
//! crash in between is finished by the client's retry with the same key (same referral id,
//! same event id, which consumers drop if it arrived before).

use kinlink_eventlog::{Envelope, EventLog, topics};
use kinlink_proto::v1;
use kinlink_store::Store;
use prost::Message;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::SOURCE;
use crate::problem::{self, Problem};

/// A response intake stored and will repeat for a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: String,
}

/// SHA-256 of a request body, hex.
pub fn body_hash(body: &[u8]) -> String {
    Sha256::digest(body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The keys a request may be replayed under: its `Idempotency-Key`, and its external
/// reference.
pub fn replay_keys(idempotency_key: Option<&str>, external_reference: &str) -> Vec<String> {
    let mut keys = Vec::new();
    if let Some(key) = idempotency_key {
        keys.push(format!("key:{key}"));
    }
    if !external_reference.is_empty() {
        keys.push(format!("external_reference:{external_reference}"));
    }
    keys
}

fn unavailable(error: impl std::fmt::Display) -> Problem {
    tracing::error!(%error, "Intake storage or log failure; nothing accepted.");
    problem::unavailable()
}

/// A stored response for one of `keys`, finishing a pending acceptance first. A key reused
/// with a different body is a conflict.
pub async fn replay(
    store: &Store,
    log: &EventLog,
    agency: &str,
    keys: &[String],
    hash: &str,
) -> Result<Option<StoredResponse>, Problem> {
    for key in keys {
        let row = sqlx::query("SELECT request_hash, status, response FROM idempotency_keys WHERE agency_id = $1 AND idem_key = $2")
            .bind(agency)
            .bind(key)
            .fetch_optional(store.reader())
            .await
            .map_err(unavailable)?;
        let Some(row) = row else { continue };
        let stored_hash: String = row.try_get("request_hash").map_err(unavailable)?;
        if stored_hash != hash {
            let which = if key.starts_with("key:") {
                "Idempotency-Key"
            } else {
                "external_reference"
            };
            return Err(Problem::conflict(&format!(
                "{which} was already used for a different request"
            )));
        }
        let status: i64 = row.try_get("status").map_err(unavailable)?;
        let body: String = row.try_get("response").map_err(unavailable)?;
        // A pending referral behind this key: publish it now (same ids), then mark it.
        if let Some(referral_id) = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| {
                v.get("referral_id")
                    .and_then(|r| r.as_str().map(str::to_owned))
            })
        {
            finish_pending(store, log, &referral_id).await?;
        }
        return Ok(Some(StoredResponse {
            status: u16::try_from(status).unwrap_or(500),
            body,
        }));
    }
    Ok(None)
}

async fn finish_pending(store: &Store, log: &EventLog, referral_id: &str) -> Result<(), Problem> {
    let row = sqlx::query("SELECT state, referral FROM intake_referrals WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_optional(store.pool())
        .await
        .map_err(unavailable)?;
    let Some(row) = row else { return Ok(()) };
    if row.try_get::<String, _>("state").map_err(unavailable)? != "pending" {
        return Ok(());
    }
    let bytes: Vec<u8> = row.try_get("referral").map_err(unavailable)?;
    let referral = v1::ReferralReceived::decode(bytes.as_slice()).map_err(unavailable)?;
    log.publish(topics::REFERRALS_RECEIVED, &envelope(&referral))
        .await
        .map_err(unavailable)?;
    sqlx::query("UPDATE intake_referrals SET state = 'accepted' WHERE referral_id = $1")
        .bind(referral_id)
        .execute(store.pool())
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// Publishes a referral version left pending (the sweeper's step) and marks it accepted.
/// Only that version is marked: a newer version recorded meanwhile stays pending.
pub async fn publish_pending(
    store: &Store,
    log: &EventLog,
    referral: &v1::ReferralReceived,
) -> Result<(), crate::Error> {
    log.publish(topics::REFERRALS_RECEIVED, &envelope(referral))
        .await?;
    sqlx::query(
        "UPDATE intake_referrals SET state = 'accepted' WHERE referral_id = $1 AND version = $2 AND state = 'pending'",
    )
    .bind(&referral.referral_id)
    .bind(i64::from(referral.version))
    .execute(store.pool())
    .await?;
    Ok(())
}

/// The envelope of a referral version: its id is derived from the referral id and version,
/// so a re-publish is recognised downstream as the same event.
pub fn envelope(referral: &v1::ReferralReceived) -> Envelope {
    let id = kinlink_eventlog::envelope::derive_id(
        &referral.referral_id,
        &format!("received/v{}", referral.version),
    );
    let at = referral
        .received_at
        .as_ref()
        .map_or(0, kinlink_proto::millis_from_timestamp);
    Envelope::new(
        id,
        SOURCE,
        &referral.referral_id,
        &referral.referral_id,
        at,
        referral,
    )
}

/// Writes `referral` (a new one, or a new version) with its replay keys and response in
/// `conn`'s transaction, in `state`. False when the version it updates has changed meanwhile.
async fn write_referral(
    conn: &mut sqlx::AnyConnection,
    referral: &v1::ReferralReceived,
    state: &str,
    hash: &str,
    keys: &[String],
    response: &StoredResponse,
) -> Result<bool, kinlink_eventlog::Error> {
    if referral.version <= 1 {
        sqlx::query(
            "INSERT INTO intake_referrals (referral_id, agency_id, external_reference, request_hash, version, state, \
             received_at_ms, referral) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&referral.referral_id)
        .bind(&referral.agency_id)
        .bind(&referral.external_reference)
        .bind(hash)
        .bind(i64::from(referral.version))
        .bind(state)
        .bind(referral.received_at.as_ref().map_or(0, kinlink_proto::millis_from_timestamp))
        .bind(referral.encode_to_vec())
        .execute(&mut *conn)
        .await?;
    } else {
        let updated = sqlx::query(
            "UPDATE intake_referrals SET version = $1, state = $2, referral = $3 WHERE referral_id = $4 AND version = $5",
        )
        .bind(i64::from(referral.version))
        .bind(state)
        .bind(referral.encode_to_vec())
        .bind(&referral.referral_id)
        .bind(i64::from(referral.version - 1))
        .execute(&mut *conn)
        .await?;
        if updated.rows_affected() != 1 {
            return Ok(false);
        }
    }
    for key in keys {
        sqlx::query(
            "INSERT INTO idempotency_keys (agency_id, idem_key, request_hash, status, response, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&referral.agency_id)
        .bind(key)
        .bind(hash)
        .bind(i64::from(response.status))
        .bind(&response.body)
        .bind(kinlink_store::now_millis())
        .execute(&mut *conn)
        .await?;
    }
    Ok(true)
}

/// Records `referral` (a new one, or a new version) with its replay keys and response, and
/// appends its event; returns once the event is durable in the log.
///
/// On the embedded log the record and the event go into one group commit with whatever
/// other requests are being accepted at the same moment (see
/// [`kinlink_eventlog::EmbeddedLog::commit_grouped`]): the 202 still waits for the commit.
pub async fn record_and_publish(
    store: &Store,
    log: &EventLog,
    referral: &v1::ReferralReceived,
    hash: &str,
    keys: &[String],
    response: &StoredResponse,
) -> Result<(), Problem> {
    let event = envelope(referral);
    let result = match log {
        EventLog::Embedded(embedded) => {
            let (referral, hash, keys, response, event, writer) = (
                referral.clone(),
                hash.to_owned(),
                keys.to_vec(),
                response.clone(),
                event.clone(),
                log.clone(),
            );
            embedded
                .commit_grouped(Box::new(move |conn| {
                    Box::pin(async move {
                        if !write_referral(conn, &referral, "accepted", &hash, &keys, &response)
                            .await?
                        {
                            return Ok(false);
                        }
                        writer
                            .append_in(conn, topics::REFERRALS_RECEIVED, &event)
                            .await?;
                        Ok(true)
                    })
                }))
                .await
        }
        EventLog::Kafka(_) => {
            async {
                let mut tx = store.begin().await?;
                if !write_referral(&mut tx, referral, "pending", hash, keys, response).await? {
                    return Ok::<bool, kinlink_eventlog::Error>(false);
                }
                tx.commit().await?;
                Ok(true)
            }
            .await
        }
    };
    match result {
        Ok(true) => {}
        Ok(false) => {
            return Err(Problem::conflict(
                "the referral changed meanwhile; fetch it and send the update again",
            ));
        }
        // A concurrent request with the same key or external reference won the race.
        Err(kinlink_eventlog::Error::Database(sqlx::Error::Database(db)))
            if db.is_unique_violation() =>
        {
            return Err(Problem::conflict(
                "a request with the same Idempotency-Key or external_reference is in progress; retry",
            ));
        }
        Err(error) => return Err(unavailable(error)),
    }
    if matches!(log, EventLog::Embedded(_)) {
        return Ok(());
    }
    log.publish(topics::REFERRALS_RECEIVED, &event)
        .await
        .map_err(unavailable)?;
    sqlx::query("UPDATE intake_referrals SET state = 'accepted' WHERE referral_id = $1")
        .bind(&referral.referral_id)
        .execute(store.pool())
        .await
        .map_err(unavailable)?;
    Ok(())
}

/// A referral of `agency` (None when it does not exist or belongs to another agency).
pub async fn load(
    store: &Store,
    agency: &str,
    referral_id: &str,
) -> Result<Option<(v1::ReferralReceived, String)>, Problem> {
    let row = sqlx::query(
        "SELECT agency_id, state, referral FROM intake_referrals WHERE referral_id = $1",
    )
    .bind(referral_id)
    .fetch_optional(store.reader())
    .await
    .map_err(unavailable)?;
    let Some(row) = row else { return Ok(None) };
    if row.try_get::<String, _>("agency_id").map_err(unavailable)? != agency {
        return Ok(None);
    }
    let bytes: Vec<u8> = row.try_get("referral").map_err(unavailable)?;
    let referral = v1::ReferralReceived::decode(bytes.as_slice()).map_err(unavailable)?;
    Ok(Some((referral, row.try_get("state").map_err(unavailable)?)))
}

/// Retention: intake's copy of a referral loses every person on it and the free text.
pub async fn erase_referral(
    conn: &mut sqlx::AnyConnection,
    referral_id: &str,
) -> Result<bool, sqlx::Error> {
    erase_in_referral(conn, referral_id, None).await
}

/// Erasure: intake's copy of a referral loses the erased people (`slots`: the subject is role
/// 1 index 0, dependant `i` is role 2 index `i`) and the referrer's free text, which can name
/// them. The rest of the referral (ids, dates, codes) stays, so its status and counts still
/// answer. Returns whether the referral was there.
pub async fn erase_subjects(
    conn: &mut sqlx::AnyConnection,
    referral_id: &str,
    slots: &[(i32, u32)],
) -> Result<bool, sqlx::Error> {
    erase_in_referral(conn, referral_id, Some(slots)).await
}

/// `slots`: the people to erase; `None`: everyone on the referral.
async fn erase_in_referral(
    conn: &mut sqlx::AnyConnection,
    referral_id: &str,
    slots: Option<&[(i32, u32)]>,
) -> Result<bool, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT referral FROM intake_referrals WHERE referral_id = $1")
        .bind(referral_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(false);
    };
    let bytes: Vec<u8> = row.try_get("referral")?;
    let mut referral = v1::ReferralReceived::decode(bytes.as_slice())
        .map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let erased = || v1::Person {
        erased: true,
        ..Default::default()
    };
    let everyone: Vec<(i32, u32)> = std::iter::once((v1::SubjectRole::ReferralSubject as i32, 0))
        .chain((0..referral.dependants.len()).map(|i| {
            (
                v1::SubjectRole::Dependant as i32,
                u32::try_from(i).unwrap_or(u32::MAX),
            )
        }))
        .collect();
    for &(role, index) in slots.unwrap_or(&everyone) {
        if role == v1::SubjectRole::ReferralSubject as i32 {
            referral.subject = Some(erased());
        } else if let Some(dependant) = usize::try_from(index)
            .ok()
            .and_then(|i| referral.dependants.get_mut(i))
        {
            dependant.person = Some(erased());
        }
    }
    referral.concern.clear();
    sqlx::query("UPDATE intake_referrals SET referral = $1 WHERE referral_id = $2")
        .bind(referral.encode_to_vec())
        .bind(referral_id)
        .execute(conn)
        .await?;
    Ok(true)
}
