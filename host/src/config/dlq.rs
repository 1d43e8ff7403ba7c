//! `[dlq]`: dead-letter topics.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::defaults;

/// `[dlq]`: where events that cannot be handled go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqConfig {
    /// Suffix appended to a source topic to name its dead-letter topic (`task-events.dlq`).
    #[serde(default = "defaults::dlq_suffix")]
    pub topic_suffix: String,
    /// Dead-letter topic per source topic, replacing the suffix rule for that topic.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Also dead-letter valid events that no plugin subscribed to (reason `no_route`). Off by default:
    /// a topic usually carries event types that only some plugins want.
    #[serde(default)]
    pub unrouted: bool,
    /// Create missing dead-letter topics at start-up, with as many partitions as their source
    /// topic. Turn off where topics are managed elsewhere.
    #[serde(default = "defaults::yes")]
    pub create_topics: bool,
    /// Replication factor of dead-letter topics Weft creates; `-1` uses the broker's default.
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: i32,
    /// Let the `weft.replay.plugin` header (added by `weft dlq replay`) send a replayed record only
    /// to the plugin that failed it. The header can only narrow the route to a plugin that would
    /// have received the event anyway. Turn off where producers you do not control write to the
    /// topics: every record then goes to every subscribed plugin.
    #[serde(default = "defaults::yes")]
    pub replay_routing: bool,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            topic_suffix: defaults::dlq_suffix(),
            topics: BTreeMap::new(),
            unrouted: false,
            create_topics: true,
            replication_factor: defaults::replication_factor(),
            replay_routing: true,
        }
    }
}

impl DlqConfig {
    /// Refuses a dead-letter topic that would be its own source topic.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.topic_suffix.is_empty() {
            bail!("dlq.topic_suffix is empty: a dead-letter topic must differ from its source topic");
        }
        if let Some((source, _)) = self.topics.iter().find(|(source, dlq)| source == dlq) {
            bail!("dlq.topics.\"{source}\" names the source topic itself");
        }
        Ok(())
    }

    /// The dead-letter topic for records of `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        self.topics.get(topic).cloned().unwrap_or_else(|| format!("{topic}{}", self.topic_suffix))
    }
}
