#!/usr/bin/env bash
# The chaos harness (tests/chaos/main.rs) at any size: the scale-out shape, every service
# twice as its own process, faults on a seeded schedule; prints one summary line and fails on
# any lost alert, unmarked duplicate, escalation fired twice or slow drain.
#
#   scripts/chaos.sh                                   # the short run CI does
#   scripts/chaos.sh --referrals 10000 --faults 50 --seed 7
#   scripts/chaos.sh --referrals 2000 --faults 20 --window 900 --broker-down 30 --db-down 10
#   scripts/chaos.sh --kinds kill,stop,pg_terminate,db_down,endpoint   # no broker restarts
#   scripts/chaos.sh --settle 600   # past the 60 s drain limit, wait to tell late from lost
#
# Needs PostgreSQL at KINLINK_TEST_POSTGRES_URL (default: 127.0.0.1:5432, trust auth) and
# tansu (installed on first use, as scripts/test.sh does). Builds in release mode unless
# --debug is given; the summary line is also written to target/chaos-summary.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

profile=(--release)
while (($#)); do
    case "$1" in
        --referrals) export KINLINK_CHAOS_REFERRALS="$2"; shift 2 ;;
        --faults) export KINLINK_CHAOS_FAULTS="$2"; shift 2 ;;
        --seed) export KINLINK_CHAOS_SEED="$2"; shift 2 ;;
        --window) export KINLINK_CHAOS_WINDOW_SECS="$2"; shift 2 ;;
        --broker-down) export KINLINK_CHAOS_BROKER_DOWN_SECS="$2"; shift 2 ;;
        --db-down) export KINLINK_CHAOS_DATABASE_DOWN_SECS="$2"; shift 2 ;;
        --kinds) export KINLINK_CHAOS_KINDS="$2"; shift 2 ;;
        --settle) export KINLINK_CHAOS_SETTLE_SECS="$2"; shift 2 ;;
        --debug) profile=(); shift ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "${KINLINK_TANSU_BIN:-}" ]] && ! command -v tansu >/dev/null 2>&1; then
    cargo install tansu --version 0.6.0 --features dynostore,libsql --locked
fi
export KINLINK_TANSU_BIN="${KINLINK_TANSU_BIN:-$(command -v tansu)}"
export KINLINK_TEST_POSTGRES_URL="${KINLINK_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
mkdir -p target
export KINLINK_CHAOS_SUMMARY="$PWD/target/chaos-summary.txt"

cargo test "${profile[@]}" --locked --test chaos -- --nocapture
