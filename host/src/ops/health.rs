//! What the host knows about its own progress, so that it never stops silently. `/readyz` answers
//! 503 with every reason that holds:
//! - a pipeline task ended or panicked (the process is about to exit non-zero: see `tasks.rs`);
//! - dead-letter writes are failing (the events waiting for them cannot be committed);
//! - a partition's oldest unfinished event is older than `pipeline.stall_timeout_ms` while work
//!   waits behind it (a stuck plugin call, a retry that never ends, an unwritable dead letter).
//!
//! The same facts are metrics: `weft_partition_oldest_unfinished_seconds` per partition and
//! `weft_not_ready`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::ops::metrics::Metrics;

/// Where the host's progress is read from (the pipeline's offset tracker).
pub trait Progress: Send + Sync {
    /// For every partition with unfinished events: its topic, partition, the offset of its oldest
    /// unfinished event, and how long ago that event was fetched. A partition whose oldest event
    /// keeps ageing is not making progress.
    fn oldest_unfinished(&self) -> Vec<(String, i32, i64, Duration)>;
}

/// The host's health, shared by the pipeline (which reports) and the HTTP listener (which asks).
pub struct Health {
    progress: Arc<dyn Progress>,
    metrics: Metrics,
    stall_after: Duration,
    /// The latest dead-letter write failure of each dead-letter topic, cleared by the next
    /// successful write to that topic.
    dead_letters: Mutex<BTreeMap<String, String>>,
    /// The latest failure to get emitted events acknowledged, cleared by the next acknowledgement.
    emits: Mutex<Option<String>>,
    /// Whether `emits` holds a failure: an acknowledgement clears it without a lock otherwise.
    emits_failing: AtomicBool,
    /// Why the host cannot go on (a pipeline task ended); never cleared.
    fatal: Mutex<Option<String>>,
    /// Partitions that have an oldest-unfinished series, to remove the ones that drained.
    reported: Mutex<Vec<(String, i32)>>,
}

impl Health {
    /// Health over `progress`'s partitions; a partition is stalled when its oldest unfinished event
    /// is older than `stall_after`.
    pub fn new(progress: Arc<dyn Progress>, metrics: Metrics, stall_after: Duration) -> Self {
        Self {
            progress,
            metrics,
            stall_after,
            dead_letters: Mutex::new(BTreeMap::new()),
            emits: Mutex::new(None),
            emits_failing: AtomicBool::new(false),
            fatal: Mutex::new(None),
            reported: Mutex::new(Vec::new()),
        }
    }

    /// A dead-letter write to `topic` failed with `error`.
    pub fn dead_letter_failed(&self, topic: &str, error: String) {
        self.dead_letters.lock().expect("health lock poisoned").insert(topic.to_string(), error);
    }

    /// A dead-letter write to `topic` succeeded (other topics' failures stand).
    pub fn dead_letter_written(&self, topic: &str) {
        let mut failing = self.dead_letters.lock().expect("health lock poisoned");
        if !failing.is_empty() {
            failing.remove(topic);
        }
    }

    /// Events a plugin emitted were not acknowledged: `error` (the cluster unavailable, or a
    /// refusal). The events that emitted them wait or retry meanwhile.
    pub fn emits_failed(&self, error: String) {
        *self.emits.lock().expect("health lock poisoned") = Some(error);
        self.emits_failing.store(true, Ordering::Release);
    }

    /// Events a plugin emitted were acknowledged. On the hot path: no lock unless a failure was
    /// reported.
    pub fn emits_acknowledged(&self) {
        if self.emits_failing.load(Ordering::Acquire) && self.emits_failing.swap(false, Ordering::AcqRel) {
            *self.emits.lock().expect("health lock poisoned") = None;
        }
    }

    /// The host cannot go on, for `reason`.
    pub fn fatal(&self, reason: String) {
        self.fatal.lock().expect("health lock poisoned").get_or_insert(reason);
        self.metrics.not_ready.set(1);
    }

    /// Every reason the host is not ready now; empty when it is. Refreshes the progress metrics.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(fatal) = self.fatal.lock().expect("health lock poisoned").clone() {
            problems.push(fatal);
        }
        for (topic, error) in self.dead_letters.lock().expect("health lock poisoned").iter() {
            problems.push(format!("dead-letter writes are failing: {topic}: {error}"));
        }
        if let Some(error) = self.emits.lock().expect("health lock poisoned").clone() {
            problems.push(format!("emitted events are not acknowledged: {error}"));
        }
        for (topic, partition, offset, age) in self.refresh() {
            if age >= self.stall_after {
                problems.push(format!(
                    "partition {topic}/{partition} has not finished offset {offset} for {}s",
                    age.as_secs()
                ));
            }
        }
        self.metrics.not_ready.set(i64::from(!problems.is_empty()));
        problems
    }

    /// Updates `weft_partition_oldest_unfinished_seconds`; returns what it read.
    fn refresh(&self) -> Vec<(String, i32, i64, Duration)> {
        let oldest = self.progress.oldest_unfinished();
        let gauge = &self.metrics.oldest_unfinished;
        let mut reported = self.reported.lock().expect("health lock poisoned");
        for (topic, partition) in reported.drain(..) {
            if !oldest.iter().any(|(t, p, _, _)| *t == topic && *p == partition) {
                let _ = gauge.remove_label_values(&[&topic, &partition.to_string()]);
            }
        }
        for (topic, partition, _, age) in &oldest {
            gauge.with_label_values(&[topic, &partition.to_string()]).set(age.as_secs_f64());
            reported.push((topic.clone(), *partition));
        }
        oldest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions whose oldest unfinished event is as old as the test says.
    #[derive(Default)]
    struct Heads(Mutex<Vec<(String, i32, i64, Duration)>>);

    impl Progress for Heads {
        fn oldest_unfinished(&self) -> Vec<(String, i32, i64, Duration)> {
            self.0.lock().unwrap().clone()
        }
    }

    #[test]
    fn a_stuck_head_and_failing_dead_letters_are_reasons() {
        let heads = Arc::new(Heads::default());
        let health = Health::new(heads.clone(), Metrics::new(), Duration::from_millis(30));
        assert!(health.problems().is_empty());
        *heads.0.lock().unwrap() = vec![("orders".into(), 2, 41, Duration::from_millis(10))];
        assert!(health.problems().is_empty(), "young work is not a stall");
        *heads.0.lock().unwrap() = vec![("orders".into(), 2, 41, Duration::from_millis(40))];
        let problems = health.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("orders/2") && problems[0].contains("41"), "{problems:?}");
        assert_eq!(health.metrics.not_ready.get(), 1);
        heads.0.lock().unwrap().clear();
        health.dead_letter_failed("a.dlq", "Broker: Message size too large".into());
        health.dead_letter_failed("b.dlq", "Broker: Topic authorization failed".into());
        health.dead_letter_written("a.dlq");
        assert_eq!(
            health.problems(),
            ["dead-letter writes are failing: b.dlq: Broker: Topic authorization failed"],
            "a write to a.dlq says nothing of b.dlq"
        );
        health.dead_letter_written("b.dlq");
        assert!(health.problems().is_empty());
        health.emits_failed("Broker: Not enough in-sync replicas".into());
        assert_eq!(
            health.problems(),
            ["emitted events are not acknowledged: Broker: Not enough in-sync replicas"]
        );
        health.emits_acknowledged();
        assert!(health.problems().is_empty());
        assert_eq!(health.metrics.not_ready.get(), 0);
        assert!(
            !health.metrics.render().contains("partition=\"2\""),
            "a drained partition's series is removed"
        );
    }
}
