// Package export_wit_world is the conformance handler in Go (see plugins/conformance/README.md):
// the exports of the world weft:handler/handler@0.1.0, which the generated bindings/wit_exports
// calls. The package path is the one `wit-bindgen go` expects.
//
// Every export starts with gcguard.Enter and defers gcguard.Leave, and every import call that
// returns a string or a list (ConfigGet, Emit) runs inside gcguard.Call: see package gcguard.
package export_wit_world

import (
	"strconv"

	host "conformance/bindings/weft_handler_host"
	types "conformance/bindings/weft_handler_types"
	"conformance/gcguard"

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
		Name:        "conformance-go",
		Version:     "1.0.0",
		Description: "Weft's plugin conformance cases",
		Subscriptions: []types.Subscription{{
			Topic:   config("topic").SomeOr("conformance-in"),
			Types:   []string{},
			Sources: []string{},
		}},
	}
}

type result = wit.Result[wit.Unit, types.HandleError]

func fail(err types.HandleError) result { return wit.Err[wit.Unit](err) }

// Handle is called once per matching event; its `conformance` extension picks the case.
func Handle(event types.Cloudevent, delivery types.Delivery) result {
	gcguard.Enter()
	defer gcguard.Leave()

	mode := ""
	for _, extension := range event.Extensions {
		if extension.F0 == "conformance" {
			mode = extension.F1
		}
	}
	switch mode {
	case "retry":
		return fail(types.MakeHandleErrorRetryable(types.RetryableError{
			Reason:  event.Id + " asked for a retry",
			DelayMs: wit.Some[uint64](1234),
		}))
	case "permanent":
		return fail(types.MakeHandleErrorPermanent(event.Id + " is permanent"))
	case "trap":
		// A panic ends the instance: the runtime prints it to stderr and exits, a trap to the host.
		panic(event.Id + " asked for a trap")
	}

	out := types.Cloudevent{
		Id:              event.Id + "-out",
		Source:          "weft/conformance",
		Type:            "weft.conformance.echoed",
		Specversion:     "1.0",
		Datacontenttype: event.Datacontenttype,
		Dataschema:      wit.None[string](),
		Subject:         wit.Some(event.Type),
		Time:            wit.None[string](),
		Extensions: []wit.Tuple2[string, string]{
			{F0: "lang", F1: "go"},
			{F0: "attempt", F1: strconv.FormatUint(uint64(delivery.Attempt), 10)},
		},
		Data: event.Data,
	}
	topic := config("output-topic").SomeOr(delivery.Topic + ".out")
	emitted := gcguard.Call(func() wit.Result[wit.Unit, types.EmitError] {
		return host.Emit(topic, out, delivery.Key)
	})
	if emitted.IsErr() {
		return fail(types.MakeHandleErrorRetryable(types.RetryableError{
			Reason:  event.Id + ": emit failed",
			DelayMs: wit.None[uint64](),
		}))
	}
	host.Log(types.LogLevelInfo, "handled "+event.Id)
	return wit.Ok[wit.Unit, types.HandleError](wit.Unit{})
}
