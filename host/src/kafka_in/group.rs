//! Group membership: the callbacks librdkafka makes into Weft's consumer. A revocation stops
//! the revoked partitions' events, waits (bounded) for the events under way on them (calls
//! running, emitted events not yet acknowledged), commits what finished and forgets them; an assignment is counted; client errors are kept for `/readyz`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientContext, TopicPartitionList};

use crate::kafka_in::commit::{commit, parse_finished, store_positions};
use crate::ops::metrics::Metrics;
use crate::pipeline::handoff::Transactions;
use crate::pipeline::offsets::OffsetTracker;

/// The consumer as Weft uses it.
pub type WeftConsumer = StreamConsumer<GroupContext>;

/// Group membership callbacks. On revocation no event of the revoked partitions starts any more
/// here (queued, held and parked ones are dropped, uncommitted, for the next owner); the callback
/// waits (bounded) only for the events under way on them (calls running, and events whose emitted
/// events are not acknowledged yet), then commits what finished before the partitions move. It runs inside the consumer's poll, so it never waits for anything the
/// fetch loop would have to do.
pub struct GroupContext {
    tracker: Arc<OffsetTracker>,
    stopping: Arc<AtomicBool>,
    drain_timeout: Duration,
    metrics: Metrics,
    membership: Arc<Membership>,
    /// With exactly-once delivery, the committer whose transactions commit the offsets.
    transactions: Option<Transactions>,
}

/// What the consumer knows of its group membership, for `/readyz`.
#[derive(Debug, Default)]
pub struct Membership {
    /// Set at an assignment (even an empty one): the consumer is a member of its group. Cleared
    /// when it loses its assignment (its session expired, the coordinator went away) or a
    /// rebalance fails, until the next assignment.
    pub joined: AtomicBool,
    /// Why the consumer is no longer a member, once it was one.
    pub lost: std::sync::Mutex<Option<String>>,
    /// The group handler's state from the latest librdkafka statistics: whether the consumer can
    /// reach its group coordinator.
    pub group: std::sync::Mutex<Option<crate::kafka_in::statistics::GroupState>>,
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
        transactions: Option<Transactions>,
    ) -> Self {
        Self { tracker, stopping, drain_timeout, metrics, membership, transactions }
    }

    /// Commits what finished on the partitions being revoked: stored and committed by the
    /// consumer, or (exactly-once) by the committer's transaction.
    fn commit_finished(&self, consumer: &BaseConsumer<Self>) {
        match &self.transactions {
            None => {
                store_positions(&self.tracker, consumer);
                commit(&self.tracker, consumer);
            }
            Some(transactions) => {
                if let Err(error) = transactions.commit_now(self.drain_timeout.max(Duration::from_secs(30)))
                    && !self.stopping.load(Ordering::SeqCst)
                {
                    tracing::error!(%error, "the transaction of the revoked partitions did not commit; their events will be handled again");
                }
            }
        }
    }

    /// Reads what the previous owners of newly assigned partitions finished past their committed
    /// offsets (recorded in the commits' metadata), so that those events are not handled again.
    fn read_finished_before(&self, consumer: &BaseConsumer<Self>, partitions: &TopicPartitionList) {
        let committed = match consumer.committed_offsets(partitions.clone(), Duration::from_secs(10)) {
            Ok(committed) => committed,
            Err(error) => {
                return tracing::warn!(%error, "could not read the committed offsets' metadata; events finished past them may be handled again");
            }
        };
        for element in committed.elements() {
            if let rdkafka::Offset::Offset(offset) = element.offset() {
                let runs = parse_finished(offset, element.metadata());
                if !runs.is_empty() {
                    tracing::info!(
                        topic = element.topic(),
                        partition = element.partition(),
                        offset,
                        runs = runs.len(),
                        "events finished past the committed offset will be skipped"
                    );
                    self.tracker.set_finished_before(element.topic(), element.partition(), runs);
                }
            }
        }
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
        if let Some(group) = crate::kafka_in::statistics::export(statistics, &self.metrics) {
            *self.membership.group.lock().expect("membership lock poisoned") = Some(group);
        }
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(partitions) = rebalance else {
            return;
        };
        if consumer.assignment_lost() {
            // The group moved on without this member: not ready until it is assigned again.
            self.membership.joined.store(false, Ordering::SeqCst);
            *self.membership.lost.lock().expect("membership lock poisoned") = Some(
                "the consumer lost its partitions (its session expired, or the group coordinator is gone) \
                 and has not rejoined its group"
                    .into(),
            );
            tracing::warn!(partitions = %describe(partitions), "partitions lost; rejoining the group");
        }
        for p in partitions.elements() {
            self.tracker.revoke(p.topic(), p.partition());
        }
        // Lanes keep running on other threads while this callback waits; at shutdown the unstarted
        // events are left for the next owner, so there is nothing to wait for.
        let can_block = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        match &self.transactions {
            // Exactly-once, partitions lost: others own them already, and no transaction of them
            // can commit. The open one is abandoned (the host starts over), without waiting here.
            Some(transactions) if consumer.assignment_lost() => transactions.abandon(),
            _ => {
                if !self.stopping.load(Ordering::SeqCst) && can_block {
                    tokio::task::block_in_place(|| self.drain(partitions));
                }
                self.commit_finished(consumer);
            }
        }
        for p in partitions.elements() {
            self.tracker.forget(p.topic(), p.partition());
            let _ = self.metrics.consumer_lag.remove_label_values(&[p.topic(), &p.partition().to_string()]);
        }
        self.metrics.rebalances.with_label_values(&["revoke"]).inc();
        self.metrics.partitions_assigned.sub(partitions.count() as i64);
        tracing::info!(partitions = %describe(partitions), "partitions revoked");
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(partitions) => {
                if partitions.count() > 0 {
                    self.read_finished_before(consumer, partitions);
                }
                self.metrics.rebalances.with_label_values(&["assign"]).inc();
                self.metrics.partitions_assigned.add(partitions.count() as i64);
                self.membership.joined.store(true, Ordering::SeqCst);
                *self.membership.lost.lock().expect("membership lock poisoned") = None;
                // A series at 0 from the start, so that the first skip is an increase.
                for p in partitions.elements() {
                    self.metrics.offsets_skipped.with_label_values(&[p.topic()]).inc_by(0);
                }
                tracing::info!(partitions = %describe(partitions), "partitions assigned");
            }
            Rebalance::Error(error) => {
                tracing::error!(%error, "rebalance failed");
                self.membership.joined.store(false, Ordering::SeqCst);
                *self.membership.lost.lock().expect("membership lock poisoned") =
                    Some(format!("a rebalance failed ({error}) and the consumer has not rejoined its group"));
            }
            Rebalance::Revoke(_) => {}
        }
    }
}

/// The partitions of `partitions` as `topic/partition,…`, for logs.
pub fn describe(partitions: &TopicPartitionList) -> String {
    let parts: Vec<String> =
        partitions.elements().iter().map(|p| format!("{}/{}", p.topic(), p.partition())).collect();
    parts.join(",")
}
