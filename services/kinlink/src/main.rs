//! `kinlink`: see the library for the commands.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match kinlink::run(kinlink::Cli::parse()).await {
        // Output piped into `head` and the like: the reader has what it wanted.
        Err(error)
            if error.chain().any(|e| {
                e.downcast_ref::<std::io::Error>()
                    .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            Ok(())
        }
        other => other,
    }
}
