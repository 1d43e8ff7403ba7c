//! The consumer side: the group member (rebalance handling), the fetch loop that decodes and routes
//! every record, and the commit bookkeeping. The loop knows nothing about WebAssembly: it hands
//! routed events to the lanes (`lanes.rs`) and stores offsets when the lanes say an event is done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use crate::bindings::Delivery;
use crate::catalog::{Catalog, Live};
use crate::decode::{DecodeError, decode};
use crate::dlq::{self, DeadLetters, RawRecord};
use crate::in_flight::InFlight;
use crate::lanes::{Job, Lanes, TrySend};
use crate::metrics::{Metrics, TopicSeries};
use crate::offsets::{OffsetTracker, Ticket};
use crate::retry::DlqReason;

/// The consumer as Weft uses it.
pub type WeftConsumer = StreamConsumer<GroupContext>;

/// Group membership callbacks. On revocation no event of the revoked partitions starts any more
/// here (queued, held and parked ones are dropped, uncommitted, for the next owner); the callback
/// waits (bounded) only for the calls already running on them, then commits what finished before
/// the partitions move. It runs inside the consumer's poll, so it never waits for anything the
/// fetch loop would have to do.
pub struct GroupContext {
    tracker: Arc<OffsetTracker>,
    stopping: Arc<AtomicBool>,
    drain_timeout: Duration,
    metrics: Metrics,
    membership: Arc<Membership>,
}

/// What the consumer knows of its group membership, for `/readyz`.
#[derive(Debug, Default)]
pub struct Membership {
    /// Set at the first assignment (even an empty one): the consumer has joined its group.
    pub joined: AtomicBool,
    /// The latest error the Kafka client reported of each kind (authentication, TLS, unreachable
    /// brokers, …): why the consumer has not joined, when it has not. By kind, so that a generic
    /// "all brokers are down" that follows a failed authentication does not hide it.
    pub errors: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
}

impl GroupContext {
    /// A context over the host's offset tracker, reporting to `membership`.
    pub fn new(
        tracker: Arc<OffsetTracker>,
        stopping: Arc<AtomicBool>,
        drain_timeout: Duration,
        metrics: Metrics,
        membership: Arc<Membership>,
    ) -> Self {
        Self { tracker, stopping, drain_timeout, metrics, membership }
    }

    fn drain(&self, partitions: &TopicPartitionList) {
        let deadline = Instant::now() + self.drain_timeout;
        let busy =
            || partitions.elements().iter().any(|p| self.tracker.running(p.topic(), p.partition()) > 0);
        while busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        if busy() {
            tracing::warn!(timeout = ?self.drain_timeout, "calls on revoked partitions still running; their events will be redelivered");
        }
    }
}

impl ClientContext for GroupContext {
    /// Errors of the client itself (not of a request): failed authentication, TLS handshakes,
    /// every broker down. librdkafka retries them; `/readyz` shows the latest of each kind while
    /// the consumer has not joined its group.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::error!(%error, reason, "Kafka client error");
        let kind = error.rdkafka_error_code().map_or_else(|| error.to_string(), |code| format!("{code:?}"));
        self.membership.errors.lock().expect("membership lock poisoned").insert(kind, reason.to_string());
    }

    /// librdkafka statistics (`statistics.interval.ms`): consumer lag per partition and broker
    /// round-trip times. Only the fields Weft exports are read, so a newer librdkafka adding
    /// fields changes nothing.
    fn stats_raw(&self, statistics: &[u8]) {
        let stats: Stats = match serde_json::from_slice(statistics) {
            Ok(stats) => stats,
            Err(error) => return tracing::debug!(%error, "unreadable librdkafka statistics"),
        };
        for (topic, t) in &stats.topics {
            for p in t.partitions.values() {
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &p.partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
        for (name, broker) in &stats.brokers {
            if let Some(rtt) = broker.rtt.as_ref().filter(|rtt| rtt.cnt > 0) {
                self.metrics.broker_rtt.with_label_values(&[name]).set(rtt.p99 as f64 / 1e6);
            }
        }
    }
}

/// The parts of librdkafka's statistics JSON that Weft exports.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct Stats {
    topics: std::collections::HashMap<String, StatsTopic>,
    brokers: std::collections::HashMap<String, StatsBroker>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsTopic {
    partitions: std::collections::HashMap<String, StatsPartition>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsPartition {
    partition: i32,
    consumer_lag: i64,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsBroker {
    rtt: Option<StatsWindow>,
}

/// A rolling window, in microseconds.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StatsWindow {
    cnt: i64,
    p99: i64,
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        for p in partitions.elements() {
            self.tracker.revoke(p.topic(), p.partition());
        }
        // Lanes keep running on other threads while this callback waits; at shutdown the unstarted
        // events are left for the next owner, so there is nothing to wait for.
        let can_block = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if !self.stopping.load(Ordering::SeqCst) && can_block {
            tokio::task::block_in_place(|| self.drain(partitions));
        }
        store_positions(&self.tracker, consumer);
        commit(consumer);
        for p in partitions.elements() {
            self.tracker.forget(p.topic(), p.partition());
            let _ = self.metrics.consumer_lag.remove_label_values(&[p.topic(), &p.partition().to_string()]);
        }
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        self.metrics.partitions_assigned.sub(partitions.count() as i64);
        tracing::info!(partitions = %describe(partitions), "partitions revoked");
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                self.metrics.partitions_assigned.add(partitions.count() as i64);
                self.membership.joined.store(true, Ordering::SeqCst);
                // A series at 0 from the start, so that the first skip is an increase.
                for p in partitions.elements() {
                    self.metrics.offsets_skipped.with_label_values(&[p.topic()]).inc_by(0);
                }
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => tracing::error!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

/// Commits the stored offsets synchronously. "Nothing to commit" is not an error; a failed commit
/// is tried twice more (a coordinator moving, a request timing out), since the next automatic
/// commit may never come (revocation, shutdown).
pub fn commit<C: Consumer<GroupContext>>(consumer: &C) {
    for attempt in 1..=3 {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => return,
            Err(error) if attempt < 3 => {
                tracing::warn!(%error, attempt, "offset commit failed; trying again");
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(error) => {
                tracing::error!(%error, "offset commit failed; finished events may be delivered again")
            }
        }
    }
}

fn describe(partitions: &TopicPartitionList) -> String {
    let parts: Vec<String> =
        partitions.elements().iter().map(|p| format!("{}/{}", p.topic(), p.partition())).collect();
    parts.join(",")
}

/// What the fetch loop and the lanes share.
pub struct Shared {
    /// The group member.
    pub consumer: Arc<WeftConsumer>,
    /// In-flight events per partition.
    pub tracker: Arc<OffsetTracker>,
    /// The host's metrics.
    pub metrics: Metrics,
    /// Set when shutdown begins: lanes stop starting new events.
    pub stopping: Arc<AtomicBool>,
    /// Where events that cannot be handled go.
    pub dead_letters: DeadLetters,
    /// Whether events no plugin wants are dead-lettered (`dlq.unrouted`).
    pub dead_letter_unrouted: bool,
    /// The plugins in service: a removed plugin handles nothing more.
    pub catalog: Arc<Catalog>,
    /// Events fetched and not finished, and their bytes.
    pub in_flight: Arc<InFlight>,
    /// Uncommitted events one partition may have before fetching pauses for it.
    pub max_uncommitted: usize,
    /// Whether `weft.replay.plugin` narrows the route of a replayed record (`dlq.replay_routing`).
    pub replay_routing: bool,
    /// Topics whose plain records are mapped to CloudEvents (`[topics]`, formats other than
    /// `cloudevents`).
    pub plain_topics: std::collections::HashMap<String, crate::plain::TopicConfig>,
}

impl Shared {
    /// Marks an event finished. Its partition's position reaches librdkafka with the next
    /// [`store_positions`].
    pub fn finish(&self, ticket: &Ticket) {
        self.tracker.finish(ticket);
    }

    /// Lets go of an event of a revoked partition without handling it: the next owner will.
    pub fn let_go(&self, ticket: &Ticket) {
        tracing::debug!(topic = %ticket.topic, partition = ticket.partition, offset = ticket.offset, "partition revoked; event left for its next owner");
    }
}

/// How often finished positions are handed to librdkafka, which commits the stored offsets every
/// `auto.commit.interval.ms` and on revocation and shutdown (each of which stores first).
pub const STORE_INTERVAL: Duration = Duration::from_millis(50);

/// Stores the commit position of every partition whose finished run grew, in one call. Positions
/// only ever grow (see `offsets.rs`).
pub fn store_positions<C: ConsumerContext, K: Consumer<C>>(tracker: &OffsetTracker, consumer: &K) {
    let result = tracker.store(|moved| {
        let mut tpl = TopicPartitionList::with_capacity(moved.len());
        for (topic, partition, position) in moved {
            tpl.add_partition_offset(topic, *partition, Offset::Offset(*position))?;
        }
        consumer.store_offsets(&tpl)
    });
    if let Err(error) = result {
        // Every partition in the list was revoked meanwhile; their new owners handle the rest.
        tracing::debug!(%error, "offsets not stored");
    }
}

/// Fetched events may wait this long for their full lanes before their partitions are paused.
/// Until then the loop merely stops taking records, so librdkafka keeps what it prefetched (a
/// pause discards it, and a resume fetches it again); past it, the partitions whose events wait
/// are paused and polling goes on, so rebalances and `max.poll.interval.ms` are served while a
/// lane is stuck.
const HOLD_BEFORE_PAUSE: Duration = Duration::from_millis(250);

/// Fetched events that may wait for full lanes before the loop stops taking records.
const MAX_HELD: usize = 1_024;

/// Records already fetched that the loop takes in at most before handing them to their lanes.
const TAKE_TOGETHER: usize = 64;

/// Fetches until `stop` turns true: decode, route with the plugins in service, hand to a lane.
/// Follows the catalog: when the topics the plugins need change, the subscription changes with them.
pub async fn fetch_loop(
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    lanes: Lanes,
    mut stop: watch::Receiver<bool>,
) {
    let mut swaps = catalog.swaps();
    let mut subscribed: Vec<String> = Vec::new();
    follow_topics(&shared, &catalog.live().topics, &mut subscribed);
    let mut held = Held::new(lanes.count());
    let mut topics = Topics::default();
    // The events taken in together; kept across fetches, so its buffer is allocated once.
    let mut jobs = Vec::with_capacity(TAKE_TOGETHER);
    // One stream for the whole loop: `recv()` would register and drop a waker slot per record.
    let consumer = shared.consumer.clone();
    let mut messages = consumer.stream();
    let mut pauses = Pauses::default();
    let mut tick = tokio::time::interval(STORE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !held.send(&lanes) {
            return;
        }
        let stuck = held.stuck();
        pauses.apply(&shared, shared.in_flight.over(), stuck, false);
        if stuck && pauses.waiting.is_empty() {
            pauses.wait_for(&shared, held.partitions());
        }
        let take = held.count < MAX_HELD || stuck;
        let room = held.first_lane().map(|lane| lanes.room_in(lane));
        let message = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tick.tick() => {
                store_positions(&shared.tracker, shared.consumer.as_ref());
                pauses.recount(&shared);
                if stuck {
                    pauses.wait_for(&shared, held.partitions());
                }
                continue;
            }
            Ok(()) = swaps.changed() => {
                let live = catalog.live();
                follow_topics(&shared, &live.topics, &mut subscribed);
                pauses.take_back(&shared, &live);
                continue;
            }
            _ = async { room.expect("guarded").await }, if room.is_some() => continue,
            Some(message) = messages.next(), if take => message,
        };
        match message {
            Ok(first) => {
                // Records already fetched are taken in together and handed to their lanes after:
                // a lane woken once gets several events, instead of one wake-up (and often one
                // thread parked and woken) per event.
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    let live = catalog.live();
                    if live.subscribes(message.topic()) {
                        jobs.extend(accept(&shared, &live, &mut topics, &message));
                        pauses.check(&shared, message.topic(), message.partition());
                    } else {
                        pauses.set_aside(&shared, &message);
                    }
                    if jobs.len() < TAKE_TOGETHER {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => next = Some(message),
                            Some(Some(Err(error))) => tracing::warn!(%error, "consumer error"),
                            Some(None) | None => {}
                        }
                    }
                }
                for job in jobs.drain(..) {
                    let waiting = stuck.then(|| (job.ticket.topic.clone(), job.ticket.partition));
                    if !held.offer(&lanes, job)
                        && let Some((topic, partition)) = waiting
                    {
                        pauses.wait_also(&shared, &topic, partition);
                    }
                }
                // A partition may have been assigned meanwhile, or a message fetched before a pause.
                pauses.apply(&shared, pauses.all, stuck, true);
            }
            Err(error) => {
                tracing::warn!(%error, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Jobs fetched while their lane was full, per lane in fetch order: a job never overtakes an
/// earlier one of its lane (hence of its key), and a full lane holds back only its own jobs.
struct Held {
    lanes: Vec<VecDeque<Job>>,
    count: usize,
    /// Since when some job has been waiting.
    since: Option<Instant>,
}

impl Held {
    fn new(lanes: usize) -> Self {
        Self { lanes: (0..lanes).map(|_| VecDeque::new()).collect(), count: 0, since: None }
    }

    /// Sends `job` to its lane, or keeps it if jobs wait for that lane already or the lane is
    /// full. `false`: kept.
    fn offer(&mut self, lanes: &Lanes, job: Job) -> bool {
        let lane = lanes.lane(&job.record);
        let job = if self.lanes[lane].is_empty() {
            match lanes.try_send(lane, job) {
                // Closed: shutting down, the job is left for the partition's next owner.
                Ok(()) | Err(TrySend::Closed) => return true,
                Err(TrySend::Full(job)) => *job,
            }
        } else {
            job
        };
        self.lanes[lane].push_back(job);
        self.count += 1;
        self.since.get_or_insert_with(Instant::now);
        false
    }

    /// Hands waiting jobs to lanes with room; `false` once the lanes stopped (shutdown).
    fn send(&mut self, lanes: &Lanes) -> bool {
        if self.count == 0 {
            return true;
        }
        for (lane, queue) in self.lanes.iter_mut().enumerate() {
            while let Some(job) = queue.pop_front() {
                match lanes.try_send(lane, job) {
                    Ok(()) => self.count -= 1,
                    Err(TrySend::Full(job)) => {
                        queue.push_front(*job);
                        break;
                    }
                    Err(TrySend::Closed) => return false,
                }
            }
        }
        if self.count == 0 {
            self.since = None;
        }
        true
    }

    /// A lane jobs wait for.
    fn first_lane(&self) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        self.lanes.iter().position(|queue| !queue.is_empty())
    }

    /// Whether jobs have waited longer than [`HOLD_BEFORE_PAUSE`].
    fn stuck(&self) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= HOLD_BEFORE_PAUSE)
    }

    /// The partitions of the waiting jobs.
    fn partitions(&self) -> HashSet<(String, i32)> {
        self.lanes.iter().flatten().map(|job| (job.record.topic.clone(), job.record.partition)).collect()
    }
}

/// Subscribes to `topics` if they differ from `subscribed`. Partitions of topics no plugin needs any
/// more are revoked (after the calls running on them return, and a commit); records of them fetched
/// before that are set aside (see [`Pauses::set_aside`]).
fn follow_topics(shared: &Shared, topics: &[String], subscribed: &mut Vec<String>) {
    if topics == subscribed.as_slice() {
        return;
    }
    if topics.is_empty() {
        shared.consumer.unsubscribe();
        tracing::warn!("no plugin subscribes to any topic; idle");
    } else {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = shared.consumer.subscribe(&names) {
            // The previous subscription stays; the next swap tries again.
            return tracing::error!(%error, topics = %topics.join(","), "cannot change the subscription");
        }
        tracing::info!(topics = %topics.join(","), "subscribed");
    }
    *subscribed = topics.to_vec();
}

/// Which assigned partitions the fetch loop keeps from fetching, and why:
/// - all of them while the host holds `pipeline.max_in_flight_mib` of records;
/// - those with events that have waited [`HOLD_BEFORE_PAUSE`] for their full lanes;
/// - a partition with `pipeline.max_uncommitted` events fetched and not committed (its head is
///   stuck: a parked retry, a call that does not return), until it drops below three quarters;
/// - a partition of a topic no plugin subscribes to any more, from the first record of it that
///   was not handled: the consumer is sent back to that record, so nothing past it can be
///   committed; it is fetched again if a plugin subscribes to the topic again, or by the next
///   owner once the partition is revoked.
#[derive(Default)]
struct Pauses {
    all: bool,
    /// Events wait for full lanes: `waiting` holds their partitions.
    stuck: bool,
    waiting: HashSet<(String, i32)>,
    crowded: HashSet<(String, i32)>,
    aside: HashSet<(String, i32)>,
}

impl Pauses {
    /// Finds the partitions with too many uncommitted events (every store tick, not per record)
    /// and pauses or resumes them.
    fn recount(&mut self, shared: &Shared) {
        let max = shared.max_uncommitted;
        let crowded: HashSet<(String, i32)> = shared
            .tracker
            .uncommitted()
            .into_iter()
            .filter(|(tp, n)| *n >= max || (self.crowded.contains(tp) && *n > max / 4 * 3))
            .map(|(tp, _)| tp)
            .collect();
        if crowded == self.crowded {
            return;
        }
        for (topic, partition) in crowded.difference(&self.crowded) {
            warn_crowded(topic, *partition, max);
        }
        self.crowded = crowded;
        self.update(shared, self.all);
    }

    /// Pauses the partition of the record just fetched if it reached `pipeline.max_uncommitted`
    /// (cheap enough for every record; [`Pauses::recount`] resumes it).
    fn check(&mut self, shared: &Shared, topic: &str, partition: i32) {
        let max = shared.max_uncommitted;
        if shared.tracker.in_flight(topic, partition) < max {
            return;
        }
        if self.crowded.insert((topic.to_string(), partition)) {
            warn_crowded(topic, partition, max);
            pause_one(shared, topic, partition);
        }
    }

    /// Pauses every assigned partition while `all`, else only the crowded, set-aside and (while
    /// `stuck`) waiting ones. `again`: re-pause even if nothing changed (a partition may have
    /// been assigned since).
    fn apply(&mut self, shared: &Shared, all: bool, stuck: bool, again: bool) {
        if stuck != self.stuck {
            self.stuck = stuck;
            if !stuck {
                self.waiting.clear();
            }
            return self.update(shared, all);
        }
        if all != self.all || (again && all) {
            self.update(shared, all);
        }
    }

    /// While stuck: the partitions whose events wait for full lanes are `waiting` now.
    fn wait_for(&mut self, shared: &Shared, waiting: HashSet<(String, i32)>) {
        if waiting != self.waiting {
            self.waiting = waiting;
            self.update(shared, self.all);
        }
    }

    /// While stuck: an event of this partition waits too.
    fn wait_also(&mut self, shared: &Shared, topic: &str, partition: i32) {
        if !self.waiting.contains(&(topic.to_string(), partition)) {
            self.waiting.insert((topic.to_string(), partition));
            pause_one(shared, topic, partition);
        }
    }

    fn update(&mut self, shared: &Shared, all: bool) {
        let assignment = match shared.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => return tracing::warn!(%error, "cannot read the assignment"),
        };
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for element in assignment.elements() {
            let tp = (element.topic().to_string(), element.partition());
            let paused =
                all || self.crowded.contains(&tp) || self.aside.contains(&tp) || self.waiting.contains(&tp);
            let list = if paused { &mut pause } else { &mut resume };
            list.add_partition(element.topic(), element.partition());
        }
        if pause.count() > 0
            && let Err(error) = shared.consumer.pause(&pause)
        {
            tracing::warn!(%error, partitions = %describe(&pause), "cannot pause fetching");
        }
        if resume.count() > 0
            && let Err(error) = shared.consumer.resume(&resume)
        {
            tracing::warn!(%error, partitions = %describe(&resume), "cannot resume fetching");
        }
        if all != self.all {
            tracing::debug!(
                "fetching {}",
                if all { "paused: in-flight records at their cap" } else { "resumed" }
            );
        }
        shared.metrics.fetch_paused.set(i64::from(all || !self.waiting.is_empty()));
        self.all = all;
    }

    /// A record of a topic no plugin subscribes to any more (fetched before the subscription
    /// changed, or the change failed): pause its partition and go back to it.
    fn set_aside(&mut self, shared: &Shared, message: &BorrowedMessage<'_>) {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if !self.aside.insert((topic.to_string(), partition)) {
            return;
        }
        tracing::debug!(
            topic,
            partition,
            offset,
            "record of a topic no plugin subscribes to any more; set aside"
        );
        pause_one(shared, topic, partition);
        // Without blocking: the position moves back before fetching resumes.
        if let Err(error) = shared.consumer.seek(topic, partition, Offset::Offset(offset), Duration::ZERO) {
            tracing::warn!(%error, topic, partition, offset, "cannot go back to a record set aside");
        }
    }

    /// Resumes the partitions set aside whose topic a plugin subscribes to again, and forgets the
    /// ones no longer assigned.
    fn take_back(&mut self, shared: &Shared, live: &Live) {
        if self.aside.is_empty() {
            return;
        }
        let assigned: HashSet<(String, i32)> = shared
            .consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
            .unwrap_or_default();
        let mut resume = TopicPartitionList::new();
        let all = self.all;
        self.aside.retain(|(topic, partition)| {
            if !assigned.contains(&(topic.clone(), *partition)) {
                return false;
            }
            if live.subscribes(topic) {
                if !all {
                    resume.add_partition(topic, *partition);
                }
                return false;
            }
            true
        });
        if resume.count() > 0
            && let Err(error) = shared.consumer.resume(&resume)
        {
            tracing::warn!(%error, "cannot resume partitions set aside");
        }
    }
}

fn warn_crowded(topic: &str, partition: i32, max: usize) {
    tracing::warn!(
        topic,
        partition,
        max,
        "partition has too many uncommitted events; fetching paused for it"
    );
}

/// Stops fetching one partition.
fn pause_one(shared: &Shared, topic: &str, partition: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(error) = shared.consumer.pause(&tpl) {
        tracing::warn!(%error, topic, partition, "cannot pause fetching");
    }
}

/// A plain record's headers as handlers see them: all of them (none is a CloudEvent attribute).
fn plain_headers(headers: &[TextHeader<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|(name, value)| (name.to_string(), value.unwrap_or_default().to_vec())).collect()
}

/// A header with its name as text.
type TextHeader<'a> = (&'a str, Option<&'a [u8]>);

/// The headers with their names as text. The Kafka protocol makes a header name a UTF-8 string;
/// a record that breaks that is not read any further.
fn utf8_names<'a>(headers: &[crate::headers::HeaderBytes<'a>]) -> Result<Vec<TextHeader<'a>>, DecodeError> {
    headers
        .iter()
        .map(|&(name, value)| match std::str::from_utf8(name) {
            Ok(name) => Ok((name, value)),
            Err(_) => Err(DecodeError::from(format!(
                "header name {} is not UTF-8 (the Kafka protocol requires UTF-8 header names)",
                crate::headers::printable(name)
            ))),
        })
        .collect()
}

/// The resolved series of each topic seen (see [`TopicSeries`]), owned by the fetch loop.
#[derive(Default)]
struct Topics(HashMap<Arc<str>, Arc<TopicSeries>>);

impl Topics {
    fn get(&mut self, shared: &Shared, topic: &str) -> Arc<TopicSeries> {
        if let Some(series) = self.0.get(topic) {
            return series.clone();
        }
        let series = Arc::new(shared.metrics.topic_series(topic));
        self.0.insert(series.topic.clone(), series.clone());
        series
    }
}

/// Decodes and routes one record. Records that are not CloudEvents, and events no plugin wants, are
/// finished here; the rest become lane jobs.
fn accept(
    shared: &Arc<Shared>,
    live: &Live,
    topics: &mut Topics,
    message: &BorrowedMessage<'_>,
) -> Option<Job> {
    let received = Instant::now();
    let topic = message.topic();
    let series = topics.get(shared, topic);
    let (partition, offset) = (message.partition(), message.offset());
    series.received.inc();
    let (ticket, skipped) = shared.tracker.fetched(&series.topic, partition, offset, received);
    if skipped > 0 {
        // Normal where a topic is compacted or written in transactions; on a plain topic, the
        // broker did not return records that exist.
        shared.metrics.offsets_skipped.with_label_values(&[topic]).inc_by(skipped as u64);
        tracing::debug!(
            topic,
            partition,
            offset,
            skipped,
            "offsets skipped since the partition's previous record"
        );
    }
    // Names and values as bytes: rdkafka's own accessor panics on a name that is not UTF-8.
    let header_bytes = message.headers().map(crate::headers::read).unwrap_or_default();
    let raw = RawRecord {
        topic: series.topic.clone(),
        partition,
        offset,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: header_bytes.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
        timestamp_ms: message.timestamp().to_millis(),
    };
    let share = shared.in_flight.take(raw.size());
    let decoded = utf8_names(&header_bytes).and_then(|headers| {
        let replay_plugin = headers.iter().find(|(k, _)| *k == dlq::REPLAY_PLUGIN).and_then(|(_, v)| *v);
        let decoded = match shared.plain_topics.get(topic) {
            Some(mapping) if !crate::plain::is_cloudevent(&headers) => mapping
                .event(topic, partition, offset, message.timestamp().to_millis(), message.payload())
                .map(|event| (event.traced(&headers), plain_headers(&headers))),
            _ => decode(&headers, message.payload()),
        };
        decoded.map(|decoded| (decoded, replay_plugin))
    });
    let refused = |reason, raw, share| {
        Some(Job::refused(ticket.clone(), record(message), raw, reason, share, series.clone(), received))
    };
    let ((event, headers), replay_plugin) = match decoded {
        Ok(decoded) => decoded,
        Err(reason) => {
            tracing::warn!(topic, partition, offset, %reason, "record is not a valid CloudEvent; dead-lettering");
            shared.metrics.invalid.with_label_values(&[topic]).inc();
            return refused((DlqReason::InvalidCloudevent, reason.to_string()), raw, share);
        }
    };
    let mut plugins = live.router.route(topic, &event);
    // A record replayed from a dead-letter topic goes back only to the plugin that failed it. The
    // header only ever narrows the route to a plugin that would have received the event anyway: one
    // naming no such plugin (forged, or the plugin is gone) is ignored, so it cannot make an event
    // vanish; `dlq.replay_routing = false` ignores it always.
    if let Some(only) = replay_plugin.filter(|_| shared.replay_routing) {
        if plugins.iter().any(|p| p.id.as_bytes() == only) {
            plugins.retain(|p| p.id.as_bytes() == only);
        } else {
            tracing::warn!(
                topic,
                partition,
                offset,
                "weft.replay.plugin names no plugin subscribed to this event; routing to all"
            );
        }
    }
    if plugins.is_empty() {
        tracing::debug!(topic, partition, offset, ce.id = %event.id, ce.r#type = %event.ty, "no plugin subscribed");
        shared.metrics.unrouted.with_label_values(&[topic]).inc();
        if shared.dead_letter_unrouted {
            let error =
                format!("no plugin subscribes to type {:?} from {:?} on {topic}", event.ty, event.source);
            return refused((DlqReason::NoRoute, error), raw, share);
        }
        shared.finish(&ticket);
        return None;
    }
    let record = Delivery { headers, ..record(message) };
    let pending = plugins.into_iter().map(|p| (p, 1)).collect();
    Some(Job {
        ticket,
        event: Ok(event.into()),
        record,
        raw: Arc::new(raw),
        pending,
        share,
        series,
        received,
    })
}

/// The record as handlers see it (the `delivery` argument of the first attempt), without its
/// headers (those come from decoding).
fn record(message: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        attempt: 1,
        headers: Vec::new(),
    }
}
