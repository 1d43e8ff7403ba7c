// Package gcguard keeps the Go garbage collector from running while the host is inside the
// component's cabi_realloc.
//
// The host calls cabi_realloc to place an export's arguments (and an import's results) in guest
// memory. The bindings' runtime package allocates that memory on the GC heap, so an allocation
// there can start or finish a collection, and the collector reads the wall clock and polls timers:
// WASI imports, which the component model forbids inside cabi_realloc (the call traps with "cannot
// leave component instance"). The preview1 adapter's adapter_monotonic_clock_set_paused, which the
// runtime package already calls, covers only the monotonic clock (wasmtime issue 14318). And a
// collection started by handler code can still be running when the export returns; the next
// cabi_realloc would then finish it.
//
// So the collector is off whenever the host may call cabi_realloc: between calls (off at start-up
// and again when each export returns, which also finishes any collection in flight while imports
// are still allowed) and during imports that return strings or lists. It is on while handler code
// runs. The rule for handler code:
//
//   - every export starts with `gcguard.Enter()` and `defer gcguard.Leave()`;
//   - every import call that returns a string or a list (config-get, emit) runs inside
//     `gcguard.Call(func() T { return ... })`.
package gcguard

import "runtime/debug"

// gcPercent is GOGC while handler code runs.
const gcPercent = 100

func init() { debug.SetGCPercent(-1) }

// Enter turns the collector on for the body of an export. Call it first, with `defer Leave()`.
func Enter() { debug.SetGCPercent(gcPercent) }

// Leave turns the collector off before an export returns. debug.SetGCPercent(-1) waits for a
// collection in progress to finish, so none is left for the next cabi_realloc to complete.
func Leave() { debug.SetGCPercent(-1) }

// Call runs f, an import call whose results the host writes through cabi_realloc, with the
// collector off.
func Call[T any](f func() T) T {
	debug.SetGCPercent(-1)
	defer debug.SetGCPercent(gcPercent)
	return f()
}
