#!/usr/bin/env bash
# Builds the plugins written in other languages into components of the weft:handler world, each
# with its ecosystem's tool at the version the plugin pins:
#   plugins/*-js   JavaScript, componentize-js from npm (package-lock.json)
#   plugins/*-py   Python, componentize-py from PyPI (requirements.txt), in a virtualenv under
#                  $XDG_CACHE_HOME/weft-build (default ~/.cache/weft-build)
#   plugins/conformance/{js,python,c,go}   the conformance handler, as conformance-js.wasm,
#                  conformance-python.wasm, conformance-c.wasm and conformance-go.wasm. C is built
#                  with wit-bindgen's C generator (crates.io, installed into ~/.cargo/bin), Debian's
#                  clang 19, lld and wasi-libc (installed with apt-get when missing) and rustup's
#                  wasm-component-ld, which links the component with the WASI preview1 reactor
#                  adapter. Go is built by scripts/go-component.sh (the same wit-bindgen, wasm-tools
#                  and crates.io artefacts, pinned there) with the Go found on the machine, or
#                  Debian's when that is new enough.
#
#   scripts/polyglot-plugins.sh [OUT_DIR [NAME...]]   OUT_DIR default: $CARGO_TARGET_DIR/polyglot-plugins
#                                                     or target/polyglot-plugins; NAMEs: only these
#
# Prints OUT_DIR; each plugin is OUT_DIR/<name>.wasm (the directory name without -js/-py). A plugin
# whose sources and the WIT did not change since its last build is not rebuilt.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

out=${1:-${CARGO_TARGET_DIR:-$PWD/target}/polyglot-plugins}
shift || true
only=" $* "
wanted() { [ "$only" = "  " ] || [[ $only == *" $1 "* ]]; }
mkdir -p "$out"
out=$(cd "$out" && pwd)

fresh() { # fresh WASM DIR...: WASM exists and nothing in the DIRs or wit/ is newer
    local wasm=$1
    shift
    [ -f "$wasm" ] && [ -z "$(find "$@" wit -newer "$wasm" -not -path '*/node_modules/*' -not -path '*/__pycache__/*' \
        -not -path '*/bindings/*' -type f | head -1)" ]
}

js_wasm() { case "$1" in plugins/conformance/js) echo conformance-js ;; *) basename "$1" -js ;; esac; }
for dir in plugins/*-js plugins/conformance/js; do
    wanted "$(js_wasm "$dir")" || continue
    wasm="$out/$(js_wasm "$dir").wasm"
    fresh "$wasm" "$dir" && continue
    command -v node >/dev/null || { echo "Node.js 18 or newer is needed to build $dir" >&2; exit 1; }
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >&2)
    node "$dir/build.mjs" "$wasm" >&2
done

venv="${XDG_CACHE_HOME:-$HOME/.cache}/weft-build/componentize-py"
py_wasm() { case "$1" in plugins/conformance/python) echo conformance-python ;; *) basename "$1" -py ;; esac; }
for dir in plugins/*-py plugins/conformance/python; do
    wanted "$(py_wasm "$dir")" || continue
    wasm="$out/$(py_wasm "$dir").wasm"
    fresh "$wasm" "$dir" && continue
    if ! cmp -s "$dir/requirements.txt" "$venv/requirements.txt" 2>/dev/null; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$dir/requirements.txt" >&2
        cp "$dir/requirements.txt" "$venv/requirements.txt"
    fi
    (cd "$dir" && "$venv/bin/componentize-py" -d "$root/wit" -w handler componentize app -o "$wasm" >&2)
    echo "wrote $wasm" >&2
done
wit_bindgen_version=0.61.1
c_toolchain() {
    if ! command -v clang-19 >/dev/null || [ ! -d /usr/include/wasm32-wasi ] \
        || [ ! -f /usr/lib/llvm-19/lib/clang/19/lib/wasi/libclang_rt.builtins-wasm32.a ]; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc; } >&2
    fi
    if [ "$(wit-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wit_bindgen_version" ]; then
        cargo install --locked --quiet wit-bindgen-cli --version "$wit_bindgen_version" >&2
    fi
}

dir=plugins/conformance/c
wasm="$out/conformance-c.wasm"
if wanted conformance-c && ! fresh "$wasm" "$dir"; then
    c_toolchain
    linker="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/wasm-component-ld"
    generated=$(mktemp -d)
    wit-bindgen c wit --world handler --out-dir "$generated" >&2
    clang-19 --target=wasm32-wasi -O2 -Wall -Werror -mexec-model=reactor -I"$generated" \
        -fuse-ld="$linker" -Wl,--wasi-adapter=reactor -o "$wasm" \
        "$dir/conformance.c" "$generated/handler.c" "$generated/handler_component_type.o" >&2
    rm -rf "$generated"
    echo "wrote $wasm" >&2
fi

# Go: a Go new enough for //go:wasmexport (scripts/go-component.sh --find-go says which), else
# Debian's golang when the archive has one that is (bookworm's golang-go is 1.19: too old).
go_toolchain() {
    scripts/go-component.sh --find-go >/dev/null 2>&1 && return
    apt-get update -qq >&2 || true
    local package candidate
    for package in golang-go golang-1.26 golang-1.25 golang-1.24; do
        # 2:1.19~1, 1.24.4-1~bpo12+1: the Go version, without the epoch.
        candidate=$(apt-cache policy "$package" 2>/dev/null | sed -n 's/^ *Candidate: \([0-9]*:\)\{0,1\}//p')
        if [[ $candidate =~ ^1\.([0-9]+) ]] && [ "${BASH_REMATCH[1]}" -ge 24 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >&2
            break
        fi
    done
    scripts/go-component.sh --find-go >/dev/null || {
        echo "cannot build plugins/conformance/go: Debian's archive has no Go 1.24 or newer either" \
            "(golang-go: $(apt-cache policy golang-go 2>/dev/null | sed -n 's/^ *Candidate: //p'))" >&2
        exit 1
    }
}

dir=plugins/conformance/go
wasm="$out/conformance-go.wasm"
if wanted conformance-go && ! fresh "$wasm" "$dir" scripts/go-component.sh scripts/go-component; then
    go_toolchain
    scripts/go-component.sh "$dir" "$wasm"
fi
echo "$out"
