//! `[pipeline]`: lanes, backpressure, revocation and stall detection.

use anyhow::bail;
use serde::Deserialize;

use super::defaults;

/// `[pipeline]`: concurrency and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Number of lanes events are spread over by key. Events with the same key always use the same
    /// lane and are handled one after another; lanes run in parallel.
    #[serde(default = "defaults::lanes")]
    pub lanes: usize,
    /// Events that may wait in one lane before the consumer stops fetching.
    #[serde(default = "defaults::lane_capacity")]
    pub lane_capacity: usize,
    /// How long a partition revocation waits for the handler calls already running on that
    /// partition, and for the acknowledgements of what they emitted, before it commits what
    /// finished, in milliseconds. Events of the partition that have
    /// not started (queued, or waiting for a retry) are not waited for: the next owner handles them.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Events one lane may hold back behind keys that wait for a retry. Past it, the lane takes no
    /// new events until its retries drain (the fetch loop then waits: backpressure).
    #[serde(default = "defaults::max_parked")]
    pub max_parked: usize,
    /// How long a partition's oldest unfinished event may wait before `/readyz` reports the
    /// partition as stalled, in milliseconds. Leave room for the longest retry schedule.
    #[serde(default = "defaults::stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Events of one partition that may be fetched and not committed (the head unfinished, the rest
    /// waiting or finished behind it) before fetching pauses for that partition; it resumes below
    /// three quarters of it.
    #[serde(default = "defaults::max_uncommitted")]
    pub max_uncommitted: usize,
    /// Record data (keys, values, headers) the host may hold for events fetched and not finished,
    /// in MiB. Past it, fetching pauses until events finish.
    #[serde(default = "defaults::max_in_flight_mib")]
    pub max_in_flight_mib: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            lanes: defaults::lanes(),
            lane_capacity: defaults::lane_capacity(),
            drain_timeout_ms: defaults::drain_timeout_ms(),
            max_parked: defaults::max_parked(),
            stall_timeout_ms: defaults::stall_timeout_ms(),
            max_uncommitted: defaults::max_uncommitted(),
            max_in_flight_mib: defaults::max_in_flight_mib(),
        }
    }
}

impl PipelineConfig {
    /// Refuses settings that would stop the pipeline, by name.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.lanes == 0 {
            bail!("pipeline.lanes must be at least 1");
        }
        if self.lane_capacity == 0 {
            bail!("pipeline.lane_capacity must be at least 1");
        }
        if self.max_parked == 0 {
            bail!(
                "pipeline.max_parked must be at least 1 (a lane must be able to hold the event it retries)"
            );
        }
        for (key, value) in [
            ("stall_timeout_ms", self.stall_timeout_ms),
            ("max_uncommitted", self.max_uncommitted as u64),
            ("max_in_flight_mib", self.max_in_flight_mib),
        ] {
            if value == 0 {
                bail!("pipeline.{key} must be greater than 0");
            }
        }
        if self.max_in_flight_bytes().is_none() {
            bail!(
                "pipeline.max_in_flight_mib = {} is more memory than this machine can address",
                self.max_in_flight_mib
            );
        }
        Ok(())
    }

    /// `max_in_flight_mib` in bytes; `None` when it does not fit in memory addresses.
    pub fn max_in_flight_bytes(&self) -> Option<usize> {
        self.max_in_flight_mib.checked_mul(1 << 20).and_then(|bytes| usize::try_from(bytes).ok())
    }
}
