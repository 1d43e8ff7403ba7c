"""Reminder notifications for the Todo app, written in Python.

Reads reminder events from the `reminders` topic and emits one `com.example.notification.requested`
event per reminder to `notifications` (override with the `output-topic` config key), keyed by user
so one user's notifications stay in order. A reminder with an unknown `reminder_type` can never be
delivered: it fails permanently and Weft dead-letters it.

Build: `componentize-py -d ../../wit -w handler componentize app -o notifications.wasm`
"""

import json

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

LEADS = {"1_hour_before": "in one hour", "1_day_before": "tomorrow"}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> PluginInfo:
        return PluginInfo(
            name="notifications",
            version="0.1.0",
            description="Turns Todo reminders into notification requests",
            subscriptions=[Subscription(topic="reminders", types=["com.example.reminder.*"], sources=[])],
        )

    def handle(self, event: Cloudevent, delivery: Delivery) -> None:
        try:
            reminder = json.loads(event.data or b"")
            user_id, task_id, kind = reminder["user_id"], reminder["task_id"], reminder["reminder_type"]
        except (ValueError, KeyError, TypeError) as e:
            raise Err(HandleError_Permanent(f"event {event.id}: not a reminder ({e!r})"))
        if kind not in LEADS:
            raise Err(HandleError_Permanent(f"event {event.id}: unknown reminder_type {kind!r}"))
        title = reminder.get("title") or task_id
        notification = {
            "user_id": user_id,
            "task_id": task_id,
            "message": f"{title} is due {LEADS[kind]}",
            "remind_at": reminder.get("remind_at"),
        }
        output = Cloudevent(
            id=f"notify-{event.id}",
            source="weft/notifications",
            type="com.example.notification.requested",
            specversion="1.0",
            datacontenttype="application/json",
            dataschema=None,
            subject=f"/users/{user_id}",
            time=event.time,
            extensions=[],
            data=json.dumps(notification).encode(),
        )
        topic = host.config_get("output-topic") or "notifications"
        try:
            host.emit(topic, output, user_id.encode())
        except Err as e:
            raise Err(HandleError_Retryable(RetryableError(reason=f"could not emit: {e.value!r}", delay_ms=None)))
        host.log(LogLevel.DEBUG, f"notification for {user_id} about {task_id}")
