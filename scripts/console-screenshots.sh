#!/usr/bin/env bash
# Refreshes the web console screenshots in docs/screenshots/ (linked from the README) by
# running the browser test that takes them. Needs Debian's chromium and chromium-driver.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
KINLINK_SCREENSHOTS="$PWD/docs/screenshots" \
    cargo test --locked --test e2e console::council_operator_and_reviewer_work_in_the_browser
ls -l docs/screenshots
