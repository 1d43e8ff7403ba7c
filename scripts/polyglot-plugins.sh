#!/usr/bin/env bash
# Builds the plugins written in other languages into components of the weft:handler world, each
# with its ecosystem's tool at the version the plugin pins:
#   plugins/*-js   JavaScript, componentize-js from npm (package-lock.json)
#   plugins/*-py   Python, componentize-py from PyPI (requirements.txt), in a virtualenv under
#                  $XDG_CACHE_HOME/weft (default ~/.cache/weft)
#
#   scripts/polyglot-plugins.sh [OUT_DIR]   default: $CARGO_TARGET_DIR/polyglot-plugins or target/polyglot-plugins
#
# Prints OUT_DIR; each plugin is OUT_DIR/<name>.wasm (the directory name without -js/-py). A plugin
# whose sources and the WIT did not change since its last build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-${CARGO_TARGET_DIR:-$PWD/target}/polyglot-plugins}
mkdir -p "$out"
out=$(cd "$out" && pwd)

fresh() { # fresh WASM DIR: WASM exists and nothing in DIR or wit/ is newer
    [ -f "$1" ] && [ -z "$(find "$2" wit -newer "$1" -type f -not -path '*/node_modules/*' -not -path '*/__pycache__/*' | head -1)" ]
}

for dir in plugins/*-js; do
    wasm="$out/$(basename "$dir" -js).wasm"
    fresh "$wasm" "$dir" && continue
    command -v node >/dev/null || { echo "Node.js 18 or newer is needed to build $dir" >&2; exit 1; }
    (cd "$dir" && npm install --no-audit --no-fund --loglevel=error >&2)
    node "$dir/build.mjs" "$wasm" >&2
done

venv="${XDG_CACHE_HOME:-$HOME/.cache}/weft/componentize-py"
for dir in plugins/*-py; do
    wasm="$out/$(basename "$dir" -py).wasm"
    fresh "$wasm" "$dir" && continue
    if ! cmp -s "$dir/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" >&2
        cp "$dir/requirements.txt" "$venv/requirements.txt"
    fi
    (cd "$dir" && "$venv/bin/componentize-py" -d ../../wit -w handler componentize app -o "$wasm" >&2)
    echo "wrote $wasm" >&2
done
echo "$out"
