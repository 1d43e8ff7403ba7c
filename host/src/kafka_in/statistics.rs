//! librdkafka's statistics (`statistics.interval.ms`): consumer lag per partition and broker
//! round-trip times, exported as metrics, and the state of the consumer's group handler, which
//! `/readyz` reports. Only the fields Weft uses are read, so a newer librdkafka adding fields
//! changes nothing.

use std::time::{Duration, Instant};

use crate::ops::metrics::Metrics;

/// The consumer group handler's state, as librdkafka last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupState {
    /// `up` while the group coordinator is known and reachable; `query-coord`, `wait-coord`, … while
    /// the consumer looks for it.
    pub state: String,
    /// When it entered that state (as of the report).
    pub since: Instant,
}

impl GroupState {
    /// Whether the consumer has a working group coordinator.
    pub fn is_up(&self) -> bool {
        self.state == "up"
    }
}

/// Exports one statistics report to `metrics`; returns the group handler's state, if the report
/// has one (a consumer's does). An unreadable report is skipped.
pub fn export(statistics: &[u8], metrics: &Metrics) -> Option<GroupState> {
    let stats: Stats = match serde_json::from_slice(statistics) {
        Ok(stats) => stats,
        Err(error) => {
            tracing::debug!(%error, "unreadable librdkafka statistics");
            return None;
        }
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
    let group = stats.cgrp?;
    let age = Duration::from_millis(group.stateage.max(0) as u64);
    Some(GroupState {
        state: group.state,
        since: Instant::now().checked_sub(age).unwrap_or_else(Instant::now),
    })
}

/// The parts of librdkafka's statistics JSON that Weft exports.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Stats {
    topics: std::collections::HashMap<String, StatsTopic>,
    brokers: std::collections::HashMap<String, StatsBroker>,
    cgrp: Option<StatsGroup>,
}

/// The consumer group handler.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsGroup {
    state: String,
    /// Milliseconds since the state changed.
    stateage: i64,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_group_state_and_lag_are_read_from_a_report() {
        let metrics = Metrics::new();
        let report = br#"{"name":"c","topics":{"t":{"partitions":{"0":{"partition":0,"consumer_lag":7},
            "-1":{"partition":-1,"consumer_lag":-1}}}},"brokers":{},"cgrp":{"state":"wait-coord","stateage":3000,
            "join_state":"init","newfield":1}}"#;
        let group = export(report, &metrics).expect("a consumer's report has a group");
        assert_eq!(group.state, "wait-coord");
        assert!(!group.is_up());
        assert!(group.since.elapsed() >= Duration::from_millis(3_000));
        assert_eq!(metrics.consumer_lag.with_label_values(&["t", "0"]).get(), 7);
        assert!(
            export(br#"{"name":"p","topics":{},"brokers":{}}"#, &metrics).is_none(),
            "a producer's has none"
        );
        assert!(export(b"not json", &metrics).is_none());
    }
}
