"""The conformance handler in Python (see plugins/conformance/README.md)."""

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import (
    Cloudevent,
    Delivery,
    HandleError_Permanent,
    HandleError_Retryable,
    LogLevel,
    PluginInfo,
    RetryableError,
    Subscription,
)


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        topic = host.config_get("topic") or "conformance-in"
        return PluginInfo(
            name="conformance-python",
            version="1.0.0",
            description="Weft's plugin conformance cases",
            subscriptions=[Subscription(topic=topic, types=[], sources=[])],
        )

    def handle(self, event: Cloudevent, delivery: Delivery) -> None:
        mode = dict(event.extensions).get("conformance", "ok")
        if mode == "retry":
            raise Err(HandleError_Retryable(RetryableError(reason=f"{event.id} asked for a retry", delay_ms=1234)))
        if mode == "permanent":
            raise Err(HandleError_Permanent(f"{event.id} is permanent"))
        if mode == "trap":
            raise RuntimeError(f"{event.id} asked for a trap")
        out = Cloudevent(
            id=f"{event.id}-out",
            source="weft/conformance",
            type="weft.conformance.echoed",
            specversion="1.0",
            datacontenttype=event.datacontenttype,
            dataschema=None,
            subject=event.type,
            time=None,
            extensions=[("lang", "python"), ("attempt", str(delivery.attempt))],
            data=event.data,
        )
        try:
            host.emit(host.config_get("output-topic") or f"{delivery.topic}.out", out, delivery.key)
        except Err as e:
            raise Err(HandleError_Retryable(RetryableError(reason=f"emit: {e.value!r}", delay_ms=None)))
        host.log(LogLevel.INFO, f"handled {event.id}")
