//! API tokens: random secrets shown once, stored only as SHA-256 hashes, several per
//! principal (so a token can be rotated without downtime) and revocable. A principal is an
//! agency id or an authority code, depending on the kind.

use base64::Engine;
use sha2::{Digest, Sha256};
use sqlx::Row;

use crate::{Result, Store};

/// A newly created token: `secret` is shown to the operator once and never stored.
#[derive(Debug)]
pub struct NewToken {
    pub token_id: String,
    pub secret: String,
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Creates a token of `kind` (e.g. `authority`) for `principal`.
pub async fn create(store: &Store, kind: &str, principal: &str, label: &str) -> Result<NewToken> {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    bytes[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
    let secret = format!(
        "klk_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let token_hash = hash(&secret);
    let token_id = token_hash[..12].to_owned();
    sqlx::query(
        "INSERT INTO api_tokens (token_hash, token_id, kind, principal, label, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&token_hash)
    .bind(&token_id)
    .bind(kind)
    .bind(principal)
    .bind(label)
    .bind(crate::now_millis())
    .execute(store.pool())
    .await?;
    Ok(NewToken { token_id, secret })
}

/// The principal and token id a presented secret belongs to, if it is a live token of `kind`.
pub async fn authenticate(
    store: &Store,
    kind: &str,
    secret: &str,
) -> Result<Option<(String, String)>> {
    let row = sqlx::query(
        "SELECT principal, token_id FROM api_tokens WHERE token_hash = $1 AND kind = $2 AND revoked_at_ms IS NULL",
    )
    .bind(hash(secret))
    .bind(kind)
    .fetch_optional(store.reader())
    .await?;
    Ok(match row {
        Some(row) => Some((row.try_get("principal")?, row.try_get("token_id")?)),
        None => None,
    })
}

/// Revokes a token by id; false if there was no live token with that id.
pub async fn revoke(store: &Store, token_id: &str) -> Result<bool> {
    let result = sqlx::query(
        "UPDATE api_tokens SET revoked_at_ms = $1 WHERE token_id = $2 AND revoked_at_ms IS NULL",
    )
    .bind(crate::now_millis())
    .bind(token_id)
    .execute(store.pool())
    .await?;
    Ok(result.rows_affected() == 1)
}

/// A token as listed to operators (never its secret).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenInfo {
    pub token_id: String,
    pub kind: String,
    pub principal: String,
    pub label: String,
    pub created_at_ms: i64,
    pub revoked: bool,
}

pub async fn list(store: &Store) -> Result<Vec<TokenInfo>> {
    let rows = sqlx::query(
        "SELECT token_id, kind, principal, label, created_at_ms, revoked_at_ms FROM api_tokens ORDER BY created_at_ms",
    )
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(TokenInfo {
                token_id: r.try_get("token_id")?,
                kind: r.try_get("kind")?,
                principal: r.try_get("principal")?,
                label: r.try_get("label")?,
                created_at_ms: r.try_get("created_at_ms")?,
                revoked: r.try_get::<Option<i64>, _>("revoked_at_ms")?.is_some(),
            })
        })
        .collect()
}
