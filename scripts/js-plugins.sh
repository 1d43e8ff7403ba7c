#!/usr/bin/env bash
# Builds the JavaScript plugins (plugins/*-js) into components of the weft:handler world with
# componentize-js (installed from npm at the version package-lock.json pins).
#
#   scripts/js-plugins.sh [OUT_DIR]    default OUT_DIR: $CARGO_TARGET_DIR/js-plugins or target/js-plugins
#
# Prints OUT_DIR. A plugin whose sources did not change since its last build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${CARGO_TARGET_DIR:-$PWD/target}/js-plugins}
mkdir -p "$out"
command -v node >/dev/null || { echo "node (Node.js 18 or newer) is needed to build the JavaScript plugins" >&2; exit 1; }

for dir in plugins/*-js; do
    name=$(basename "$dir" -js)
    wasm="$out/$name.wasm"
    if [ -f "$wasm" ] && [ -z "$(find "$dir" wit -newer "$wasm" -not -path '*/node_modules*' -type f | head -1)" ]; then
        continue
    fi
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
    node "$dir/build.mjs" "$wasm" >&2
done
echo "$out"
