//! Routing: which plugins an event goes to, from the plugins' subscriptions (topic + CloudEvent
//! `type`/`source` filters), and which topics the consumer must subscribe to.

use std::collections::{BTreeSet, HashMap};

use crate::config::SubscriptionSpec;
use crate::event::CloudEvent;

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
