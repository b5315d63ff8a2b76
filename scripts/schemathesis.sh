#!/usr/bin/env bash
# Property-based API testing of a running `kinlink up` against its own /openapi.json:
# schemathesis generates requests for every operation and fails on any 5xx and on any
# response that does not match the documented schema. Installs schemathesis (PyPI) into a
# throw-away virtualenv; uses an isolated data directory and port.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
SCHEMATHESIS_VERSION=4.32.5
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT

if [[ -z "${KINLINK_BIN:-}" ]]; then
    cargo build --locked --bin kinlink
    KINLINK_BIN=target/debug/kinlink
fi
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/kinlink.toml" <<TOML
[telemetry]
filter = "warn"
TOML
"$KINLINK_BIN" up --data-dir "$work/data" --config "$work/kinlink.toml" --address "127.0.0.1:$port" > "$work/up.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
    grep -q "kinlink listening on" "$work/up.log" 2>/dev/null && break
    sleep 0.2
done
grep -q "kinlink listening on" "$work/up.log" || { cat "$work/up.log"; exit 1; }
token=$("$KINLINK_BIN" tokens create --agency schemathesis --json --data-dir "$work/data" --config "$work/kinlink.toml" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["token"])')

(cd "$work" && "$work/venv/bin/st" run "http://127.0.0.1:$port/openapi.json" \
    --checks not_a_server_error,response_schema_conformance \
    --header "Authorization: Bearer $token" \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-40}" \
    --request-timeout 10 \
    --no-color)
echo "schemathesis: no server errors, responses match the schema"
