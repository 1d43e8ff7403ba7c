//! `weft dlq inspect` and `weft dlq replay`: read a dead-letter topic, show why each record is there,
//! and put chosen records back on their original topic with the dead-letter headers removed.
//!
//! Replay recognises twins (the same original record dead-lettered twice for the same plugin, which
//! at-least-once delivery allows after a crash) by their origin headers and replays them once. A
//! `weft.replay.count` header travels with the record; once a record has been replayed
//! `max_replays` times, replaying it again is refused, so a poison event cannot loop forever.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;

use crate::config::KafkaConfig;
use crate::kafka_out::dead_letters;

/// One record of a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// Partition in the dead-letter topic.
    pub partition: i32,
    /// Offset in the dead-letter topic.
    pub offset: i64,
    /// `weft.dlq.reason`.
    pub reason: String,
    /// `weft.dlq.error`.
    pub error: String,
    /// `weft.dlq.plugin`, if a plugin failed.
    pub plugin: Option<String>,
    /// `weft.dlq.attempts`.
    pub attempts: u32,
    /// `weft.original.topic`.
    pub original_topic: String,
    /// `weft.original.partition`.
    pub original_partition: i32,
    /// `weft.original.offset`.
    pub original_offset: i64,
    /// Times the record was replayed before (`weft.replay.count`).
    pub replays: u32,
    /// The record key.
    #[serde(skip)]
    pub key: Option<Vec<u8>>,
    /// The record value.
    #[serde(skip)]
    pub value: Option<Vec<u8>>,
    /// Every header, the dead-letter ones included, names as bytes (an original record may carry
    /// names that are not UTF-8; they are replayed unchanged).
    #[serde(skip)]
    pub headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl DeadLetter {
    fn header(headers: &[(Vec<u8>, Option<Vec<u8>>)], name: &str) -> Option<String> {
        headers
            .iter()
            .rev()
            .find(|(k, _)| k == name.as_bytes())
            .and_then(|(_, v)| v.as_deref())
            .map(|v| String::from_utf8_lossy(v).into_owned())
    }

    /// Reads the dead-letter headers of a record. `None` if it has no `weft.dlq.reason`.
    pub fn parse(
        partition: i32,
        offset: i64,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    ) -> Option<Self> {
        let get = |name| Self::header(&headers, name);
        let number = |name| get(name).and_then(|v| v.parse::<i64>().ok());
        Some(Self {
            partition,
            offset,
            reason: get(dead_letters::REASON)?,
            error: get(dead_letters::ERROR).unwrap_or_default(),
            plugin: get(dead_letters::PLUGIN),
            attempts: number(dead_letters::ATTEMPTS).unwrap_or(0) as u32,
            original_topic: get(dead_letters::ORIGINAL_TOPIC)?,
            original_partition: number(dead_letters::ORIGINAL_PARTITION)? as i32,
            original_offset: number(dead_letters::ORIGINAL_OFFSET)?,
            replays: number(dead_letters::REPLAY_COUNT).unwrap_or(0) as u32,
            key,
            value,
            headers,
        })
    }

    /// The headers to replay with: the original ones, without Weft's dead-letter and replay headers.
    fn original_headers(&self) -> impl Iterator<Item = &(Vec<u8>, Option<Vec<u8>>)> {
        self.headers.iter().filter(|(k, _)| {
            !k.starts_with(b"weft.dlq.")
                && !k.starts_with(b"weft.original.")
                && !k.starts_with(b"weft.replay.")
        })
    }
}

/// Reads every record of `topic` from the beginning; stops once no record arrived for `idle`.
pub async fn read(kafka: &KafkaConfig, topic: &str, idle: Duration) -> anyhow::Result<Vec<DeadLetter>> {
    let kafka = kafka.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_blocking(&kafka, &topic, idle))
        .await
        .context("reader task failed")?
}

fn read_blocking(kafka: &KafkaConfig, topic: &str, idle: Duration) -> anyhow::Result<Vec<DeadLetter>> {
    let mut config = crate::kafka::client::admin_config(kafka);
    config
        .set("group.id", format!("weft-dlq-reader-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "50");
    let consumer: BaseConsumer = config.create().context("creating the dead-letter reader")?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .with_context(|| format!("reading metadata of {topic}"))?;
    let partitions = metadata
        .topics()
        .first()
        .filter(|t| t.error().is_none())
        .map(|t| t.partitions().len())
        .with_context(|| format!("topic {topic} does not exist"))?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..partitions {
        assignment.add_partition_offset(topic, p as i32, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut letters = Vec::new();
    while let Some(message) = consumer.poll(idle) {
        let m = message.with_context(|| format!("reading {topic}"))?;
        let headers = m
            .headers()
            .map(|h| {
                crate::kafka::headers::read(h)
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect()
            })
            .unwrap_or_default();
        let key = m.key().map(<[u8]>::to_vec);
        let value = m.payload().map(<[u8]>::to_vec);
        match DeadLetter::parse(m.partition(), m.offset(), key, value, headers) {
            Some(letter) => letters.push(letter),
            None => tracing::warn!(
                partition = m.partition(),
                offset = m.offset(),
                "record without dead-letter headers; ignored"
            ),
        }
    }
    letters.sort_by_key(|l| (l.partition, l.offset));
    Ok(letters)
}

/// Which records to replay.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only records this plugin failed.
    pub plugin: Option<String>,
    /// Only records with this reason.
    pub reason: Option<String>,
    /// Only dead-letter offsets at or above this.
    pub from_offset: Option<i64>,
    /// Only dead-letter offsets at or below this.
    pub to_offset: Option<i64>,
}

impl Filter {
    fn accepts(&self, l: &DeadLetter) -> bool {
        self.plugin.as_ref().is_none_or(|p| l.plugin.as_ref() == Some(p))
            && self.reason.as_ref().is_none_or(|r| &l.reason == r)
            && self.from_offset.is_none_or(|o| l.offset >= o)
            && self.to_offset.is_none_or(|o| l.offset <= o)
    }
}

/// What a replay will do.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Records to replay, each with its destination topic.
    pub replay: Vec<(&'a DeadLetter, String)>,
    /// Records refused because they were replayed `max_replays` times already.
    pub refused: Vec<&'a DeadLetter>,
    /// Twins skipped (same origin and plugin as a record already in the plan).
    pub twins: usize,
}

/// Chooses the records to replay from `letters`.
pub fn plan<'a>(letters: &'a [DeadLetter], filter: &Filter, to: Option<&str>, max_replays: u32) -> Plan<'a> {
    let mut plan = Plan::default();
    let mut seen = HashSet::new();
    for letter in letters.iter().filter(|l| filter.accepts(l)) {
        let origin = (
            &letter.original_topic,
            letter.original_partition,
            letter.original_offset,
            letter.plugin.as_deref(),
        );
        if !seen.insert(origin) {
            plan.twins += 1;
        } else if letter.replays >= max_replays {
            plan.refused.push(letter);
        } else {
            plan.replay.push((letter, to.unwrap_or(&letter.original_topic).to_string()));
        }
    }
    plan
}

/// Produces the planned records and waits for every acknowledgement.
pub async fn execute(kafka: &KafkaConfig, plan: &Plan<'_>) -> anyhow::Result<usize> {
    let producer: FutureProducer =
        crate::kafka::client::producer_config(kafka).create().context("creating the replay producer")?;
    for (letter, topic) in &plan.replay {
        let mut headers = crate::kafka::headers::build(
            letter.original_headers().map(|(key, value)| (key.as_slice(), value.as_deref())),
        );
        let count = (letter.replays + 1).to_string();
        headers = headers.insert(Header { key: dead_letters::REPLAY_COUNT, value: Some(&count) });
        if let Some(plugin) = &letter.plugin {
            headers = headers.insert(Header { key: dead_letters::REPLAY_PLUGIN, value: Some(plugin) });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
        if let Some(key) = letter.key.as_deref() {
            record = record.key(key);
        }
        if let Some(value) = letter.value.as_deref() {
            record = record.payload(value);
        }
        producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("replaying dead-letter offset {}: {e}", letter.offset))?;
    }
    Ok(plan.replay.len())
}

/// A human-readable table of `letters`.
pub fn table(letters: &[DeadLetter]) -> String {
    let mut out = format!(
        "{:<12} {:<19} {:<14} {:>8} {:>7}  {:<32} {}\n",
        "DLQ OFFSET", "REASON", "PLUGIN", "ATTEMPTS", "REPLAYS", "ORIGIN", "ERROR"
    );
    for l in letters {
        let origin = format!("{}/{}@{}", l.original_topic, l.original_partition, l.original_offset);
        let mut error = l.error.clone();
        if error.len() > 80 {
            let mut end = 77;
            while !error.is_char_boundary(end) {
                end -= 1;
            }
            error.truncate(end);
            error.push_str("...");
        }
        out.push_str(&format!(
            "{:<12} {:<19} {:<14} {:>8} {:>7}  {:<32} {}\n",
            format!("{}/{}", l.partition, l.offset),
            l.reason,
            l.plugin.as_deref().unwrap_or("-"),
            l.attempts,
            l.replays,
            origin,
            error
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letter(offset: i64, origin: i64, plugin: &str, reason: &str, replays: u32) -> DeadLetter {
        let mut headers = vec![
            (b"ce_id".to_vec(), Some(b"e".to_vec())),
            (dead_letters::REASON.into(), Some(reason.as_bytes().to_vec())),
            (dead_letters::ERROR.into(), Some(b"boom".to_vec())),
            (dead_letters::PLUGIN.into(), Some(plugin.as_bytes().to_vec())),
            (dead_letters::ATTEMPTS.into(), Some(b"5".to_vec())),
            (dead_letters::ORIGINAL_TOPIC.into(), Some(b"orders".to_vec())),
            (dead_letters::ORIGINAL_PARTITION.into(), Some(b"1".to_vec())),
            (dead_letters::ORIGINAL_OFFSET.into(), Some(origin.to_string().into_bytes())),
        ];
        if replays > 0 {
            headers.insert(1, (dead_letters::REPLAY_COUNT.into(), Some(replays.to_string().into_bytes())));
        }
        DeadLetter::parse(0, offset, Some(b"k".to_vec()), Some(b"v".to_vec()), headers).unwrap()
    }

    #[test]
    fn parses_the_dead_letter_headers() {
        let l = letter(7, 41, "saga", "trap", 2);
        assert_eq!((l.reason.as_str(), l.plugin.as_deref(), l.attempts), ("trap", Some("saga"), 5));
        assert_eq!((l.original_topic.as_str(), l.original_partition, l.original_offset), ("orders", 1, 41));
        assert_eq!(l.replays, 2);
        let kept: Vec<&[u8]> = l.original_headers().map(|(k, _)| k.as_slice()).collect();
        assert_eq!(kept, [b"ce_id".as_slice()]);
        assert!(DeadLetter::parse(0, 0, None, None, vec![]).is_none());
    }

    #[test]
    fn twins_are_replayed_once_and_the_loop_guard_refuses() {
        let letters = vec![
            letter(0, 10, "saga", "permanent_error", 0),
            letter(1, 10, "saga", "permanent_error", 0),
            letter(2, 10, "audit", "permanent_error", 0),
            letter(3, 11, "saga", "trap", 3),
        ];
        let p = plan(&letters, &Filter::default(), None, 3);
        assert_eq!(p.replay.iter().map(|(l, _)| l.offset).collect::<Vec<_>>(), [0, 2]);
        assert_eq!(p.twins, 1);
        assert_eq!(p.refused.iter().map(|l| l.offset).collect::<Vec<_>>(), [3]);
        assert_eq!(p.replay[0].1, "orders");
    }

    #[test]
    fn filters_and_destination_apply() {
        let letters = vec![letter(0, 10, "saga", "trap", 0), letter(5, 11, "audit", "timeout", 0)];
        let only_audit = Filter { plugin: Some("audit".into()), ..Filter::default() };
        let p = plan(&letters, &only_audit, Some("orders-retry"), 3);
        assert_eq!(p.replay.len(), 1);
        assert_eq!(p.replay[0].1, "orders-retry");
        let range = Filter { from_offset: Some(1), to_offset: Some(4), ..Filter::default() };
        assert!(plan(&letters, &range, None, 3).replay.is_empty());
        let traps = Filter { reason: Some("trap".into()), ..Filter::default() };
        assert_eq!(plan(&letters, &traps, None, 3).replay[0].0.offset, 0);
    }
}
