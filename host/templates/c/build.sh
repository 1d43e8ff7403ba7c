#!/usr/bin/env bash
# Builds {{name}}.wasm from handler.c: generates the C bindings from wit/ with wit-bindgen, compiles
# for wasm32-wasi with clang and links a component with rustup's wasm-component-ld (which adds the
# WASI preview1 reactor adapter).
#
# Needs: clang 16 or newer with the wasm32 runtime and wasi-libc (Debian: apt-get install clang-19
# lld-19 libclang-rt-19-dev-wasm32 wasi-libc), wit-bindgen (cargo install --locked wit-bindgen-cli
# --version {{wit_bindgen_cli}}), and wasm-component-ld (comes with Rust: rustup toolchain install
# stable). CLANG overrides the compiler (default clang-19, then clang).
set -euo pipefail
cd "$(dirname "$0")"
clang=${CLANG:-$(command -v clang-19 || command -v clang)}
linker="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
mkdir -p bindings
wit-bindgen c wit --world handler --out-dir bindings
"$clang" --target=wasm32-wasi -O2 -Wall -mexec-model=reactor -Ibindings \
    -fuse-ld="$linker" -Wl,--wasi-adapter=reactor -o {{name}}.wasm \
    handler.c bindings/handler.c bindings/handler_component_type.o
echo "wrote {{name}}.wasm"
