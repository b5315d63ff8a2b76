#!/usr/bin/env bash
# Regenerates the reference data shipped in the repository from its sources.
#
# Authority registry: mySociety's UK local authority register (MIT licence), provided beside
# the project in ../shared/data/geography/. The product never downloads anything at run time;
# this script is run by a developer and the result is committed.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=${KINLINK_GEOGRAPHY_SRC:-"$root/../shared/data/geography"}
dest="$root/crates/domain/data"
mkdir -p "$dest"
cp "$src/uk_local_authorities.csv" "$dest/uk_local_authorities.csv"
cp "$src/LICENSE-mysociety.txt" "$dest/LICENSE-mysociety.txt"
sum=$(sha256sum "$dest/uk_local_authorities.csv" | cut -c1-12)
printf 'mysociety-uk-local-authorities@%s\n' "$sum" > "$dest/AUTHORITIES_VERSION"
echo "authority registry refreshed: $(cat "$dest/AUTHORITIES_VERSION")"
