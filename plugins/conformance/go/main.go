// Command conformance is the conformance handler in Go (see plugins/conformance/README.md), built
// by scripts/go-component.sh into a component of the weft:handler world.
//
// The handler is in export_wit_world; the generated bindings/wit_exports holds the wasm exports
// (handle, describe, cabi_post_*; cabi_realloc comes with its runtime package) and calls it.
package main

import _ "conformance/bindings/wit_exports"

// main is never called: the module is a reactor (-buildmode=c-shared), whose exports the host calls.
func main() {}
