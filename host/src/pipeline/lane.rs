//! One lane's worker: it handles its events one after another and keeps each key's events in
//! order.
//!
//! # Retries without blocking other keys
//! When an attempt fails and the retry policy says "again in N seconds", the lane *parks* the event
//! under its key with a timer and moves on. Later events with the same key queue behind it (order
//! kept); events with other keys keep flowing. When the timer fires the parked event is tried again,
//! and once it is finished the events queued behind it follow. A lane holding `max_parked` events
//! stops taking new ones until its retries drain, which makes the fetch loop wait (backpressure).
//!
//! An event that gives up (permanent failure, attempts exhausted) is dead-lettered for the plugin
//! that failed, and counts as finished once the dead-letter write is acknowledged.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::{mpsc, watch};

use crate::failure::Failure;
use crate::kafka_out::emit::Emits;
use crate::pipeline::context::PipelineContext;
use crate::pipeline::job::Job;
use crate::sandbox::bindings::Delivery;
use crate::sandbox::plugin::Plugin;

/// What events must stay in order with each other: those of one partition with the same key (or,
/// without a key, the whole partition). Kafka orders nothing across partitions, so a retry parked
/// on one partition never holds back another partition's events, whatever their key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ParkKey {
    topic: String,
    partition: i32,
    key: Option<Vec<u8>>,
}

impl ParkKey {
    fn of(record: &Delivery) -> Self {
        Self { topic: record.topic.clone(), partition: record.partition, key: record.key.clone() }
    }
}

/// How far an attempt got.
pub(super) enum Progress {
    /// Every plugin is done (handled or dead-lettered).
    Done,
    /// Some plugin must try again after this wait.
    Retry(Duration),
    /// The calls returned; the events they emitted are on their way to the broker. The event is
    /// done once they are acknowledged (and after `retry_in` if some other plugin must try again).
    Acking { acks: Vec<Ack>, retry_in: Option<Duration> },
    /// Shutdown began before a dead-letter write was acknowledged, or the only plugins left for the
    /// event were removed along with its topic: leave the event unfinished (uncommitted) for the
    /// next owner of the partition.
    Abandoned,
    /// The event's partition was revoked before the attempt: it was not tried; the next owner will.
    Revoked,
}

/// A plugin's successful call whose emitted events are not acknowledged yet.
pub(super) struct Ack {
    pub(super) plugin: Arc<Plugin>,
    pub(super) attempt: u32,
    pub(super) emits: Emits,
}

/// What waiting for one event's acknowledgements came to: its key, each plugin's outcome, and the
/// retry wait other plugins of the attempt asked for.
type Acked = (ParkKey, Vec<(Arc<Plugin>, u32, Result<usize, Failure>)>, Option<Duration>);

/// Waits for one event's acknowledgements (`Sync` so that the lane can be borrowed across awaits).
type AckFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Acked> + Send + Sync>>;

/// Per-key state of a lane: the events of keys that wait (for a retry, or for the broker to
/// acknowledge what the front event emitted), in order.
///
/// While an event's emitted events travel to the broker, the lane goes on with other keys; the
/// events of its key queue behind it like behind a retry, so order per key holds whatever the
/// acknowledgement says.
pub struct Lane {
    /// Offsets, dead letters, plugins in service, metrics.
    pub(super) pipeline: Arc<PipelineContext>,
    /// Keys that wait; the front event of each queue is the one retried or acknowledged.
    parked: HashMap<ParkKey, VecDeque<Job>>,
    /// When each parked key's front event is due, earliest first, with a tie-breaker; the key is
    /// looked up by index in `due_keys`.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    due_keys: HashMap<u64, ParkKey>,
    /// Acknowledgements awaited, one future per event.
    acking: FuturesUnordered<AckFuture>,
    /// The keys whose front event's acknowledgements are awaited.
    acking_keys: HashSet<ParkKey>,
    /// Events in `parked` but for those whose acknowledgements are awaited.
    parked_count: usize,
    max_parked: usize,
    /// Tie-breaker for timers due at the same instant.
    sequence: u64,
}

impl Lane {
    /// A lane that holds back at most `max_parked` events behind waiting keys.
    pub fn new(pipeline: Arc<PipelineContext>, max_parked: usize) -> Self {
        Self {
            pipeline,
            parked: HashMap::new(),
            timers: BinaryHeap::new(),
            due_keys: HashMap::new(),
            acking: FuturesUnordered::new(),
            acking_keys: HashSet::new(),
            parked_count: 0,
            max_parked,
            sequence: 0,
        }
    }

    /// Handles the jobs of `jobs` until shutdown (`stop` turns true, or `jobs` closes).
    pub async fn run(mut self, mut jobs: mpsc::Receiver<Job>, mut stop: watch::Receiver<bool>) {
        let mut revocations = self.pipeline.tracker.revocations();
        loop {
            if self.stopping() {
                // Parked and queued events stay uncommitted and are fetched again later; events
                // whose emits are on their way are finished if the broker takes them.
                self.finish_acks().await;
                break;
            }
            let due = self.timers.peek().map(|Reverse((at, _))| *at);
            let accepting = self.parked_count + self.acking.len() < self.max_parked;
            tokio::select! {
                Some(acked) = self.acking.next(), if !self.acking.is_empty() => self.acked(acked).await,
                job = jobs.recv(), if accepting => match job {
                    Some(job) => self.accept(job).await,
                    None => {
                        self.finish_acks().await;
                        break;
                    }
                },
                // Built only when a timer is due: a disabled branch's future is still created.
                _ = async { tokio::time::sleep_until(due.expect("guarded").into()).await }, if due.is_some() => {
                    if let Some(key) = self.timers.pop().and_then(|Reverse((_, n))| self.due_keys.remove(&n)) {
                        self.resume(key).await;
                    }
                }
                // Shutdown: seen at the top of the loop, also by a lane that takes no new events.
                Ok(()) = stop.changed() => {}
                Ok(()) = revocations.changed() => self.let_go_of_revoked(),
            }
        }
        self.pipeline.metrics.parked.sub(self.parked_count as i64);
    }

    fn stopping(&self) -> bool {
        self.pipeline.stopping()
    }

    async fn accept(&mut self, mut job: Job) {
        // The key is built only when some key waits (most events never need it).
        if !self.parked.is_empty() {
            let key = ParkKey::of(&job.record);
            if let Some(queue) = self.parked.get_mut(&key) {
                queue.push_back(job);
                self.parked_count += 1;
                self.pipeline.metrics.parked.inc();
                return;
            }
        }
        let progress = self.attempt(&mut job).await;
        self.settle(None, VecDeque::new(), job, progress);
    }

    /// Applies the outcome of `job`'s attempt, then lets go of the attempt's claim on the event
    /// (after it is finished, so a revocation cannot commit in between), unless the attempt waits
    /// for acknowledgements. `queue` holds the events of its key (`key`, or the job's own) behind
    /// it. Gives the queue back if the key is free to go on.
    fn settle(
        &mut self,
        key: Option<ParkKey>,
        mut queue: VecDeque<Job>,
        job: Job,
        progress: Progress,
    ) -> Option<VecDeque<Job>> {
        let key = || key.unwrap_or_else(|| ParkKey::of(&job.record));
        match progress {
            Progress::Done => {
                let ticket = job.ticket.clone();
                self.done(job);
                self.pipeline.tracker.stop(&ticket);
                return Some(queue);
            }
            Progress::Retry(delay) => {
                self.pipeline.tracker.stop(&job.ticket);
                self.park_front(key(), queue, job, delay);
                return None;
            }
            Progress::Acking { acks, retry_in } => {
                let key = key();
                self.acking_keys.insert(key.clone());
                queue.push_front(job);
                self.parked.insert(key.clone(), queue);
                self.acking.push(Box::pin(async move {
                    let mut outcomes = Vec::with_capacity(acks.len());
                    for Ack { plugin, attempt, emits } in acks {
                        outcomes.push((plugin, attempt, emits.acknowledged().await));
                    }
                    (key, outcomes, retry_in)
                }));
                return None;
            }
            // Left for the partition's next owner; the events behind it still get their turn (each
            // is finished or abandoned on its own), so none is silently dropped.
            Progress::Abandoned => self.pipeline.tracker.stop(&job.ticket),
            Progress::Revoked => self.pipeline.let_go(&job.ticket),
        }
        Some(queue)
    }

    /// Retries the front event of `key`'s queue, then lets the events behind it follow.
    async fn resume(&mut self, key: ParkKey) {
        let Some(queue) = self.parked.remove(&key) else { return };
        self.go_on(key, queue).await;
    }

    /// Tries the events of `queue` in order until one has to wait again.
    async fn go_on(&mut self, key: ParkKey, mut queue: VecDeque<Job>) {
        while let Some(mut job) = queue.pop_front() {
            self.parked_count -= 1;
            self.pipeline.metrics.parked.dec();
            if self.stopping() {
                return;
            }
            let progress = self.attempt(&mut job).await;
            match self.settle(Some(key.clone()), queue, job, progress) {
                Some(rest) => queue = rest,
                None => return,
            }
        }
    }

    /// The front event of a key has its acknowledgements: finish or retry it, then go on with
    /// the events behind it.
    async fn acked(&mut self, (key, outcomes, retry_in): Acked) {
        self.acking_keys.remove(&key);
        let Some(mut queue) = self.parked.remove(&key) else { return };
        let mut job = queue.pop_front().expect("the acknowledged event is the front of its key");
        // The attempt's claim is still held (a revocation waits for it); `settle` lets go of it.
        let progress = self.after_acks(&mut job, outcomes, retry_in).await;
        if let Some(queue) = self.settle(Some(key.clone()), queue, job, progress) {
            self.go_on(key, queue).await;
        }
    }

    /// At shutdown: waits for the acknowledgements under way and finishes the events whose
    /// emitted events all landed.
    async fn finish_acks(&mut self) {
        while let Some((key, outcomes, retry_in)) = self.acking.next().await {
            let Some(job) = self.parked.get_mut(&key).and_then(VecDeque::pop_front) else { continue };
            for (plugin, _, outcome) in &outcomes {
                if let Ok(emitted) = outcome {
                    self.handled(&job, plugin, *emitted);
                }
            }
            if retry_in.is_none()
                && job.pending.is_empty()
                && job.letters.is_empty()
                && outcomes.iter().all(|(_, _, o)| o.is_ok())
            {
                let ticket = job.ticket.clone();
                self.done(job);
                // The claim its attempt held through the acknowledgement wait.
                self.pipeline.tracker.stop(&ticket);
            } else {
                self.pipeline.tracker.stop(&job.ticket);
            }
        }
    }

    /// Finishes a job every plugin is done with, recording its end-to-end delay and Weft's part of it.
    pub(super) fn done(&self, job: Job) {
        job.series.host_time.observe(job.received.elapsed().as_secs_f64());
        if let Some(ts) = job.record.timestamp_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            job.series.delay.observe((now - ts).max(0) as f64 / 1e3);
        }
        self.pipeline.finish_job(job);
    }

    /// Drops the waiting events of partitions revoked from this member (their next owner handles
    /// them), so that they give back their in-flight bytes and `max_parked` places at once rather
    /// than when their timers fire. An event whose acknowledgements are awaited stays: the
    /// revocation waits for it.
    fn let_go_of_revoked(&mut self) {
        let tracker = &self.pipeline.tracker;
        let mut dropped = 0;
        for (key, queue) in &mut self.parked {
            let front_acking = self.acking_keys.contains(key);
            let before = queue.len();
            let mut index = 0;
            queue.retain(|job| {
                let keep = (index == 0 && front_acking) || tracker.owned(&job.ticket);
                index += 1;
                if !keep {
                    self.pipeline.let_go(&job.ticket);
                }
                keep
            });
            dropped += before - queue.len();
        }
        if dropped == 0 {
            return;
        }
        self.parked.retain(|_, queue| !queue.is_empty());
        // A timer of a key no longer waiting must not fire early for the same key parked anew.
        self.due_keys.retain(|_, key| self.parked.contains_key(key));
        self.parked_count -= dropped;
        self.pipeline.metrics.parked.sub(dropped as i64);
    }

    fn park_front(&mut self, key: ParkKey, mut queue: VecDeque<Job>, job: Job, delay: Duration) {
        queue.push_front(job);
        self.parked_count += 1;
        self.pipeline.metrics.parked.inc();
        self.sequence += 1;
        self.timers.push(Reverse((Instant::now() + delay, self.sequence)));
        self.due_keys.insert(self.sequence, key.clone());
        self.parked.insert(key, queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(key: Option<&[u8]>, partition: i32) -> Delivery {
        Delivery {
            topic: "t".into(),
            partition,
            offset: 0,
            key: key.map(<[u8]>::to_vec),
            timestamp_ms: None,
            attempt: 1,
            headers: vec![],
        }
    }

    #[test]
    fn keyless_records_keep_partition_order() {
        assert_eq!(ParkKey::of(&record(None, 2)), ParkKey::of(&record(None, 2)));
        assert_ne!(ParkKey::of(&record(None, 2)), ParkKey::of(&record(None, 3)));
    }

    #[test]
    fn a_key_parks_only_within_its_partition() {
        assert_ne!(ParkKey::of(&record(Some(b"k"), 0)), ParkKey::of(&record(Some(b"k"), 1)));
        let mut other_topic = record(Some(b"k"), 0);
        other_topic.topic = "u".into();
        assert_ne!(ParkKey::of(&record(Some(b"k"), 0)), ParkKey::of(&other_topic));
    }
}
