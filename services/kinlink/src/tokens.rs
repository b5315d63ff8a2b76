//! `kinlink tokens create|list|revoke`: API tokens for agencies and authorities, stored
//! hashed and shown once.

use std::io::Write;

use crate::TokensCommand;
use crate::support::open_store;

/// `kinlink tokens ...`.
pub async fn run(command: TokensCommand) -> anyhow::Result<()> {
    use kinlink_store::tokens;
    let mut out = std::io::stdout().lock();
    match command {
        TokensCommand::Create {
            authority,
            agency,
            label,
            store,
        } => {
            let (kind, principal) = match (authority, agency) {
                (Some(authority), _) => (kinlink_notifier::authority_api::TOKEN_KIND, authority),
                (None, Some(agency)) => (kinlink_intake::auth::TOKEN_KIND, agency),
                (None, None) => anyhow::bail!("give --authority or --agency"),
            };
            anyhow::ensure!(
                !principal.trim().is_empty() && principal.len() <= 64,
                "the id must be 1 to 64 characters"
            );
            let db = open_store(&store).await?;
            let token = tokens::create(&db, kind, &principal, &label).await?;
            db.close().await;
            if store.json {
                let json = serde_json::json!({ "token_id": token.token_id, "kind": kind, "principal": principal, "token": token.secret });
                writeln!(out, "{json}")?;
            } else {
                writeln!(
                    out,
                    "token id: {}\n{kind}: {principal}\ntoken (shown once): {}",
                    token.token_id, token.secret
                )?;
            }
        }
        TokensCommand::List(store) => {
            let db = open_store(&store).await?;
            let list = tokens::list(&db).await?;
            db.close().await;
            if store.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                for t in &list {
                    writeln!(
                        out,
                        "{}  {} {}  {}{}",
                        t.token_id,
                        t.kind,
                        t.principal,
                        t.label,
                        if t.revoked { "  (revoked)" } else { "" }
                    )?;
                }
            }
        }
        TokensCommand::Revoke { token_id, store } => {
            let db = open_store(&store).await?;
            let revoked = tokens::revoke(&db, &token_id).await?;
            db.close().await;
            anyhow::ensure!(revoked, "no live token with id {token_id}");
            writeln!(out, "revoked {token_id}")?;
        }
    }
    Ok(())
}
