//! Routing: which plugins an event goes to, from the plugins' subscriptions (topic + CloudEvent
//! `type`/`source` filters), and which topics the consumer must subscribe to.

use std::collections::{BTreeSet, HashMap};

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

/// The routing table: for every subscribed topic, the plugins and the filters they use there.
#[derive(Debug)]
pub struct Router<P> {
    routes: HashMap<String, Vec<(P, Vec<SubscriptionSpec>)>>,
}

impl<P: Clone> Router<P> {
    /// Builds the table from each plugin's effective subscriptions.
    pub fn new(plugins: impl IntoIterator<Item = (P, Vec<SubscriptionSpec>)>) -> Self {
        let mut routes: HashMap<String, Vec<(P, Vec<SubscriptionSpec>)>> = HashMap::new();
        for (plugin, subscriptions) in plugins {
            let mut by_topic: HashMap<&str, Vec<SubscriptionSpec>> = HashMap::new();
            for sub in &subscriptions {
                by_topic.entry(&sub.topic).or_default().push(sub.clone());
            }
            for (topic, subs) in by_topic {
                routes.entry(topic.to_string()).or_default().push((plugin.clone(), subs));
            }
        }
        Self { routes }
    }

    /// The topics the consumer subscribes to, sorted.
    pub fn topics(&self) -> Vec<String> {
        self.routes.keys().cloned().collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// The plugins that want `event` read from `topic`, in load order.
    pub fn route(&self, topic: &str, event: &CloudEvent) -> Vec<P> {
        self.routes
            .get(topic)
            .into_iter()
            .flatten()
            .filter(|(_, subs)| subs.iter().any(|s| s.matches(event)))
            .map(|(plugin, _)| plugin.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(topic: &str, types: &[&str], sources: &[&str]) -> SubscriptionSpec {
        SubscriptionSpec {
            topic: topic.into(),
            types: types.iter().map(|s| s.to_string()).collect(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn event(ty: &str, source: &str) -> CloudEvent {
        CloudEvent {
            id: "1".into(),
            source: source.into(),
            ty: ty.into(),
            specversion: "1.0".into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: vec![],
            data: None,
        }
    }

    #[test]
    fn exact_and_prefix_filters() {
        let s = sub("t", &["com.example.task.*", "ping"], &[]);
        assert!(s.matches(&event("com.example.task.created", "/x")));
        assert!(s.matches(&event("ping", "/x")));
        assert!(!s.matches(&event("pingpong", "/x")));
        assert!(!s.matches(&event("com.example.order.created", "/x")));
        let by_source = sub("t", &[], &["aikernel.*"]);
        assert!(by_source.matches(&event("any", "aikernel.catalog")));
        assert!(!by_source.matches(&event("any", "other")));
    }

    #[test]
    fn routes_to_every_matching_plugin_and_lists_topics() {
        let router = Router::new([
            ("audit", vec![sub("task-events", &["com.example.task.*"], &[])]),
            ("all", vec![sub("task-events", &[], &[]), sub("reminders", &[], &[])]),
        ]);
        assert_eq!(router.topics(), vec!["reminders".to_string(), "task-events".to_string()]);
        assert_eq!(
            router.route("task-events", &event("com.example.task.created", "/")),
            vec!["audit", "all"]
        );
        assert_eq!(router.route("task-events", &event("other", "/")), vec!["all"]);
        assert_eq!(router.route("reminders", &event("x", "/")), vec!["all"]);
        assert!(router.route("unknown", &event("x", "/")).is_empty());
    }

    #[test]
    fn invalid_subscriptions_are_explained() {
        assert!(sub("", &[], &[]).validate().is_err());
        assert!(sub("bad topic", &[], &[]).validate().is_err());
        let err = sub("t", &["a*b"], &[]).validate().unwrap_err().to_string();
        assert!(err.contains("types filter"), "{err}");
        assert!(sub("oms.order.events", &["order.*"], &[]).validate().is_ok());
    }
}
