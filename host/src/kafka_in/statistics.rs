//! librdkafka's statistics (`statistics.interval.ms`): consumer lag per partition and broker
//! round-trip times, exported as metrics. Only the fields Weft exports are read, so a newer
//! librdkafka adding fields changes nothing.

use crate::ops::metrics::Metrics;

/// Exports one statistics report to `metrics`; an unreadable report is skipped.
pub fn export(statistics: &[u8], metrics: &Metrics) {
    let stats: Stats = match serde_json::from_slice(statistics) {
        Ok(stats) => stats,
        Err(error) => return tracing::debug!(%error, "unreadable librdkafka statistics"),
    };
    for (topic, t) in &stats.topics {
        for p in t.partitions.values() {
            if p.partition >= 0 && p.consumer_lag >= 0 {
                metrics
                    .consumer_lag
                    .with_label_values(&[topic, &p.partition.to_string()])
                    .set(p.consumer_lag);
            }
        }
    }
    for (name, broker) in &stats.brokers {
        if let Some(rtt) = broker.rtt.as_ref().filter(|rtt| rtt.cnt > 0) {
            metrics.broker_rtt.with_label_values(&[name]).set(rtt.p99 as f64 / 1e6);
        }
    }
}

/// The parts of librdkafka's statistics JSON that Weft exports.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Stats {
    topics: std::collections::HashMap<String, StatsTopic>,
    brokers: std::collections::HashMap<String, StatsBroker>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsTopic {
    partitions: std::collections::HashMap<String, StatsPartition>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsPartition {
    partition: i32,
    consumer_lag: i64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsBroker {
    rtt: Option<StatsWindow>,
}
/// A rolling window, in microseconds.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsWindow {
    cnt: i64,
    p99: i64,
}
