//! `[delivery]`: at-least-once (the default) or exactly-once through Kafka transactions.

use anyhow::bail;
use serde::Deserialize;

use super::defaults;

/// What a consumer of Weft's outputs may count on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryMode {
    /// Every event is handled at least once; after a crash or an unfinished revocation its
    /// emitted events may be written again.
    #[default]
    AtLeastOnce,
    /// An event's emitted events and dead letters, and the consumed offsets up to it, are
    /// committed in one Kafka transaction: a consumer reading with `isolation.level =
    /// read_committed` sees each input's outputs exactly once.
    ExactlyOnce,
}

/// `[delivery]`: the delivery mode and, for exactly-once, the transactions' cadence.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryConfig {
    /// `"at-least-once"` (default) or `"exactly-once"`.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// Exactly-once: a transaction is committed at most this long after its first event, in
    /// milliseconds. Outputs become visible to `read_committed` readers at commit, so this is
    /// their added latency; shorter costs more commits.
    #[serde(default = "defaults::transaction_interval_ms")]
    pub transaction_interval_ms: u64,
    /// Exactly-once: a transaction is committed once it holds this many events.
    #[serde(default = "defaults::transaction_max_events")]
    pub transaction_max_events: usize,
    /// Exactly-once: the producer's `transactional.id`. Unset: `weft-<group>-` and a random
    /// suffix, new at every start; a transaction a crashed process left open then blocks
    /// `read_committed` readers of its topics until `transaction_timeout_ms` passes. Set a stable,
    /// unique id per member (a pod's name) and a restarted member aborts it at once. Two running
    /// members must never share one: the second fences the first.
    #[serde(default)]
    pub transactional_id: Option<String>,
    /// Exactly-once: the broker aborts a transaction left open this long (`transaction.timeout.ms`),
    /// in milliseconds.
    #[serde(default = "defaults::transaction_timeout_ms")]
    pub transaction_timeout_ms: u64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            mode: DeliveryMode::default(),
            transaction_interval_ms: defaults::transaction_interval_ms(),
            transaction_max_events: defaults::transaction_max_events(),
            transactional_id: None,
            transaction_timeout_ms: defaults::transaction_timeout_ms(),
        }
    }
}

impl DeliveryConfig {
    /// Whether events are delivered exactly once.
    pub fn exactly_once(&self) -> bool {
        self.mode == DeliveryMode::ExactlyOnce
    }

    /// Refuses a cadence that cannot work.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.transaction_interval_ms == 0 {
            bail!("delivery.transaction_interval_ms must be at least 1");
        }
        if self.transaction_max_events == 0 {
            bail!("delivery.transaction_max_events must be at least 1");
        }
        if self.transaction_timeout_ms < 1_000 {
            bail!("delivery.transaction_timeout_ms must be at least 1000");
        }
        if self.transaction_interval_ms * 2 > self.transaction_timeout_ms {
            bail!(
                "delivery.transaction_interval_ms ({}) must be at most half of delivery.transaction_timeout_ms ({}): \
                 the broker would abort transactions before Weft commits them",
                self.transaction_interval_ms,
                self.transaction_timeout_ms
            );
        }
        if let Some(id) = &self.transactional_id
            && id.trim().is_empty()
        {
            bail!("delivery.transactional_id is empty: leave it out for a generated one");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, DeliveryMode};

    fn refusal(toml: &str) -> String {
        let error = Config::parse(&format!("[kafka]\nbrokers = \"b:9092\"\n{toml}"))
            .and_then(|config| config.validate())
            .unwrap_err();
        format!("{error:#}")
    }

    #[test]
    fn exactly_once_is_opt_in_and_read_from_the_file() {
        let config = Config::parse("[kafka]\nbrokers = \"b:9092\"\n").unwrap();
        assert_eq!(config.delivery.mode, DeliveryMode::AtLeastOnce);
        let config =
            Config::parse("[kafka]\nbrokers = \"b:9092\"\n[delivery]\nmode = \"exactly-once\"\n").unwrap();
        config.validate().unwrap();
        assert!(config.delivery.exactly_once());
        assert_eq!(config.delivery.transaction_interval_ms, 100);
    }

    #[test]
    fn what_cannot_work_is_refused_by_name() {
        assert!(refusal("[kafka.producer]\n\"transactional.id\" = \"x\"\n").contains("delivery.mode"));
        assert!(
            refusal("[kafka.properties]\n\"transaction.timeout.ms\" = \"5000\"\n")
                .contains("transaction_timeout_ms")
        );
        assert!(refusal("[kafka.producer]\nacks = \"1\"\n").contains("acks"));
        assert!(
            refusal("[kafka.consumer]\n\"isolation.level\" = \"read_uncommitted\"\n[delivery]\nmode = \"exactly-once\"\n")
                .contains("read_committed")
        );
        assert!(refusal("[delivery]\ntransaction_interval_ms = 6000\n").contains("half"));
        assert!(refusal("[delivery]\ntransaction_max_events = 0\n").contains("transaction_max_events"));
        assert!(refusal("[delivery]\ntransactional_id = \" \"\n").contains("transactional_id"));
        assert!(refusal("[delivery]\nmode = \"twice\"\n").contains("unknown variant"));
    }
}
