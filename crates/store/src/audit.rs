//! The audit log: append-only and hash-chained. Every entry's hash covers its content and the
//! previous entry's hash, and `audit_head` holds the last sequence number and hash, so an
//! altered, removed or reordered entry breaks the chain and [`verify`] finds it. Entries hold
//! ids and codes only, never personal data.

use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::{Result, Store};

/// One audited event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry<'a> {
    /// What happened: `webhook_sent`, `alert_read`, `acknowledged`, `handoff_accepted`,
    /// `escalated`, `access_denied`, `not_shared`, ...
    pub action: &'a str,
    /// Who: a token id, or a service (`notifier`).
    pub actor: &'a str,
    pub authority_code: &'a str,
    pub alert_id: &'a str,
    /// Short, non-personal detail (status codes, reasons).
    pub detail: &'a str,
}

fn entry_hash(prev: &str, seq: i64, at_ms: i64, e: &AuditEntry<'_>) -> String {
    let mut hasher = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at_ms.to_string(),
        e.action,
        e.actor,
        e.authority_code,
        e.alert_id,
        e.detail,
    ] {
        hasher.update(part.as_bytes());
        hasher.update([0u8]);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Appends inside the caller's transaction, so the entry exists exactly when the audited
/// action does. Updating the head row first serialises concurrent appenders.
pub async fn append(conn: &mut AnyConnection, entry: &AuditEntry<'_>) -> Result<()> {
    sqlx::query("UPDATE audit_head SET seq = seq + 1 WHERE id = 1")
        .execute(&mut *conn)
        .await?;
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await?;
    let seq: i64 = head.try_get("seq")?;
    let prev: String = head.try_get("hash")?;
    let at_ms = crate::now_millis();
    let hash = entry_hash(&prev, seq, at_ms, entry);
    sqlx::query(
        "INSERT INTO audit_log (seq, at_ms, action, actor, authority_code, alert_id, detail, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(seq)
    .bind(at_ms)
    .bind(entry.action)
    .bind(entry.actor)
    .bind(entry.authority_code)
    .bind(entry.alert_id)
    .bind(entry.detail)
    .bind(&prev)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET hash = $1 WHERE id = 1")
        .bind(&hash)
        .execute(conn)
        .await?;
    Ok(())
}

/// The outcome of checking the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every entry checks out.
    Intact { entries: i64 },
    /// The first entry that does not (by sequence number), and why.
    Broken { seq: i64, reason: String },
}

/// Recomputes the whole chain.
pub async fn verify(store: &Store) -> Result<Verification> {
    let rows = sqlx::query(
        "SELECT seq, at_ms, action, actor, authority_code, alert_id, detail, prev_hash, hash FROM audit_log ORDER BY seq",
    )
    .fetch_all(store.pool())
    .await?;
    let mut prev = String::new();
    let mut expected_seq = 1i64;
    for row in &rows {
        let seq: i64 = row.try_get("seq")?;
        if seq != expected_seq {
            return Ok(Verification::Broken {
                seq: expected_seq,
                reason: "entry missing".into(),
            });
        }
        let (action, actor, authority, alert, detail): (String, String, String, String, String) = (
            row.try_get("action")?,
            row.try_get("actor")?,
            row.try_get("authority_code")?,
            row.try_get("alert_id")?,
            row.try_get("detail")?,
        );
        let entry = AuditEntry {
            action: &action,
            actor: &actor,
            authority_code: &authority,
            alert_id: &alert,
            detail: &detail,
        };
        let stored_prev: String = row.try_get("prev_hash")?;
        let stored: String = row.try_get("hash")?;
        if stored_prev != prev {
            return Ok(Verification::Broken {
                seq,
                reason: "does not follow the previous entry".into(),
            });
        }
        if entry_hash(&prev, seq, row.try_get("at_ms")?, &entry) != stored {
            return Ok(Verification::Broken {
                seq,
                reason: "content altered".into(),
            });
        }
        prev = stored;
        expected_seq += 1;
    }
    let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
        .fetch_one(store.pool())
        .await?;
    let head_seq: i64 = head.try_get("seq")?;
    if head_seq != expected_seq - 1 || head.try_get::<String, _>("hash")? != prev {
        return Ok(Verification::Broken {
            seq: head_seq,
            reason: "latest entries removed".into(),
        });
    }
    Ok(Verification::Intact {
        entries: expected_seq - 1,
    })
}
