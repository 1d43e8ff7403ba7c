//! What the fetch loop works with: the group member, the pipeline it feeds, and the settings that
//! decide how a record is taken in. Built once by the host.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::{Config, TopicConfig};
use crate::kafka_in::group::WeftConsumer;
use crate::pipeline::context::PipelineContext;
use crate::pipeline::in_flight::InFlight;

/// What the fetch loop works with: the group member, the pipeline it feeds, and the settings
/// that decide how a record is taken in.
pub struct Intake {
    /// The host's configuration: `dlq.unrouted`, `dlq.replay_routing`, `pipeline.max_uncommitted`,
    /// and the dead-letter settings for topics seen for the first time.
    pub config: Arc<Config>,
    /// The group member.
    pub consumer: Arc<WeftConsumer>,
    /// The lanes' intake state: offsets, dead letters, plugins in service, metrics.
    pub pipeline: Arc<PipelineContext>,
    /// Events fetched and not finished, and their bytes.
    pub in_flight: Arc<InFlight>,
    /// SeriesByTopic whose plain records are mapped to CloudEvents (`[topics]`, formats other than
    /// `cloudevents`).
    pub plain_topics: HashMap<String, TopicConfig>,
}
