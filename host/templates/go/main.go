// Command {{name}} is a Weft event handler in Go, built by build.sh into a component of the
// weft:handler world.
//
// The handler is in export_wit_world; the generated bindings/wit_exports holds the wasm exports
// (handle, describe, cabi_post_*; cabi_realloc comes with its runtime package) and calls it.
package main

import _ "{{name}}/bindings/wit_exports"

// main is never called: the module is a reactor (-buildmode=c-shared), whose exports the host calls.
func main() {}
