//! Exactly-once delivery's transaction committer: one thread with the member's transactional
//! producer. It writes every finished event handed over by the lanes (what its handlers emitted,
//! the dead letters it needs) into the open transaction, finishes the event in the offset tracker,
//! and commits the transaction with the consumed offsets (`send_offsets_to_transaction` with the
//! consumer's group metadata, so a member that lost its partitions is fenced) when it is
//! `delivery.transaction_interval_ms` old, holds `delivery.transaction_max_events` events, or a
//! revocation or shutdown asks. A commit records the events finished past the committed offset in
//! the commit's metadata, so that the partition's next owner skips them.
//!
//! A transaction that cannot commit (a rebalance moved the group to a new generation, the member
//! was fenced, a write failed for good) is aborted and the committer stops with the cause: the host
//! restarts in the process (`host::run`), rejoins its group, and the aborted transaction's events
//! are handled again from the last committed transaction, by whoever owns them now.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};

use crate::kafka_in::commit::{MAX_FINISHED_RUNS, offsets_of};
use crate::kafka_in::group::WeftConsumer;
use crate::pipeline::handoff::{Handoff, Request};
use crate::pipeline::offsets::{OffsetTracker, Ticket};

/// The member's transactional producer.
pub type TransactionalProducer = ThreadedProducer<DefaultProducerContext>;

/// How long one transactional request (init, offsets, commit, abort) may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The committer's state: the producer, what the open transaction holds, and events that wait
/// for their partition's head before they can be recorded.
pub struct Committer {
    producer: TransactionalProducer,
    consumer: Arc<WeftConsumer>,
    tracker: Arc<OffsetTracker>,
    interval: Duration,
    max_events: usize,
    /// When the open transaction began; `None`: none is open.
    began: Option<Instant>,
    /// The events written into the open transaction.
    written: Vec<Ticket>,
    /// Finished events that would open more runs past their partition's head than a commit can
    /// record, in the order they came: they wait, their records unwritten, until the head moves.
    /// Later events of their keys wait behind them, so each key's outputs stay in order.
    waiting: VecDeque<Handoff>,
    /// How many events of each key (topic, partition, key hash) wait.
    waiting_keys: HashMap<(Arc<str>, i32, u64), usize>,
    /// When the waiting events were last looked at.
    looked: Instant,
}

impl Committer {
    /// A committer writing through `producer` (made with `transactional.id`) for `consumer`'s group.
    pub fn new(
        producer: TransactionalProducer,
        consumer: Arc<WeftConsumer>,
        tracker: Arc<OffsetTracker>,
        interval: Duration,
        max_events: usize,
    ) -> Self {
        Self {
            producer,
            consumer,
            tracker,
            interval,
            max_events,
            began: None,
            written: Vec::new(),
            waiting: VecDeque::new(),
            waiting_keys: HashMap::new(),
            looked: Instant::now(),
        }
    }

    /// Registers the transactional id with the cluster, fencing an earlier producer with the same
    /// id and aborting what it left open.
    pub fn init(&self) -> anyhow::Result<()> {
        self.producer
            .init_transactions(REQUEST_TIMEOUT)
            .context("initialising the transactional producer (delivery.mode = \"exactly-once\")")
    }

    /// Serves `requests` until asked to stop, or until a transaction fails (the error says why).
    pub fn run(mut self, requests: Receiver<Request>) -> anyhow::Result<()> {
        loop {
            let wait =
                self.since().map_or(self.interval, |since| self.interval.saturating_sub(since.elapsed()));
            match requests.recv_timeout(wait) {
                Ok(Request::Finished(handoff)) => self.take(handoff)?,
                Ok(Request::Commit(reply)) => {
                    let result = self.commit();
                    let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
                    result?;
                }
                Ok(Request::Stop(reply)) => {
                    let result = self.commit();
                    let _ = reply.send(result.as_ref().map(|_| ()).map_err(|e| format!("{e:#}")));
                    return result;
                }
                Ok(Request::Abandon) => {
                    return Err(self.abort(anyhow!(
                        "the member lost its partitions (its session expired, or the coordinator is gone)"
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {}
                // Every sender is gone: the host is going away without a stop.
                Err(RecvTimeoutError::Disconnected) => return self.commit(),
            }
            let due = self.since().is_some_and(|since| since.elapsed() >= self.interval);
            if due || self.written.len() >= self.max_events {
                self.commit()?;
            }
        }
    }

    /// Since when a commit has been due to come: the open transaction's start, or, with events
    /// waiting, when they were last looked at (they are looked at again at the same cadence).
    fn since(&self) -> Option<Instant> {
        self.began.or(self.waiting.front().map(|_| self.looked))
    }

    /// Takes a finished event: written now, or waiting behind its key's earlier waiting events
    /// or for its partition's head to move.
    fn take(&mut self, handoff: Handoff) -> anyhow::Result<()> {
        let key = key_of(&handoff);
        if !self.waiting_keys.contains_key(&key)
            && self.tracker.can_finish(&handoff.ticket, MAX_FINISHED_RUNS)
        {
            return self.write(handoff);
        }
        if self.waiting.is_empty() {
            tracing::debug!(topic = %key.0, partition = key.1, offset = handoff.ticket.offset, "too many runs of events finished past the partition's head; events wait for it");
        }
        *self.waiting_keys.entry(key).or_default() += 1;
        self.waiting.push_back(handoff);
        Ok(())
    }

    /// Writes the event's records into the open transaction and finishes it.
    fn write(&mut self, handoff: Handoff) -> anyhow::Result<()> {
        if !self.tracker.tracked(&handoff.ticket) {
            // Its partition was revoked and let go without waiting for it: the next owner handles it.
            tracing::info!(topic = %handoff.ticket.topic, partition = handoff.ticket.partition, offset = handoff.ticket.offset, "event of a partition let go; not written");
            return Ok(());
        }
        self.begin()?;
        for outgoing in &handoff.records {
            let mut record = outgoing.record();
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        // The queue drains as the brokers take batches.
                        record = back;
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    Err((error, _)) => {
                        return Err(
                            self.abort(anyhow!(error).context(format!("writing to {}", outgoing.topic)))
                        );
                    }
                }
            }
        }
        self.tracker.finish(&handoff.ticket);
        self.written.push(handoff.ticket);
        Ok(())
    }

    fn begin(&mut self) -> anyhow::Result<()> {
        if self.began.is_none() {
            self.producer.begin_transaction().context("beginning a transaction")?;
            self.began = Some(Instant::now());
        }
        Ok(())
    }

    /// Writes the waiting events whose turn came, then commits the open transaction with the
    /// consumed offsets of every partition whose commit point moved.
    fn commit(&mut self) -> anyhow::Result<()> {
        self.write_waiting()?;
        self.looked = Instant::now();
        let offsets = self.moved_offsets()?;
        if self.began.is_none() && offsets.count() == 0 {
            return Ok(());
        }
        self.begin()?;
        if offsets.count() > 0 {
            let group = self
                .consumer
                .group_metadata()
                .ok_or_else(|| anyhow!("the consumer has no group metadata (it is not in its group)"))
                .map_err(|e| self.abort(e))?;
            if let Err(error) = self.producer.send_offsets_to_transaction(&offsets, &group, REQUEST_TIMEOUT) {
                return Err(
                    self.abort(anyhow!(error).context("adding the consumed offsets to the transaction"))
                );
            }
        }
        // A partition let go while its events were written would commit them without their
        // offsets: abort instead, and let its next owner handle them.
        if let Some(lost) = self.written.iter().find(|ticket| !self.tracker.tracked(ticket)) {
            let lost = format!("{}/{}", lost.topic, lost.partition);
            return Err(
                self.abort(anyhow!("partition {lost} was let go while its events were being written"))
            );
        }
        if let Err(error) = self.producer.commit_transaction(REQUEST_TIMEOUT) {
            return Err(self.abort(anyhow!(error).context("committing the transaction")));
        }
        self.began = None;
        self.written.clear();
        Ok(())
    }

    /// Writes the waiting events that may finish now, in order; an event that still may not
    /// holds back the later ones of its key.
    fn write_waiting(&mut self) -> anyhow::Result<()> {
        let mut blocked = std::collections::HashSet::new();
        for _ in 0..self.waiting.len() {
            let handoff = self.waiting.pop_front().expect("counted");
            let key = key_of(&handoff);
            let may = !blocked.contains(&key)
                && (!self.tracker.tracked(&handoff.ticket)
                    || self.tracker.can_finish(&handoff.ticket, MAX_FINISHED_RUNS));
            if !may {
                blocked.insert(key);
                self.waiting.push_back(handoff);
                continue;
            }
            if let Some(count) = self.waiting_keys.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    self.waiting_keys.remove(&key);
                }
            }
            self.write(handoff)?;
        }
        Ok(())
    }

    /// The consumed offsets (with the runs finished past them as metadata) of the partitions whose
    /// commit point moved since the last commit.
    fn moved_offsets(&mut self) -> anyhow::Result<TopicPartitionList> {
        let mut offsets = TopicPartitionList::new();
        // Counted as handed over now: a commit that fails stops the committer.
        self.tracker.store(|moved| {
            offsets = offsets_of(moved)?;
            Ok::<(), rdkafka::error::KafkaError>(())
        })?;
        Ok(offsets)
    }

    /// Aborts the open transaction after `error`; returns the error, with the abort's own if it
    /// failed too.
    fn abort(&mut self, error: anyhow::Error) -> anyhow::Error {
        self.began = None;
        self.written.clear();
        match self.producer.abort_transaction(REQUEST_TIMEOUT) {
            Ok(()) => error.context("the transaction was aborted"),
            Err(abort) => error.context(format!("the transaction could not be aborted either: {abort}")),
        }
    }
}

/// The key a handoff's order is kept within.
fn key_of(handoff: &Handoff) -> (Arc<str>, i32, u64) {
    (handoff.ticket.topic.clone(), handoff.ticket.partition, handoff.key_hash)
}
