//! What every lane works with: the offset tracker through which an event is claimed, finished or
//! let go, the dead-letter writer, the plugins in service, the stop flag and the metrics. The fetch
//! loop holds the same context, so an event it finishes itself (no plugin wants it) takes the same
//! way as one a lane finishes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::kafka_out::dead_letters::DeadLetters;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;
use crate::pipeline::catalog::Catalog;
use crate::pipeline::handoff::{Handoff, Transactions};
use crate::pipeline::job::Job;
use crate::pipeline::offsets::{OffsetTracker, Ticket};
use crate::schemas::Schemas;

/// The pipeline's shared state: built once by the host, held by the fetch loop and every lane.
pub struct PipelineContext {
    /// In-flight events per partition, in commit order.
    pub tracker: Arc<OffsetTracker>,
    /// The host's metrics.
    pub metrics: Metrics,
    /// Set when shutdown begins: lanes stop starting new events.
    pub stopping: Arc<AtomicBool>,
    /// Where events that cannot be handled go.
    pub dead_letters: DeadLetters,
    /// The plugins in service: a removed plugin handles nothing more.
    pub catalog: Arc<Catalog>,
    /// Where failing acknowledgements of emitted events are reported, for `/readyz`.
    pub health: Arc<Health>,
    /// With exactly-once delivery, the transaction committer that finishes events.
    pub transactions: Option<Transactions>,
    /// The schemas events are checked against before dispatch.
    pub schemas: Arc<Schemas>,
}

impl PipelineContext {
    /// Marks an event finished. Its partition's position reaches librdkafka with the fetch loop's
    /// next store of finished positions.
    pub fn finish(&self, ticket: &Ticket) {
        self.tracker.finish(ticket);
    }

    /// Marks a job every plugin is done with finished: at once, or (exactly-once delivery) by
    /// handing it over, with the records it holds, to the transaction that commits it.
    pub fn finish_job(&self, job: Job) {
        match &self.transactions {
            Some(transactions) => transactions.finished(Handoff {
                key_hash: key_hash(job.record.key.as_deref()),
                ticket: job.ticket,
                records: job.held,
                share: job.share,
            }),
            None => self.finish(&job.ticket),
        }
    }

    /// Finishes an event no plugin handles (none wants it, or a previous owner of its partition
    /// finished it): at once, or (exactly-once delivery) through the transaction committer, which
    /// keeps what a commit records within bounds.
    pub fn finish_unhandled(&self, ticket: Ticket, share: crate::pipeline::in_flight::Share) {
        match &self.transactions {
            Some(transactions) => {
                transactions.finished(Handoff { key_hash: 0, ticket, records: Vec::new(), share })
            }
            None => self.finish(&ticket),
        }
    }

    /// Whether events are delivered exactly once (through transactions).
    pub fn exactly_once(&self) -> bool {
        self.transactions.is_some()
    }

    /// Lets go of an event of a revoked partition without handling it: the next owner will.
    pub fn let_go(&self, ticket: &Ticket) {
        tracing::debug!(topic = %ticket.topic, partition = ticket.partition, offset = ticket.offset, "partition revoked; event left for its next owner");
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }
}

/// A hash of a record's key (the same for every record with that key, in this process).
fn key_hash(key: Option<&[u8]>) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(key)
}
