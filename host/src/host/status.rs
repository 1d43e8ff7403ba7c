//! What the HTTP listener shows of a running host: metrics, readiness (plugins loaded, the
//! consumer in its group, the pipeline making progress) and the plugins in service.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::json;

use crate::kafka_in::group::Membership;
use crate::ops::health::Health;
use crate::ops::http::Status;
use crate::ops::metrics::Metrics;
use crate::pipeline::catalog::Catalog;

/// The host's answer to `/metrics`, `/readyz` and `/plugins`.
pub struct HostStatus {
    /// The host's metrics.
    pub metrics: Metrics,
    /// The plugins in service, refusals and reloads.
    pub catalog: Arc<Catalog>,
    /// Whether the consumer has joined its group, and if not, the client's latest errors.
    pub membership: Arc<Membership>,
    /// Whether the pipeline makes progress.
    pub health: Arc<Health>,
}

impl Status for HostStatus {
    fn metrics(&self) -> String {
        // Progress gauges are computed when asked for.
        self.health.problems();
        self.metrics.render()
    }

    fn readiness(&self) -> Result<String, String> {
        let problems = self.health.problems();
        if !problems.is_empty() {
            let mut body = String::from("not ready:\n");
            for problem in problems {
                body.push_str(&format!("- {problem}\n"));
            }
            return Err(body);
        }
        if self.catalog.in_service().topics.is_empty() {
            return Ok("ready: no plugin subscribes to a topic (idle)\n".into());
        }
        let group = self.membership.group.lock().expect("membership lock poisoned").clone();
        let joined = self.membership.joined.load(Ordering::SeqCst);
        let mut body = match group.filter(|group| !group.is_up()) {
            // Seen in librdkafka's statistics (every few seconds): no coordinator, no fetching.
            Some(group) => format!(
                "not ready: the consumer cannot reach its group coordinator (group state `{}` for {}s)\n",
                group.state,
                group.since.elapsed().as_secs()
            ),
            None if joined => return Ok("ready\n".into()),
            None => match self.membership.lost.lock().expect("membership lock poisoned").clone() {
                Some(lost) => format!("not ready: {lost}\n"),
                None => "not ready: the consumer has not joined its group yet\n".into(),
            },
        };
        for error in self.membership.errors.lock().expect("membership lock poisoned").values() {
            body.push_str(&format!("- the Kafka client reports: {error}\n"));
        }
        Err(body)
    }

    fn plugins(&self) -> serde_json::Value {
        let live = self.catalog.in_service();
        let loaded: Vec<_> = live
            .plugins
            .iter()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.description.name,
                    "version": p.description.version,
                    "description": p.description.description,
                    "digest": p.digest,
                    // Native handlers are compiled into the program: no file, no sandbox limits.
                    "native": p.is_native(),
                    "file": (!p.is_native()).then_some(&p.path),
                    "subscriptions": p.subscriptions,
                    "limits": (!p.is_native()).then(|| p.limits()),
                    "retry": {
                        "max_attempts": p.retry.max_attempts,
                        "initial_backoff_ms": p.retry.initial_backoff.as_millis() as u64,
                        "multiplier": p.retry.multiplier,
                        "max_backoff_ms": p.retry.max_backoff.as_millis() as u64,
                        "jitter": p.retry.jitter,
                    },
                })
            })
            .collect();
        json!({
            "plugins": loaded,
            "refused": self.catalog.refused(),
            "reloads": self.catalog.reloads(),
        })
    }
}
