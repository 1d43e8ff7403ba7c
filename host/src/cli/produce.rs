//! `weft produce`: writes records described in JSON to Kafka. The examples' sample producers are
//! files of such records; any cluster Weft can reach works, SASL and TLS included, since the
//! producer takes the `[kafka]` section of a configuration file.
//!
//! A file holds a JSON array of records or records one after another (one per line, say):
//!
//! ```json
//! {"topic": "task-events", "key": "user-7", "headers": {"traceparent": "00-…"}, "value": {"event_id": "e-1"}}
//! ```
//!
//! `value` is written as it appears in the file: a JSON object, array, number or literal byte for
//! byte, a string as its text (so a file can carry non-JSON payloads), `null` or no value as a
//! tombstone. `partition` picks a partition; without it the key does.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::config::KafkaConfig;

/// How long one record may take to be acknowledged before `weft produce` gives up.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the cluster may take to describe a topic.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// One record to produce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic to write to.
    pub topic: String,
    /// Partition, or `None` for the key's (or any) partition.
    pub partition: Option<i32>,
    /// Record key.
    pub key: Option<String>,
    /// Headers, in file order.
    pub headers: Vec<(String, String)>,
    /// Record value; `None` is a tombstone.
    pub value: Option<Vec<u8>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordSpec<'a> {
    topic: String,
    #[serde(default)]
    partition: Option<i32>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    headers: serde_json::Map<String, serde_json::Value>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
}

impl RecordSpec<'_> {
    fn into_record(self) -> anyhow::Result<Record> {
        if self.topic.is_empty() {
            bail!("`topic` is empty");
        }
        let headers = self
            .headers
            .into_iter()
            .map(|(name, value)| match value {
                serde_json::Value::String(text) => Ok((name, text)),
                other => bail!("header `{name}` is {other}; header values are strings"),
            })
            .collect::<anyhow::Result<_>>()?;
        let value = match self.value.map(RawValue::get) {
            None | Some("null") => None,
            Some(raw) if raw.starts_with('"') => Some(serde_json::from_str::<String>(raw)?.into_bytes()),
            Some(raw) => Some(raw.as_bytes().to_vec()),
        };
        Ok(Record { topic: self.topic, partition: self.partition, key: self.key, headers, value })
    }
}

/// Parses records from `text`: a JSON array of records, or records one after another.
pub fn parse(text: &str) -> anyhow::Result<Vec<Record>> {
    let specs: Vec<RecordSpec> = if text.trim_start().starts_with('[') {
        serde_json::from_str(text).context("not an array of records")?
    } else {
        serde_json::Deserializer::from_str(text)
            .into_iter::<RecordSpec>()
            .enumerate()
            .map(|(i, spec)| spec.with_context(|| format!("record {}", i + 1)))
            .collect::<anyhow::Result<_>>()?
    };
    specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| spec.into_record().with_context(|| format!("record {}", i + 1)))
        .collect()
}

/// Reads and parses the records of `path`.
pub fn read(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text).with_context(|| format!("in {}", path.display()))
}

/// Writes `records` in order and waits until the cluster has acknowledged every one. Returns the
/// number written; the first record the cluster refuses is an error naming it.
pub async fn send(kafka: &KafkaConfig, records: &[Record]) -> anyhow::Result<usize> {
    let producer: FutureProducer =
        crate::kafka::client::producer_config(kafka).create().context("creating the Kafka producer")?;
    // A topic the cluster does not have (and does not create) fails now, by name, instead of
    // every record timing out.
    let topics: std::collections::BTreeSet<&str> = records.iter().map(|r| r.topic.as_str()).collect();
    for topic in topics {
        let client = producer.clone();
        let name = topic.to_string();
        let metadata = tokio::task::spawn_blocking(move || {
            client.client().fetch_metadata(Some(&name), METADATA_TIMEOUT)
        })
        .await?
        .with_context(|| format!("asking the cluster ({}) about topic {topic}", kafka.brokers))?;
        if let Some(error) = metadata.topics().first().and_then(|t| t.error()) {
            bail!(
                "topic {topic}: {} (create it first, or let the cluster create topics on first use)",
                rdkafka::error::RDKafkaErrorCode::from(error)
            );
        }
    }
    let deliveries: Vec<_> = records
        .iter()
        .map(|record| {
            let headers = record.headers.iter().fold(OwnedHeaders::new(), |headers, (key, value)| {
                headers.insert(Header { key, value: Some(value.as_bytes()) })
            });
            let mut future = FutureRecord::to(&record.topic).headers(headers);
            future.partition = record.partition;
            future.key = record.key.as_ref().map(String::as_bytes);
            future.payload = record.value.as_deref();
            producer.send(future, SEND_TIMEOUT)
        })
        .collect();
    for (i, (delivery, record)) in
        futures::future::join_all(deliveries).await.into_iter().zip(records).enumerate()
    {
        if let Err((error, _)) = delivery {
            bail!("record {} (topic {}) was not written: {error}", i + 1, record.topic);
        }
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_written_as_they_appear_in_the_file() {
        let records = parse(
            r#"{"topic": "t", "key": "k", "value": {"b": 1,  "a": [true]}}
{"topic": "t", "value": "plain text", "headers": {"content-type": "text/plain"}}
{"topic": "t", "partition": 2}
{"topic": "t", "value": null}
"#,
        )
        .unwrap();
        assert_eq!(records[0].value.as_deref(), Some(&br#"{"b": 1,  "a": [true]}"#[..]), "bytes as written");
        assert_eq!(records[0].key.as_deref(), Some("k"));
        assert_eq!(records[1].value.as_deref(), Some(&b"plain text"[..]));
        assert_eq!(records[1].headers, vec![("content-type".to_string(), "text/plain".to_string())]);
        assert_eq!((records[2].partition, records[2].value.as_deref()), (Some(2), None));
        assert_eq!(records[3].value, None, "null is a tombstone");
    }

    #[test]
    fn an_array_of_records_is_read_too() {
        let records = parse(r#"[{"topic": "a", "value": 1}, {"topic": "b", "value": "x"}]"#).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].value.as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn mistakes_name_the_record_and_what_is_wrong() {
        let error = |text: &str| format!("{:#}", parse(text).unwrap_err());
        let missing = error("{\"topic\": \"t\"}\n{\"value\": 1}");
        assert!(missing.contains("record 2") && missing.contains("missing field `topic`"), "{missing}");
        let typo = error(r#"{"topic": "t", "headrs": {}}"#);
        assert!(typo.contains("unknown field `headrs`"), "{typo}");
        let header = error(r#"{"topic": "t", "headers": {"n": 1}}"#);
        assert!(header.contains("header `n` is 1; header values are strings"), "{header}");
        let empty = error(r#"{"topic": ""}"#);
        assert!(empty.contains("`topic` is empty"), "{empty}");
    }
}
