#!/usr/bin/env bash
# Builds a Weft handler written in Go (mainline Go, no TinyGo) into a component of the
# weft:handler world.
#
#   go-component.sh SRC_DIR OUT.wasm [WIT_DIR]    WIT_DIR default: ../wit beside this script
#   go-component.sh --find-go                     prints the Go it would use, or fails saying why
#
# SRC_DIR is a Go module: go.mod (with `replace go.bytecodealliance.org/pkg => ./bindings/pkg`),
# main.go (`import _ "<module>/bindings/wit_exports"`), the handler in export_wit_world/ (Describe
# and Handle) and the gcguard package it calls (see "GC guard" below). The bindings are generated
# into SRC_DIR/bindings (keep it out of version control).
#
# Steps, every input pinned:
#   1. tools      wit-bindgen-cli and wasm-tools from crates.io, `cargo install --locked` into
#                 cargo's bin directory (~/.cargo/bin) when missing or at another version: once.
#   2. assets     `cargo fetch --locked` of go-component/Cargo.toml beside this script (checksums in
#                 its Cargo.lock) brings the WASI preview1 reactor adapter and the Go package
#                 go.bytecodealliance.org/pkg, which the wit-bindgen-go crate ships (the Go module
#                 proxy does not serve it); the package is copied into SRC_DIR/bindings/pkg.
#   3. bindings   `wit-bindgen go` writes the canonical-ABI glue into SRC_DIR/bindings.
#   4. core       GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared: a reactor core module.
#   5. component  wasm-tools component embed (the world's types), then component new --adapt (the
#                 adapter turns the Go runtime's wasip1 imports into WASI 0.2 ones).
#
# GC guard: the host writes an export's arguments and an import's results into guest memory
# through cabi_realloc, which allocates on Go's GC heap; a collection started or finished there
# reads the clock (a WASI import, forbidden inside cabi_realloc: the call traps). So every export
# starts with `gcguard.Enter()` and `defer gcguard.Leave()`, and every import call that returns a
# string or a list (config-get, emit) runs inside `gcguard.Call(func() T { ... })`.
#
# Needs Go 1.24 or newer (GO=..., else `go` on PATH, else /usr/local/go/bin/go) and cargo.
# CARGO_JOBS, if set, bounds the one-time tool builds (cargo install -j).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
WIT_BINDGEN=0.61.1   # wit-bindgen-cli; equal to wit-bindgen-go in go-component/Cargo.toml
WASM_TOOLS=1.263.0
ADAPTER=wasi-preview1-component-adapter-provider-48.0.8   # equal to go-component/Cargo.toml
# sha256 of artefacts/wasi_snapshot_preview1.reactor.wasm in that crate.
ADAPTER_SHA256=134b86dc09c6b62077f2307b96fa8b83b94dc86737bc705ac3dbe27cb107b1f9
GO_MIN=1.24          # //go:wasmexport and -buildmode=c-shared for wasip1

die() { printf 'go-component.sh: %s\n' "$*" >&2; exit 1; }

# find_go: the first Go >= GO_MIN of GO, `go` on PATH, /usr/local/go/bin/go and Debian's
# /usr/lib/go-1.*/bin/go.
find_go() {
    local go version seen=""
    for go in "${GO:-}" "$(command -v go || true)" /usr/local/go/bin/go /usr/lib/go-1.*/bin/go; do
        [ -n "$go" ] && [ -x "$go" ] || continue
        version=$("$go" env GOVERSION 2>/dev/null || true)
        seen+=" $go (${version:-unknown})"
        # go1.26.8, go1.25rc1, devel go1.27-abcdef: compare major.minor.
        if [[ $version =~ go([0-9]+)\.([0-9]+) ]] \
            && [ $((BASH_REMATCH[1] * 1000 + BASH_REMATCH[2])) -ge $((${GO_MIN%.*} * 1000 + ${GO_MIN#*.})) ]; then
            echo "$go"
            return
        fi
    done
    echo "Go $GO_MIN or newer is needed (GOOS=wasip1 with //go:wasmexport and -buildmode=c-shared);" \
        "found:${seen:- none}. Install it from https://go.dev/dl (into /usr/local/go) or set GO=/path/to/go." >&2
    return 1
}

if [ "${1:-}" = --find-go ]; then
    find_go
    exit
fi
[ $# -ge 2 ] && [ $# -le 3 ] || die "usage: go-component.sh SRC_DIR OUT.wasm [WIT_DIR]"
SRC="$(cd "$1" && pwd)"
OUT="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"
WIT="$(cd "${3:-$HERE/../wit}" && pwd)"
[ -f "$SRC/go.mod" ] || die "no go.mod in $SRC"
[ -f "$WIT/world.wit" ] || die "no world.wit in $WIT"
GO="$(find_go)" || exit 1
command -v cargo >/dev/null || die "cargo is needed (https://rustup.rs): it installs wit-bindgen and wasm-tools"
MODULE="$(sed -n 's/^module[[:space:]]*//p' "$SRC/go.mod" | tr -d '"[:space:]')"
[ -n "$MODULE" ] || die "no module line in $SRC/go.mod"

# --- 1. tools --------------------------------------------------------------------------------
bin="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin"
export PATH="$bin:$(dirname "$GO"):$PATH"   # gofmt beside go formats the generated code
if [ "$(wit-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WIT_BINDGEN" ]; then
    echo "installing wit-bindgen-cli $WIT_BINDGEN into $bin (once)" >&2
    # Default features: the same build serves wit-bindgen's C generator.
    cargo install --locked --quiet ${CARGO_JOBS:+-j "$CARGO_JOBS"} wit-bindgen-cli --version "$WIT_BINDGEN" >&2
fi
if [ "$(wasm-tools --version 2>/dev/null | awk '{print $2}')" != "$WASM_TOOLS" ]; then
    echo "installing wasm-tools $WASM_TOOLS into $bin (once)" >&2
    cargo install --locked --quiet ${CARGO_JOBS:+-j "$CARGO_JOBS"} wasm-tools --version "$WASM_TOOLS" \
        --no-default-features --features component,validate >&2
fi

# --- 2. assets from crates.io ----------------------------------------------------------------
assets="$HERE/go-component/Cargo.toml"
cargo fetch --locked --quiet --manifest-path "$assets" >&2
crate_dir() { # crate_dir NAME-VERSION: where cargo unpacked that crate
    cargo metadata --locked --format-version 1 --manifest-path "$assets" \
        | grep -o "\"manifest_path\":\"[^\"]*/$1/Cargo.toml\"" | head -1 | sed 's/^"manifest_path":"//; s#/Cargo.toml"$##'
}
adapter_dir="$(crate_dir "$ADAPTER")"
gopkg_dir="$(crate_dir "wit-bindgen-go-$WIT_BINDGEN")"
[ -n "$adapter_dir" ] || die "$ADAPTER is not in $assets"
[ -d "$gopkg_dir/src/pkg/wit/runtime" ] || die "wit-bindgen-go $WIT_BINDGEN is not in $assets"
adapter="$adapter_dir/artefacts/wasi_snapshot_preview1.reactor.wasm"
echo "$ADAPTER_SHA256  $adapter" | sha256sum -c --quiet - >&2 || die "$adapter: checksum mismatch"

# --- 3. bindings -----------------------------------------------------------------------------
bindings="$SRC/bindings"
rm -rf "$bindings"
mkdir -p "$bindings/pkg"
cp -r "$gopkg_dir/src/pkg/wit" "$gopkg_dir/src/pkg/LICENSE" "$bindings/pkg/"
chmod -R u+w "$bindings/pkg"
# Its own go.mod says go 1.25; the code needs no more than GO_MIN.
printf 'module go.bytecodealliance.org/pkg\n\ngo %s\n' "$GO_MIN" >"$bindings/pkg/go.mod"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# Packages <module>/bindings/{wit_exports,wit_world,weft_handler_host,weft_handler_types};
# wit_exports calls the handler in <module>/export_wit_world.
if ! wit-bindgen go --world handler --pkg-name "$MODULE/bindings" --export-pkg-name "$MODULE" \
    --out-dir "$bindings" "$WIT" >"$tmp/wit-bindgen.log" 2>&1; then
    cat "$tmp/wit-bindgen.log" >&2
    die "wit-bindgen go failed"
fi

# --- 4. core module --------------------------------------------------------------------------
# -buildmode=c-shared: a reactor (_initialize, then the exports), not a command (_start).
# -ldflags=-checklinkname=0: the runtime package reaches runtime.sbrk through //go:linkname (its
#   cabi_realloc allocates with it before the Go runtime is initialised), which Go refuses unless
#   checklinkname is off. GOTOOLCHAIN=local: never download another Go. GOWORK=off: a go.work
#   further up does not take the module in.
(cd "$SRC" && GOTOOLCHAIN=local GOWORK=off GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 "$GO" build \
    -trimpath -buildvcs=false -buildmode=c-shared -ldflags=-checklinkname=0 -o "$tmp/core.wasm" .)

# --- 5. component ----------------------------------------------------------------------------
wasm-tools component embed --world handler "$WIT" "$tmp/core.wasm" -o "$tmp/embedded.wasm"
wasm-tools component new "$tmp/embedded.wasm" --adapt "wasi_snapshot_preview1=$adapter" -o "$OUT"
wasm-tools validate "$OUT"
echo "wrote $OUT" >&2
