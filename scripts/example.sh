#!/usr/bin/env bash
# Builds the plugins of one of the example systems under examples/ into examples/NAME/plugins,
# named as the example's weft.toml expects them:
#   todo       audit, recurring (Rust), task-updates (JavaScript), notifications (Python)
#   orders     order-saga (Rust)
#   platform   resource-catalog (Rust)
#   detection  detection (Rust)
#
#   scripts/example.sh NAME
#
# Needs the wasm32-wasip2 Rust target (rustup target add wasm32-wasip2); the Todo example also
# Node.js and Python 3 (scripts/polyglot-plugins.sh fetches componentize-js and componentize-py).
set -euo pipefail
cd "$(dirname "$0")/.."

name=${1:?usage: scripts/example.sh todo|orders|platform|detection}
polyglot=()
case "$name" in
    todo) rust=(audit recurring); polyglot=(task-updates notifications) ;;
    orders) rust=(order-saga) ;;
    platform) rust=(resource-catalog) ;;
    detection) rust=(detection) ;;
    *) echo "no example named $name (todo, orders, platform, detection)" >&2; exit 2 ;;
esac

dest=examples/$name/plugins
mkdir -p "$dest"
packages=()
for plugin in "${rust[@]}"; do packages+=(-p "$plugin"); done
cargo build --quiet --release --locked --target wasm32-wasip2 --manifest-path plugins/Cargo.toml "${packages[@]}"
target=${CARGO_TARGET_DIR:-plugins/target}
for plugin in "${rust[@]}"; do
    cp "$target/wasm32-wasip2/release/${plugin//-/_}.wasm" "$dest/$plugin.wasm"
done
if [ ${#polyglot[@]} -gt 0 ]; then
    built=$(scripts/polyglot-plugins.sh "" "${polyglot[@]}")
    for plugin in "${polyglot[@]}"; do cp "$built/$plugin.wasm" "$dest/$plugin.wasm"; done
fi
ls "$dest"/*.wasm
