//! Running a plugin without Kafka: `weft check` loads and describes a component, `weft invoke` feeds
//! it one event from a JSON file and shows the outcome and what it emitted.

use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use crate::bindings;
use crate::config::{Config, PluginConfig};
use crate::decode::decode;
use crate::emit::{Emitted, Emitter};
use crate::event::Record;
use crate::plugin::{Failure, Limits, Plugin};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::trace::TraceParent;

/// Loads `path` the way the host would, with `settings`, emitting into a capture buffer.
pub async fn check(path: &Path, settings: &PluginConfig) -> anyhow::Result<Plugin> {
    let runtime = Runtime::new()?;
    let emitter = Arc::new(Emitter::Capture(Mutex::new(Vec::new())));
    let limits = Limits::from_config(&Config::with_brokers("unused:9092"));
    Plugin::load(&runtime, path, settings, limits, emitter)
        .await
        .with_context(|| format!("{} refused", path.display()))
}

/// The result of one invocation.
#[derive(Debug)]
pub struct Invocation {
    /// `Ok` with the number of emitted events if the event was handled.
    pub outcome: Result<usize, Failure>,
    /// The events the plugin emitted.
    pub emitted: Vec<Emitted>,
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
    let runtime = Runtime::with_options(&RuntimeOptions { fuel: limits.fuel.is_some(), cache_dir: None })?;
    let emitter = Arc::new(Emitter::Capture(Mutex::new(Vec::new())));
    let plugin = Plugin::load(&runtime, path, settings, limits, emitter.clone())
        .await
        .with_context(|| format!("{} refused", path.display()))?;
    let content_type: &[u8] = b"application/cloudevents+json";
    let (event, headers) = decode(&[("content-type", Some(content_type))], Some(event_json))
        .context("the event file is not a valid CloudEvent")?;
    let record =
        Record { topic: topic.to_string(), partition: 0, offset: 0, key: None, timestamp_ms: None, headers };
    let trace =
        event.extension("traceparent").and_then(TraceParent::parse).map(|parent| parent.child().to_string());
    let outcome =
        plugin.handle_traced(&event.into(), &bindings::delivery(&record, 1), trace.as_deref()).await;
    Ok(Invocation { outcome, emitted: emitter.captured() })
}
