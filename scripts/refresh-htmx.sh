#!/usr/bin/env bash
# Refreshes the console's vendored htmx (the newest 2.x from the npm registry) and its licence.
set -euo pipefail; d="$(cd "$(dirname "$0")/.." && pwd)/crates/dure-controller/src/console/assets"; t="$(mktemp -d)"; trap 'rm -rf "$t"' EXIT; (cd "$t" && npm pack --silent htmx.org@2 >/dev/null && tar xzf htmx.org-*.tgz); cp "$t/package/dist/htmx.min.js" "$d/htmx.min.js"; cp "$t/package/LICENSE" "$d/htmx.LICENSE"; node -p "require('$t/package/package.json').version" > "$d/htmx.VERSION"
