//! Running a plugin without Kafka: `weft check` loads and describes a component, `weft invoke` feeds
//! it one event from a JSON file and shows the outcome and what it emitted.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::config::SubscriptionSpec;
use crate::config::{Config, PluginConfig};
use crate::event::{CloudEvent, Record};
use crate::failure::Failure;
use crate::kafka_in::decode::decode;
use crate::kafka_out::dead_letters::DlqReason;
use crate::kafka_out::emit::{Emitted, Emitter};
use crate::ops::trace::TraceParent;
use crate::pipeline::retry::{Decision, decide};
use crate::sandbox::bindings;
use crate::sandbox::plugin::{Limits, Plugin};
use crate::sandbox::runtime::{Runtime, RuntimeOptions};
use crate::schemas::{EventData, Refusal, Schemas};

/// Loads `path` the way the host would, with `settings`, emitting into a capture buffer.
pub async fn check(path: &Path, settings: &PluginConfig) -> anyhow::Result<Plugin> {
    let runtime = Runtime::new()?;
    let emitter = Arc::new(Emitter::capture());
    let limits = Limits::from_config(&Config::with_brokers("unused:9092"));
    Plugin::load(&runtime, path, settings, limits, emitter)
        .await
        .with_context(|| format!("{} refused", path.display()))
}

/// One record to feed a plugin, as the consumer would read it from Kafka.
#[derive(Debug, Clone)]
pub struct InvokeRecord {
    /// The topic it pretends to come from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// The attempt number the plugin sees (1 for a first delivery).
    pub attempt: u32,
    /// Its headers. Empty: `value` is a structured-mode event (`application/cloudevents+json`);
    /// otherwise the record is read as it stands (binary mode: `ce_*` headers, `value` the data).
    pub headers: Vec<(String, Vec<u8>)>,
    /// Its value.
    pub value: Vec<u8>,
}

impl InvokeRecord {
    /// A structured-mode event from `topic`, partition 0, offset 0, no key, first attempt.
    pub fn structured(topic: &str, json: &[u8]) -> Self {
        Self {
            topic: topic.to_string(),
            partition: 0,
            offset: 0,
            key: None,
            attempt: 1,
            headers: Vec::new(),
            value: json.to_vec(),
        }
    }
}

/// The result of one invocation.
#[derive(Debug)]
pub struct Invocation {
    /// `Ok` with the number of emitted events if the event was handled.
    pub outcome: Result<usize, Failure>,
    /// The events the plugin emitted.
    pub emitted: Vec<Emitted>,
    /// The event as the plugin received it.
    pub event: CloudEvent,
    /// What the host's retry policy (the defaults) would do after this failed attempt.
    pub decision: Option<Decision>,
    /// The plugin's subscriptions, when none of them matches the record: the host would not have
    /// delivered it to the plugin.
    pub unmatched: Option<Vec<SubscriptionSpec>>,
}

impl Invocation {
    /// The exit code of `weft invoke`: 0 handled, 3 retryable (the plugin asked for a retry, or an
    /// emit could not be delivered for now), 4 permanent (the plugin rejected the event, or an emit
    /// was refused for good), 5 stopped by the sandbox (trap, timeout, memory or fuel limit).
    pub fn exit_code(&self) -> u8 {
        match &self.outcome {
            Ok(_) => 0,
            Err(Failure::Retryable { .. } | Failure::EmitUnavailable(_)) => 3,
            Err(Failure::Permanent(_) | Failure::Emit(_)) => 4,
            Err(
                Failure::Trap(_) | Failure::Timeout(_) | Failure::MemoryLimit(_) | Failure::FuelExhausted(_),
            ) => 5,
        }
    }
}

/// Calls the plugin at `path` with the structured-mode CloudEvent JSON in `event_json`, as if read
/// from `topic` partition 0 offset 0.
pub async fn invoke(
    path: &Path,
    event_json: &[u8],
    topic: &str,
    settings: &PluginConfig,
) -> anyhow::Result<Invocation> {
    invoke_with(path, event_json, topic, settings, Limits::from_config(&Config::with_brokers("unused:9092")))
        .await
}

/// [`invoke`] under `limits` instead of the defaults.
pub async fn invoke_with(
    path: &Path,
    event_json: &[u8],
    topic: &str,
    settings: &PluginConfig,
    limits: Limits,
) -> anyhow::Result<Invocation> {
    invoke_record(path, &InvokeRecord::structured(topic, event_json), settings, limits).await
}

/// Calls the plugin at `path` with `record`, decoded as the consumer would decode it.
pub async fn invoke_record(
    path: &Path,
    record: &InvokeRecord,
    settings: &PluginConfig,
    limits: Limits,
) -> anyhow::Result<Invocation> {
    invoke_checked(path, record, settings, limits, None).await
}

/// [`invoke_record`], checking the event against `schemas` first as the host would: an event its
/// schema refuses never reaches the plugin (the host dead-letters it as `schema_invalid`).
pub async fn invoke_checked(
    path: &Path,
    record: &InvokeRecord,
    settings: &PluginConfig,
    limits: Limits,
    schemas: Option<&Schemas>,
) -> anyhow::Result<Invocation> {
    let runtime = Runtime::with_options(&RuntimeOptions { fuel: limits.fuel.is_some(), cache_dir: None })?;
    let emitter = Arc::new(Emitter::capture());
    let plugin = Plugin::load(&runtime, path, settings, limits, emitter.clone())
        .await
        .with_context(|| format!("{} refused", path.display()))?;
    let structured: &[u8] = b"application/cloudevents+json";
    let headers: Vec<(&str, Option<&[u8]>)> = if record.headers.is_empty() {
        vec![("content-type", Some(structured))]
    } else {
        record.headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect()
    };
    let (mut event, headers) =
        decode(&headers, Some(&record.value)).context(if record.headers.is_empty() {
            "the event file is not a valid structured-mode CloudEvent"
        } else {
            "the record is not a valid CloudEvent"
        })?;
    if let Some(schemas) = schemas {
        let data = EventData {
            ty: &event.ty,
            datacontenttype: &mut event.datacontenttype,
            dataschema: &mut event.dataschema,
            data: &mut event.data,
        };
        match schemas.check(&record.topic, data).await {
            Ok(()) => {}
            Err(Refusal::Unavailable(why)) => anyhow::bail!("cannot check the event's schema now: {why}"),
            Err(Refusal::Invalid { reason, .. }) => {
                return Ok(Invocation {
                    outcome: Err(Failure::Permanent(format!("refused by its schema: {reason}"))),
                    emitted: Vec::new(),
                    event,
                    decision: Some(Decision::DeadLetter(DlqReason::SchemaInvalid)),
                    unmatched: None,
                });
            }
        }
    }
    let unmatched = (!plugin.subscriptions.iter().any(|s| s.topic == record.topic && s.matches(&event)))
        .then(|| plugin.subscriptions.clone());
    let kafka = Record {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        timestamp_ms: None,
        headers,
    };
    let trace =
        event.extension("traceparent").and_then(TraceParent::parse).map(|parent| parent.child().to_string());
    let outcome = plugin
        .handle_traced(&event.clone().into(), &bindings::delivery(&kafka, record.attempt), trace.as_deref())
        .await;
    let decision = outcome.as_ref().err().map(|failure| decide(&plugin.retry, failure, record.attempt));
    Ok(Invocation { outcome, emitted: emitter.captured(), event, decision, unmatched })
}

impl Invocation {
    /// What happened, for people: the event, any subscription mismatch, every emitted event with
    /// all its attributes, and the outcome with the retry decision.
    pub fn report(&self, record: &InvokeRecord) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let key = record.key.as_deref().map_or("-".into(), String::from_utf8_lossy);
        let _ = writeln!(
            out,
            "event {} ({} from {}) at {}/{}@{}, key {key}, attempt {}",
            self.event.id,
            self.event.ty,
            self.event.source,
            record.topic,
            record.partition,
            record.offset,
            record.attempt
        );
        if let Some(subscriptions) = &self.unmatched {
            let _ = writeln!(
                out,
                "note: no subscription of the plugin matches this event, so the host would not deliver it: {}",
                describe_subscriptions(subscriptions)
            );
        }
        let _ = writeln!(out, "emitted {} event(s)", self.emitted.len());
        for emitted in &self.emitted {
            let key = emitted.key.as_deref().map_or("-".into(), String::from_utf8_lossy);
            let _ = writeln!(out, "  to {} key {key}", emitted.topic);
            for (name, value) in attributes(&emitted.event) {
                let _ = writeln!(out, "    {name:<16} {value}");
            }
        }
        let code = self.exit_code();
        match &self.outcome {
            Ok(_) => {
                let _ = writeln!(out, "handled (exit {code})");
            }
            Err(failure) => {
                let _ = writeln!(out, "failed ({}): {failure} (exit {code})", failure.reason());
                if let Failure::Retryable { delay: Some(delay), .. } = failure {
                    let _ = writeln!(out, "the plugin asks to wait {delay:?}");
                }
                if let Some(decision) = self.decision {
                    let _ = writeln!(out, "the host would {}", describe_decision(decision, record.attempt));
                }
            }
        }
        out
    }

    /// The same as one JSON object.
    pub fn to_json(&self, record: &InvokeRecord) -> serde_json::Value {
        let (outcome, reason, error, hint) = match &self.outcome {
            Ok(_) => ("handled", None, None, None),
            Err(failure) => {
                let hint = match failure {
                    Failure::Retryable { delay, .. } => delay.map(|d| d.as_millis() as u64),
                    _ => None,
                };
                let kind = match self.exit_code() {
                    3 => "retryable",
                    4 => "permanent",
                    _ => "stopped",
                };
                (kind, Some(failure.reason()), Some(failure.to_string()), hint)
            }
        };
        let decision = self.decision.map(|d| match d {
            Decision::Retry(delay) => serde_json::json!({ "retry": { "attempt": record.attempt + 1, "in_ms": delay.as_millis() as u64 } }),
            Decision::Wait(delay) => serde_json::json!({ "wait": { "attempt": record.attempt, "in_ms": delay.as_millis() as u64 } }),
            Decision::DeadLetter(reason) => serde_json::json!({ "dead_letter": { "reason": reason.as_str() } }),
        });
        let emitted: Vec<serde_json::Value> = self
            .emitted
            .iter()
            .map(|e| {
                let attributes: serde_json::Map<String, serde_json::Value> =
                    attributes(&e.event).into_iter().map(|(k, v)| (k, v.into())).collect();
                serde_json::json!({
                    "topic": e.topic,
                    "key": e.key.as_deref().map(String::from_utf8_lossy),
                    "event": attributes,
                })
            })
            .collect();
        serde_json::json!({
            "event": { "id": self.event.id, "type": self.event.ty, "source": self.event.source },
            "topic": record.topic,
            "partition": record.partition,
            "offset": record.offset,
            "attempt": record.attempt,
            "matches_subscriptions": self.unmatched.is_none(),
            "outcome": outcome,
            "reason": reason,
            "error": error,
            "delay_hint_ms": hint,
            "decision": decision,
            "emitted": emitted,
            "exit_code": self.exit_code(),
        })
    }
}

/// Every attribute of `event` with its value, extensions after the context attributes, and the
/// data as text when it is UTF-8 (else `base64:` and its encoding).
fn attributes(event: &CloudEvent) -> Vec<(String, String)> {
    use base64::Engine as _;
    let mut out: Vec<(String, String)> = [
        ("specversion", Some(&event.specversion)),
        ("id", Some(&event.id)),
        ("source", Some(&event.source)),
        ("type", Some(&event.ty)),
        ("datacontenttype", event.datacontenttype.as_ref()),
        ("dataschema", event.dataschema.as_ref()),
        ("subject", event.subject.as_ref()),
        ("time", event.time.as_ref()),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name.to_string(), v.clone())))
    .collect();
    out.extend(event.extensions.iter().cloned());
    if let Some(data) = &event.data {
        let data = match std::str::from_utf8(data) {
            Ok(text) => text.to_string(),
            Err(_) => format!("base64:{}", base64::engine::general_purpose::STANDARD.encode(data)),
        };
        out.push(("data".into(), data));
    }
    out
}

fn describe_subscriptions(subscriptions: &[SubscriptionSpec]) -> String {
    if subscriptions.is_empty() {
        return "it subscribes to nothing".into();
    }
    let parts: Vec<String> = subscriptions
        .iter()
        .map(|s| {
            let mut part = format!("topic {}", s.topic);
            if !s.types.is_empty() {
                part.push_str(&format!(" types {}", s.types.join("|")));
            }
            if !s.sources.is_empty() {
                part.push_str(&format!(" sources {}", s.sources.join("|")));
            }
            part
        })
        .collect();
    parts.join("; ")
}

fn describe_decision(decision: Decision, attempt: u32) -> String {
    match decision {
        Decision::Retry(delay) => format!("retry it (attempt {}) in {delay:?}", attempt + 1),
        Decision::Wait(delay) => format!("try again in {delay:?} without counting attempt {attempt}"),
        Decision::DeadLetter(reason) => format!("dead-letter it (reason {})", reason.as_str()),
    }
}
