//! Every metric Weft exports, defined in one place. Names follow `weft_<thing>_<unit>[_total]`;
//! labels are low-cardinality: topic, plugin id, and bounded reason codes, never raw error text.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Handler durations from 10 µs to 10 s.
const DURATION_BUCKETS: &[f64] = &[
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Weft's own part of an event's delay: sub-millisecond when nothing waits, up to the longest
/// retry schedule when something does.
const HOST_TIME_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];
/// End-to-end delays from 1 ms to 1 h.
const DELAY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// Registers a freshly built metric and returns it; a bad definition or a duplicate name is a bug.
fn register<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: prometheus::Result<M>,
) -> M {
    let metric = metric.expect("valid metric");
    registry.register(Box::new(metric.clone())).expect("metric registered once");
    metric
}

/// The metrics of one Weft host.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The registry `/metrics` renders.
    pub registry: Registry,
    /// Records read from Kafka, by topic.
    pub received: IntCounterVec,
    /// Offsets the consumer skipped between two records of a partition, by topic.
    pub offsets_skipped: IntCounterVec,
    /// Canaries rolled back or promoted, by plugin and decision.
    pub canary_decisions: IntCounterVec,
    /// Shadow runs by shadow plugin and result (`match`, `mismatch`, `failed`, `dropped`).
    pub shadow_events: IntCounterVec,
    /// Records finished by a previous owner of their partition past its committed offset (recorded
    /// in the commit), skipped without handling, by topic.
    pub finished_before: IntCounterVec,
    /// Records that are not valid CloudEvents, by topic.
    pub invalid: IntCounterVec,
    /// Events checked against a schema, by topic, schema and outcome (`valid`, `invalid`).
    pub schema_checks: IntCounterVec,
    /// Schema checks put off because the registry or a schema's server did not answer, by topic.
    pub schema_unavailable: IntCounterVec,
    /// Valid events no plugin subscribed to, by topic.
    pub unrouted: IntCounterVec,
    /// Events a plugin handled, by topic and plugin.
    pub handled: IntCounterVec,
    /// Failed handler calls, by topic, plugin and reason code.
    pub failed: IntCounterVec,
    /// Attempts that will be retried, by topic and plugin.
    pub retried: IntCounterVec,
    /// Records written to a dead-letter topic, by source topic and reason.
    pub dead_lettered: IntCounterVec,
    /// Dead-letter writes the broker refused (each is retried).
    pub dlq_write_failures: prometheus::IntCounter,
    /// Events held back behind a key that waits for a retry (including the waiting ones).
    pub parked: IntGauge,
    /// Messages between the consumer's position and the partition's end, from librdkafka statistics.
    pub consumer_lag: IntGaugeVec,
    /// Broker round-trip time p99 over the statistics window, by broker.
    pub broker_rtt: prometheus::GaugeVec,
    /// Time from the record's timestamp to the end of its handling, by topic.
    pub event_delay: HistogramVec,
    /// Time from the record reaching Weft to the end of its handling, by topic: Weft's own part of
    /// the delay (decoding, waiting for a lane, the plugin calls, retries, emit acknowledgements).
    pub event_host_time: HistogramVec,
    /// Memory (all linear memories and tables) of a plugin's largest instance, in bytes.
    pub plugin_memory: IntGaugeVec,
    /// Age of the oldest event fetched from a partition and not finished yet, by topic and
    /// partition; absent for partitions with nothing unfinished.
    pub oldest_unfinished: prometheus::GaugeVec,
    /// 1 while this host is not ready (see `/readyz` for the reasons), else 0.
    pub not_ready: IntGauge,
    /// Log lines (`host.log`, stdout, stderr) a plugin wrote past its rate cap, by plugin.
    pub plugin_log_dropped: IntCounterVec,
    /// 1 while fetching is paused for some partitions (backpressure), else 0.
    pub fetch_paused: IntGauge,
    /// Partitions currently assigned to this member.
    pub partitions_assigned: IntGauge,
    /// Rebalance callbacks, by kind (`assign`, `revoke`).
    pub rebalances: IntCounterVec,
    /// Events plugins emitted and the broker acknowledged, by plugin.
    pub emitted: IntCounterVec,
    /// Duration of one handler call including its emits' acknowledgements, by plugin.
    pub handler_duration: HistogramVec,
    /// Events fetched and not yet finished.
    pub in_flight: IntGauge,
    /// Loaded plugins, by plugin, name, version and digest (always 1).
    pub plugin_info: IntGaugeVec,
    /// Plugin loads, replacements, removals and refusals.
    pub plugin_reloads: IntCounterVec,
    /// Compilation and world check of a plugin file, by whether the cache served it.
    pub plugin_compile: HistogramVec,
    /// From a plugin file being stable to the new version's first event, less compilation.
    pub plugin_swap: prometheus::Histogram,
}

/// The series of one plugin that every call updates.
#[derive(Debug, Clone)]
pub struct PluginSeries {
    /// `weft_handler_duration_seconds{plugin}`.
    pub handler_duration: prometheus::Histogram,
    /// `weft_plugin_memory_bytes{plugin}`.
    pub memory: prometheus::IntGauge,
    /// `weft_plugin_log_lines_dropped_total{plugin}`.
    pub log_dropped: prometheus::IntCounter,
    /// `weft_events_emitted_total{plugin}`.
    pub emitted: prometheus::IntCounter,
}

/// The series of one topic that every event of it updates, resolved once per topic: a label lookup
/// hashes the label values and takes a lock, a resolved series is an atomic add.
#[derive(Debug)]
pub struct TopicSeries {
    /// The topic, shared by every event of it instead of copied for each.
    pub topic: std::sync::Arc<str>,
    /// `weft_events_received_total{topic}`.
    pub received: prometheus::IntCounter,
    /// `weft_event_host_seconds{topic}`.
    pub host_time: prometheus::Histogram,
    /// `weft_event_delay_seconds{topic}`.
    pub delay: prometheus::Histogram,
    handled_by_plugin: IntCounterVec,
    /// `weft_events_handled_total{topic, plugin}`, by plugin id, resolved at each plugin's first event.
    handled: std::sync::RwLock<std::collections::HashMap<String, prometheus::IntCounter>>,
}

impl TopicSeries {
    /// Counts an event of this topic handled by `plugin`.
    pub fn handled(&self, plugin: &str) {
        if let Some(counter) = self.handled.read().expect("series lock poisoned").get(plugin) {
            return counter.inc();
        }
        let counter = self.handled_by_plugin.with_label_values(&[&*self.topic, plugin]);
        counter.inc();
        self.handled.write().expect("series lock poisoned").insert(plugin.to_string(), counter);
    }
}

/// The sum of every series of `counters`, whatever their labels.
pub fn total(counters: &IntCounterVec) -> u64 {
    use prometheus::core::Collector;
    counters
        .collect()
        .iter()
        .flat_map(|family| family.get_metric())
        .map(|m| m.get_counter().get_value() as u64)
        .sum()
}

/// The upper bound of the bucket that holds the `q`-quantile of every sample of `histograms`,
/// whatever their labels (`+inf` past the last bucket, 0 without samples).
pub fn bucket_quantile(histograms: &HistogramVec, q: f64) -> f64 {
    use prometheus::core::Collector;
    let mut buckets: Vec<(f64, u64)> = Vec::new();
    let mut count = 0;
    for family in histograms.collect() {
        for metric in family.get_metric() {
            let histogram = metric.get_histogram();
            count += histogram.get_sample_count();
            for (i, bucket) in histogram.get_bucket().iter().enumerate() {
                match buckets.get_mut(i) {
                    Some((_, cumulative)) => *cumulative += bucket.cumulative_count(),
                    None => buckets.push((bucket.upper_bound(), bucket.cumulative_count())),
                }
            }
        }
    }
    if count == 0 {
        return 0.0;
    }
    let rank = (count as f64 * q).ceil() as u64;
    buckets.iter().find(|(_, cumulative)| *cumulative >= rank).map_or(f64::INFINITY, |(bound, _)| *bound)
}

impl Metrics {
    /// The series of plugin `id`.
    pub fn plugin_series(&self, id: &str) -> PluginSeries {
        PluginSeries {
            handler_duration: self.handler_duration.with_label_values(&[id]),
            memory: self.plugin_memory.with_label_values(&[id]),
            log_dropped: self.plugin_log_dropped.with_label_values(&[id]),
            emitted: self.emitted.with_label_values(&[id]),
        }
    }

    /// The series of `topic` that every event updates.
    pub fn topic_series(&self, topic: &str) -> TopicSeries {
        TopicSeries {
            topic: topic.into(),
            received: self.received.with_label_values(&[topic]),
            host_time: self.event_host_time.with_label_values(&[topic]),
            delay: self.event_delay.with_label_values(&[topic]),
            handled_by_plugin: self.handled.clone(),
            handled: Default::default(),
        }
    }

    /// Creates and registers every metric.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            register(&registry, IntCounterVec::new(Opts::new(name, help), labels))
        };
        let histogram = |name: &str, help: &str, buckets: &[f64], labels: &[&str]| {
            register(
                &registry,
                HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets.to_vec()), labels),
            )
        };
        let received = counter("weft_events_received_total", "Records read from Kafka.", &["topic"]);
        let offsets_skipped = counter(
            "weft_offsets_skipped_total",
            "Offsets between two fetched records of a partition that no record came for: compaction, \
             transaction markers, or records a broker failed to return.",
            &["topic"],
        );
        let canary_decisions = counter(
            "weft_canary_decisions_total",
            "Canary versions rolled back (decision=rolled_back) or promoted (decision=promoted).",
            &["plugin", "decision"],
        );
        let shadow_events = counter(
            "weft_shadow_events_total",
            "Copies of events a shadow version ran: result=match (it emitted what the stable version did), \
             mismatch, failed, or dropped (its queue was full).",
            &["plugin", "result"],
        );
        let finished_before = counter(
            "weft_events_finished_before_total",
            "Records a previous owner of their partition finished past its committed offset (recorded with \
             the commit), skipped without being handled again.",
            &["topic"],
        );
        let invalid =
            counter("weft_events_invalid_total", "Records that are not valid CloudEvents.", &["topic"]);
        let schema_checks = counter(
            "weft_schema_checks_total",
            "Events checked against a schema before dispatch; invalid ones are dead-lettered (schema_invalid).",
            &["topic", "schema", "outcome"],
        );
        let schema_unavailable = counter(
            "weft_schema_unavailable_total",
            "Schema checks put off (the event waits) because the registry or a schema's server did not answer.",
            &["topic"],
        );
        let unrouted =
            counter("weft_events_unrouted_total", "Valid events that no plugin subscribed to.", &["topic"]);
        let handled = counter("weft_events_handled_total", "Events a plugin handled.", &["topic", "plugin"]);
        let failed = counter(
            "weft_events_failed_total",
            "Handler calls that did not handle the event, by reason.",
            &["topic", "plugin", "reason"],
        );
        let emitted = counter(
            "weft_events_emitted_total",
            "Events plugins emitted, acknowledged by the broker.",
            &["plugin"],
        );
        let retried =
            counter("weft_events_retried_total", "Attempts that will be retried.", &["topic", "plugin"]);
        let dead_lettered = counter(
            "weft_events_dead_lettered_total",
            "Records written to a dead-letter topic, by reason.",
            &["topic", "reason"],
        );
        let dlq_write_failures = register(
            &registry,
            prometheus::IntCounter::new(
                "weft_dlq_write_failures_total",
                "Dead-letter writes the broker refused (each is retried).",
            ),
        );
        let parked = register(
            &registry,
            IntGauge::new("weft_events_parked", "Events held back behind a key waiting for a retry."),
        );
        let consumer_lag = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "weft_consumer_lag",
                    "Messages between the consumer position and the partition end.",
                ),
                &["topic", "partition"],
            ),
        );
        let broker_rtt = register(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "weft_kafka_broker_rtt_seconds",
                    "Broker round-trip time, p99 over the statistics window.",
                ),
                &["broker"],
            ),
        );
        let event_delay = histogram(
            "weft_event_delay_seconds",
            "Time from the record's timestamp until every plugin finished with it.",
            DELAY_BUCKETS,
            &["topic"],
        );
        let event_host_time = histogram(
            "weft_event_host_seconds",
            "Time from the record reaching Weft (returned by the consumer) until every plugin finished with it.",
            HOST_TIME_BUCKETS,
            &["topic"],
        );
        let plugin_memory = register(
            &registry,
            IntGaugeVec::new(
                Opts::new(
                    "weft_plugin_memory_bytes",
                    "Memory (all linear memories and tables) of a plugin's largest instance.",
                ),
                &["plugin"],
            ),
        );
        let oldest_unfinished = register(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    "weft_partition_oldest_unfinished_seconds",
                    "Age of the oldest fetched, unfinished event of a partition.",
                ),
                &["topic", "partition"],
            ),
        );
        let plugin_log_dropped = counter(
            "weft_plugin_log_lines_dropped_total",
            "Log lines a plugin wrote past its rate cap, dropped.",
            &["plugin"],
        );
        let not_ready =
            register(&registry, IntGauge::new("weft_not_ready", "1 while /readyz answers 503, else 0."));
        let fetch_paused = register(
            &registry,
            IntGauge::new(
                "weft_fetch_paused",
                "1 while fetching is paused for some partitions (events waiting for full lanes, or in-flight records at their cap).",
            ),
        );
        let rebalances = counter("weft_rebalances_total", "Rebalance callbacks, by kind.", &["kind"]);
        let partitions_assigned = register(
            &registry,
            IntGauge::new("weft_partitions_assigned", "Partitions assigned to this member."),
        );
        let plugin_reloads = counter(
            "weft_plugin_reloads_total",
            "Plugin directory changes by result: loaded, replaced, removed, refused.",
            &["result"],
        );
        let plugin_compile = histogram(
            "weft_plugin_compile_seconds",
            "Compilation and world check of a plugin file (cache: hit or miss).",
            DURATION_BUCKETS,
            &["cache"],
        );
        let plugin_swap = register(
            &registry,
            prometheus::Histogram::with_opts(
                HistogramOpts::new(
                    "weft_plugin_swap_seconds",
                    "From a plugin file being stable to the first event on that version, compilation excluded.",
                )
                .buckets(DURATION_BUCKETS.to_vec()),
            ),
        );
        let handler_duration = histogram(
            "weft_handler_duration_seconds",
            "Duration of one handler call.",
            DURATION_BUCKETS,
            &["plugin"],
        );
        let in_flight = register(
            &registry,
            IntGauge::new("weft_events_in_flight", "Events fetched and not yet finished."),
        );
        let plugin_info = register(
            &registry,
            IntGaugeVec::new(
                Opts::new("weft_plugin_info", "Loaded plugins (value 1) with their version and digest."),
                &["plugin", "name", "version", "digest"],
            ),
        );
        Self {
            registry,
            received,
            offsets_skipped,
            canary_decisions,
            shadow_events,
            finished_before,
            invalid,
            schema_checks,
            schema_unavailable,
            unrouted,
            handled,
            failed,
            emitted,
            retried,
            partitions_assigned,
            rebalances,
            consumer_lag,
            broker_rtt,
            fetch_paused,
            plugin_memory,
            oldest_unfinished,
            not_ready,
            plugin_log_dropped,
            event_delay,
            event_host_time,
            dead_lettered,
            dlq_write_failures,
            parked,
            handler_duration,
            in_flight,
            plugin_info,
            plugin_reloads,
            plugin_compile,
            plugin_swap,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out).expect("text encoding cannot fail");
        String::from_utf8(out).expect("Prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_weft_metrics() {
        let m = Metrics::new();
        m.invalid.with_label_values(&["orders"]).inc();
        let text = m.render();
        assert!(text.contains("weft_events_invalid_total{topic=\"orders\"} 1"), "{text}");
    }

    #[test]
    fn bucket_quantiles_merge_every_series() {
        let histograms =
            HistogramVec::new(HistogramOpts::new("h", "h").buckets(vec![0.001, 0.005, 0.01]), &["topic"])
                .unwrap();
        assert_eq!(bucket_quantile(&histograms, 0.99), 0.0, "no samples");
        for _ in 0..98 {
            histograms.with_label_values(&["a"]).observe(0.0005);
        }
        histograms.with_label_values(&["b"]).observe(0.004);
        histograms.with_label_values(&["b"]).observe(0.5);
        assert_eq!(bucket_quantile(&histograms, 0.5), 0.001);
        assert_eq!(bucket_quantile(&histograms, 0.99), 0.005);
        assert_eq!(bucket_quantile(&histograms, 1.0), f64::INFINITY);
    }
}
