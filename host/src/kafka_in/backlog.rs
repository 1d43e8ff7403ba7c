//! Jobs fetched while their lane is full. They wait here, per lane in fetch order, so that a full
//! lane holds back only its own jobs and a job never overtakes an earlier one of its key; while
//! they wait the fetch loop stops taking records, and past [`HOLD_BEFORE_PAUSE`] it pauses their
//! partitions instead.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

use crate::pipeline::job::Job;
use crate::pipeline::lanes::{Lanes, TrySend};

/// Fetched events may wait this long for their full lanes before their partitions are paused.
/// Until then the loop merely stops taking records, so librdkafka keeps what it prefetched (a
/// pause discards it, and a resume fetches it again); past it, the partitions whose events wait
/// are paused and polling goes on, so rebalances and `max.poll.interval.ms` are served while a
/// lane is stuck.
pub const HOLD_BEFORE_PAUSE: Duration = Duration::from_millis(250);

/// Jobs fetched while their lane was full, per lane in fetch order: a job never overtakes an
/// earlier one of its lane (hence of its key), and a full lane holds back only its own jobs.
pub struct Backlog {
    lanes: Vec<VecDeque<Job>>,
    count: usize,
    /// Since when some job has been waiting.
    since: Option<Instant>,
}

impl Backlog {
    pub fn new(lanes: usize) -> Self {
        Self { lanes: (0..lanes).map(|_| VecDeque::new()).collect(), count: 0, since: None }
    }

    /// Sends `job` to its lane, or keeps it if jobs wait for that lane already or the lane is
    /// full. `false`: kept.
    pub fn offer(&mut self, lanes: &Lanes, job: Job) -> bool {
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
    pub fn send(&mut self, lanes: &Lanes) -> bool {
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

    /// How many jobs wait.
    pub fn waiting(&self) -> usize {
        self.count
    }

    /// A lane jobs wait for.
    pub fn first_lane(&self) -> Option<usize> {
        if self.count == 0 {
            return None;
        }
        self.lanes.iter().position(|queue| !queue.is_empty())
    }

    /// Whether jobs have waited longer than [`HOLD_BEFORE_PAUSE`].
    pub fn stuck(&self) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= HOLD_BEFORE_PAUSE)
    }

    /// The partitions of the waiting jobs.
    pub fn partitions(&self) -> HashSet<(String, i32)> {
        self.lanes.iter().flatten().map(|job| (job.record.topic.clone(), job.record.partition)).collect()
    }
}
