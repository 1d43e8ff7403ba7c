//! Contiguous offset tracking: events of a partition finish out of order (different keys run in
//! parallel), but the offset Weft stores for commit only ever moves to just past the longest run of
//! finished events at the head of the partition. A commit therefore never skips an unfinished event.
//!
//! # Storing positions
//! Events finish on many lanes at once. If each lane stored the position it computed, two lanes
//! could reach librdkafka in the opposite order of their computations and move a stored offset
//! backwards; the next commit would then fall short of work already done. So finishing an event only
//! advances the partition's position here, and [`OffsetTracker::store`] hands every position that
//! moved to librdkafka in one call made under the tracker's lock: stored offsets only ever grow, and
//! one call per batch replaces one per event.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::ops::health::Progress;

/// Identifies one in-flight event. Handed out by [`OffsetTracker::begin`], given back to
/// [`OffsetTracker::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The event's topic (shared by the events of the topic, not copied for each).
    pub topic: Arc<str>,
    /// The event's partition.
    pub partition: i32,
    /// The event's offset.
    pub offset: i64,
    /// The assignment the event was fetched under. A ticket from a revoked assignment is ignored.
    generation: u64,
    /// Which fetch of the offset this is: after the consumer goes back, the same offset is fetched
    /// again, and only the latest fetch's ticket finishes it.
    fetch: u64,
}

#[derive(Debug)]
struct Partition {
    generation: u64,
    /// In-flight events in offset order.
    pending: VecDeque<Pending>,
    /// The number the next fetched event gets ([`Ticket::fetch`]).
    next_fetch: u64,
    /// One past the last event of the finished run at the head: the offset to commit.
    position: Option<i64>,
    /// The commit point last handed to [`OffsetTracker::store`]'s callback: offset and runs.
    stored: Option<(i64, Vec<(i64, i64)>)>,
    /// The partition is being revoked: no event of it may start any more.
    revoked: bool,
    /// Events of this partition under way: handler calls, dead-letter writes, and acknowledgements
    /// of emitted events awaited.
    running: usize,
    /// Runs of finished events in `pending` (past the unfinished head).
    runs: usize,
}

/// Where a partition's commit stands: the offset to commit, and the runs of events finished
/// past it (first and last offset of each), which a commit records so that the partition's next
/// owner skips them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitPoint {
    /// The partition's topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset to commit: the first event not finished.
    pub offset: i64,
    /// Runs of events finished past `offset`, in order, as `(first, last)` offsets.
    pub finished_past: Vec<(i64, i64)>,
}

/// A partition's [`CommitPoint`]: the offset of its first unfinished event and the runs finished
/// past it, with what a previous owner finished that is not fetched yet.
fn commit_point(
    topic: &str,
    partition: i32,
    state: &Partition,
    before: &FinishedBefore,
) -> Option<CommitPoint> {
    let offset = state.position.or_else(|| state.pending.front().map(|p| p.offset))?;
    let mut finished_past = finished_runs(&state.pending);
    let fetched = state.pending.back().map_or(offset - 1, |last| last.offset);
    if let Some(runs) = before.get(&(topic.to_string(), partition)) {
        finished_past.extend(
            runs.iter()
                .filter(|(_, last)| *last > fetched)
                .map(|(first, last)| ((*first).max(fetched + 1), *last)),
        );
    }
    Some(CommitPoint { topic: topic.to_string(), partition, offset, finished_past })
}

/// The runs of finished events in `pending`, as `(first, last)` offsets.
fn finished_runs(pending: &VecDeque<Pending>) -> Vec<(i64, i64)> {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut previous_finished = false;
    for event in pending {
        match (event.finished, previous_finished) {
            (true, true) => runs.last_mut().expect("a run is open").1 = event.offset,
            (true, false) => runs.push((event.offset, event.offset)),
            (false, _) => {}
        }
        previous_finished = event.finished;
    }
    runs
}

/// One in-flight event of a partition.
#[derive(Debug)]
struct Pending {
    offset: i64,
    /// Handled, or dead-lettered.
    finished: bool,
    /// When it was fetched: the start of its age in [`Progress::oldest_unfinished`].
    fetched_at: Instant,
    /// Its [`Ticket::fetch`].
    fetch: u64,
}

impl Partition {
    /// Where the in-flight event `ticket` names is, if this fetch of it is still tracked.
    fn find(&self, ticket: &Ticket) -> Option<usize> {
        let index = self.pending.binary_search_by_key(&ticket.offset, |p| p.offset).ok()?;
        (self.pending[index].fetch == ticket.fetch).then_some(index)
    }
}

/// Per partition, runs of offsets (first and last) finished by a previous owner.
type FinishedBefore = HashMap<(String, i32), Vec<(i64, i64)>>;

/// Every tracked partition's state, by topic and partition.
type Partitions = HashMap<String, HashMap<i32, Partition>>;

/// In-flight events of every assigned partition.
#[derive(Debug)]
pub struct OffsetTracker {
    partitions: Mutex<Partitions>,
    generations: AtomicU64,
    /// Per partition, events a previous owner finished past its committed offset (read from the
    /// commit's metadata at assignment), as runs of offsets: they are finished at once when
    /// fetched, never handled again.
    finished_before: Mutex<FinishedBefore>,
    /// Counts revocations, so that lanes let go of the revoked partitions' waiting events at once.
    revocations: tokio::sync::watch::Sender<u64>,
}

impl Default for OffsetTracker {
    fn default() -> Self {
        Self {
            partitions: Mutex::default(),
            generations: AtomicU64::default(),
            finished_before: Mutex::default(),
            revocations: tokio::sync::watch::Sender::new(0),
        }
    }
}

/// The state of one partition, if it is tracked.
fn state<'a>(partitions: &'a mut Partitions, topic: &str, partition: i32) -> Option<&'a mut Partition> {
    partitions.get_mut(topic)?.get_mut(&partition)
}

/// Every tracked partition, as `(topic, partition, state)`.
fn each(partitions: &Partitions) -> impl Iterator<Item = (&str, i32, &Partition)> {
    partitions.iter().flat_map(|(topic, by_partition)| {
        by_partition.iter().map(move |(&partition, state)| (topic.as_str(), partition, state))
    })
}

impl OffsetTracker {
    /// A tracker with no partitions.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Partitions> {
        self.partitions.lock().expect("offset lock poisoned")
    }

    /// Records that the event at `offset` was fetched and is now in flight.
    pub fn begin(&self, topic: &str, partition: i32, offset: i64) -> Ticket {
        self.fetched(&topic.into(), partition, offset, Instant::now()).0
    }

    /// [`OffsetTracker::begin`], also telling how many offsets the consumer skipped to get there
    /// since the partition's previous record: none on a plain topic, some where a topic is compacted
    /// or holds transaction markers, and records lost in transit if a broker skips them.
    /// `at` is when it was fetched, the start of its age in [`Progress::oldest_unfinished`].
    pub fn fetched(&self, topic: &Arc<str>, partition: i32, offset: i64, at: Instant) -> (Ticket, i64) {
        let mut partitions = self.lock();
        let by_partition = match partitions.get_mut(&**topic) {
            Some(p) => p,
            None => partitions.entry(topic.to_string()).or_default(),
        };
        let state = by_partition.entry(partition).or_insert_with(|| Partition {
            generation: self.generations.fetch_add(1, Ordering::Relaxed),
            pending: VecDeque::new(),
            next_fetch: 0,
            position: None,
            stored: None,
            revoked: false,
            running: 0,
            runs: 0,
        });
        if state.pending.back().is_some_and(|last| offset <= last.offset)
            || state.position.is_some_and(|position| offset < position)
        {
            // The consumer went back (a seek, a reset after an unclean leader election or a
            // truncation): from `offset` on, events will be fetched again, and the tickets of their
            // earlier fetches no longer count. Events before it that are still in flight stay: their
            // lanes finish them, and nothing past them is stored until they do.
            while state.pending.back().is_some_and(|last| last.offset >= offset) {
                state.pending.pop_back();
            }
            if state.pending.is_empty() && state.position.is_some_and(|position| offset < position) {
                // Back before the commit position: it starts again from there.
                state.position = None;
                state.stored = None;
            }
            state.runs = finished_runs(&state.pending).len();
        }
        let expected = state.pending.back().map(|last| last.offset + 1).or(state.position);
        let skipped = expected.map_or(0, |expected| offset - expected);
        let fetch = state.next_fetch;
        state.next_fetch += 1;
        state.pending.push_back(Pending { offset, finished: false, fetched_at: at, fetch });
        (Ticket { topic: topic.clone(), partition, offset, generation: state.generation, fetch }, skipped)
    }

    /// Marks the ticket's event finished. Returns the partition's new position (one past the last
    /// event of the finished run at the head) when that run grew, or `None`. The position reaches
    /// librdkafka with the next [`OffsetTracker::store`].
    pub fn finish(&self, ticket: &Ticket) -> Option<i64> {
        let mut partitions = self.lock();
        let state = state(&mut partitions, &ticket.topic, ticket.partition)
            .filter(|s| s.generation == ticket.generation)?;
        let index = state.find(ticket)?;
        if state.pending[index].finished {
            return None;
        }
        let joins_before = index > 0 && state.pending[index - 1].finished;
        let joins_after = state.pending.get(index + 1).is_some_and(|p| p.finished);
        state.pending[index].finished = true;
        state.runs = state.runs + 1 - usize::from(joins_before) - usize::from(joins_after);
        let mut next = None;
        while let Some(head) = state.pending.front().filter(|head| head.finished) {
            next = Some(head.offset + 1);
            state.pending.pop_front();
        }
        if next.is_some() {
            // The run at the head is committed, no longer a run past the head.
            state.runs -= 1;
            state.position = next;
        }
        next
    }

    /// Whether the ticket's partition is still tracked under the assignment the ticket was
    /// issued for (not forgotten, not assigned anew since), revoked or not.
    pub fn tracked(&self, ticket: &Ticket) -> bool {
        let mut partitions = self.lock();
        state(&mut partitions, &ticket.topic, ticket.partition)
            .is_some_and(|s| s.generation == ticket.generation)
    }

    /// Whether finishing the ticket's event keeps the runs of finished events past its
    /// partition's head within `max_runs` (what a commit's metadata can record), counting the
    /// runs a previous owner recorded that are not fetched yet, and one more for the run being
    /// fetched (it is recorded in two parts). The head itself can always finish.
    pub fn can_finish(&self, ticket: &Ticket, max_runs: usize) -> bool {
        let mut partitions = self.lock();
        let Some(state) = state(&mut partitions, &ticket.topic, ticket.partition)
            .filter(|s| s.generation == ticket.generation)
        else {
            return true;
        };
        let Some(index) = state.find(ticket) else { return true };
        let joins = (index > 0 && state.pending[index - 1].finished)
            || state.pending.get(index + 1).is_some_and(|p| p.finished);
        if index == 0 || joins {
            return true;
        }
        let fetched = state.pending.back().map_or(i64::MIN, |last| last.offset);
        let inherited = self
            .finished_before
            .lock()
            .expect("finished-before lock poisoned")
            .get(&(ticket.topic.to_string(), ticket.partition))
            .map_or(0, |runs| runs.iter().filter(|(_, last)| *last > fetched).count() + 1);
        state.runs + inherited < max_runs
    }

    /// Every tracked partition's [`CommitPoint`] (revoked ones too, until forgotten). The runs a
    /// previous owner finished that are not fetched yet stay recorded.
    pub fn commit_points(&self) -> Vec<CommitPoint> {
        let partitions = self.lock();
        let before = self.finished_before.lock().expect("finished-before lock poisoned");
        each(&partitions)
            .filter_map(|(topic, partition, state)| commit_point(topic, partition, state, &before))
            .collect()
    }

    /// Records what a previous owner of the partition finished past its committed offset: those
    /// events are finished at once when fetched ([`OffsetTracker::finished_before`]).
    pub fn set_finished_before(&self, topic: &str, partition: i32, runs: Vec<(i64, i64)>) {
        let mut finished = self.finished_before.lock().expect("finished-before lock poisoned");
        if runs.is_empty() {
            finished.remove(&(topic.to_string(), partition));
        } else {
            finished.insert((topic.to_string(), partition), runs);
        }
    }

    /// Whether the ticket's event was finished by a previous owner of its partition (see
    /// [`OffsetTracker::set_finished_before`]).
    pub fn finished_before(&self, ticket: &Ticket) -> bool {
        let mut finished = self.finished_before.lock().expect("finished-before lock poisoned");
        if finished.is_empty() {
            return false;
        }
        let key = (ticket.topic.to_string(), ticket.partition);
        let Some(runs) = finished.get(&key) else { return false };
        let done = runs.iter().any(|(first, last)| (*first..=*last).contains(&ticket.offset));
        if runs.last().is_some_and(|(_, last)| ticket.offset >= *last) {
            finished.remove(&key);
        }
        done
    }

    /// Calls `store` with the [`CommitPoint`] of every partition whose point moved since the last
    /// call (its offset, or the runs finished past it), while holding the tracker's lock, so points
    /// reach `store` in the order they were reached and never go back. A partition whose head has
    /// not finished is handed over only once events past it have. Nothing is called when nothing
    /// moved. If `store` fails, the points are offered again next time.
    pub fn store<E>(&self, store: impl FnOnce(&[CommitPoint]) -> Result<(), E>) -> Result<(), E> {
        let mut partitions = self.lock();
        let moved: Vec<CommitPoint> = {
            let before = self.finished_before.lock().expect("finished-before lock poisoned");
            each(&partitions)
                .filter_map(|(topic, partition, state)| {
                    let point = commit_point(topic, partition, state, &before)?;
                    if state.position.is_none() && point.finished_past.is_empty() {
                        return None;
                    }
                    let unchanged = state.stored.as_ref().is_some_and(|(offset, runs)| {
                        point.offset < *offset || (point.offset == *offset && *runs == point.finished_past)
                    });
                    (!unchanged).then_some(point)
                })
                .collect()
        };
        if moved.is_empty() {
            return Ok(());
        }
        store(&moved)?;
        for point in moved {
            if let Some(state) = state(&mut partitions, &point.topic, point.partition) {
                state.stored = Some((point.offset, point.finished_past));
            }
        }
        Ok(())
    }

    /// Claims the ticket's event for work (a handler call, a dead-letter write). `false` when its
    /// partition was revoked or forgotten meanwhile (the event belongs to the partition's next
    /// owner), or when the consumer went back past it (its new fetch is the one to work on): it
    /// must not be worked on here. A `true` must be matched by [`OffsetTracker::stop`].
    pub fn start(&self, ticket: &Ticket) -> bool {
        let mut partitions = self.lock();
        let state = state(&mut partitions, &ticket.topic, ticket.partition)
            .filter(|s| s.generation == ticket.generation && !s.revoked)
            .filter(|s| s.find(ticket).is_some());
        state.map(|s| s.running += 1).is_some()
    }

    /// The work claimed by [`OffsetTracker::start`] is over: the event finished (call
    /// [`OffsetTracker::finish`] first, so that a revocation waiting for the claim commits it), or
    /// waits for a retry.
    pub fn stop(&self, ticket: &Ticket) {
        let mut partitions = self.lock();
        if let Some(state) = state(&mut partitions, &ticket.topic, ticket.partition)
            .filter(|s| s.generation == ticket.generation)
        {
            state.running = state.running.saturating_sub(1);
        }
    }

    /// Marks a partition revoked: its events that have not started never will here (they stay
    /// uncommitted for the next owner); those running may still finish, see
    /// [`OffsetTracker::running`].
    pub fn revoke(&self, topic: &str, partition: i32) {
        if let Some(state) = state(&mut self.lock(), topic, partition) {
            state.revoked = true;
        }
        self.revocations.send_modify(|count| *count += 1);
    }

    /// Changes with every revocation: whoever holds events waiting then asks
    /// [`OffsetTracker::owned`] which of them are still this member's.
    pub fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.revocations.subscribe()
    }

    /// Whether the ticket's event may still be worked on here: its partition is assigned (not
    /// revoked, not forgotten, not assigned anew since) and the ticket is its latest fetch.
    pub fn owned(&self, ticket: &Ticket) -> bool {
        let mut partitions = self.lock();
        state(&mut partitions, &ticket.topic, ticket.partition)
            .filter(|s| s.generation == ticket.generation && !s.revoked)
            .is_some_and(|s| s.find(ticket).is_some())
    }

    /// Work under way on the partition's events.
    pub fn running(&self, topic: &str, partition: i32) -> usize {
        state(&mut self.lock(), topic, partition).map_or(0, |s| s.running)
    }

    /// Every partition with events fetched and not committed, and how many.
    pub fn uncommitted(&self) -> Vec<((String, i32), usize)> {
        each(&self.lock())
            .filter(|(_, _, state)| !state.pending.is_empty())
            .map(|(topic, partition, state)| ((topic.to_string(), partition), state.pending.len()))
            .collect()
    }

    /// How many events of the partition are in flight.
    pub fn in_flight(&self, topic: &str, partition: i32) -> usize {
        state(&mut self.lock(), topic, partition).map_or(0, |s| s.pending.len())
    }

    /// How many events are in flight across every partition.
    pub fn total_in_flight(&self) -> usize {
        each(&self.lock()).map(|(_, _, s)| s.pending.len()).sum()
    }

    /// Forgets a partition (it was revoked). Tickets issued for it are ignored from now on.
    pub fn forget(&self, topic: &str, partition: i32) {
        self.set_finished_before(topic, partition, Vec::new());
        let mut partitions = self.lock();
        if let Some(by_partition) = partitions.get_mut(topic) {
            by_partition.remove(&partition);
            if by_partition.is_empty() {
                partitions.remove(topic);
            }
        }
    }
}

impl Progress for OffsetTracker {
    /// For every partition with unfinished events: how long ago its oldest unfinished event was
    /// fetched, and its offset. A partition whose oldest event keeps ageing is not making progress.
    fn oldest_unfinished(&self) -> Vec<(String, i32, i64, Duration)> {
        each(&self.lock())
            .filter_map(|(topic, partition, state)| {
                let head = state.pending.front()?;
                Some((topic.to_string(), partition, head.offset, head.fetched_at.elapsed()))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_skipped_between_fetched_records_are_counted() {
        let tracker = OffsetTracker::default();
        let (first, none) = tracker.fetched(&"t".into(), 0, 10, Instant::now());
        assert_eq!(none, 0, "nothing to compare the first record with");
        let (second, none) = tracker.fetched(&"t".into(), 0, 11, Instant::now());
        assert_eq!(none, 0);
        let (third, skipped) = tracker.fetched(&"t".into(), 0, 15, Instant::now());
        assert_eq!(skipped, 3, "12, 13 and 14 never came");
        for ticket in [first, second, third] {
            tracker.finish(&ticket);
        }
        // All finished: the position (16) is what the next record is compared with.
        assert_eq!(tracker.fetched(&"t".into(), 0, 18, Instant::now()).1, 2);
        assert_eq!(tracker.fetched(&"t".into(), 1, 100, Instant::now()).1, 0, "per partition");
        // Going back (a seek) is not a gap.
        assert_eq!(tracker.fetched(&"t".into(), 0, 12, Instant::now()).1, 0);
    }

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
    fn an_unfinished_event_survives_a_rewind_past_it() {
        // In flight: 5 (its call running), 6 and 7 finished behind it. The consumer then delivers
        // 6 again (an unclean leader election, a truncation reset).
        let t = OffsetTracker::new();
        let five = t.begin("t", 0, 5);
        let six = t.begin("t", 0, 6);
        let seven = t.begin("t", 0, 7);
        assert!(t.start(&five));
        assert_eq!(t.finish(&six), None);
        assert_eq!(t.finish(&seven), None);
        let again_six = t.begin("t", 0, 6);
        let again_seven = t.begin("t", 0, 7);
        assert_eq!(t.finish(&again_six), None, "5 is still unfinished: nothing past it may be stored");
        assert_eq!(t.finish(&again_seven), None);
        assert_eq!(
            stored(&t),
            [("t".to_string(), 0, 5)],
            "no position past the unfinished 5 (6 and 7 recorded past it)"
        );
        assert_eq!(t.commit_points()[0].finished_past, [(6, 7)]);
        assert!(!t.start(&six), "6 was fetched again: its new fetch is the one to work on");
        assert_eq!(t.running("t", 0), 1, "5's call is still counted");
        t.stop(&five);
        assert_eq!(t.running("t", 0), 0, "5's call ended: nothing left running");
        assert!(t.start(&five), "a parked 5 may still be retried");
        t.stop(&five);
        assert_eq!(t.finish(&five), Some(8), "5 done: the run reaches the redelivered 7");
    }

    fn stored(t: &OffsetTracker) -> Vec<(String, i32, i64)> {
        let mut out = Vec::new();
        t.store(|moved| {
            out.extend(moved.iter().map(|p| (p.topic.clone(), p.partition, p.offset)));
            Ok::<(), ()>(())
        })
        .unwrap();
        out.sort();
        out
    }

    #[test]
    fn store_hands_over_events_finished_past_an_unfinished_head() {
        let t = OffsetTracker::new();
        let (head, next) = (t.begin("t", 0, 0), t.begin("t", 0, 1));
        assert!(stored(&t).is_empty(), "nothing finished");
        t.finish(&next);
        let mut points = Vec::new();
        t.store(|moved| {
            points.extend_from_slice(moved);
            Ok::<(), ()>(())
        })
        .unwrap();
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].offset, points[0].finished_past.clone()), (0, vec![(1, 1)]));
        assert!(stored(&t).is_empty(), "already stored");
        t.finish(&head);
        assert_eq!(stored(&t), [("t".to_string(), 0, 2)]);
    }

    #[test]
    fn store_hands_over_only_positions_that_moved() {
        let t = OffsetTracker::new();
        let a = t.begin("t", 0, 0);
        let b = t.begin("t", 1, 0);
        assert!(stored(&t).is_empty(), "nothing finished yet");
        t.finish(&a);
        t.finish(&b);
        assert_eq!(stored(&t), [("t".to_string(), 0, 1), ("t".to_string(), 1, 1)]);
        assert!(stored(&t).is_empty(), "already stored");
        let c = t.begin("t", 0, 1);
        t.finish(&c);
        assert_eq!(stored(&t), [("t".to_string(), 0, 2)]);
        // A failed store is offered again.
        let d = t.begin("t", 0, 2);
        t.finish(&d);
        assert!(t.store(|_| Err("revoked")).is_err());
        assert_eq!(stored(&t), [("t".to_string(), 0, 3)]);
    }

    /// The interleaving that moved stored offsets backwards: lane A finishes offset 0 and is about
    /// to store position 1 when lane B finishes offset 1 and stores position 2. A's store must not
    /// land after B's.
    #[test]
    fn a_slow_store_cannot_be_overtaken_by_a_later_position() {
        let t = OffsetTracker::new();
        let (a, b) = (t.begin("t", 0, 0), t.begin("t", 0, 1));
        let landed = Mutex::new(Vec::new());
        let (a_storing, a_storing_rx) = std::sync::mpsc::channel();
        std::thread::scope(|scope| {
            scope.spawn(|| {
                t.finish(&a);
                t.store(|moved| {
                    a_storing.send(()).unwrap();
                    // B runs now; give it time to overtake if it can.
                    std::thread::sleep(Duration::from_millis(100));
                    landed.lock().unwrap().push(moved[0].offset);
                    Ok::<(), ()>(())
                })
            });
            let (t, landed) = (&t, &landed);
            scope.spawn(move || {
                a_storing_rx.recv().unwrap();
                t.finish(&b);
                t.store(|moved| {
                    landed.lock().unwrap().push(moved[0].offset);
                    Ok::<(), ()>(())
                })
            });
        });
        assert_eq!(*landed.lock().unwrap(), [1, 2], "positions must land in the order they were reached");
    }

    #[test]
    fn stored_positions_never_go_back_under_concurrent_finishers() {
        let t = std::sync::Arc::new(OffsetTracker::new());
        let tickets: Vec<Ticket> = (0..20_000).map(|o| t.begin("t", 0, o)).collect();
        let log = std::sync::Arc::new(Mutex::new(Vec::new()));
        std::thread::scope(|scope| {
            for lane in 0..4 {
                let (t, log, tickets) = (t.clone(), log.clone(), &tickets);
                scope.spawn(move || {
                    for ticket in tickets.iter().skip(lane).step_by(4) {
                        t.finish(ticket);
                        t.store(|moved| {
                            log.lock().unwrap().extend(moved.iter().map(|m| m.offset));
                            Ok::<(), ()>(())
                        })
                        .unwrap();
                    }
                });
            }
        });
        let log = log.lock().unwrap();
        // A point may be handed over again at the same offset when only its runs changed.
        assert!(log.windows(2).all(|w| w[0] <= w[1]), "a stored position went back");
        assert_eq!(log.last(), Some(&20_000));
    }

    #[test]
    fn the_oldest_unfinished_event_is_the_head() {
        let t = OffsetTracker::new();
        let head = t.begin("t", 0, 5);
        std::thread::sleep(Duration::from_millis(20));
        let later = t.begin("t", 0, 6);
        t.finish(&later);
        let oldest = t.oldest_unfinished();
        assert_eq!(oldest.len(), 1);
        assert_eq!((oldest[0].0.as_str(), oldest[0].1, oldest[0].2), ("t", 0, 5));
        assert!(oldest[0].3 >= Duration::from_millis(20));
        t.finish(&head);
        assert!(t.oldest_unfinished().is_empty());
    }

    #[test]
    fn a_revoked_partition_lets_running_work_finish_and_starts_nothing() {
        let t = OffsetTracker::new();
        let running = t.begin("t", 0, 0);
        let waiting = t.begin("t", 0, 1);
        let other = t.begin("t", 1, 0);
        assert!(t.start(&running));
        t.revoke("t", 0);
        assert!(!t.start(&waiting), "revoked: not ours to start");
        assert!(t.start(&other), "other partitions are unaffected");
        assert_eq!(t.running("t", 0), 1);
        assert_eq!(t.finish(&running), Some(1), "what was running still finishes and counts");
        t.stop(&running);
        assert_eq!(t.running("t", 0), 0);
        t.forget("t", 0);
        assert!(!t.start(&waiting), "forgotten: not ours either");
    }

    #[test]
    fn commit_points_record_the_runs_finished_past_the_head() {
        let t = OffsetTracker::new();
        let tickets: Vec<Ticket> = (10..20).map(|offset| t.begin("t", 0, offset)).collect();
        for offset in [12, 13, 15, 16, 17] {
            t.finish(&tickets[offset - 10]);
        }
        let points = t.commit_points();
        assert_eq!(points.len(), 1);
        assert_eq!((points[0].offset, points[0].finished_past.clone()), (10, vec![(12, 13), (15, 17)]));
        // Two runs past the head: a third may not open, but joining one, or the head, may.
        assert!(!t.can_finish(&tickets[9], 2), "19 would open a third run");
        assert!(t.can_finish(&tickets[8], 2), "18 joins 15-17");
        assert!(t.can_finish(&tickets[4], 2), "14 joins two runs");
        assert!(t.can_finish(&tickets[0], 2), "the head always may");
        t.finish(&tickets[0]);
        t.finish(&tickets[1]);
        let point = &t.commit_points()[0];
        assert_eq!((point.offset, point.finished_past.clone()), (14, vec![(15, 17)]), "10-13 committed");
        assert!(t.can_finish(&tickets[9], 2), "one run left past the head");
    }

    #[test]
    fn runs_a_previous_owner_recorded_count_against_the_limit() {
        let t = OffsetTracker::new();
        // Two runs recorded, not fetched yet; one more is allowed for the run fetched in two parts.
        t.set_finished_before("t", 0, vec![(20, 21), (30, 31)]);
        let tickets: Vec<Ticket> = (10..16).map(|offset| t.begin("t", 0, offset)).collect();
        assert!(t.can_finish(&tickets[2], 4), "2 recorded + 1 + this one's new run fit in 4");
        t.finish(&tickets[2]);
        assert!(!t.can_finish(&tickets[4], 4), "a second new run would not be recorded");
        assert!(t.can_finish(&tickets[3], 4), "joining a run adds none");
        assert!(t.can_finish(&tickets[0], 4), "the head always may");
    }

    #[test]
    fn events_a_previous_owner_finished_are_known_and_stay_recorded_until_fetched() {
        let t = OffsetTracker::new();
        t.set_finished_before("t", 0, vec![(12, 13), (20, 25)]);
        let head = t.begin("t", 0, 10);
        let point = &t.commit_points()[0];
        assert_eq!((point.offset, point.finished_past.clone()), (10, vec![(12, 13), (20, 25)]));
        assert!(!t.finished_before(&head));
        let eleven = t.begin("t", 0, 11);
        let twelve = t.begin("t", 0, 12);
        assert!(!t.finished_before(&eleven));
        assert!(t.finished_before(&twelve));
        t.finish(&twelve);
        let point = &t.commit_points()[0];
        assert_eq!(point.finished_past, vec![(12, 12), (13, 13), (20, 25)], "13 is not fetched yet");
        t.forget("t", 0);
        let again = t.begin("t", 0, 20);
        assert!(!t.finished_before(&again), "a revocation forgets them");
    }

    #[test]
    fn a_revocation_is_announced_and_ends_ownership() {
        let t = OffsetTracker::new();
        let revocations = t.revocations();
        let ticket = t.begin("t", 0, 0);
        let other = t.begin("t", 1, 0);
        assert!(t.owned(&ticket));
        assert!(!revocations.has_changed().unwrap());
        t.revoke("t", 0);
        assert!(revocations.has_changed().unwrap(), "lanes are told");
        assert!(!t.owned(&ticket), "the revoked partition's event is not ours any more");
        assert!(t.owned(&other), "the other partition's is");
        t.forget("t", 0);
        let again = t.begin("t", 0, 0);
        assert!(!t.owned(&ticket), "a new assignment does not revive the old ticket");
        assert!(t.owned(&again));
    }

    #[test]
    fn only_the_latest_fetch_of_an_offset_finishes_it() {
        let t = OffsetTracker::new();
        let first = t.begin("t", 0, 7);
        let again = t.begin("t", 0, 7);
        assert_eq!(t.finish(&first), None);
        assert_eq!(t.finish(&again), Some(8));
    }
}
