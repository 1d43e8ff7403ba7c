# Sourced by scripts/test.sh and scripts/bench.sh: the build setup both need.
# CI clones afresh each run: keep build output outside the clone so warm runs are fast.
if [ -n "${CI:-}" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/weft-build/target"
fi
rustup target add wasm32-wasip2 >/dev/null
scripts/kafka.sh install
