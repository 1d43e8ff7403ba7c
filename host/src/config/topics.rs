//! `[topics."<name>"]`: what a topic's records are (CloudEvents, plain JSON or bytes), how a plain
//! record's fields become CloudEvent attributes (the mapping itself runs in `kafka_in/plain.rs`),
//! and the schemas its events are checked against (checks in `config/schemas.rs`).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::schemas::AvroData;

/// What a topic carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TopicFormat {
    /// CloudEvents, binary or structured mode.
    #[default]
    Cloudevents,
    /// Plain JSON objects, mapped to CloudEvents.
    Json,
    /// Any bytes, mapped to CloudEvents with fixed attributes.
    Bytes,
}

/// `[topics."<name>"]`: how the records of one topic become CloudEvents, and their schemas.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicConfig {
    /// `cloudevents` (default), `json` or `bytes`.
    #[serde(default)]
    pub format: TopicFormat,
    /// The events' `source` (required for `json` and `bytes`).
    pub source: Option<String>,
    /// JSON field holding the event id (dots reach into objects: `meta.id`); a record without it
    /// is dead-lettered. Unset: `<topic>/<partition>/<offset>`, unique and stable across
    /// redeliveries.
    pub id_field: Option<String>,
    /// JSON field holding the event type. A record without it is dead-lettered.
    pub type_field: Option<String>,
    /// Prepended to the value of `type_field` (`com.example.task.` + `created`).
    pub type_prefix: Option<String>,
    /// Values of `type_field` mapped to whole types; wins over `type_prefix`.
    #[serde(default)]
    pub type_map: BTreeMap<String, String>,
    /// The event type when there is no `type_field` (required for `bytes`).
    #[serde(rename = "type")]
    pub fixed_type: Option<String>,
    /// JSON field holding the time: an RFC 3339 string, or milliseconds since the Unix epoch.
    /// Unset or absent: the record's timestamp.
    pub time_field: Option<String>,
    /// JSON field holding the subject.
    pub subject_field: Option<String>,
    /// The events' `datacontenttype`. Default `application/json` (`json`) or unset (`bytes`).
    pub datacontenttype: Option<String>,
    /// A JSON Schema every event's data must match: a file (`schemas/order.json`, relative to the
    /// working directory, or `file://`) or an `http(s)://` URL, read once.
    pub schema: Option<String>,
    /// JSON Schemas by event type; an event whose type is listed is checked against that schema
    /// instead of `schema`.
    #[serde(default)]
    pub schemas: BTreeMap<String, String>,
    /// Prefixes of `dataschema` values Weft fetches and checks against (`https://schemas.example.com/`).
    /// An event whose `dataschema` starts with one is checked against that schema first of all.
    #[serde(default)]
    pub dataschema: Vec<String>,
    /// The data is Avro in the schema registry's wire format (magic byte, schema id, Avro binary):
    /// `json` hands it to handlers as JSON, `bytes` as it arrived. Needs `[schema_registry]`.
    pub avro: Option<AvroData>,
    /// What plugins emit to this topic is encoded to the latest schema of this registry subject
    /// (`orders-value`); data that does not fit is refused. Needs `[schema_registry]`.
    pub avro_subject: Option<String>,
    /// With `avro = "json"`: every record is read as this registry subject's latest schema (Avro
    /// schema resolution: defaults fill fields its writer lacked), so handlers see one shape
    /// whichever version wrote it. Unset: each record as its writer's schema has it.
    pub avro_reader_subject: Option<String>,
}

impl TopicConfig {
    /// Refuses a mapping that cannot produce valid events, naming the setting.
    pub fn validate(&self, topic: &str) -> anyhow::Result<()> {
        let table = format!("topics.\"{topic}\"");
        if self.format == TopicFormat::Cloudevents {
            let mapped = self.source.is_some()
                || self.id_field.is_some()
                || self.type_field.is_some()
                || self.fixed_type.is_some()
                || self.time_field.is_some()
                || self.subject_field.is_some();
            anyhow::ensure!(!mapped, "{table}: mapping settings need format = \"json\" or \"bytes\"");
            return Ok(());
        }
        anyhow::ensure!(
            self.source.as_deref().is_some_and(|s| !s.is_empty()),
            "{table}.source is required: the events' CloudEvents source (e.g. \"/todo/api\")"
        );
        if self.format == TopicFormat::Bytes {
            let fields = [&self.id_field, &self.type_field, &self.time_field, &self.subject_field];
            anyhow::ensure!(
                fields.iter().all(|f| f.is_none()),
                "{table}: *_field settings need format = \"json\""
            );
            anyhow::ensure!(self.fixed_type.is_some(), "{table}.type is required with format = \"bytes\"");
        } else {
            anyhow::ensure!(
                self.type_field.is_some() || self.fixed_type.is_some(),
                "{table}: set type_field (the JSON field naming the event type) or type (one type for all)"
            );
        }
        if let Some(ty) = &self.fixed_type {
            anyhow::ensure!(!ty.is_empty(), "{table}.type is empty");
        }
        Ok(())
    }
}
