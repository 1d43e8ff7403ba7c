//! Audit trail for the Todo app's `task-events` topic, written with the `weft-plugin` SDK.
//!
//! For every `com.example.task.created|updated|completed|deleted` event it emits one
//! `com.example.audit.recorded` event to the `audit-log` topic (override with the `output-topic`
//! config key), keyed by the same user id so one user's trail stays in order. The audit record names
//! the action, the task, the user and exactly which input record it came from.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p audit`, then copy
//! `target/wasm32-wasip2/release/audit.wasm` into Weft's plugins directory.

use serde::{Deserialize, Serialize};
use weft_plugin::{Delivery, Event, Handler, Info, Result, Subscription};

const TYPE_PREFIX: &str = "com.example.task.";

/// The fields of a task event's `data` that the audit trail keeps: `task_id` at the top, or in
/// `task_data` as the Todo app's plain-JSON records carry it.
#[derive(Deserialize)]
struct TaskData {
    task_id: Option<String>,
    user_id: String,
    task_data: Option<Task>,
}

#[derive(Deserialize)]
struct Task {
    task_id: String,
}

#[derive(Serialize)]
struct AuditRecord<'a> {
    action: &'a str,
    task_id: &'a str,
    user_id: &'a str,
    event_id: &'a str,
    event_time: Option<&'a str>,
    topic: &'a str,
    partition: i32,
    offset: i64,
}

struct Audit;

impl Handler for Audit {
    fn describe() -> Info {
        Info::new("audit", env!("CARGO_PKG_VERSION"))
            .description("Writes an audit record for every Todo task event")
            .subscribe(Subscription::topic("task-events").types([format!("{TYPE_PREFIX}*")]))
    }

    fn handle(event: Event, delivery: Delivery) -> Result {
        let action = event.ty.strip_prefix(TYPE_PREFIX).unwrap_or(&event.ty);
        // Data without task_id/user_id can never be audited: a permanent error (dead-lettered).
        let task: TaskData = event.json_data()?;
        let task_id = task.task_id.or(task.task_data.map(|t| t.task_id)).ok_or_else(|| {
            weft_plugin::Error::permanent(format!("event {}: no task_id in its data", event.id))
        })?;
        let record = AuditRecord {
            action,
            task_id: &task_id,
            user_id: &task.user_id,
            event_id: &event.id,
            event_time: event.time.as_deref(),
            topic: &delivery.topic,
            partition: delivery.partition,
            offset: delivery.offset,
        };
        // `<input id>-audit`: a retried or redelivered input emits the same id.
        let audit = Event::derived(&event, "audit", "weft/audit", "com.example.audit.recorded")
            .subject(format!("/tasks/{task_id}"))
            .json(&record)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "audit-log".into());
        // A producer that cannot take the event now is retryable; a refusal is permanent.
        weft_plugin::emit(&topic, &audit, Some(task.user_id.as_bytes()))?;
        weft_plugin::debug!("audited {action} of task {task_id}");
        Ok(())
    }
}

weft_plugin::export!(Audit);
