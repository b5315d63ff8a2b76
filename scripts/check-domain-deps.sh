#!/usr/bin/env bash
# The domain crate decides; it does no I/O. Fails when kinlink-domain depends, directly or
# through another crate, on an async runtime, a database, a broker or an HTTP crate.
set -euo pipefail
cd "$(dirname "$0")/.."
forbidden='^(tokio|tokio-util|async-std|smol|futures|futures-util|mio|sqlx|sqlx-core|rusqlite|libsqlite3-sys|postgres|tokio-postgres|rdkafka|rdkafka-sys|axum|axum-core|hyper|hyper-util|reqwest|tower|tower-http|h2|http-body)$'
deps=$(cargo tree -p kinlink-domain --edges normal --prefix none --format '{p}' --locked | awk '{print $1}' | sort -u)
found=$(grep -E "$forbidden" <<<"$deps" || true)
if [[ -n "$found" ]]; then
    echo "kinlink-domain must not depend on: $(tr '\n' ' ' <<<"$found")" >&2
    cargo tree -p kinlink-domain --edges normal --invert "$(head -n1 <<<"$found")" --locked >&2 || true
    exit 1
fi
echo "kinlink-domain: $(wc -l <<<"$deps") crates, none of them a runtime, database, broker or HTTP crate"
