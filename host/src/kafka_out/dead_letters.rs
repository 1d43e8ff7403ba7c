//! Dead-letter topics: an event that cannot be handled is written, byte for byte (key, value,
//! headers), to its dead-letter topic with headers that say why, from where, by which plugin and
//! after how many attempts. The original offset is finished only after the broker acknowledged the
//! dead-letter write; a failed write is tried again later, never skipped.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::DlqConfig;
use crate::kafka_out::outgoing::Outgoing;
use crate::ops::health::Health;
use crate::ops::metrics::Metrics;

/// `weft.dlq.reason`: a bounded code (see [`DlqReason`]).
pub const REASON: &str = "weft.dlq.reason";
/// `weft.dlq.error`: the error message, at most [`MAX_ERROR_BYTES`] bytes.
pub const ERROR: &str = "weft.dlq.error";
/// `weft.dlq.plugin`: id of the plugin that failed (absent for `invalid_cloudevent` and `no_route`).
pub const PLUGIN: &str = "weft.dlq.plugin";
/// `weft.dlq.plugin.digest`: SHA-256 of that plugin's file.
pub const PLUGIN_DIGEST: &str = "weft.dlq.plugin.digest";
/// `weft.dlq.attempts`: attempts made.
pub const ATTEMPTS: &str = "weft.dlq.attempts";
/// `weft.dlq.time`: when the record was dead-lettered, milliseconds since the Unix epoch.
pub const TIME: &str = "weft.dlq.time";
/// `weft.original.topic`.
pub const ORIGINAL_TOPIC: &str = "weft.original.topic";
/// `weft.original.partition`.
pub const ORIGINAL_PARTITION: &str = "weft.original.partition";
/// `weft.original.offset`.
pub const ORIGINAL_OFFSET: &str = "weft.original.offset";
/// `weft.original.timestamp`: the original record's timestamp, milliseconds since the Unix epoch.
pub const ORIGINAL_TIMESTAMP: &str = "weft.original.timestamp";
/// `weft.replay.count`: added by `weft dlq replay`, how many times the record was replayed.
pub const REPLAY_COUNT: &str = "weft.replay.count";
/// `weft.replay.plugin`: added by `weft dlq replay`; a replayed record goes only to this plugin.
pub const REPLAY_PLUGIN: &str = "weft.replay.plugin";

/// Longest `weft.dlq.error` value; longer messages are cut at a character boundary.
pub const MAX_ERROR_BYTES: usize = 1024;

/// Why an event was dead-lettered: the bounded value of the `weft.dlq.reason` header and the
/// `reason` label of `weft_events_dead_lettered_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DlqReason {
    /// The record is not a valid CloudEvent.
    InvalidCloudevent,
    /// The event's data does not match its schema (or does not decode with it).
    SchemaInvalid,
    /// No plugin subscribed to the event (only when `dlq.unrouted` is on).
    NoRoute,
    /// Retryable failures used up every attempt.
    RetriesExhausted,
    /// The plugin said the event can never be handled.
    PermanentError,
    /// The last attempt trapped.
    Trap,
    /// The last attempt ran past its deadline.
    Timeout,
    /// The last attempt hit the memory limit.
    MemoryLimit,
    /// The last attempt burned all its fuel.
    FuelExhausted,
}

impl DlqReason {
    /// The header / label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::InvalidCloudevent => "invalid_cloudevent",
            DlqReason::SchemaInvalid => "schema_invalid",
            DlqReason::NoRoute => "no_route",
            DlqReason::RetriesExhausted => "retries_exhausted",
            DlqReason::PermanentError => "permanent_error",
            DlqReason::Trap => "trap",
            DlqReason::Timeout => "timeout",
            DlqReason::MemoryLimit => "memory_limit",
            DlqReason::FuelExhausted => "fuel_exhausted",
        }
    }
}

/// A record exactly as it was read, kept so it can be dead-lettered unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRecord {
    /// Topic (shared by the records of the topic).
    pub topic: std::sync::Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key bytes.
    pub key: Option<Vec<u8>>,
    /// Value bytes.
    pub value: Option<Vec<u8>>,
    /// Every header, in order, names and values as bytes (a name need not be UTF-8), with null
    /// values kept as `None`.
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Record timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
}

impl RawRecord {
    /// Bytes of key, value and headers: what holding the record costs.
    pub fn size(&self) -> usize {
        let headers: usize = self.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.value.as_ref().map_or(0, Vec::len) + headers
    }
}

/// Why a record goes to the dead-letter topic, and who gave up on it. Kept with the event until the
/// write is acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter {
    /// The bounded reason.
    pub reason: DlqReason,
    /// The error message.
    pub error: String,
    /// The failing plugin's id and digest, when a plugin failed.
    pub plugin: Option<(String, String)>,
    /// Attempts made.
    pub attempts: u32,
}

/// A dead-letter write the broker did not acknowledge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dead-letter write to {topic} failed: {error}")]
pub struct WriteFailed {
    /// The dead-letter topic.
    pub topic: String,
    /// The broker's (or the client's) error.
    pub error: String,
}

/// Writes dead letters through the host's idempotent producer.
pub struct DeadLetters {
    producer: FutureProducer,
    config: DlqConfig,
    metrics: Metrics,
    health: Arc<Health>,
}

impl DeadLetters {
    /// A writer using `producer`, which must be idempotent with `acks=all` and should be its own:
    /// sharing one with plugin emits would let a plugin that emits a lot fill its queue and hold
    /// dead letters back. Failures are reported to `health`.
    pub fn new(producer: FutureProducer, config: DlqConfig, metrics: Metrics, health: Arc<Health>) -> Self {
        Self { producer, config, metrics, health }
    }

    /// Writes `record` to its dead-letter topic and waits for the acknowledgement. The record's
    /// offset cannot be committed before, so a failure is logged, counted
    /// (`weft_dlq_write_failures_total`) and makes `/readyz` name the topic until a write to it
    /// succeeds; the caller keeps the letter and tries again later (see `pipeline/attempt.rs`),
    /// never dropping the event. Errors that no retry fixes (record too large for the dead-letter
    /// topic, no authorization, missing topic) are logged as needing the operator.
    pub async fn write(&self, record: &RawRecord, letter: &Letter) -> Result<(), WriteFailed> {
        let topic = self.config.topic_for(&record.topic);
        let mut out = FutureRecord::<[u8], [u8]>::to(&topic).headers(dead_letter_headers(record, letter));
        if let Some(key) = record.key.as_deref() {
            out = out.key(key);
        }
        if let Some(value) = record.value.as_deref() {
            out = out.payload(value);
        }
        match self.producer.send(out, Duration::from_secs(30)).await {
            Ok(_) => {
                self.health.dead_letter_written(&topic);
                self.metrics.dead_lettered.with_label_values(&[&record.topic, letter.reason.as_str()]).inc();
                tracing::warn!(
                    topic = %record.topic, partition = record.partition, offset = record.offset,
                    dlq = %topic, reason = letter.reason.as_str(), error = truncate(&letter.error, MAX_ERROR_BYTES),
                    "event dead-lettered"
                );
                Ok(())
            }
            Err((error, _)) => {
                self.metrics.dlq_write_failures.inc();
                self.health.dead_letter_failed(&topic, error.to_string());
                if crate::kafka::client::refused_for_good(&error)
                    || error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition)
                {
                    tracing::error!(
                        %error, dlq = %topic,
                        source = %record.topic, partition = record.partition, offset = record.offset,
                        "dead-letter write refused; it will keep failing until the topic or the \
                         permissions are fixed (the partition does not commit past this record meanwhile)"
                    );
                } else {
                    tracing::error!(%error, dlq = %topic, "dead-letter write failed; it will be tried again");
                }
                Err(WriteFailed { topic, error: error.to_string() })
            }
        }
    }
}

impl DeadLetters {
    /// Exactly-once delivery: the dead letter of `record` as a record held with its event, which
    /// the event's transaction writes with what its handlers emitted. Counted and logged now; a
    /// transaction that does not commit stops the host, and the event is handled again.
    pub fn held(&self, record: &RawRecord, letter: &Letter) -> Outgoing {
        let topic = self.config.topic_for(&record.topic);
        self.metrics.dead_lettered.with_label_values(&[&record.topic, letter.reason.as_str()]).inc();
        tracing::warn!(
            topic = %record.topic, partition = record.partition, offset = record.offset,
            dlq = %topic, reason = letter.reason.as_str(), error = truncate(&letter.error, MAX_ERROR_BYTES),
            "event dead-lettered (written with its transaction)"
        );
        Outgoing {
            topic,
            key: record.key.clone(),
            payload: record.value.clone(),
            headers: dead_letter_headers(record, letter),
        }
    }
}

/// Creates the dead-letter topics of `sources` that do not exist yet, each with its source topic's
/// partition count. A source topic that does not exist yet is skipped (its dead-letter topic is
/// created on a later start, or by the broker if it auto-creates topics).
pub async fn ensure_topics(kafka: &crate::config::KafkaConfig, config: &DlqConfig, sources: &[String]) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;

    if !config.create_topics || sources.is_empty() {
        return;
    }
    let admin: AdminClient<DefaultClientContext> = match crate::kafka::client::admin_config(kafka).create() {
        Ok(admin) => admin,
        Err(error) => return tracing::warn!(%error, "cannot create the admin client for dead-letter topics"),
    };
    let client = admin.inner();
    let mut wanted = Vec::new();
    for source in sources {
        let dlq = config.topic_for(source);
        let Ok(metadata) = client.fetch_metadata(None, Duration::from_secs(10)) else {
            return tracing::warn!("cannot read cluster metadata; dead-letter topics not checked");
        };
        let exists = |name: &str| metadata.topics().iter().any(|t| t.name() == name && t.error().is_none());
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == source && t.error().is_none())
            .map(|t| t.partitions().len() as i32);
        match partitions {
            Some(n) if n > 0 && !exists(&dlq) => wanted.push((dlq, n)),
            Some(_) => {}
            None => {
                tracing::info!(%source, "source topic not found; its dead-letter topic is not created now")
            }
        }
    }
    if wanted.is_empty() {
        return;
    }
    let topics: Vec<NewTopic<'_>> = wanted
        .iter()
        .map(|(name, n)| NewTopic::new(name, *n, TopicReplication::Fixed(config.replication_factor)))
        .collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    match admin.create_topics(&topics, &options).await {
        Ok(results) => {
            for result in results {
                match result {
                    Ok(name) => tracing::info!(topic = %name, "dead-letter topic created"),
                    Err((name, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {
                        tracing::debug!(topic = %name, "dead-letter topic exists")
                    }
                    Err((name, error)) => {
                        tracing::warn!(topic = %name, %error, "cannot create dead-letter topic")
                    }
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot create dead-letter topics"),
    }
}

/// The original headers followed by the dead-letter headers.
pub fn dead_letter_headers(record: &RawRecord, letter: &Letter) -> OwnedHeaders {
    let mut headers = crate::kafka::headers::build(
        record.headers.iter().map(|(key, value)| (key.as_slice(), value.as_deref())),
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
    let mut added = vec![
        (REASON, letter.reason.as_str().to_string()),
        (ERROR, truncate(&letter.error, MAX_ERROR_BYTES).to_string()),
        (ATTEMPTS, letter.attempts.to_string()),
        (TIME, now.to_string()),
        (ORIGINAL_TOPIC, record.topic.to_string()),
        (ORIGINAL_PARTITION, record.partition.to_string()),
        (ORIGINAL_OFFSET, record.offset.to_string()),
    ];
    if let Some(ts) = record.timestamp_ms {
        added.push((ORIGINAL_TIMESTAMP, ts.to_string()));
    }
    if let Some((id, digest)) = &letter.plugin {
        added.push((PLUGIN, id.clone()));
        added.push((PLUGIN_DIGEST, digest.clone()));
    }
    for (key, value) in &added {
        headers = headers.insert(Header { key, value: Some(value.as_str()) });
    }
    headers
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn original_headers_come_first_and_unchanged() {
        let record = RawRecord {
            topic: "orders".into(),
            partition: 2,
            offset: 41,
            key: Some(b"o-1".to_vec()),
            value: Some(b"{}".to_vec()),
            headers: vec![
                (b"ce_id".to_vec(), Some(b"e1".to_vec())),
                (b"nullable".to_vec(), None),
                (b"\xff\xfe".to_vec(), Some(b"v".to_vec())),
            ],
            timestamp_ms: Some(1_700_000_000_000),
        };
        let letter = Letter {
            reason: DlqReason::PermanentError,
            error: "bad order".into(),
            plugin: Some(("saga".into(), "abc123".into())),
            attempts: 1,
        };
        let headers = dead_letter_headers(&record, &letter);
        let all: Vec<(String, Option<Vec<u8>>)> = crate::kafka::headers::read(headers.as_borrowed())
            .into_iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(all[0], ("ce_id".to_string(), Some(b"e1".to_vec())));
        assert_eq!(all[1], ("nullable".to_string(), None));
        let name = crate::kafka::headers::read(headers.as_borrowed())[2].0.to_vec();
        assert_eq!(name, b"\xff\xfe", "a name that is not UTF-8 is written back byte for byte");
        let get = |k: &str| {
            all.iter()
                .find(|(n, _)| n == k)
                .and_then(|(_, v)| v.clone())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(get(REASON).as_deref(), Some("permanent_error"));
        assert_eq!(get(ERROR).as_deref(), Some("bad order"));
        assert_eq!(get(PLUGIN).as_deref(), Some("saga"));
        assert_eq!(get(PLUGIN_DIGEST).as_deref(), Some("abc123"));
        assert_eq!(get(ORIGINAL_OFFSET).as_deref(), Some("41"));
        assert_eq!(get(ORIGINAL_TIMESTAMP).as_deref(), Some("1700000000000"));
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let text = "é".repeat(1000);
        let cut = truncate(&text, MAX_ERROR_BYTES);
        assert!(cut.len() <= MAX_ERROR_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
