//! Topics that carry plain records instead of CloudEvents (`[topics."<name>"]` with `format = "json"`
//! or `"bytes"`): each record becomes a CloudEvent whose attributes come from the record (JSON fields,
//! the configured source, the record's coordinates and timestamp) and whose data is the record value
//! byte for byte. Records on such a topic that are CloudEvents already (a `ce_specversion` header, or
//! a `application/cloudevents…` content type) are read as CloudEvents, so producers can move over one
//! at a time.

use crate::config::{TopicConfig, TopicFormat};
use crate::event::CloudEvent;
use crate::kafka_in::decode::DecodeError;

/// The mapping of a plain topic's records to CloudEvents, configured in `config/topics.rs`.
impl TopicConfig {
    /// The CloudEvent for a plain record of `topic`. `timestamp_ms` is the record's timestamp.
    pub fn event(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        timestamp_ms: Option<i64>,
        value: Option<&[u8]>,
    ) -> Result<CloudEvent, DecodeError> {
        let json = match self.format {
            TopicFormat::Json => {
                let value = value
                    .ok_or_else(|| DecodeError::from(format!("record of JSON topic {topic} has no value")))?;
                let json: serde_json::Value = serde_json::from_slice(value).map_err(|e| {
                    DecodeError::from(format!("record of JSON topic {topic} is not JSON: {e}"))
                })?;
                if !json.is_object() {
                    return Err(DecodeError::from(format!(
                        "record of JSON topic {topic} is not a JSON object"
                    )));
                }
                Some(json)
            }
            _ => None,
        };
        let field = |name: &Option<String>| -> Option<String> {
            let path = name.as_deref()?;
            let found = path.split('.').try_fold(json.as_ref()?, |value, key| value.get(key))?;
            match found {
                serde_json::Value::String(s) => Some(s.clone()),
                serde_json::Value::Null | serde_json::Value::Object(_) | serde_json::Value::Array(_) => None,
                other => Some(other.to_string()),
            }
        };
        let required = |name: &Option<String>, setting: &str| match name {
            None => Ok(None),
            Some(path) => field(name).filter(|v| !v.is_empty()).map(Some).ok_or_else(|| {
                DecodeError::from(format!("record of JSON topic {topic} has no `{path}` field ({setting})"))
            }),
        };
        let id =
            required(&self.id_field, "id_field")?.unwrap_or_else(|| format!("{topic}/{partition}/{offset}"));
        let ty = match required(&self.type_field, "type_field")? {
            Some(value) => match (self.type_map.get(&value), &self.type_prefix) {
                (Some(mapped), _) => mapped.clone(),
                (None, Some(prefix)) => format!("{prefix}{value}"),
                (None, None) => value,
            },
            None => self.fixed_type.clone().unwrap_or_default(),
        };
        let time = match field(&self.time_field) {
            Some(time) => Some(match time.parse::<i64>() {
                Ok(millis) => rfc3339(millis).ok_or_else(|| {
                    DecodeError::from(format!("record of JSON topic {topic}: time {millis} is out of range"))
                })?,
                Err(_) => time,
            }),
            None => timestamp_ms.and_then(rfc3339),
        };
        let datacontenttype = self.datacontenttype.clone().or_else(|| match self.format {
            TopicFormat::Json => Some("application/json".into()),
            _ => None,
        });
        Ok(CloudEvent {
            id,
            source: self.source.clone().unwrap_or_default(),
            ty,
            specversion: "1.0".into(),
            datacontenttype,
            dataschema: None,
            subject: field(&self.subject_field),
            time,
            extensions: Vec::new(),
            data: value.map(<[u8]>::to_vec),
        })
    }
}

/// W3C trace context headers of a plain record, which become the event's Distributed Tracing
/// extension attributes: the handler call continues the producer's trace.
const TRACE_HEADERS: [&str; 2] = ["traceparent", "tracestate"];

impl CloudEvent {
    /// This event with the `traceparent`/`tracestate` headers of its record as extensions.
    pub fn traced(mut self, headers: &[(&str, Option<&[u8]>)]) -> Self {
        for name in TRACE_HEADERS {
            let value = headers.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).and_then(|(_, v)| *v);
            if let Some(value) = value.and_then(|v| std::str::from_utf8(v).ok()).filter(|v| !v.is_empty()) {
                self.extensions.push((name.to_string(), value.to_string()));
            }
        }
        self
    }
}

/// Whether a record's headers say it is a CloudEvent (binary or structured mode).
pub fn is_cloudevent(headers: &[(&str, Option<&[u8]>)]) -> bool {
    headers.iter().any(|(name, value)| {
        *name == "ce_specversion"
            || (name.eq_ignore_ascii_case("content-type")
                && value.is_some_and(|v| v.to_ascii_lowercase().starts_with(b"application/cloudevents")))
    })
}

fn rfc3339(millis: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn todo() -> TopicConfig {
        TopicConfig {
            format: TopicFormat::Json,
            source: Some("/todo/api".into()),
            id_field: Some("event_id".into()),
            type_field: Some("event_type".into()),
            type_prefix: Some("com.example.task.".into()),
            type_map: [("done".to_string(), "com.example.task.completed".to_string())].into(),
            time_field: Some("timestamp".into()),
            subject_field: Some("task_data.task_id".into()),
            ..TopicConfig::default()
        }
    }

    #[test]
    fn a_plain_json_record_becomes_an_event_with_its_bytes_as_data() {
        let value = br#"{"event_id":"e-1","event_type":"created","timestamp":"2026-11-23T09:30:00Z","user_id":"u-7","task_data":{"task_id":"t-42"}}"#;
        let event = todo().event("task-events", 2, 41, Some(0), Some(value)).unwrap();
        assert_eq!(event.id, "e-1");
        assert_eq!(event.ty, "com.example.task.created");
        assert_eq!(event.source, "/todo/api");
        assert_eq!(event.subject.as_deref(), Some("t-42"));
        assert_eq!(event.time.as_deref(), Some("2026-11-23T09:30:00Z"));
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.data.as_deref(), Some(value.as_slice()), "data byte for byte");
        event.validate().unwrap();
    }

    #[test]
    fn mapped_types_epoch_times_and_missing_ids_follow_the_rules() {
        let value = br#"{"event_type":"done","timestamp":1763890200000}"#;
        let anonymous = TopicConfig { id_field: None, ..todo() };
        let event = anonymous.event("task-events", 2, 41, None, Some(value)).unwrap();
        assert_eq!(event.ty, "com.example.task.completed", "type_map wins over the prefix");
        assert_eq!(event.id, "task-events/2/41", "no id_field: the record's coordinates");
        assert_eq!(event.time.as_deref(), Some("2025-11-23T09:30:00.000Z"));
        let untimed = br#"{"event_type":"created"}"#;
        let event = anonymous.event("task-events", 0, 1, Some(1_763_890_200_000), Some(untimed)).unwrap();
        assert_eq!(event.time.as_deref(), Some("2025-11-23T09:30:00.000Z"), "the record timestamp");
    }

    #[test]
    fn a_record_without_a_mapped_field_is_refused_naming_it() {
        let error = todo().event("task-events", 0, 0, None, Some(br#"{"event_id":"e-2"}"#)).unwrap_err();
        assert!(error.to_string().contains("`event_type` field (type_field)"), "{error}");
        let error =
            todo().event("task-events", 0, 0, None, Some(br#"{"event_type":"created"}"#)).unwrap_err();
        assert!(error.to_string().contains("`event_id` field (id_field)"), "{error}");
        let error = todo().event("task-events", 0, 0, None, Some(b"not json")).unwrap_err();
        assert!(error.to_string().contains("is not JSON"), "{error}");
        let error = todo().event("task-events", 0, 0, None, Some(b"[1]")).unwrap_err();
        assert!(error.to_string().contains("not a JSON object"), "{error}");
    }

    #[test]
    fn bytes_topics_take_fixed_attributes() {
        let config = TopicConfig {
            format: TopicFormat::Bytes,
            source: Some("/sensors".into()),
            fixed_type: Some("com.example.reading".into()),
            ..TopicConfig::default()
        };
        config.validate("readings").unwrap();
        let event = config.event("readings", 0, 9, None, Some(&[0xff, 0x00])).unwrap();
        assert_eq!((event.id.as_str(), event.ty.as_str()), ("readings/0/9", "com.example.reading"));
        assert_eq!(event.data.as_deref(), Some([0xff, 0x00].as_slice()));
    }

    #[test]
    fn mappings_that_cannot_work_are_refused_by_name() {
        let no_source = TopicConfig { source: None, ..todo() };
        assert!(no_source.validate("t").unwrap_err().to_string().contains("topics.\"t\".source"));
        let no_type = TopicConfig { type_field: None, ..todo() };
        assert!(no_type.validate("t").unwrap_err().to_string().contains("type_field"));
        let cloudevents = TopicConfig { format: TopicFormat::Cloudevents, ..todo() };
        assert!(cloudevents.validate("t").is_err());
        let bytes_with_fields =
            TopicConfig { format: TopicFormat::Bytes, fixed_type: Some("x".into()), ..todo() };
        assert!(bytes_with_fields.validate("t").is_err());
    }

    #[test]
    fn cloudevents_are_recognised_by_their_headers() {
        assert!(is_cloudevent(&[("ce_specversion", Some(b"1.0"))]));
        assert!(is_cloudevent(&[("Content-Type", Some(b"application/cloudevents+json"))]));
        assert!(!is_cloudevent(&[("content-type", Some(b"application/json"))]));
        assert!(!is_cloudevent(&[]));
    }

    #[test]
    fn trace_context_headers_become_extensions() {
        let event =
            todo().event("task-events", 0, 0, None, Some(br#"{"event_id":"e","event_type":"created"}"#));
        let headers: [(&str, Option<&[u8]>); 3] = [
            ("traceparent", Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
            ("tracestate", Some(b"vendor=1")),
            ("x-other", Some(b"kept as a header")),
        ];
        let event = event.unwrap().traced(&headers);
        assert_eq!(
            event.extension("traceparent"),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        assert_eq!(event.extension("tracestate"), Some("vendor=1"));
        assert_eq!(event.extensions.len(), 2);
    }
}
