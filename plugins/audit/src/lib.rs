//! Audit trail for the Todo app's `task-events` topic.
//!
//! For every `com.example.task.created|updated|completed|deleted` event it emits one
//! `com.example.audit.recorded` event to the `audit-log` topic (override with the `output-topic`
//! config key), keyed by the same user id so one user's trail stays in order. The audit record names
//! the action, the task, the user and exactly which input record it came from.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p audit`, then copy
//! `target/wasm32-wasip2/release/audit.wasm` into Weft's plugins directory.

wit_bindgen::generate!({ path: "../../wit", world: "handler" });

use serde::{Deserialize, Serialize};
use weft::handler::host::{self, LogLevel};
use weft::handler::types::{RetryableError, Subscription};

const TYPE_PREFIX: &str = "com.example.task.";

/// The fields of a task event's `data` that the audit trail keeps.
#[derive(Deserialize)]
struct TaskData {
    task_id: String,
    user_id: String,
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

impl Guest for Audit {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "audit".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Writes an audit record for every Todo task event".into(),
            subscriptions: vec![Subscription {
                topic: "task-events".into(),
                types: vec![format!("{TYPE_PREFIX}*")],
                sources: vec![],
            }],
        }
    }

    fn handle(event: Cloudevent, delivery: Delivery) -> Result<(), HandleError> {
        let action = event.type_.strip_prefix(TYPE_PREFIX).unwrap_or(&event.type_);
        let data = event.data.as_deref().unwrap_or_default();
        let task: TaskData = serde_json::from_slice(data).map_err(|e| {
            HandleError::Permanent(format!("event {} has no task_id/user_id in its data: {e}", event.id))
        })?;
        let record = AuditRecord {
            action,
            task_id: &task.task_id,
            user_id: &task.user_id,
            event_id: &event.id,
            event_time: event.time.as_deref(),
            topic: &delivery.topic,
            partition: delivery.partition,
            offset: delivery.offset,
        };
        let audit = Cloudevent {
            id: format!("audit-{}", event.id),
            source: "weft/audit".into(),
            type_: "com.example.audit.recorded".into(),
            specversion: "1.0".into(),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            subject: Some(format!("/tasks/{}", task.task_id)),
            time: event.time.clone(),
            // The host adds the handler's `traceparent`, continuing the input's trace.
            extensions: vec![],
            data: Some(serde_json::to_vec(&record).expect("audit record serializes")),
        };
        let topic = host::config_get("output-topic").unwrap_or_else(|| "audit-log".into());
        host::emit(&topic, &audit, Some(task.user_id.as_bytes())).map_err(|e| {
            HandleError::Retryable(RetryableError {
                reason: format!("could not emit the audit record: {e:?}"),
                delay_ms: None,
            })
        })?;
        host::log(LogLevel::Debug, &format!("audited {action} of task {}", task.task_id));
        Ok(())
    }
}

export!(Audit);
