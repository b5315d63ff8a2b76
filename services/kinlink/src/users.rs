//! `kinlink users create|list|disable|reset`: console accounts. Passwords never travel on the
//! command line: one is generated and shown once, or read from the environment variable named
//! by `--password-env`.

use std::io::Write;

use anyhow::Context;
use kinlink_console::accounts::{self, Role};

use crate::UsersCommand;
use crate::support::open_store;

fn password(env: Option<&str>) -> anyhow::Result<(String, bool)> {
    match env {
        Some(name) => {
            let value = std::env::var(name)
                .with_context(|| format!("environment variable {name} is not set"))?;
            Ok((value, false))
        }
        None => Ok((accounts::generate_password(), true)),
    }
}

/// `kinlink users ...`.
pub async fn run(command: UsersCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match command {
        UsersCommand::Create {
            username,
            role,
            authority,
            name,
            password_env,
            oidc,
            store,
        } => {
            let role = Role::parse(&role).with_context(|| {
                "role must be viewer, practitioner, manager, operator or reviewer".to_owned()
            })?;
            let (password, generated) = if oidc {
                (String::new(), false)
            } else {
                password(password_env.as_deref())?
            };
            let db = open_store(&store).await?;
            let user = accounts::create(
                &db,
                &username,
                &name,
                role,
                &authority,
                (!oidc).then_some(password.as_str()),
            )
            .await;
            db.close().await;
            let user = user?;
            if store.json {
                let mut json = serde_json::json!({
                    "user_id": user.user_id, "username": user.username, "role": role.as_str(),
                    "authority": user.authority_code,
                });
                if generated {
                    json["password"] = password.into();
                }
                writeln!(out, "{json}")?;
            } else {
                writeln!(
                    out,
                    "created {} ({}{})",
                    user.username,
                    role.as_str(),
                    if user.authority_code.is_empty() {
                        String::new()
                    } else {
                        format!(" at {}", user.authority_code)
                    }
                )?;
                if generated {
                    writeln!(out, "password (shown once): {password}")?;
                }
            }
        }
        UsersCommand::List(store) => {
            let db = open_store(&store).await?;
            let users = accounts::list(&db).await;
            db.close().await;
            let users = users?;
            let now = kinlink_store::now_millis();
            if store.json {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| {
                        serde_json::json!({
                            "user_id": u.user_id, "username": u.username, "name": u.display_name,
                            "role": u.role.as_str(), "authority": u.authority_code,
                            "disabled": u.disabled, "locked": u.locked_until_ms > now,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for u in &users {
                    writeln!(
                        out,
                        "{}  {}  {}  {}{}{}",
                        u.username,
                        u.role.as_str(),
                        if u.authority_code.is_empty() {
                            "-"
                        } else {
                            &u.authority_code
                        },
                        u.display_name,
                        if u.disabled { "  (disabled)" } else { "" },
                        if u.locked_until_ms > now {
                            "  (locked)"
                        } else {
                            ""
                        },
                    )?;
                }
            }
        }
        UsersCommand::Disable { username, store } => {
            let db = open_store(&store).await?;
            let result = accounts::disable(&db, &username).await;
            db.close().await;
            result?;
            writeln!(out, "disabled {username}")?;
        }
        UsersCommand::Reset {
            username,
            password_env,
            store,
        } => {
            let (password, generated) = password(password_env.as_deref())?;
            let db = open_store(&store).await?;
            let result = accounts::reset(&db, &username, &password).await;
            db.close().await;
            result?;
            writeln!(out, "reset {username}")?;
            if generated {
                writeln!(out, "password (shown once): {password}")?;
            }
        }
    }
    Ok(())
}
