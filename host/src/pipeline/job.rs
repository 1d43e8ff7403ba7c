//! A job: one routed event on its way through a lane, with everything its handling, retries,
//! dead letter and commit need, so nothing is looked up again per attempt.

use std::sync::Arc;

use crate::kafka_out::dead_letters::{DlqReason, RawRecord};
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
