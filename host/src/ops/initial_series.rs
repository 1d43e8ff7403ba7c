//! The series that exist before the first event: dashboards and alerts see them at zero.

use crate::ops::metrics::Metrics;

impl Metrics {
    /// Creates the zero-valued series of every (topic, plugin) pair and every bounded reason, so
    /// dashboards and alerts see a series (and `rate()` works) before the first event.
    pub fn initialise<'a>(&self, pairs: impl IntoIterator<Item = (&'a str, &'a str)>) {
        const FAILURES: [&str; 8] = [
            "retryable_error",
            "permanent_error",
            "trap",
            "timeout",
            "memory_limit",
            "fuel_exhausted",
            "emit_failed",
            "emit_unavailable",
        ];
        const DLQ: [&str; 9] = [
            "invalid_cloudevent",
            "schema_invalid",
            "no_route",
            "retries_exhausted",
            "permanent_error",
            "trap",
            "timeout",
            "memory_limit",
            "fuel_exhausted",
        ];
        for (topic, plugin) in pairs {
            self.received.with_label_values(&[topic]);
            self.invalid.with_label_values(&[topic]);
            self.unrouted.with_label_values(&[topic]);
            self.handled.with_label_values(&[topic, plugin]);
            for decision in ["rolled_back", "promoted"] {
                self.canary_decisions.with_label_values(&[plugin, decision]);
            }
            self.retried.with_label_values(&[topic, plugin]);
            self.emitted.with_label_values(&[plugin]);
            self.handler_duration.with_label_values(&[plugin]);
            self.event_delay.with_label_values(&[topic]);
            self.plugin_memory.with_label_values(&[plugin]);
            self.plugin_log_dropped.with_label_values(&[plugin]);
            for reason in FAILURES {
                self.failed.with_label_values(&[topic, plugin, reason]);
            }
            for reason in DLQ {
                self.dead_lettered.with_label_values(&[topic, reason]);
            }
        }
        for kind in ["assign", "revoke"] {
            self.rebalances.with_label_values(&[kind]);
        }
        for result in ["loaded", "replaced", "removed", "refused"] {
            self.plugin_reloads.with_label_values(&[result]);
        }
        for cache in ["hit", "miss"] {
            self.plugin_compile.with_label_values(&[cache]);
        }
    }
}
