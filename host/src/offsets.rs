//! Contiguous offset tracking: events of a partition finish out of order (different keys run in
//! parallel), but the offset Weft stores for commit only ever moves to just past the longest run of
//! finished events at the head of the partition. A commit therefore never skips an unfinished event.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Identifies one in-flight event. Handed out by [`OffsetTracker::begin`], given back to
/// [`OffsetTracker::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The event's topic.
    pub topic: String,
    /// The event's partition.
    pub partition: i32,
    /// The event's offset.
    pub offset: i64,
    /// The assignment the event was fetched under. A ticket from a revoked assignment is ignored.
    generation: u64,
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    /// In-flight offsets in fetch order, with whether each has finished.
    pending: VecDeque<(i64, bool)>,
}

/// In-flight events of every assigned partition.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: Mutex<HashMap<String, HashMap<i32, Partition>>>,
    generations: AtomicU64,
}

impl OffsetTracker {
    /// A tracker with no partitions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that the event at `offset` was fetched and is now in flight.
    pub fn begin(&self, topic: &str, partition: i32, offset: i64) -> Ticket {
        let mut partitions = self.partitions.lock().expect("offset lock poisoned");
        let by_partition = match partitions.get_mut(topic) {
            Some(p) => p,
            None => partitions.entry(topic.to_string()).or_default(),
        };
        let state = by_partition.entry(partition).or_insert_with(|| Partition {
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            pending: VecDeque::new(),
        });
        if state.pending.back().is_some_and(|&(last, _)| offset <= last) {
            // The consumer went back (a seek or a reset after an error): what was in flight before
            // will be fetched again, so forget it under a new generation.
            state.generation = self.generations.fetch_add(1, Ordering::Relaxed);
            state.pending.clear();
        }
        state.pending.push_back((offset, false));
        Ticket { topic: topic.to_string(), partition, offset, generation: state.generation }
    }

    /// Marks the ticket's event finished. Returns the offset to store for commit (one past the last
    /// event of the finished run at the head) when that run grew, or `None`.
    pub fn finish(&self, ticket: &Ticket) -> Option<i64> {
        let mut partitions = self.partitions.lock().expect("offset lock poisoned");
        let state = partitions.get_mut(&ticket.topic)?.get_mut(&ticket.partition)?;
        if state.generation != ticket.generation {
            return None;
        }
        let index = state.pending.binary_search_by_key(&ticket.offset, |&(o, _)| o).ok()?;
        state.pending[index].1 = true;
        let mut next = None;
        while let Some(&(offset, true)) = state.pending.front() {
            state.pending.pop_front();
            next = Some(offset + 1);
        }
        next
    }

    /// How many events of the partition are in flight.
    pub fn in_flight(&self, topic: &str, partition: i32) -> usize {
        let partitions = self.partitions.lock().expect("offset lock poisoned");
        partitions.get(topic).and_then(|p| p.get(&partition)).map_or(0, |s| s.pending.len())
    }

    /// How many events are in flight across every partition.
    pub fn total_in_flight(&self) -> usize {
        let partitions = self.partitions.lock().expect("offset lock poisoned");
        partitions.values().flat_map(|p| p.values()).map(|s| s.pending.len()).sum()
    }

    /// Forgets a partition (it was revoked). Tickets issued for it are ignored from now on.
    pub fn forget(&self, topic: &str, partition: i32) {
        let mut partitions = self.partitions.lock().expect("offset lock poisoned");
        if let Some(by_partition) = partitions.get_mut(topic) {
            by_partition.remove(&partition);
            if by_partition.is_empty() {
                partitions.remove(topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_only_past_the_finished_head() {
        let t = OffsetTracker::new();
        let a = t.begin("t", 0, 10);
        let b = t.begin("t", 0, 11);
        let c = t.begin("t", 0, 12);
        assert_eq!(t.finish(&c), None, "12 finished but 10 and 11 are still in flight");
        assert_eq!(t.finish(&b), None);
        assert_eq!(t.in_flight("t", 0), 3);
        assert_eq!(t.finish(&a), Some(13), "the whole run 10..=12 is done");
        assert_eq!(t.in_flight("t", 0), 0);
    }

    #[test]
    fn gaps_in_offsets_are_fine() {
        let t = OffsetTracker::new();
        let a = t.begin("t", 1, 5);
        let b = t.begin("t", 1, 9);
        assert_eq!(t.finish(&a), Some(6));
        assert_eq!(t.finish(&b), Some(10));
    }

    #[test]
    fn partitions_are_independent() {
        let t = OffsetTracker::new();
        let p0 = t.begin("t", 0, 0);
        let p1 = t.begin("t", 1, 0);
        let other = t.begin("u", 0, 0);
        assert_eq!(t.finish(&p1), Some(1));
        assert_eq!(t.total_in_flight(), 2);
        assert_eq!(t.finish(&other), Some(1));
        assert_eq!(t.finish(&p0), Some(1));
    }

    #[test]
    fn tickets_of_a_forgotten_partition_are_ignored() {
        let t = OffsetTracker::new();
        let old = t.begin("t", 0, 3);
        t.forget("t", 0);
        let fresh = t.begin("t", 0, 3);
        assert_eq!(t.finish(&old), None, "stale ticket from the revoked assignment");
        assert_eq!(t.in_flight("t", 0), 1);
        assert_eq!(t.finish(&fresh), Some(4));
    }

    #[test]
    fn rewind_starts_a_new_generation() {
        let t = OffsetTracker::new();
        let first = t.begin("t", 0, 7);
        let again = t.begin("t", 0, 7);
        assert_eq!(t.finish(&first), None);
        assert_eq!(t.finish(&again), Some(8));
    }
}
