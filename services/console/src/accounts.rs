//! People who sign in to the console, and what each may do. Owns `console_users`.
//!
//! Council staff belong to one authority and see only its alerts (viewer, practitioner,
//! manager); operators work the triage queue and see ids and codes, never children's details;
//! reviewers decide linkage review tasks. Passwords are argon2id hashes; after
//! `lockout_after_failures` failures in a row the account is locked for `lockout_minutes`,
//! whatever password is tried, so guessing gains nothing.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kinlink_store::Store;
use sqlx::Row;

use crate::Error;

/// What a console user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Council staff: reads the authority's inbox and alerts.
    Viewer,
    /// Council staff: also acknowledges and resolves alerts.
    Practitioner,
    /// Council staff: also decides lives/found hand-offs (accept, decline, transfer).
    Manager,
    /// kinlink on-call: routes triage items; sees ids and codes only.
    Operator,
    /// Linkage reviewer: decides review tasks (sees the two records compared).
    Reviewer,
}

impl Role {
    pub const ALL: [Role; 5] = [
        Role::Viewer,
        Role::Practitioner,
        Role::Manager,
        Role::Operator,
        Role::Reviewer,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Practitioner => "practitioner",
            Role::Manager => "manager",
            Role::Operator => "operator",
            Role::Reviewer => "reviewer",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Council staff act for one authority.
    pub fn is_council(self) -> bool {
        matches!(self, Role::Viewer | Role::Practitioner | Role::Manager)
    }

    pub fn may_acknowledge(self) -> bool {
        matches!(self, Role::Practitioner | Role::Manager)
    }

    pub fn may_resolve(self) -> bool {
        matches!(self, Role::Practitioner | Role::Manager)
    }

    pub fn may_decide_handoff(self) -> bool {
        self == Role::Manager
    }
}

/// A console user as stored (never the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub role: Role,
    /// Empty for operators and reviewers.
    pub authority_code: String,
    pub disabled: bool,
    pub locked_until_ms: i64,
}

impl User {
    /// How the audit log names this person.
    pub fn audit_actor(&self) -> String {
        format!("user:{}", self.username)
    }
}

/// The fewest characters a password may have.
pub const MIN_PASSWORD_CHARS: usize = 12;

/// A username: 3 to 64 lower-case letters, digits, '.', '_', '-' or '@'.
pub fn valid_username(name: &str) -> bool {
    (3..=64).contains(&name.len())
        && name.chars().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@')
        })
}

fn hash_password(password: &str) -> Result<String, Error> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::Invalid {
            field: "password",
            reason: "a password needs at least 12 characters",
        });
    }
    let mut salt = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut salt[..]);
    let salt = SaltString::encode_b64(&salt).map_err(|_| Error::Hashing)?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|_| Error::Hashing)
}

/// A new random password of 20 characters, shown once.
pub fn generate_password() -> String {
    let mut bytes = [0u8; 15];
    rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
    base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, bytes)
}

fn user_from_row(row: &sqlx::any::AnyRow) -> Result<User, Error> {
    let role: String = row.try_get("role")?;
    Ok(User {
        user_id: row.try_get("user_id")?,
        username: row.try_get("username")?,
        display_name: row.try_get("display_name")?,
        role: Role::parse(&role).ok_or(Error::Invalid {
            field: "role",
            reason: "stored role is not known",
        })?,
        authority_code: row.try_get("authority_code")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        locked_until_ms: row.try_get("locked_until_ms")?,
    })
}

/// Creates a user. Council roles need an authority that runs children's services; the other
/// roles must have none. With no password, the user signs in only through OpenID Connect.
pub async fn create(
    store: &Store,
    username: &str,
    display_name: &str,
    role: Role,
    authority_code: &str,
    password: Option<&str>,
) -> Result<User, Error> {
    if !valid_username(username) {
        return Err(Error::Invalid {
            field: "username",
            reason: "3 to 64 lower-case letters, digits, '.', '_', '-' or '@'",
        });
    }
    let display_name = display_name.trim();
    if display_name.is_empty() || display_name.chars().count() > 100 {
        return Err(Error::Invalid {
            field: "display_name",
            reason: "a name of 1 to 100 characters is required",
        });
    }
    let authority_code = authority_code.trim();
    if role.is_council() {
        let registry = kinlink_domain::routing::authorities::AuthorityRegistry::shipped()
            .map_err(|e| Error::Reference(e.to_string()))?;
        if kinlink_domain::routing::authorities::body_by_code(&registry, authority_code).is_err() {
            return Err(Error::Invalid {
                field: "authority",
                reason: "council staff need the code of a body that runs children's services",
            });
        }
    } else if !authority_code.is_empty() {
        return Err(Error::Invalid {
            field: "authority",
            reason: "operators and reviewers do not belong to an authority",
        });
    }
    let hash = match password {
        Some(password) => hash_password(password)?,
        None => NO_PASSWORD.to_owned(),
    };
    let user_id = uuid::Uuid::now_v7().to_string();
    let inserted = sqlx::query(
        "INSERT INTO console_users (user_id, username, display_name, role, authority_code, password_hash, created_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(&user_id)
    .bind(username)
    .bind(display_name)
    .bind(role.as_str())
    .bind(authority_code)
    .bind(&hash)
    .bind(kinlink_store::now_millis())
    .execute(store.pool())
    .await?;
    if inserted.rows_affected() == 0 {
        return Err(Error::Invalid {
            field: "username",
            reason: "a user with this username exists",
        });
    }
    Ok(User {
        user_id,
        username: username.to_owned(),
        display_name: display_name.to_owned(),
        role,
        authority_code: authority_code.to_owned(),
        disabled: false,
        locked_until_ms: 0,
    })
}

/// The user with this username.
pub async fn by_username(store: &Store, username: &str) -> Result<Option<User>, Error> {
    let row = sqlx::query("SELECT * FROM console_users WHERE username = $1")
        .bind(username)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Stored for a user who signs in only through OpenID Connect: no password matches it.
const NO_PASSWORD: &str = "!";

/// Every user, by username.
pub async fn list(store: &Store) -> Result<Vec<User>, Error> {
    let rows = sqlx::query("SELECT * FROM console_users ORDER BY username")
        .fetch_all(store.pool())
        .await?;
    rows.iter().map(user_from_row).collect()
}

/// The user with this id.
pub async fn by_id(store: &Store, user_id: &str) -> Result<Option<User>, Error> {
    let row = sqlx::query("SELECT * FROM console_users WHERE user_id = $1")
        .bind(user_id)
        .fetch_optional(store.pool())
        .await?;
    row.as_ref().map(user_from_row).transpose()
}

/// Changes a user's account with `update` (bound to `$1` the hash, `$2` the username) and
/// ends all their sessions, in one transaction.
async fn change_and_sign_out(
    store: &Store,
    update: &'static str,
    hash: &str,
    username: &str,
) -> Result<(), Error> {
    let mut tx = store.begin().await?;
    let row = sqlx::query(update)
        .bind(hash)
        .bind(username)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NoSuchUser)?;
    let user_id: String = row.try_get("user_id")?;
    crate::sessions::end_all(&mut tx, &user_id).await?;
    tx.commit().await?;
    Ok(())
}

/// Disables a user: they cannot sign in, and their sessions end.
pub async fn disable(store: &Store, username: &str) -> Result<(), Error> {
    change_and_sign_out(
        store,
        "UPDATE console_users SET disabled = 1 WHERE $1 = $1 AND username = $2 RETURNING user_id",
        "",
        username,
    )
    .await
}

/// Sets a new password, unlocks and re-enables the account; the user's sessions end.
pub async fn reset(store: &Store, username: &str, password: &str) -> Result<(), Error> {
    change_and_sign_out(
        store,
        "UPDATE console_users SET password_hash = $1, disabled = 0, failed_attempts = 0, locked_until_ms = 0 \
         WHERE username = $2 RETURNING user_id",
        &hash_password(password)?,
        username,
    )
    .await
}

/// Why a sign-in failed. The page says the same for each, so it tells an attacker nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignInRefused {
    WrongCredentials,
    Locked,
    Disabled,
}

/// Checks a username and password. Failures count towards the lockout; a success resets it.
pub async fn check_password(
    store: &Store,
    username: &str,
    password: &str,
    lockout_after: u32,
    lockout_ms: i64,
    now_ms: i64,
) -> Result<Result<User, SignInRefused>, Error> {
    let row = sqlx::query("SELECT * FROM console_users WHERE username = $1")
        .bind(username)
        .fetch_optional(store.pool())
        .await?;
    let Some(row) = row else {
        // Spend the same time as a real check, so timing does not reveal unknown usernames.
        let _ = hash_password("not a real password, only for timing");
        return Ok(Err(SignInRefused::WrongCredentials));
    };
    let user = user_from_row(&row)?;
    let stored: String = row.try_get("password_hash")?;
    if user.disabled {
        return Ok(Err(SignInRefused::Disabled));
    }
    if user.locked_until_ms > now_ms {
        return Ok(Err(SignInRefused::Locked));
    }
    let matches = PasswordHash::new(&stored)
        .map(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false);
    if matches {
        sqlx::query(
            "UPDATE console_users SET failed_attempts = 0, locked_until_ms = 0 WHERE user_id = $1",
        )
        .bind(&user.user_id)
        .execute(store.pool())
        .await?;
        return Ok(Ok(user));
    }
    // Counted in the database, so guesses sent at once each count.
    let failures: i64 = sqlx::query(
        "UPDATE console_users SET failed_attempts = failed_attempts + 1 WHERE user_id = $1 \
         RETURNING failed_attempts",
    )
    .bind(&user.user_id)
    .fetch_one(store.pool())
    .await?
    .try_get("failed_attempts")?;
    let locked_until = if failures >= i64::from(lockout_after.max(1)) {
        now_ms + lockout_ms
    } else {
        0
    };
    if locked_until > 0 {
        sqlx::query(
            "UPDATE console_users SET failed_attempts = 0, locked_until_ms = $1 WHERE user_id = $2",
        )
        .bind(locked_until)
        .bind(&user.user_id)
        .execute(store.pool())
        .await?;
    }
    Ok(Err(if locked_until > 0 {
        SignInRefused::Locked
    } else {
        SignInRefused::WrongCredentials
    }))
}
