#!/usr/bin/env bash
# Builds {{name}}.wasm: go-component.sh generates the Go bindings from wit/ into bindings/ with
# wit-bindgen, builds the module with GOOS=wasip1 GOARCH=wasm -buildmode=c-shared and makes the
# component with wasm-tools and the WASI preview1 reactor adapter.
#
# Needs Go 1.24 or newer (GO=/path/to/go, else go on PATH, else /usr/local/go/bin/go) and cargo:
# the first build installs the pinned wit-bindgen-cli and wasm-tools into ~/.cargo/bin (once: some
# minutes, ~12 with one core) and fetches two crates from crates.io (go-component/Cargo.lock).
set -euo pipefail
cd "$(dirname "$0")"
./go-component.sh . {{name}}.wasm wit
