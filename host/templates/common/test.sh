#!/usr/bin/env bash
# Builds {{name}}.wasm, checks it against the handler world and calls it with the sample event.
# WEFT: the weft binary (default: weft on PATH).
set -euo pipefail
cd "$(dirname "$0")"
{{build}}
"${WEFT:-weft}" check {{name}}.wasm
"${WEFT:-weft}" invoke {{name}}.wasm --event events/sample.json --topic {{name}}-in --key sample-key
