//! Lanes: the unit of ordering and of retry. Every event goes to the lane its key hashes to
//! (keyless events: the lane of their partition), and a lane handles its events one after another,
//! so events with the same key are handled in fetch order while different keys run in parallel.
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
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::bindings::{Cloudevent, Delivery};
use crate::consumer::Shared;
use crate::dlq::{Letter, RawRecord};
use crate::in_flight::Share;
use crate::metrics::TopicSeries;
use crate::offsets::Ticket;
use crate::plugin::{Emits, Failure, Plugin};
use crate::retry::{Decision, DlqReason};
use crate::tasks::Tasks;
use crate::trace::TraceParent;

/// One routed event waiting for, or being handled by, its lane.
pub struct Job {
    /// Its place in the partition's commit order.
    pub ticket: Ticket,
    /// The event, already in the form handlers receive; or, for a record refused before it reached
    /// any plugin (not a CloudEvent, no route), why it goes to the dead-letter topic. Refused
    /// records take the same way as events (same lane, same backpressure), so a burst of them is
    /// bounded like any other work.
    pub event: Result<Cloudevent, (DlqReason, String)>,
    /// The record it came from, as handlers see it: the `delivery` argument, whose `attempt` is
    /// set at each call (built once, not copied for each call).
    pub record: Delivery,
    /// The record byte for byte, for the dead-letter topic.
    pub raw: Arc<RawRecord>,
    /// The plugins that still have to handle it, each with its next attempt number (1-based).
    pub pending: Vec<(Arc<Plugin>, u32)>,
    /// Its part of the host's in-flight count and bytes, given back when the job is dropped.
    pub share: Share,
    /// The metric series of its topic.
    pub series: Arc<TopicSeries>,
    /// When the consumer handed the record to Weft: the start of Weft's own part of its delay.
    pub received: std::time::Instant,
}

impl Job {
    /// A record refused before routing: it goes to the dead-letter topic for `reason`.
    pub fn refused(
        ticket: Ticket,
        record: Delivery,
        raw: RawRecord,
        reason: (DlqReason, String),
        share: Share,
        series: Arc<TopicSeries>,
        received: std::time::Instant,
    ) -> Self {
        let raw = Arc::new(raw);
        Self { ticket, event: Err(reason), record, raw, pending: Vec::new(), share, series, received }
    }
}

/// The senders of every lane.
#[derive(Clone)]
pub struct Lanes {
    senders: Vec<mpsc::Sender<Job>>,
}

impl Lanes {
    /// Starts `count` lane workers, each with a queue of `capacity` events and at most `max_parked`
    /// events held back by retries, on `tasks`.
    pub fn start(
        count: usize,
        capacity: usize,
        max_parked: usize,
        shared: Arc<Shared>,
        tasks: &mut Tasks,
    ) -> Self {
        let senders = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                let lane = Lane {
                    shared: shared.clone(),
                    parked: HashMap::new(),
                    timers: BinaryHeap::new(),
                    due_keys: HashMap::new(),
                    acking: FuturesUnordered::new(),
                    parked_count: 0,
                    max_parked,
                    sequence: 0,
                };
                tasks.spawn("a lane", lane.run(rx));
                tx
            })
            .collect();
        Self { senders }
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// The lane of `record`: by key, or by partition for keyless records.
    pub fn lane(&self, record: &Delivery) -> usize {
        lane_of(&record.topic, record.partition, record.key.as_deref(), self.senders.len())
    }

    /// Queues `job` on `lane` (its [`Lanes::lane`]) if the lane has room; gives it back if the
    /// lane is full.
    pub fn try_send(&self, lane: usize, job: Job) -> Result<(), TrySend> {
        self.senders[lane].try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => TrySend::Full(Box::new(job)),
            mpsc::error::TrySendError::Closed(_) => TrySend::Closed,
        })
    }

    /// Waits until `lane` has room (or stopped).
    pub fn room_in(&self, lane: usize) -> impl std::future::Future<Output = ()> + use<> {
        let sender = self.senders[lane].clone();
        async move {
            let _ = sender.reserve_owned().await;
        }
    }
}

/// Why [`Lanes::try_send`] did not queue a job.
pub enum TrySend {
    /// The lane is full; here is the job back.
    Full(Box<Job>),
    /// The lane stopped (shutdown).
    Closed,
}

/// The lane among `lanes` of a record of `topic` and `partition` with `key`: by key, or by
/// partition for keyless records.
pub fn lane_of(topic: &str, partition: i32, key: Option<&[u8]>, lanes: usize) -> usize {
    // Hash the borrowed key (no per-event copy); same key, same lane, like `ParkKey`.
    let mut hasher = DefaultHasher::new();
    match key {
        Some(key) => key.hash(&mut hasher),
        None => (topic, partition).hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

/// The span of one attempt of one plugin on one event: at `info` when spans are exported, else at
/// `debug` (no cost unless `RUST_LOG` enables it; failure logs carry the same fields themselves).
fn event_span(job: &Job, event: &Cloudevent, plugin: &Plugin, attempt: u32) -> tracing::Span {
    macro_rules! span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "event",
                messaging.system = "kafka",
                topic = %job.record.topic,
                partition = job.record.partition,
                offset = job.record.offset,
                ce.id = %event.id,
                ce.r#type = %event.type_,
                plugin = %plugin.id,
                digest = %plugin.short_digest(),
                attempt,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                parent_span_id = tracing::field::Empty,
            )
        };
    }
    if crate::telemetry::exporting() { span!(tracing::Level::INFO) } else { span!(tracing::Level::DEBUG) }
}

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
enum Progress {
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
struct Ack {
    plugin: Arc<Plugin>,
    attempt: u32,
    emits: Emits,
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
struct Lane {
    shared: Arc<Shared>,
    /// Keys that wait; the front event of each queue is the one retried or acknowledged.
    parked: HashMap<ParkKey, VecDeque<Job>>,
    /// When each parked key's front event is due, earliest first, with a tie-breaker; the key is
    /// looked up by index in `due_keys`.
    timers: BinaryHeap<Reverse<(Instant, u64)>>,
    due_keys: HashMap<u64, ParkKey>,
    /// Acknowledgements awaited, one future per event.
    acking: FuturesUnordered<AckFuture>,
    /// Events in `parked` but for those whose acknowledgements are awaited.
    parked_count: usize,
    max_parked: usize,
    /// Tie-breaker for timers due at the same instant.
    sequence: u64,
}

impl Lane {
    async fn run(mut self, mut jobs: mpsc::Receiver<Job>) {
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
            }
        }
        self.shared.metrics.parked.sub(self.parked_count as i64);
    }

    fn stopping(&self) -> bool {
        self.shared.stopping.load(Ordering::SeqCst)
    }

    async fn accept(&mut self, mut job: Job) {
        // The key is built only when some key waits (most events never need it).
        if !self.parked.is_empty() {
            let key = ParkKey::of(&job.record);
            if let Some(queue) = self.parked.get_mut(&key) {
                queue.push_back(job);
                self.parked_count += 1;
                self.shared.metrics.parked.inc();
                return;
            }
        }
        let progress = self.attempt(&mut job).await;
        self.settle(None, VecDeque::new(), job, progress);
    }

    /// Applies the outcome of `job`'s attempt; `queue` holds the events of its key (`key`, or
    /// the job's own) behind it. Gives the queue back if the key is free to go on.
    fn settle(
        &mut self,
        key: Option<ParkKey>,
        mut queue: VecDeque<Job>,
        job: Job,
        progress: Progress,
    ) -> Option<VecDeque<Job>> {
        let key = || key.unwrap_or_else(|| ParkKey::of(&job.record));
        match progress {
            Progress::Done => self.done(&job),
            Progress::Retry(delay) => {
                self.park_front(key(), queue, job, delay);
                return None;
            }
            Progress::Acking { acks, retry_in } => {
                let key = key();
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
            Progress::Abandoned => {}
            Progress::Revoked => self.shared.let_go(&job.ticket),
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
            self.shared.metrics.parked.dec();
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
        let Some(mut queue) = self.parked.remove(&key) else { return };
        let mut job = queue.pop_front().expect("the acknowledged event is the front of its key");
        let progress = if self.shared.tracker.start(&job.ticket) {
            let progress = self.after_acks(&mut job, outcomes, retry_in).await;
            self.shared.tracker.stop(&job.ticket);
            progress
        } else {
            Progress::Revoked
        };
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
            if retry_in.is_none() && job.pending.is_empty() && outcomes.iter().all(|(_, _, o)| o.is_ok()) {
                self.done(&job);
            }
        }
    }

    /// Finishes a job every plugin is done with, recording its end-to-end delay and Weft's part of it.
    fn done(&self, job: &Job) {
        job.series.host_time.observe(job.received.elapsed().as_secs_f64());
        if let Some(ts) = job.record.timestamp_ms {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            job.series.delay.observe((now - ts).max(0) as f64 / 1e3);
        }
        self.shared.finish(&job.ticket);
    }

    fn park_front(&mut self, key: ParkKey, mut queue: VecDeque<Job>, job: Job, delay: Duration) {
        queue.push_front(job);
        self.parked_count += 1;
        self.shared.metrics.parked.inc();
        self.sequence += 1;
        self.timers.push(Reverse((Instant::now() + delay, self.sequence)));
        self.due_keys.insert(self.sequence, key.clone());
        self.parked.insert(key, queue);
    }

    /// Runs every plugin still pending on the event once, applying the retry policy to failures —
    /// unless the event's partition was revoked meanwhile.
    async fn attempt(&self, job: &mut Job) -> Progress {
        if !self.shared.tracker.start(&job.ticket) {
            return Progress::Revoked;
        }
        let progress = self.attempt_claimed(job).await;
        self.shared.tracker.stop(&job.ticket);
        progress
    }

    async fn attempt_claimed(&self, job: &mut Job) -> Progress {
        let event = match &job.event {
            Ok(event) => event,
            Err((reason, error)) => {
                let letter = Letter { reason: *reason, error, plugin: None, attempts: 0 };
                return match self.shared.dead_letters.write(&job.raw, &letter).await {
                    Ok(()) => Progress::Done,
                    Err(_) => Progress::Abandoned,
                };
            }
        };
        let mut outcome = Outcome::default();
        let mut acks = Vec::new();
        let live = self.shared.catalog.live();
        let mut removed = false;
        for (plugin, attempt) in std::mem::take(&mut job.pending) {
            // A plugin deleted from the directory handles nothing more, retries included (a
            // replaced one is still served: its dispatched events finish on the old version).
            if !live.plugins.iter().any(|p| p.id == plugin.id) {
                tracing::info!(plugin = %plugin.id, topic = %job.record.topic, offset = job.record.offset, "plugin removed; not handling this event");
                removed = true;
                continue;
            }
            job.record.attempt = attempt;
            let span = event_span(job, event, &plugin, attempt);
            // The handler call continues the input's trace as a child span.
            let trace = event
                .extensions
                .iter()
                .find(|(name, _)| name == "traceparent")
                .and_then(|(_, value)| TraceParent::parse(value))
                .map(|parent| {
                    let child = crate::trace::continue_in(&span, &parent);
                    span.record("trace_id", child.trace_id.as_str());
                    span.record("span_id", child.span_id.as_str());
                    span.record("parent_span_id", parent.span_id.as_str());
                    child.to_string()
                });
            match self.call(job, event, &plugin, trace.as_deref()).instrument(span.clone()).await {
                Ok(emits) if emits.settled() => self.handled(job, &plugin, emits.count()),
                Ok(emits) => acks.push(Ack { plugin, attempt, emits }),
                Err(failure) => {
                    let _entered = span.enter();
                    if !self.failed(job, plugin, attempt, failure, &mut outcome).await {
                        return Progress::Abandoned;
                    }
                }
            }
        }
        job.pending = outcome.still;
        if !acks.is_empty() {
            return Progress::Acking { acks, retry_in: outcome.retry_in };
        }
        match outcome.retry_in {
            Some(delay) => Progress::Retry(delay),
            // Its topic is no longer consumed: left uncommitted, for the plugin's return.
            None if removed && !live.subscribes(&job.record.topic) => Progress::Abandoned,
            None => Progress::Done,
        }
    }

    /// The acknowledgements of an attempt's emitted events came back: a failed one fails that
    /// plugin's attempt like any other failure.
    async fn after_acks(
        &self,
        job: &mut Job,
        outcomes: Vec<(Arc<Plugin>, u32, Result<usize, Failure>)>,
        retry_in: Option<Duration>,
    ) -> Progress {
        let mut outcome = Outcome { still: std::mem::take(&mut job.pending), retry_in };
        for (plugin, attempt, result) in outcomes {
            match result {
                Ok(emitted) => self.handled(job, &plugin, emitted),
                Err(failure) => {
                    self.shared
                        .metrics
                        .failed
                        .with_label_values(&[&job.record.topic, &plugin.id, failure.reason()])
                        .inc();
                    if !self.failed(job, plugin, attempt, failure, &mut outcome).await {
                        return Progress::Abandoned;
                    }
                }
            }
        }
        job.pending = outcome.still;
        match outcome.retry_in {
            Some(delay) => Progress::Retry(delay),
            None => Progress::Done,
        }
    }

    /// Applies the retry policy to a failed attempt of `plugin`: again later (added to
    /// `outcome`), or to the dead-letter topic. `false`: the dead-letter write was abandoned
    /// (shutdown).
    async fn failed(
        &self,
        job: &Job,
        plugin: Arc<Plugin>,
        attempt: u32,
        failure: Failure,
        outcome: &mut Outcome,
    ) -> bool {
        let metrics = &self.shared.metrics;
        let record = &job.record;
        let ce_id = job.event.as_ref().map_or("", |event| event.id.as_str());
        match plugin.retry.decide(&failure, attempt) {
            Decision::Wait(delay) => {
                metrics.retried.with_label_values(&[&record.topic, &plugin.id]).inc();
                tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, ce.id = %ce_id, plugin = %plugin.id, attempt, reason = failure.reason(), error = %failure, retry_in = ?delay, "attempt failed outside the plugin; will retry without counting it");
                outcome.again(plugin, attempt, delay);
            }
            Decision::Retry(delay) => {
                metrics.retried.with_label_values(&[&record.topic, &plugin.id]).inc();
                tracing::info!(topic = %record.topic, partition = record.partition, offset = record.offset, ce.id = %ce_id, plugin = %plugin.id, attempt, reason = failure.reason(), error = %failure, retry_in = ?delay, "attempt failed; will retry");
                outcome.again(plugin, attempt + 1, delay);
            }
            Decision::DeadLetter(reason) => {
                let error = failure.to_string();
                let letter = Letter {
                    reason,
                    error: &error,
                    plugin: Some((&plugin.id, &plugin.digest)),
                    attempts: attempt,
                };
                if self.shared.dead_letters.write(&job.raw, &letter).await.is_err() {
                    return false;
                }
            }
        }
        true
    }

    fn handled(&self, job: &Job, plugin: &Plugin, emitted: usize) {
        job.series.handled(&plugin.id);
        if emitted > 0 {
            plugin.series(&self.shared.metrics).emitted.inc_by(emitted as u64);
        }
    }

    /// One call into `plugin`, with its metrics. Failures are counted here; successes once their
    /// emitted events are acknowledged ([`Lane::handled`]).
    async fn call(
        &self,
        job: &Job,
        event: &Cloudevent,
        plugin: &Plugin,
        traceparent: Option<&str>,
    ) -> Result<Emits, Failure> {
        let started = Instant::now();
        let result = plugin.call(event, &job.record, traceparent).await;
        let metrics = &self.shared.metrics;
        let series = plugin.series(metrics);
        series.handler_duration.observe(started.elapsed().as_secs_f64());
        if let Some(latency) = plugin.first_event_latency() {
            metrics.plugin_swap.observe(latency.as_secs_f64());
            tracing::info!(
                plugin = %plugin.id,
                digest = %plugin.short_digest(),
                swap_ms = latency.as_secs_f64() * 1e3,
                "first event on this version"
            );
        }
        series.memory.set(plugin.memory_bytes() as i64);
        let dropped = plugin.log_lines_dropped();
        if dropped > 0 {
            series.log_dropped.inc_by(dropped);
        }
        if let Err(failure) = &result {
            metrics.failed.with_label_values(&[&job.record.topic, &plugin.id, failure.reason()]).inc();
        }
        result
    }
}

/// The plugins of an attempt that must try again, and after how long.
#[derive(Default)]
struct Outcome {
    still: Vec<(Arc<Plugin>, u32)>,
    retry_in: Option<Duration>,
}

impl Outcome {
    fn again(&mut self, plugin: Arc<Plugin>, attempt: u32, delay: Duration) {
        self.retry_in = Some(self.retry_in.map_or(delay, |d| d.max(delay)));
        self.still.push((plugin, attempt));
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
    fn same_key_same_lane_and_keys_spread() {
        let a = lane_of("t", 0, Some(b"user-1"), 16);
        assert_eq!(a, lane_of("t", 0, Some(b"user-1"), 16));
        let used: std::collections::HashSet<_> =
            (0..200).map(|i| lane_of("t", 0, Some(format!("user-{i}").as_bytes()), 16)).collect();
        assert!(used.len() > 12, "200 keys should spread over most of 16 lanes, used {}", used.len());
    }

    #[test]
    fn keyless_records_keep_partition_order() {
        assert_eq!(lane_of("t", 2, None, 16), lane_of("t", 2, None, 16));
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
