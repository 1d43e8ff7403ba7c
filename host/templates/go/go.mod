module {{name}}

// Mainline Go (no TinyGo): 1.24 brought //go:wasmexport and -buildmode=c-shared for wasip1.
go 1.24

require go.bytecodealliance.org/pkg v0.2.3

// The bindings' runtime package (cabi_realloc, Option, Result, Tuple). The Go module proxy does not
// serve it: go-component.sh copies it out of the wit-bindgen-go crate that matches the generator
// (pinned in go-component/Cargo.lock) into bindings/pkg, next to the generated bindings.
replace go.bytecodealliance.org/pkg => ./bindings/pkg
