"""{{name}}: a Weft event handler.

Receives the events of `{{name}}-in` (config key `topic`), and for each emits one event to
`{{name}}-out` (config key `output-topic`) with the same JSON data, keyed like the input. Data that
is not JSON is a permanent error: Weft dead-letters the event at once.

Return an error by raising `Err(HandleError_Retryable(...))` or `Err(HandleError_Permanent(...))`;
a failed `host.emit` raises `Err` with the emit-error as its value.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Cloudevent,
    Delivery,
    EmitError_Unavailable,
    HandleError_Permanent,
    HandleError_Retryable,
    LogLevel,
    PluginInfo,
    RetryableError,
    Subscription,
)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        topic = host.config_get("topic") or "{{name}}-in"
        return PluginInfo(
            name="{{name}}",
            version="0.1.0",
            description="Emits one event per input event",
            subscriptions=[Subscription(topic=topic, types=[], sources=[])],
        )

    def handle(self, event: Cloudevent, delivery: Delivery) -> None:
        try:
            data = json.loads(event.data or b"")
        except ValueError as e:
            raise Err(HandleError_Permanent(f"event {event.id}: data is not JSON ({e})"))
        output = Cloudevent(
            # `<input id>-{{name}}`: a retried or redelivered input emits the same id.
            id=f"{event.id}-{{name}}",
            source="weft/{{name}}",
            type=f"{event.type}.handled",
            specversion="1.0",
            datacontenttype="application/json",
            dataschema=None,
            subject=event.subject,
            time=event.time,
            extensions=[],
            data=json.dumps(data).encode(),
        )
        try:
            host.emit(host.config_get("output-topic") or "{{name}}-out", output, delivery.key)
        except Err as e:
            if isinstance(e.value, EmitError_Unavailable):
                raise Err(HandleError_Retryable(RetryableError(reason=f"emit: {e.value!r}", delay_ms=None)))
            raise Err(HandleError_Permanent(f"emit: {e.value!r}"))
        host.log(LogLevel.INFO, f"handled {event.id} from {delivery.topic}/{delivery.partition}@{delivery.offset}")
