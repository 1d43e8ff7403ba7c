//! Registry subjects whose latest schema Weft works with, by topic: what plugins emit to a topic is
//! encoded to one (`avro_subject`), and what is read from a topic can be resolved to one
//! (`avro_reader_subject`). Each is read at start-up and again every `schema_registry.refresh_ms`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use apache_avro::types::Value;

use super::avro::Registry;

/// A subject's latest schema, with its id and the `dataschema` naming its subject and version.
pub struct SubjectSchema {
    id: u32,
    schema: Schema,
    /// The `dataschema` of events in this schema.
    pub dataschema: String,
}

impl SubjectSchema {
    /// The Avro schema `schema` (JSON text), registered with `id`, named `dataschema` in events.
    pub fn new(id: u32, schema: &str, dataschema: String) -> Result<Self, apache_avro::Error> {
        Ok(Self { id, schema: Schema::parse_str(schema)?, dataschema })
    }

    /// The schema itself.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// `json` encoded in the wire format, or why it does not fit the schema.
    pub fn encode(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| format!("data is not JSON, so it cannot be encoded to Avro ({e})"))?;
        let misfit = |e: apache_avro::Error| format!("data does not fit {}: {e}", self.dataschema);
        let value = Value::try_from(value).map_err(misfit)?.resolve(&self.schema).map_err(misfit)?;
        let writer =
            apache_avro::writer::datum::GenericDatumWriter::builder(&self.schema).build().map_err(misfit)?;
        let body = writer.write_value_to_vec(value).map_err(misfit)?;
        let mut bytes = Vec::with_capacity(5 + body.len());
        bytes.push(0);
        bytes.extend_from_slice(&self.id.to_be_bytes());
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }
}

/// Subjects by topic, each with its latest schema once read (or why it could not be).
pub struct LatestSchemas {
    /// What the schemas are for, in log lines ("emits are encoded to").
    purpose: &'static str,
    subjects: HashMap<String, String>,
    latest: RwLock<HashMap<String, Result<Arc<SubjectSchema>, String>>>,
}

impl LatestSchemas {
    /// The subjects of `topic → subject`; no schema is read yet.
    pub fn new(purpose: &'static str, subjects: HashMap<String, String>) -> Self {
        Self { purpose, subjects, latest: RwLock::new(HashMap::new()) }
    }

    /// Reads every subject's latest schema again; one the registry cannot give keeps the schema
    /// it had.
    pub async fn refresh(&self, registry: &Registry) {
        for (topic, subject) in &self.subjects {
            let read = registry.latest(subject).await;
            if let Err(error) = &read {
                tracing::warn!(topic, subject, %error, "cannot read the schema {}", self.purpose);
            }
            let mut latest = self.latest.write().expect("schemas poisoned");
            match (read, latest.get(topic)) {
                (Err(_), Some(Ok(_))) => {}
                (read, _) => {
                    latest.insert(topic.clone(), read.map(Arc::new));
                }
            }
        }
    }

    /// Uses `schema` for `topic` from now on.
    pub fn set(&self, topic: &str, schema: SubjectSchema) {
        self.latest.write().expect("schemas poisoned").insert(topic.to_string(), Ok(Arc::new(schema)));
    }

    /// The latest schema of `topic`'s subject, if the topic has one: or why it is not there (not
    /// read yet, or the registry could not give it).
    pub fn of(&self, topic: &str) -> Option<Result<Arc<SubjectSchema>, String>> {
        let subject = self.subjects.get(topic)?;
        Some(match self.latest.read().expect("schemas poisoned").get(topic) {
            Some(latest) => latest.clone(),
            None => Err(format!("the latest schema of subject {subject} is not read yet")),
        })
    }

    /// Encodes `data` for `topic`, if the topic has a subject: the bytes and the `dataschema`, or
    /// why not (`Err(Ok(reason))`: the data does not fit; `Err(Err(reason))`: no schema yet).
    #[allow(clippy::type_complexity)]
    pub fn encode(
        &self,
        topic: &str,
        data: Option<&[u8]>,
    ) -> Option<Result<(Vec<u8>, String), Result<String, String>>> {
        let schema = match self.of(topic)? {
            Ok(schema) => schema,
            Err(missing) => return Some(Err(Err(missing))),
        };
        let Some(data) = data else {
            return Some(Err(Ok(format!("no data to encode to {}", schema.dataschema))));
        };
        Some(schema.encode(data).map(|bytes| (bytes, schema.dataschema.clone())).map_err(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}"#;

    fn order_schema() -> SubjectSchema {
        SubjectSchema::new(7, ORDER, "http://r/subjects/orders-value/versions/2".into()).unwrap()
    }

    #[test]
    fn json_that_fits_is_encoded_in_the_wire_format() {
        let bytes = order_schema().encode(br#"{"id": "o1", "qty": 3}"#).unwrap();
        // Magic byte, id 7; "o1": length 2 zig-zag (4), the bytes; 3 zig-zag (6).
        assert_eq!(bytes, [0, 0, 0, 0, 7, 4, b'o', b'1', 6]);
    }

    #[test]
    fn json_that_does_not_fit_is_refused_with_the_schema_named() {
        let error = order_schema().encode(br#"{"id": 5}"#).unwrap_err();
        assert!(error.contains("does not fit http://r/subjects/orders-value/versions/2"), "{error}");
        assert!(order_schema().encode(b"nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn a_topic_without_a_subject_is_not_encoded_and_one_not_read_yet_says_so() {
        let latest = LatestSchemas::new("test", HashMap::from([("orders".into(), "orders-value".into())]));
        assert!(latest.encode("audit", Some(b"{}")).is_none());
        let missing = latest.of("orders").unwrap().err().unwrap();
        assert!(missing.contains("subject orders-value is not read yet"), "{missing}");
    }
}
