//! `kinlink`: see the library for the commands.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kinlink::run(kinlink::Cli::parse()).await
}
