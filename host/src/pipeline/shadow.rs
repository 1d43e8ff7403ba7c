//! Shadow runs. A file `<id>.shadow.wasm` beside `<id>.wasm` is a shadow version of plugin
//! `<id>`: it serves as plugin `<id>.shadow` and receives a copy of every event the stable version
//! handled, after it did. What the shadow emits is never produced: it is compared with what the
//! stable version emitted for the same event (topic, type, key and data of each emitted event, in
//! order). Matches, mismatches and failures are counted (`weft_shadow_events_total`) and a sample
//! of mismatches is logged with both sides. The shadow's failures never retry and never
//! dead-letter, and it never slows the stable version: copies wait in a bounded queue
//! (`[plugin.<id>.shadow] queue`), and a copy that finds it full is dropped and counted.

use std::sync::Arc;

use prometheus::IntCounter;
use tokio::sync::mpsc;

use crate::config::ShadowConfig;
use crate::kafka_out::emit::EmitSummary;
use crate::ops::metrics::Metrics;
use crate::sandbox::bindings::{Cloudevent, Delivery};
use crate::sandbox::plugin::Plugin;

/// The suffix of a shadow's plugin id (and of its file's stem).
pub const SUFFIX: &str = ".shadow";

/// The stable plugin's id of shadow `id` (`orders.shadow` → `orders`); `None` if `id` is no shadow.
pub fn base_of(id: &str) -> Option<&str> {
    id.strip_suffix(SUFFIX).filter(|base| !base.is_empty())
}

/// Mismatches logged in full before only every hundredth is.
const LOGGED_MISMATCHES: u64 = 10;

/// An event the stable version handled, and what it emitted.
struct Copy {
    event: Cloudevent,
    delivery: Delivery,
    stable: Vec<EmitSummary>,
}

/// The counters of one shadow.
#[derive(Clone)]
struct Series {
    matched: IntCounter,
    mismatched: IntCounter,
    failed: IntCounter,
    dropped: IntCounter,
}

/// A shadow in service: its plugin and the queue of copies its worker runs.
pub struct Shadow {
    /// The shadow version.
    pub plugin: Arc<Plugin>,
    queue: mpsc::Sender<Copy>,
    series: Series,
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shadow").field("plugin", &self.plugin.id).finish()
    }
}

impl Shadow {
    /// Starts the worker of shadow `plugin`; it ends when the shadow leaves service.
    pub fn start(plugin: Arc<Plugin>, config: &ShadowConfig, metrics: &Metrics) -> Arc<Self> {
        plugin.summarize_emits(true);
        let counter = |result: &str| metrics.shadow_events.with_label_values(&[&plugin.id, result]);
        let series = Series {
            matched: counter("match"),
            mismatched: counter("mismatch"),
            failed: counter("failed"),
            dropped: counter("dropped"),
        };
        let (queue, copies) = mpsc::channel(config.queue);
        tokio::spawn(run(plugin.clone(), copies, series.clone()));
        Arc::new(Self { plugin, queue, series })
    }

    /// Offers the shadow a copy of an event the stable version handled, with what it emitted;
    /// dropped (and counted) when the shadow's queue is full.
    pub fn offer(&self, event: &Cloudevent, delivery: &Delivery, stable: &[EmitSummary]) {
        let copy = Copy { event: event.clone(), delivery: delivery.clone(), stable: stable.to_vec() };
        if self.queue.try_send(copy).is_err() {
            self.series.dropped.inc();
        }
    }
}

/// Runs the shadow on each copy and compares what it emitted with what the stable version did.
async fn run(plugin: Arc<Plugin>, mut copies: mpsc::Receiver<Copy>, series: Series) {
    let mut mismatches = 0u64;
    while let Some(copy) = copies.recv().await {
        match plugin.call(&copy.event, &copy.delivery, None).await {
            Ok(emits) if emits.summaries() == copy.stable => series.matched.inc(),
            Ok(emits) => {
                series.mismatched.inc();
                mismatches += 1;
                if mismatches <= LOGGED_MISMATCHES || mismatches.is_multiple_of(100) {
                    let list = |emitted: &[EmitSummary]| {
                        emitted.iter().map(ToString::to_string).collect::<Vec<_>>().join(" | ")
                    };
                    tracing::warn!(
                        plugin = %plugin.id,
                        ce.id = %copy.event.id,
                        topic = %copy.delivery.topic,
                        partition = copy.delivery.partition,
                        offset = copy.delivery.offset,
                        stable = %list(&copy.stable),
                        shadow = %list(emits.summaries()),
                        mismatches,
                        "the shadow emitted something else than the stable version"
                    );
                }
            }
            Err(failure) => {
                series.failed.inc();
                tracing::debug!(plugin = %plugin.id, ce.id = %copy.event.id, %failure, "the shadow failed an event (not retried)");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shadow_id_names_its_stable_plugin() {
        assert_eq!(base_of("orders.shadow"), Some("orders"));
        assert_eq!(base_of("orders"), None);
        assert_eq!(base_of("orders.canary"), None);
    }
}
