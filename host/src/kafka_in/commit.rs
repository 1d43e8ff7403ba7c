//! Commits: finished positions handed to librdkafka (`store_offsets`) and committed, never past an
//! unfinished event (the positions come from the offset tracker).

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{Offset, TopicPartitionList};

use crate::pipeline::offsets::{CommitPoint, OffsetTracker};

/// Commits every tracked partition's commit point (with its record of events finished past it)
/// synchronously. "Nothing to commit" is not an error; a failed commit is tried twice more (a
/// coordinator moving, a request timing out), since the next automatic commit may never come
/// (revocation, shutdown). The points are given explicitly: a commit of "the stored offsets"
/// would drop their metadata.
pub fn commit<C: ConsumerContext, K: Consumer<C>>(tracker: &OffsetTracker, consumer: &K) {
    let points = tracker.commit_points();
    if points.is_empty() {
        return;
    }
    let offsets = match offsets_of(&points) {
        Ok(offsets) => offsets,
        Err(error) => return tracing::error!(%error, "offsets not committed"),
    };
    for attempt in 1..=3 {
        match consumer.commit(&offsets, CommitMode::Sync) {
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

/// Stores the commit point of every partition whose point moved (its offset, or the events
/// finished past it), in one call, the finished runs in the offset's metadata; librdkafka commits
/// stored offsets with their metadata. Positions only ever grow (see `pipeline/offsets.rs`).
pub fn store_positions<C: ConsumerContext, K: Consumer<C>>(tracker: &OffsetTracker, consumer: &K) {
    let result = tracker.store(|moved| consumer.store_offsets(&offsets_of(moved)?));
    if let Err(error) = result {
        // Every partition in the list was revoked meanwhile; their new owners handle the rest.
        tracing::debug!(%error, "offsets not stored");
    }
}

/// The offsets of `points`, each with the record of the runs finished past it as metadata.
pub fn offsets_of(points: &[CommitPoint]) -> KafkaResult<TopicPartitionList> {
    let mut offsets = TopicPartitionList::with_capacity(points.len());
    for point in points {
        offsets.add_partition_offset(&point.topic, point.partition, Offset::Offset(point.offset))?;
        if let Some(mut element) = offsets.find_partition(&point.topic, point.partition) {
            element.set_metadata(finished_metadata(point.offset, &point.finished_past));
        }
    }
    Ok(offsets)
}

/// Runs of events finished past the committed offset that one commit records, at most: the
/// broker keeps `offset.metadata.max.bytes` (4 KiB by default) of metadata per partition. Past
/// it, an event that would open a new run waits for the head (see `kafka_in/transactions.rs`).
pub const MAX_FINISHED_RUNS: usize = 300;

/// What marks Weft's offset-commit metadata, and its version.
const METADATA_PREFIX: &str = "weft1:";

/// The offset-commit metadata recording the runs of events finished past `offset`:
/// `weft1:` then, per run, `start+length` in base 36, `start` relative to the end of the previous
/// run (the first to `offset`), comma-separated. Empty when nothing is finished past `offset`.
pub fn finished_metadata(offset: i64, runs: &[(i64, i64)]) -> String {
    if runs.is_empty() {
        return String::new();
    }
    let mut text = String::from(METADATA_PREFIX);
    let mut previous = offset;
    // Every run is recorded: the finishing of events keeps them within `MAX_FINISHED_RUNS` (and
    // one for a run recorded in two parts), which fits the broker's limit (see the test below).
    for (index, (first, last)) in runs.iter().enumerate() {
        if index > 0 {
            text.push(',');
        }
        text.push_str(&base36(first - previous));
        text.push('+');
        text.push_str(&base36(last - first));
        previous = *last;
    }
    text
}

/// The runs of finished events recorded by [`finished_metadata`] for a commit at `offset`. Metadata
/// Weft did not write (another client's, or none) records nothing.
pub fn parse_finished(offset: i64, metadata: &str) -> Vec<(i64, i64)> {
    let Some(list) = metadata.strip_prefix(METADATA_PREFIX) else { return Vec::new() };
    let mut runs = Vec::new();
    let mut previous = offset;
    for item in list.split(',') {
        let Some((gap, length)) = item.split_once('+') else { return Vec::new() };
        let (Ok(gap), Ok(length)) = (i64::from_str_radix(gap, 36), i64::from_str_radix(length, 36)) else {
            return Vec::new();
        };
        if gap < 0 || length < 0 {
            return Vec::new();
        }
        let first = previous + gap;
        runs.push((first, first + length));
        previous = first + length;
    }
    runs
}

/// `n` (not negative) in base 36, lower case.
fn base36(mut n: i64) -> String {
    let mut digits = Vec::new();
    loop {
        digits.push(char::from_digit((n % 36) as u32, 36).expect("a base-36 digit"));
        n /= 36;
        if n == 0 {
            break;
        }
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_runs_round_trip_through_the_metadata() {
        let runs = [(12, 12), (14, 20), (1_000_000, 1_000_003)];
        let text = finished_metadata(10, &runs);
        assert_eq!(text, "weft1:2+0,2+6,lfl8+3");
        assert_eq!(parse_finished(10, &text), runs);
        assert_eq!(finished_metadata(10, &[]), "");
    }

    #[test]
    fn foreign_or_damaged_metadata_records_nothing() {
        for text in ["", "some other client's note", "weft1:2", "weft1:x!+1", "weft1:-3+1", "weft1:1+-1"] {
            assert_eq!(parse_finished(10, text), [], "{text:?}");
        }
    }

    #[test]
    fn the_largest_record_fits_the_brokers_default_limit() {
        let runs: Vec<(i64, i64)> =
            (0..=MAX_FINISHED_RUNS as i64).map(|n| (n * 2_000_000 + 1, n * 2_000_000 + 999_999)).collect();
        assert!(finished_metadata(0, &runs).len() < 4_096);
    }
}
