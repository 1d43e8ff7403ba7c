// Package export_wit_world is {{name}}: a Weft event handler in Go.
//
// Receives the events of `{{name}}-in` (config key `topic`), and for each emits one event to
// `{{name}}-out` (config key `output-topic`) with the same data, keyed like the input. An event
// without data is a permanent error: Weft dead-letters it at once.
//
// Describe and Handle are the exports of the weft:handler world: the generated bindings (in
// bindings/, from wit/, by build.sh) call them, and give the WIT types (bindings/weft_handler_types)
// and the host's functions (bindings/weft_handler_host). The package path is the one
// `wit-bindgen go` expects.
//
// The GC guard rule (see gcguard): every export starts with `gcguard.Enter()` and
// `defer gcguard.Leave()`, and every host call that returns a string or a list (ConfigGet, Emit)
// runs inside gcguard.Call. Without it a garbage collection can start while the host writes into
// the component's memory, and the call traps.
package export_wit_world

import (
	host "{{name}}/bindings/weft_handler_host"
	types "{{name}}/bindings/weft_handler_types"
	"{{name}}/gcguard"

	wit "go.bytecodealliance.org/pkg/wit/types"
)

// config is the `[plugin.<id>] config` value of key, if set.
func config(key string) wit.Option[string] {
	return gcguard.Call(func() wit.Option[string] { return host.ConfigGet(key) })
}

// Describe is called once when Weft loads the component.
func Describe() types.PluginInfo {
	gcguard.Enter()
	defer gcguard.Leave()
	return types.PluginInfo{
		Name:        "{{name}}",
		Version:     "0.1.0",
		Description: "Emits one event per input event",
		Subscriptions: []types.Subscription{
			{Topic: config("topic").SomeOr("{{name}}-in"), Types: []string{}, Sources: []string{}},
		},
	}
}

type result = wit.Result[wit.Unit, types.HandleError]

func permanent(reason string) result {
	return wit.Err[wit.Unit](types.MakeHandleErrorPermanent(reason))
}

// Handle is called once per matching event. A panic fails the attempt as a trap.
func Handle(event types.Cloudevent, delivery types.Delivery) result {
	gcguard.Enter()
	defer gcguard.Leave()

	if event.Data.IsNone() {
		return permanent("event " + event.Id + " has no data")
	}
	out := types.Cloudevent{
		// `<input id>-{{name}}`: a retried or redelivered input emits the same id.
		Id:              event.Id + "-{{name}}",
		Source:          "weft/{{name}}",
		Type:            event.Type + ".handled",
		Specversion:     "1.0",
		Datacontenttype: event.Datacontenttype,
		Dataschema:      wit.None[string](),
		Subject:         event.Subject,
		Time:            event.Time,
		Extensions:      []wit.Tuple2[string, string]{},
		Data:            event.Data,
	}
	topic := config("output-topic").SomeOr("{{name}}-out")
	emitted := gcguard.Call(func() wit.Result[wit.Unit, types.EmitError] {
		return host.Emit(topic, out, delivery.Key)
	})
	if emitted.IsErr() {
		reason := "event " + event.Id + ": emit failed"
		// `unavailable` passes; `invalid-event` and `forbidden` do not.
		if emitted.Err().Tag() == types.EmitErrorUnavailable {
			return wit.Err[wit.Unit](types.MakeHandleErrorRetryable(types.RetryableError{
				Reason:  reason + ": " + emitted.Err().Unavailable(),
				DelayMs: wit.None[uint64](),
			}))
		}
		return permanent(reason)
	}
	host.Log(types.LogLevelInfo, "handled "+event.Id)
	return wit.Ok[wit.Unit, types.HandleError](wit.Unit{})
}
