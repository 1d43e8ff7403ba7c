//! Lanes: the unit of ordering and of retry. Every event goes to the lane its key hashes to
//! (keyless events: the lane of their partition), and a lane handles its events one after another,
//! so events with the same key are handled in fetch order while different keys run in parallel.
//! This file is the lanes' front: starting the workers and handing them jobs; the worker itself is
//! in `lane.rs`, one attempt of an event in `attempt.rs`.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::ops::tasks::Tasks;
use crate::pipeline::context::PipelineContext;
use crate::pipeline::job::Job;
use crate::pipeline::lane::Lane;
use crate::sandbox::bindings::Delivery;

/// The senders of every lane.
#[derive(Clone)]
pub struct Lanes {
    senders: Vec<mpsc::Sender<Job>>,
}

impl Lanes {
    /// Starts `count` lane workers, each with a queue of `capacity` events and at most `max_parked`
    /// events held back by retries, on `tasks`.
    pub fn start(
        count: usize,
        capacity: usize,
        max_parked: usize,
        pipeline: Arc<PipelineContext>,
        stop: &tokio::sync::watch::Receiver<bool>,
        tasks: &mut Tasks,
    ) -> Self {
        let senders = (0..count)
            .map(|_| {
                let (tx, rx) = mpsc::channel(capacity);
                let lane = Lane::new(pipeline.clone(), max_parked);
                tasks.spawn("a lane", lane.run(rx, stop.clone()));
                tx
            })
            .collect();
        Self { senders }
    }

    /// How many lanes there are.
    pub fn count(&self) -> usize {
        self.senders.len()
    }

    /// The lane of `record`: by key, or by partition for keyless records.
    pub fn lane(&self, record: &Delivery) -> usize {
        lane_of(&record.topic, record.partition, record.key.as_deref(), self.senders.len())
    }

    /// Queues `job` on `lane` (its [`Lanes::lane`]) if the lane has room; gives it back if the
    /// lane is full.
    pub fn try_send(&self, lane: usize, job: Job) -> Result<(), TrySend> {
        self.senders[lane].try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(job) => TrySend::Full(Box::new(job)),
            mpsc::error::TrySendError::Closed(_) => TrySend::Closed,
        })
    }

    /// Waits until `lane` has room (or stopped).
    pub fn room_in(&self, lane: usize) -> impl std::future::Future<Output = ()> + use<> {
        let sender = self.senders[lane].clone();
        async move {
            let _ = sender.reserve_owned().await;
        }
    }
}

/// Why [`Lanes::try_send`] did not queue a job.
pub enum TrySend {
    /// The lane is full; here is the job back.
    Full(Box<Job>),
    /// The lane stopped (shutdown).
    Closed,
}

/// The lane among `lanes` of a record of `topic` and `partition` with `key`: by key, or by
/// partition for keyless records.
pub fn lane_of(topic: &str, partition: i32, key: Option<&[u8]>, lanes: usize) -> usize {
    // Hash the borrowed key (no per-event copy); same key, same lane, like `ParkKey`.
    let mut hasher = DefaultHasher::new();
    match key {
        Some(key) => key.hash(&mut hasher),
        None => (topic, partition).hash(&mut hasher),
    }
    (hasher.finish() % lanes as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_same_lane_and_keys_spread() {
        let a = lane_of("t", 0, Some(b"user-1"), 16);
        assert_eq!(a, lane_of("t", 0, Some(b"user-1"), 16));
        let used: std::collections::HashSet<_> =
            (0..200).map(|i| lane_of("t", 0, Some(format!("user-{i}").as_bytes()), 16)).collect();
        assert!(used.len() > 12, "200 keys should spread over most of 16 lanes, used {}", used.len());
        assert_eq!(lane_of("t", 2, None, 16), lane_of("t", 2, None, 16), "keyless: by partition");
    }
}
