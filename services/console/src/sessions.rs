//! Signed-in sessions. Owns `console_sessions`.
//!
//! The cookie holds a random secret; the store keeps only its SHA-256, so a copy of the
//! database signs no one in. Each session has its own CSRF token, which every form carries and
//! every POST must return. A session unused for the idle timeout is gone.

use base64::Engine;
use kinlink_store::Store;
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

use crate::Error;
use crate::accounts::{self, User};

/// A live session and its user.
#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
}

/// A random URL-safe secret of 32 bytes.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Starts a session for `user`; returns the cookie's secret.
pub async fn start(store: &Store, user: &User, now_ms: i64) -> Result<String, Error> {
    let secret = random_token();
    sqlx::query(
        "INSERT INTO console_sessions (session_hash, user_id, csrf_token, created_at_ms, last_seen_ms) \
         VALUES ($1, $2, $3, $4, $4)",
    )
    .bind(hash(&secret))
    .bind(&user.user_id)
    .bind(random_token())
    .bind(now_ms)
    .execute(store.pool())
    .await?;
    Ok(secret)
}

/// The session a cookie secret names, if it is live and its user may still sign in; marks it
/// used. A session idle for longer than `idle_ms` is deleted.
pub async fn find(
    store: &Store,
    secret: &str,
    idle_ms: i64,
    now_ms: i64,
) -> Result<Option<Session>, Error> {
    let key = hash(secret);
    let Some(row) = sqlx::query(
        "SELECT user_id, csrf_token, last_seen_ms FROM console_sessions WHERE session_hash = $1",
    )
    .bind(&key)
    .fetch_optional(store.pool())
    .await?
    else {
        return Ok(None);
    };
    let last_seen: i64 = row.try_get("last_seen_ms")?;
    if now_ms - last_seen > idle_ms {
        end(store, secret).await?;
        return Ok(None);
    }
    let user_id: String = row.try_get("user_id")?;
    let Some(user) = accounts::by_id(store, &user_id).await? else {
        return Ok(None);
    };
    if user.disabled {
        return Ok(None);
    }
    // Touch at most once a minute: reads stay reads.
    if now_ms - last_seen > 60_000 {
        sqlx::query("UPDATE console_sessions SET last_seen_ms = $1 WHERE session_hash = $2")
            .bind(now_ms)
            .bind(&key)
            .execute(store.pool())
            .await?;
    }
    Ok(Some(Session {
        user,
        csrf_token: row.try_get("csrf_token")?,
    }))
}

/// Ends the session a cookie secret names.
pub async fn end(store: &Store, secret: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM console_sessions WHERE session_hash = $1")
        .bind(hash(secret))
        .execute(store.pool())
        .await?;
    Ok(())
}

/// Ends every session of a user (disabled, or a new password).
pub async fn end_all(conn: &mut AnyConnection, user_id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM console_sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}
