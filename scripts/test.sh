#!/usr/bin/env bash
# Runs every test of the workspace: unit tests, PostgreSQL-backed store tests, Kafka-protocol
# tests against a throw-away tansu broker, the end-to-end tests of the `kinlink` binary, and
# (on a full run) schemathesis against the API's OpenAPI document.
# Extra arguments go to `cargo test`, e.g. `scripts/test.sh -p kinlink-store -- --nocapture`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

# tansu: the Kafka-compatible broker the Kafka tests start (one per test run).
if [[ -z "${KINLINK_TANSU_BIN:-}" ]] && ! command -v tansu >/dev/null 2>&1; then
    cargo install tansu --version 0.6.0 --features dynostore,libsql --locked
fi
export KINLINK_TANSU_BIN="${KINLINK_TANSU_BIN:-$(command -v tansu)}"
export KINLINK_TEST_POSTGRES_URL="${KINLINK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"

cargo test --workspace --locked "$@"

# On a full run, also fuzz the HTTP API against its own OpenAPI document.
if [[ $# -eq 0 ]]; then
    KINLINK_BIN=target/debug/kinlink scripts/schemathesis.sh
fi
