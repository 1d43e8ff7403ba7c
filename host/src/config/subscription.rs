//! A subscription: a topic and CloudEvent `type`/`source` filters, from a plugin's `describe()` or
//! the `[plugin.<id>] subscriptions` override.

use anyhow::bail;
use serde::Deserialize;

use crate::event::CloudEvent;

/// One subscription: a topic and optional filters. Comes from a plugin's `describe()` or from the
/// `[plugin.<name>] subscriptions` override.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSpec {
    /// The topic to consume.
    pub topic: String,
    /// CloudEvent `type` filters: exact, or a prefix when ending in `*`. Empty: every type.
    #[serde(default)]
    pub types: Vec<String>,
    /// CloudEvent `source` filters, like `types`. Empty: every source.
    #[serde(default)]
    pub sources: Vec<String>,
}

impl SubscriptionSpec {
    /// Checks the topic name and the filters.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.topic.is_empty() {
            bail!("topic is empty");
        }
        if self.topic.len() > 249
            || !self.topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        {
            bail!("topic {:?} is not a valid Kafka topic name", self.topic);
        }
        for (field, filters) in [("types", &self.types), ("sources", &self.sources)] {
            for filter in filters {
                if filter.is_empty() || filter.trim_end_matches('*').contains('*') {
                    bail!(
                        "{field} filter {filter:?}: use a value, or a prefix followed by a single trailing `*`"
                    );
                }
            }
        }
        Ok(())
    }

    /// Whether `event`, read from this subscription's topic, passes the filters.
    pub fn matches(&self, event: &CloudEvent) -> bool {
        filters_match(&self.types, &event.ty) && filters_match(&self.sources, &event.source)
    }
}

fn filters_match(filters: &[String], value: &str) -> bool {
    filters.is_empty()
        || filters.iter().any(|filter| match filter.strip_suffix('*') {
            Some(prefix) => value.starts_with(prefix),
            None => value == filter,
        })
}
