//! `[kafka]`: the cluster, the consumer group, and librdkafka properties passed through.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::{ENV_BROKERS, defaults};

/// librdkafka properties that Weft sets itself because its delivery guarantees depend on them.
const MANAGED_CONSUMER_PROPERTIES: &[&str] =
    &["bootstrap.servers", "group.id", "enable.auto.offset.store", "enable.auto.commit"];

/// Producer properties that dead letters and emits depend on, with the values that keep them safe
/// (`request.required.acks` is librdkafka's other name for `acks`).
const PRODUCER_GUARANTEES: &[(&str, &[&str])] =
    &[("acks", &["all", "-1"]), ("request.required.acks", &["all", "-1"]), ("enable.idempotence", &["true"])];

/// Producer properties Weft cannot work with, and why.
const PRODUCER_REFUSED: &[(&str, &str)] = &[
    (
        "transactional.id",
        "is managed by Weft: for transactions set delivery.mode = \"exactly-once\" (and, for a stable id, \
         delivery.transactional_id)",
    ),
    ("transaction.timeout.ms", "is managed by Weft: set delivery.transaction_timeout_ms"),
];

/// Consumer properties Weft cannot work with at some value (`None`: any value), and why.
const CONSUMER_REFUSED: &[(&str, Option<&str>, &str)] = &[
    (
        "enable.partition.eof",
        Some("true"),
        "reports the end of every partition as an error, which Weft has no use for",
    ),
    (
        "auto.offset.reset",
        Some("error"),
        "stops a partition whose committed offset is gone, silently; use earliest or latest",
    ),
    (
        "group.instance.id",
        None,
        "(static membership) keeps a stopped member's partitions unassigned until its session times \
         out, where Weft hands them over as soon as it stops",
    ),
];

/// `[kafka]`: the cluster, the group, and librdkafka properties passed through unchanged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port` (`bootstrap.servers`). Env: `WEFT_KAFKA_BROKERS`.
    pub brokers: String,
    /// Consumer group id. Every Weft process of one deployment uses the same id; Kafka spreads the
    /// partitions among them. Env: `WEFT_KAFKA_GROUP_ID`.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// librdkafka properties for both the consumer and the producer (SASL, SSL, `client.id`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only (`fetch.wait.max.ms`, `session.timeout.ms`, …).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer that writes emitted events (`linger.ms`, `compression.type`, …).
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

impl KafkaConfig {
    /// Refuses empty brokers or group, properties Weft manages, and producer settings that would
    /// break the delivery guarantees.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.brokers.trim().is_empty() {
            bail!("kafka.brokers is empty: give at least one host:port (or set {ENV_BROKERS})");
        }
        if self.group_id.trim().is_empty() {
            bail!("kafka.group_id is empty");
        }
        for (table, properties) in
            [("kafka.properties", &self.properties), ("kafka.consumer", &self.consumer)]
        {
            if let Some(key) = properties.keys().find(|k| MANAGED_CONSUMER_PROPERTIES.contains(&k.as_str())) {
                bail!(
                    "{table}.\"{key}\" is managed by Weft (use kafka.brokers / kafka.group_id; offsets are \
                     stored only after events are handled)"
                );
            }
        }
        for (table, properties) in
            [("kafka.properties", &self.properties), ("kafka.consumer", &self.consumer)]
        {
            for (key, refused, why) in CONSUMER_REFUSED {
                if let Some(value) = properties.get(*key)
                    && refused.is_none_or(|refused| value.eq_ignore_ascii_case(refused))
                {
                    bail!("{table}.\"{key}\" = {value:?} {why}");
                }
            }
        }
        for (table, properties) in
            [("kafka.properties", &self.properties), ("kafka.producer", &self.producer)]
        {
            if let Some((key, why)) = PRODUCER_REFUSED.iter().find(|(key, _)| properties.contains_key(*key)) {
                bail!("{table}.\"{key}\" {why}");
            }
            for (key, safe) in PRODUCER_GUARANTEES {
                if let Some(value) = properties.get(*key)
                    && !safe.contains(&value.to_ascii_lowercase().as_str())
                {
                    bail!(
                        "{table}.\"{key}\" = {value:?} would let emitted events and dead letters be lost or \
                         duplicated; Weft needs {}",
                        safe.join(" or ")
                    );
                }
            }
        }
        Ok(())
    }

    /// Refuses settings that contradict the delivery mode: with exactly-once, a consumer that
    /// reads uncommitted records (it would handle inputs a transaction later aborted).
    pub fn validate_for(&self, delivery: &super::DeliveryConfig) -> anyhow::Result<()> {
        if !delivery.exactly_once() {
            return Ok(());
        }
        for (table, properties) in
            [("kafka.properties", &self.properties), ("kafka.consumer", &self.consumer)]
        {
            if let Some(value) = properties.get("isolation.level")
                && !value.eq_ignore_ascii_case("read_committed")
            {
                bail!(
                    "{table}.\"isolation.level\" = {value:?} contradicts delivery.mode = \"exactly-once\": \
                     Weft would handle records of transactions that are later aborted; use read_committed"
                );
            }
        }
        Ok(())
    }
}
