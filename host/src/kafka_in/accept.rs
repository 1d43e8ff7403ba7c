//! One fetched record taken in: counted, its offset registered, its headers read as bytes,
//! decoded (CloudEvents binding or a plain topic's mapping), routed with the plugins in service,
//! and turned into a lane job — or a refused job bound for the dead-letter topic, or finished at
//! once when no plugin wants it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use rdkafka::message::{BorrowedMessage, Message};

use crate::kafka::headers::HeaderBytes;
use crate::kafka_in::decode::{DecodeError, decode};
use crate::kafka_in::intake::Intake;
use crate::kafka_out::dead_letters::{self, DlqReason, RawRecord};
use crate::ops::metrics::TopicSeries;
use crate::pipeline::catalog::InService;
use crate::pipeline::job::Job;
use crate::sandbox::bindings::Delivery;

/// A plain record's headers as handlers see them: all of them (none is a CloudEvent attribute).
fn plain_headers(headers: &[TextHeader<'_>]) -> Vec<(String, Vec<u8>)> {
    headers.iter().map(|(name, value)| (name.to_string(), value.unwrap_or_default().to_vec())).collect()
}

/// A header with its name as text.
type TextHeader<'a> = (&'a str, Option<&'a [u8]>);

/// The headers with their names as text. The Kafka protocol makes a header name a UTF-8 string;
/// a record that breaks that is not read any further, nor one whose header name holds a NUL byte
/// (a C client would read `ce_id\0x` as `ce_id`).
fn utf8_names<'a>(headers: &[HeaderBytes<'a>]) -> Result<Vec<TextHeader<'a>>, DecodeError> {
    headers
        .iter()
        .map(|&(name, value)| match std::str::from_utf8(name) {
            Ok(text) if text.contains('\0') => Err(DecodeError::from(format!(
                "header name {} holds a NUL byte",
                crate::kafka::headers::printable(name)
            ))),
            Ok(name) => Ok((name, value)),
            Err(_) => Err(DecodeError::from(format!(
                "header name {} is not UTF-8 (the Kafka protocol requires UTF-8 header names)",
                crate::kafka::headers::printable(name)
            ))),
        })
        .collect()
}

/// The resolved series of each topic seen (see [`TopicSeries`]), owned by the fetch loop. The
/// first record of a topic also makes sure its dead-letter topic exists: a topic created after
/// start-up gets one before its first bad record needs it.
#[derive(Default)]
pub struct SeriesByTopic(HashMap<Arc<str>, Arc<TopicSeries>>);

impl SeriesByTopic {
    fn get(&mut self, intake: &Intake, topic: &str) -> Arc<TopicSeries> {
        if let Some(series) = self.0.get(topic) {
            return series.clone();
        }
        let series = Arc::new(intake.pipeline.metrics.topic_series(topic));
        self.0.insert(series.topic.clone(), series.clone());
        if intake.config.dlq.create_topics {
            let (config, topic) = (intake.config.clone(), topic.to_string());
            // The admin calls block: off the async workers.
            let runtime = tokio::runtime::Handle::current();
            tokio::task::spawn_blocking(move || {
                runtime.block_on(crate::kafka_out::dead_letters::ensure_topics(
                    &config.kafka,
                    &config.dlq,
                    &[topic],
                ))
            });
        }
        series
    }
}

/// Decodes and routes one record. Records that are not CloudEvents, and events no plugin wants, are
/// finished here; the rest become lane jobs.
pub fn accept(
    intake: &Arc<Intake>,
    live: &InService,
    topics: &mut SeriesByTopic,
    message: &BorrowedMessage<'_>,
) -> Option<Job> {
    let received = Instant::now();
    let topic = message.topic();
    let series = topics.get(intake, topic);
    let (partition, offset) = (message.partition(), message.offset());
    series.received.inc();
    let (ticket, skipped) = intake.pipeline.tracker.fetched(&series.topic, partition, offset, received);
    if skipped > 0 {
        // Normal where a topic is compacted or written in transactions; on a plain topic, the
        // broker did not return records that exist.
        intake.pipeline.metrics.offsets_skipped.with_label_values(&[topic]).inc_by(skipped as u64);
        tracing::debug!(
            topic,
            partition,
            offset,
            skipped,
            "offsets skipped since the partition's previous record"
        );
    }
    if intake.pipeline.tracker.finished_before(&ticket) {
        // A previous owner finished it past its committed offset, and its commit recorded that.
        intake.pipeline.metrics.finished_before.with_label_values(&[topic]).inc();
        intake.pipeline.finish_unhandled(ticket, intake.in_flight.take(0));
        return None;
    }
    // Names and values as bytes: rdkafka's own accessor panics on a name that is not UTF-8.
    let header_bytes = message.headers().map(crate::kafka::headers::read).unwrap_or_default();
    let raw = RawRecord {
        topic: series.topic.clone(),
        partition,
        offset,
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers: header_bytes.iter().map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect(),
        timestamp_ms: message.timestamp().to_millis(),
    };
    let share = intake.in_flight.take(raw.size());
    let decoded = utf8_names(&header_bytes).and_then(|headers| {
        let replay_plugin =
            headers.iter().find(|(k, _)| *k == dead_letters::REPLAY_PLUGIN).and_then(|(_, v)| *v);
        let decoded = match intake.plain_topics.get(topic) {
            Some(mapping) if !crate::kafka_in::plain::is_cloudevent(&headers) => mapping
                .event(topic, partition, offset, message.timestamp().to_millis(), message.payload())
                .map(|event| (event.traced(&headers), plain_headers(&headers))),
            _ => decode(&headers, message.payload()),
        };
        decoded.map(|decoded| (decoded, replay_plugin))
    });
    let refused = |reason, raw, share| {
        Some(Job::refused(ticket.clone(), record(message), raw, reason, share, series.clone(), received))
    };
    let ((event, headers), replay_plugin) = match decoded {
        Ok(decoded) => decoded,
        Err(reason) => {
            tracing::warn!(topic, partition, offset, %reason, "record is not a valid CloudEvent; dead-lettering");
            intake.pipeline.metrics.invalid.with_label_values(&[topic]).inc();
            return refused((DlqReason::InvalidCloudevent, reason.to_string()), raw, share);
        }
    };
    let mut plugins = live.router.route(topic, &event);
    // A record replayed from a dead-letter topic goes back only to the plugin that failed it. The
    // header only ever narrows the route to a plugin that would have received the event anyway: one
    // naming no such plugin (forged, or the plugin is gone) is ignored, so it cannot make an event
    // vanish; `dlq.replay_routing = false` ignores it always.
    if let Some(only) = replay_plugin.filter(|_| intake.config.dlq.replay_routing) {
        if plugins.iter().any(|p| p.id.as_bytes() == only) {
            plugins.retain(|p| p.id.as_bytes() == only);
        } else {
            tracing::warn!(
                topic,
                partition,
                offset,
                "weft.replay.plugin names no plugin subscribed to this event; routing to all"
            );
        }
    }
    live.choose_versions(&mut plugins, message.key(), partition);
    if plugins.is_empty() {
        tracing::debug!(topic, partition, offset, ce.id = %event.id, ce.r#type = %event.ty, "no plugin subscribed");
        intake.pipeline.metrics.unrouted.with_label_values(&[topic]).inc();
        if intake.config.dlq.unrouted {
            let error =
                format!("no plugin subscribes to type {:?} from {:?} on {topic}", event.ty, event.source);
            return refused((DlqReason::NoRoute, error), raw, share);
        }
        intake.pipeline.finish_unhandled(ticket, share);
        return None;
    }
    let record = Delivery { headers, ..record(message) };
    let pending = plugins.into_iter().map(|p| (p, 1)).collect();
    Some(Job {
        ticket,
        event: Ok(event.into()),
        record,
        raw: Arc::new(raw),
        pending,
        unchecked: intake.pipeline.schemas.checks(topic),
        share,
        series,
        letters: Vec::new(),
        held: Vec::new(),
        wait: crate::pipeline::job::FIRST_WAIT,
        received,
    })
}

/// The record as handlers see it (the `delivery` argument of the first attempt), without its
/// headers (those come from decoding).
fn record(message: &BorrowedMessage<'_>) -> Delivery {
    Delivery {
        topic: message.topic().to_string(),
        partition: message.partition(),
        offset: message.offset(),
        key: message.key().map(<[u8]>::to_vec),
        timestamp_ms: message.timestamp().to_millis(),
        attempt: 1,
        headers: Vec::new(),
    }
}
