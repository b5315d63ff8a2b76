#!/usr/bin/env bash
# Refresh the vendored front-end assets of the web console and of the browser
# tests from pinned npm packages. Uses `npm pack` into a temporary directory:
# no node_modules and no package.json in this repository.
#
#   services/console/assets/govuk/   govuk-frontend (CSS, JS, fonts, images)
#   services/console/assets/moj/     @ministryofjustice/frontend (CSS, JS, images)
#   services/console/assets/README.md  provenance and licences (generated)
#   tests/e2e/assets/axe*            axe-core (browser tests only)
#
# To move to a new version: change the version and its integrity below
# (`npm view <pkg>@<version> dist.integrity`), run this script, review the diff.
set -euo pipefail
cd "$(dirname "$0")/.."

# govuk-frontend: latest 5.x.
GOVUK_VERSION=5.14.0
GOVUK_INTEGRITY=sha512-MgfaXswIM6KpXS2T5gltEnzgVLgfM3UoE9+rYkhBiR0suaJ8Let31VZXQZqz9QhiPDbv28fW1nRjIyLujfZIBA==
# @ministryofjustice/frontend: 8.0.1 is the latest whose peer dependency accepts
# govuk-frontend 5.x (peer "^5.11.2"); 9.0.0 and later need govuk-frontend ^6.
MOJ_VERSION=8.0.1
MOJ_INTEGRITY=sha512-IPgCcNe+XKV55I4J/SIoYAkfYp7mmUKjO1igXhzOtcF05+stWPbJuL9QzKORlRUxkwZtQ1jmiY7PZxMQzOXniw==
# axe-core: latest 4.x.
AXE_VERSION=4.14.1
AXE_INTEGRITY=sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ==

ASSETS=services/console/assets
GOVUK_DIR=$ASSETS/govuk
MOJ_DIR=$ASSETS/moj
E2E_DIR=tests/e2e/assets

command -v npm >/dev/null 2>&1 || { echo "npm is needed (apt-get install npm)" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# fetch NAME VERSION INTEGRITY -> prints the directory the package unpacked to
fetch() {
    local name=$1 version=$2 integrity=$3 dir tgz got
    dir=$tmp/$(printf '%s' "$name" | tr '@/' '_-')
    mkdir -p "$dir"
    tgz=$(cd "$dir" && npm pack --silent "$name@$version" | tail -n 1)
    got=sha512-$(openssl dgst -sha512 -binary "$dir/$tgz" | base64 -w0)
    if [ "$got" != "$integrity" ]; then
        echo "integrity mismatch for $name@$version: got $got, pinned $integrity" >&2
        exit 1
    fi
    tar -xzf "$dir/$tgz" -C "$dir"
    printf '%s\n' "$dir/package"
}

# put SRC DEST: copy one file, say so
put() {
    mkdir -p "$(dirname "$2")"
    cp "$1" "$2"
    chmod 0644 "$2"
    printf '  %-70s %8s bytes\n' "$2" "$(wc -c <"$2")"
}

# licence PKGDIR DEST FALLBACK-COPYRIGHT: the package's LICENSE if it ships one,
# else the MIT text of its repository (govuk-frontend and @ministryofjustice/frontend
# declare "license": "MIT" in package.json but leave LICENSE out of the tarball).
licence() {
    local pkg=$1 dest=$2 copyright=$3 f
    for f in "$pkg"/LICENSE "$pkg"/LICENSE.txt "$pkg"/LICENSE.md "$pkg"/LICENCE "$pkg"/LICENCE.txt; do
        if [ -f "$f" ]; then put "$f" "$dest"; return; fi
    done
    local license
    license=$(sed -n 's/^ *"license": *"\([^"]*\)".*/\1/p' "$pkg/package.json" | head -n 1)
    if [ "$license" != "MIT" ]; then
        echo "$pkg ships no LICENSE and is not MIT ($license): check by hand" >&2
        exit 1
    fi
    cat >"$tmp/LICENCE.txt" <<EOF
The MIT License (MIT)

$copyright

Permission is hereby granted, free of charge, to any person obtaining a copy of
this software and associated documentation files (the "Software"), to deal in
the Software without restriction, including without limitation the rights to
use, copy, modify, merge, publish, distribute, sublicense, and/or sell copies
of the Software, and to permit persons to whom the Software is furnished to do
so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
EOF
    put "$tmp/LICENCE.txt" "$dest"
}

echo "fetching govuk-frontend@$GOVUK_VERSION, @ministryofjustice/frontend@$MOJ_VERSION, axe-core@$AXE_VERSION"
govuk=$(fetch govuk-frontend "$GOVUK_VERSION" "$GOVUK_INTEGRITY")
moj=$(fetch @ministryofjustice/frontend "$MOJ_VERSION" "$MOJ_INTEGRITY")
axe=$(fetch axe-core "$AXE_VERSION" "$AXE_INTEGRITY")

# The directories (and files) this script owns: removed and made anew.
rm -rf "$GOVUK_DIR" "$MOJ_DIR"
rm -f "$E2E_DIR"/axe.min.js "$E2E_DIR"/axe-core-LICENCE.txt "$E2E_DIR"/axe-core-LICENCE-3RD-PARTY.txt
mkdir -p "$GOVUK_DIR" "$MOJ_DIR" "$E2E_DIR"

echo "govuk-frontend $GOVUK_VERSION -> $GOVUK_DIR"
g=$govuk/dist/govuk
put "$g/govuk-frontend.min.css" "$GOVUK_DIR/govuk-frontend.min.css"
put "$g/govuk-frontend.min.js" "$GOVUK_DIR/govuk-frontend.min.js"
for f in "$g"/assets/fonts/*.woff2; do
    put "$f" "$GOVUK_DIR/assets/fonts/$(basename "$f")"
done
for f in favicon.ico favicon.svg govuk-icon-180.png govuk-crest.svg; do
    put "$g/assets/images/$f" "$GOVUK_DIR/assets/images/$f"
done
# Every image the CSS itself names must be here (fonts: woff2 only, woff is the
# CSS's fallback for browsers without woff2).
for u in $(grep -o 'url([^)]*)' "$g/govuk-frontend.min.css" | sed 's/^url(//; s/)$//; s/["'\'']//g' | sort -u); do
    case $u in
        /assets/images/*) [ -f "$GOVUK_DIR$u" ] || put "$g$u" "$GOVUK_DIR$u" ;;
        /assets/fonts/*.woff2) [ -f "$GOVUK_DIR$u" ] || { echo "missing font $u" >&2; exit 1; } ;;
        /assets/fonts/*.woff) ;;
        *) echo "govuk-frontend CSS names an unexpected url: $u" >&2; exit 1 ;;
    esac
done
licence "$govuk" "$GOVUK_DIR/LICENCE.txt" "Copyright (C) 2017 Crown Copyright (Government Digital Service)"

echo "@ministryofjustice/frontend $MOJ_VERSION -> $MOJ_DIR"
m=$moj/moj
put "$m/moj-frontend.min.css" "$MOJ_DIR/moj-frontend.min.css"
put "$m/moj-frontend.min.js" "$MOJ_DIR/moj-frontend.min.js"
# The MOJ CSS names its icons as url(/assets/images/…): copy each, same layout.
for u in $(grep -o 'url([^)]*)' "$m/moj-frontend.min.css" | sed 's/^url(//; s/)$//; s/["'\'']//g' | sort -u); do
    case $u in
        /assets/*) put "$m$u" "$MOJ_DIR$u" ;;
        data:*) ;;
        *) echo "MOJ CSS names an unexpected url: $u" >&2; exit 1 ;;
    esac
done
licence "$moj" "$MOJ_DIR/LICENCE.txt" "Copyright (c) 2021 dxw"

echo "axe-core $AXE_VERSION -> $E2E_DIR"
put "$axe/axe.min.js" "$E2E_DIR/axe.min.js"
put "$axe/LICENSE" "$E2E_DIR/axe-core-LICENCE.txt"
put "$axe/LICENSE-3RD-PARTY.txt" "$E2E_DIR/axe-core-LICENCE-3RD-PARTY.txt"

font_prefix=$(grep -o 'url([^)]*\.woff2)' "$g/govuk-frontend.min.css" | head -n 1 | sed 's/^url(//; s/[^/]*)$//')
image_prefix=$(grep -o 'url([^)]*/images/[^)]*)' "$g/govuk-frontend.min.css" | head -n 1 | sed 's/^url(//; s/[^/]*)$//')
font_notice=$(grep -o '/\*![^*]*\*/' "$g/govuk-frontend.min.css" | head -n 1 | sed 's#^/\*! *##; s# *\*/$##')

cat >"$ASSETS/README.md" <<EOF
# Web console front-end assets

Vendored, unmodified, from npm packages by \`scripts/refresh-frontend-assets.sh\`
(which \`npm pack\`s each pinned version into a temporary directory, checks its
sha512 integrity, and copies the files below). Do not edit these files by hand:
change the pins in that script and run it from the repository root to refresh:

    scripts/refresh-frontend-assets.sh

## Where each file came from

| files | package | version | licence |
| --- | --- | --- | --- |
| \`govuk/govuk-frontend.min.css\`, \`govuk/govuk-frontend.min.js\` | govuk-frontend (\`dist/govuk/\`) | $GOVUK_VERSION | MIT, \`govuk/LICENCE.txt\` |
| \`govuk/assets/fonts/*.woff2\` (GDS Transport) | govuk-frontend (\`dist/govuk/assets/fonts/\`) | $GOVUK_VERSION | restricted: see below |
| \`govuk/assets/images/\` (favicon.ico, favicon.svg, govuk-icon-180.png, govuk-crest.svg) | govuk-frontend (\`dist/govuk/assets/images/\`) | $GOVUK_VERSION | MIT, \`govuk/LICENCE.txt\`; the crest and GOV.UK icons are Crown marks meant for GOV.UK services |
| \`moj/moj-frontend.min.css\`, \`moj/moj-frontend.min.js\` | @ministryofjustice/frontend (\`moj/\`) | $MOJ_VERSION | MIT, \`moj/LICENCE.txt\` |
| \`moj/assets/images/*.svg\` (the icons its CSS names) | @ministryofjustice/frontend (\`moj/assets/images/\`) | $MOJ_VERSION | MIT, \`moj/LICENCE.txt\` |
| \`tests/e2e/assets/axe.min.js\` (browser tests only, never served by the console) | axe-core | $AXE_VERSION | MPL-2.0, \`tests/e2e/assets/axe-core-LICENCE.txt\` (and \`axe-core-LICENCE-3RD-PARTY.txt\`); unmodified, source at the axe-core package on npm |

Neither govuk-frontend nor @ministryofjustice/frontend puts a LICENSE file in its
npm tarball (both declare \`"license": "MIT"\` in package.json), so their
\`LICENCE.txt\` is the MIT text of each project's repository, written by the script.
@ministryofjustice/frontend $MOJ_VERSION is the newest release whose peer dependency
accepts govuk-frontend 5.x; later releases need govuk-frontend 6.

## The GDS Transport font is not MIT

govuk-frontend's MIT licence text says nothing about the font, and the tarball
has no separate font licence; the only terms shipped are the notice the CSS
carries above its @font-face rules: "$font_notice"
So GDS Transport is for services on the GOV.UK domain (gov.uk, service.gov.uk)
only, which is also what the GOV.UK Design System's guidance says.
A console that is not served from such a domain must not load it: override the
font (GOV.UK Frontend's \`\$govuk-font-family\` with \`\$govuk-include-default-font-face: false\`
when building from Sass, or a CSS rule after \`govuk-frontend.min.css\` that sets
\`font-family\` to e.g. \`arial, sans-serif\` and not serving \`govuk/assets/fonts/\`).
The fonts are vendored here so that a GOV.UK-domain deployment and the browser
tests render as intended; whoever deploys the console elsewhere must drop them.

## URLs the CSS expects

Both stylesheets use absolute URLs under \`/assets/\`:

- govuk-frontend: fonts at \`$font_prefix\` and images at \`$image_prefix\`
  (e.g. \`url(${font_prefix}light-94a07e06a1-v2.woff2)\`, \`url(${image_prefix}govuk-crest.svg)\`).
  Serve \`services/console/assets/govuk/assets/\` at \`/assets/\`.
- @ministryofjustice/frontend: images at \`/assets/images/\` too
  (e.g. \`url(/assets/images/icon-document.svg)\`). Its file names do not clash with
  govuk-frontend's, so \`/assets/images/\` must be served from
  \`govuk/assets/images/\` and \`moj/assets/images/\` together (look in one, then the other).

The CSS also names \`.woff\` fonts as a fallback after \`.woff2\`; only \`.woff2\` is
vendored (every browser the console supports reads woff2). The \`.min.js\` files end
with a \`sourceMappingURL\` comment; the maps are not vendored.

## Using the JavaScript

Both \`.min.js\` files are ES modules exporting \`initAll\`. GOV.UK Frontend's
components only start when \`<body>\` has the class \`govuk-frontend-supported\`,
which the page template adds with a one-line inline script as the first thing
in \`<body>\`:

    <body class="govuk-template__body">
      <script>document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');</script>

and then, at the end of \`<body>\` (govuk-frontend's README):

    <script type="module">
      import { initAll } from '{path-to-javascript}/govuk-frontend.min.js'
      initAll()
    </script>
EOF
printf '  %-70s %8s bytes\n' "$ASSETS/README.md" "$(wc -c <"$ASSETS/README.md")"
echo "done"
