//! Lanes: the unit of ordering. Every event goes to the lane its key hashes to (keyless events: the
//! lane of their partition), and a lane handles its events one after another, so events with the
//! same key are handled in fetch order while different keys run in parallel.
//!
//! A lane's queue is bounded: when it is full the fetch loop waits, which is the host's backpressure.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::bindings::{self, Cloudevent};
use crate::consumer::Shared;
use crate::event::Record;
use crate::offsets::Ticket;
use crate::plugin::Plugin;

/// One routed event waiting for its lane.
pub struct Job {
    /// Its place in the partition's commit order.
    pub ticket: Ticket,
    /// The event, already in the form handlers receive.
    pub event: Cloudevent,
    /// The record it came from.
    pub record: Record,
    /// The plugins it goes to, in load order.
    pub plugins: Vec<Arc<Plugin>>,
}

/// The senders of every lane.
#[derive(Clone)]
pub struct Lanes {
    senders: Vec<mpsc::Sender<Job>>,
}

impl Lanes {
    /// Starts `count` lane workers, each with a queue of `capacity` events, on `tasks`.
    pub fn start(
        count: usize,
        capacity: usize,
        shared: Arc<Shared>,
        tasks: &mut JoinSet<()>,
    ) -> Self {
        let senders = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                tasks.spawn(work(rx, shared.clone()));
                tx
            })
            .collect();
        Self { senders }
    }

    /// Queues `job` on its lane, waiting while the lane is full. Fails only when the lane stopped.
    pub async fn send(&self, job: Job) -> Result<(), Job> {
        let lane = lane_of(&job.record, self.senders.len());
        self.senders[lane].send(job).await.map_err(|e| e.0)
    }
}

/// The lane for a record: by key, or by partition for keyless records.
fn lane_of(record: &Record, lanes: usize) -> usize {
    let mut hasher = DefaultHasher::new();
    match &record.key {
        Some(key) => key.hash(&mut hasher),
        None => (&record.topic, record.partition).hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

async fn work(mut jobs: mpsc::Receiver<Job>, shared: Arc<Shared>) {
    while let Some(job) = jobs.recv().await {
        if shared.stopping.load(Ordering::SeqCst) {
            // Shutting down: an event not started yet stays uncommitted and is fetched again by
            // whoever consumes the partition next.
            continue;
        }
        let span = tracing::info_span!(
            "event",
            messaging.system = "kafka",
            topic = %job.record.topic,
            partition = job.record.partition,
            offset = job.record.offset,
            ce.id = %job.event.id,
            ce.r#type = %job.event.type_,
        );
        handle(&shared, &job).instrument(span).await;
        shared.finish(&job.ticket);
    }
}

/// Runs every routed plugin on the event. Failures are logged and counted; the event is then
/// finished so the partition keeps moving.
async fn handle(shared: &Shared, job: &Job) {
    let delivery = bindings::delivery(&job.record, 1);
    let topic = job.record.topic.as_str();
    for plugin in &job.plugins {
        let started = Instant::now();
        let result = plugin.handle(&job.event, &delivery).await;
        let metrics = &shared.metrics;
        metrics
            .handler_duration
            .with_label_values(&[&plugin.id])
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(emitted) => {
                metrics
                    .handled
                    .with_label_values(&[topic, &plugin.id])
                    .inc();
                metrics
                    .emitted
                    .with_label_values(&[&plugin.id])
                    .inc_by(emitted as u64);
            }
            Err(failure) => {
                metrics
                    .failed
                    .with_label_values(&[topic, &plugin.id, failure.reason()])
                    .inc();
                tracing::warn!(plugin = %plugin.id, reason = failure.reason(), error = %failure, "handler failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&[u8]>, partition: i32) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset: 0,
            key: key.map(<[u8]>::to_vec),
            timestamp_ms: None,
            headers: vec![],
        }
    }

    #[test]
    fn same_key_same_lane_and_keys_spread() {
        let a = lane_of(&record(Some(b"user-1"), 0), 16);
        assert_eq!(a, lane_of(&record(Some(b"user-1"), 0), 16));
        let used: std::collections::HashSet<_> = (0..200)
            .map(|i| lane_of(&record(Some(format!("user-{i}").as_bytes()), 0), 16))
            .collect();
        assert!(
            used.len() > 12,
            "200 keys should spread over most of 16 lanes, used {}",
            used.len()
        );
    }

    #[test]
    fn keyless_records_keep_partition_order() {
        assert_eq!(lane_of(&record(None, 2), 16), lane_of(&record(None, 2), 16));
    }
}
