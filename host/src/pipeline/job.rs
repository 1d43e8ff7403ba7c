//! A job: one routed event on its way through a lane, with everything its handling, retries,
//! dead letter and commit need, so nothing is looked up again per attempt.

use std::sync::Arc;

use crate::kafka_out::dead_letters::{DlqReason, Letter, RawRecord};
use crate::ops::metrics::TopicSeries;
use crate::pipeline::in_flight::Share;
use crate::pipeline::offsets::Ticket;
use crate::sandbox::bindings::{Cloudevent, Delivery};
use crate::sandbox::plugin::Plugin;

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
    /// Its data still has to pass its topic's schema check before any plugin sees it.
    pub unchecked: bool,
    /// Its part of the host's in-flight count and bytes, given back when the job is dropped.
    pub share: Share,
    /// The metric series of its topic.
    pub series: Arc<TopicSeries>,
    /// Dead letters decided for the event whose write the broker has not acknowledged yet (the
    /// dead-letter topic refused it): the event waits aside, like a parked retry, and is finished
    /// only once they are written.
    pub letters: Vec<Letter>,
    /// Exactly-once delivery: what its handlers emitted and the dead letters it needs, held until
    /// the event is handed over to its transaction.
    pub held: Vec<crate::kafka_out::outgoing::Outgoing>,
    /// The wait before the next try of `letters`, or of a schema check the registry did not
    /// answer: 100 ms, doubling to 10 s.
    pub wait: std::time::Duration,
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
        let letter = Letter { reason: reason.0, error: reason.1.clone(), plugin: None, attempts: 0 };
        Self {
            ticket,
            event: Err(reason),
            record,
            raw,
            pending: Vec::new(),
            unchecked: false,
            share,
            series,
            letters: vec![letter],
            held: Vec::new(),
            wait: FIRST_WAIT,
            received,
        }
    }

    /// After a dead-letter write or a schema lookup failed: how long to wait before the next try
    /// (growing).
    pub fn next_wait(&mut self) -> std::time::Duration {
        let wait = self.wait;
        self.wait = (wait * 2).min(LAST_WAIT);
        wait
    }
}

/// The first wait before a refused dead-letter write or an unanswered schema lookup is tried again,
/// and the longest.
pub const FIRST_WAIT: std::time::Duration = std::time::Duration::from_millis(100);
const LAST_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
