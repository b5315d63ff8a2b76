//! `kinlink audit verify`: walks the hash-chained audit log and names the first altered or
//! missing entry.

use std::io::Write;
use std::process::ExitCode;

use crate::StoreArgs;
use crate::support::open_store;

/// `kinlink audit verify`: exit code 1 when the chain is broken.
pub async fn verify(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    use kinlink_store::audit::{self, Verification};
    let store = open_store(args).await?;
    let verification = audit::verify(&store).await?;
    store.close().await;
    let mut out = std::io::stdout().lock();
    match verification {
        Verification::Intact { entries } => {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "intact": true, "entries": entries })
                )?;
            } else {
                writeln!(out, "audit log intact: {entries} entries")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Verification::Broken { seq, reason } => {
            if args.json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({ "intact": false, "seq": seq, "reason": reason })
                )?;
            } else {
                writeln!(out, "audit log BROKEN at entry {seq}: {reason}")?;
            }
            out.flush()?;
            Ok(ExitCode::FAILURE)
        }
    }
}
