//! Commits: finished positions handed to librdkafka (`store_offsets`) and committed, never past an
//! unfinished event (the positions come from the offset tracker).

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::pipeline::offsets::OffsetTracker;

/// Commits the stored offsets synchronously. "Nothing to commit" is not an error; a failed commit
/// is tried twice more (a coordinator moving, a request timing out), since the next automatic
/// commit may never come (revocation, shutdown).
pub fn commit<C: ConsumerContext, K: Consumer<C>>(consumer: &K) {
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

/// How often finished positions are handed to librdkafka, which commits the stored offsets every
/// `auto.commit.interval.ms` and on revocation and shutdown (each of which stores first).
pub const STORE_INTERVAL: Duration = Duration::from_millis(50);

/// Stores the commit position of every partition whose finished run grew, in one call. Positions
/// only ever grow (see `pipeline/offsets.rs`).
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
