//! Avro in the schema registry's wire format (magic byte 0, the writer schema's id in 4 bytes,
//! Avro binary): records decoded with the writer's schema looked up by id, and what plugins emit
//! encoded to a subject's latest schema. The registry client caches schemas.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_subject};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

use super::Refusal;
use crate::config::RegistryConfig;

/// What a decoded record turns into for handlers.
pub struct Decoded {
    /// The data as JSON text, when asked for.
    pub json: Option<Vec<u8>>,
    /// The writer schema's id.
    pub id: u32,
}

/// The registry: writer schemas by id for reading, latest schemas by subject for writing.
pub struct Registry {
    url: String,
    settings: SrSettings,
    decoder: AvroDecoder,
    /// The `dataschema` of each writer schema id seen, by topic (see [`Registry::dataschema`]).
    names: RwLock<HashMap<u32, HashMap<String, String>>>,
    http: reqwest::Client,
    auth: Option<(String, Option<String>)>,
}

impl Registry {
    /// A client of the registry `config` names (nothing is requested yet).
    pub fn new(config: &RegistryConfig) -> anyhow::Result<Self> {
        let url = config.url.trim_end_matches('/').to_string();
        let timeout = Duration::from_millis(config.timeout_ms);
        let mut builder = SrSettings::new_builder(url.clone());
        builder.set_timeout(timeout);
        if let Some(user) = &config.username {
            builder.set_basic_authorization(user, config.password.as_deref());
        }
        let settings = builder.build().map_err(|e| anyhow::anyhow!("schema_registry: {}", e.error))?;
        let http = reqwest::Client::builder().timeout(timeout).build()?;
        let auth = config.username.clone().map(|user| (user, config.password.clone()));
        Ok(Self {
            url,
            decoder: AvroDecoder::new(settings.clone()),
            settings,
            names: RwLock::new(HashMap::new()),
            http,
            auth,
        })
    }

    /// Decodes `bytes` with its writer's schema, to JSON if `to_json`. A record not in the wire format, a
    /// schema id the registry does not know, or bytes that do not decode are refused; a registry
    /// that does not answer (or answers 5xx, or refuses Weft's credentials) is unavailable.
    pub async fn decode(&self, bytes: Option<&[u8]>, to_json: bool) -> Result<Decoded, Refusal> {
        let label = "not in the wire format";
        let Some(id) = bytes.and_then(schema_id) else {
            return Err(Refusal::invalid(
                label,
                "data is not Avro in the schema registry's wire format (magic byte 0, then a 4-byte schema id)".into(),
            ));
        };
        let decoded = self.decoder.decode(bytes).await.map_err(|error| self.refusal(id, error))?;
        if !to_json {
            return Ok(Decoded { json: None, id });
        }
        let json = serde_json::Value::try_from(decoded.value).map_err(|error| {
            Refusal::invalid(&self.by_id(id), format!("Avro data has no JSON form: {error}"))
        })?;
        Ok(Decoded { json: Some(serde_json::to_vec(&json).expect("JSON values serialize")), id })
    }

    fn refusal(&self, id: u32, error: SRCError) -> Refusal {
        let cause = error.cause.as_deref().unwrap_or_default();
        let text = format!("{} {cause}", error.error);
        if text.contains("40403") || text.contains("status 404") {
            return Refusal::invalid(
                "unknown schema id",
                format!("writer schema id {id} is not in the registry"),
            );
        }
        if text.contains("Could not transform bytes") || text.contains("Could not resolve Avro schema") {
            return Refusal::invalid(
                &self.by_id(id),
                format!("data does not decode with writer schema id {id}: {cause}"),
            );
        }
        // The client keeps failed lookups; a registry that comes back must be asked again.
        self.decoder.remove_errors_from_cache();
        Refusal::Unavailable(format!("schema registry {}: {text}", self.url))
    }

    /// The registry address of writer schema `id`.
    fn by_id(&self, id: u32) -> String {
        format!("{}/schemas/ids/{id}", self.url)
    }

    /// `dataschema` for data of `topic` written with schema `id`: the registry address of its
    /// subject and version (`…/subjects/orders-value/versions/3`). One schema can be registered
    /// under several subjects (the registry gives identical schemas one id): the topic's own
    /// subject (`<topic>-value`) is named if it is one of them. Where the registry cannot say, the
    /// address of the id.
    pub async fn dataschema(&self, id: u32, topic: &str) -> String {
        if let Some(name) =
            self.names.read().expect("names poisoned").get(&id).and_then(|by_topic| by_topic.get(topic))
        {
            return name.clone();
        }
        // Not cached where the registry does not answer: the next record asks again.
        let Some(names) = self.subject_versions(id).await else { return self.by_id(id) };
        let own = format!("{topic}-value");
        let name = match names.iter().find(|n| n.subject == own).or(names.first()) {
            Some(name) => format!("{}/subjects/{}/versions/{}", self.url, name.subject, name.version),
            None => self.by_id(id),
        };
        let mut cached = self.names.write().expect("names poisoned");
        cached.entry(id).or_default().insert(topic.to_string(), name.clone());
        name
    }

    /// The subjects and versions schema `id` is registered under, if the registry answers.
    async fn subject_versions(&self, id: u32) -> Option<Vec<SubjectVersion>> {
        let mut request = self.http.get(format!("{}/schemas/ids/{id}/versions", self.url));
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, password.as_deref());
        }
        let response = request.send().await.and_then(reqwest::Response::error_for_status).ok()?;
        response.json().await.ok()
    }

    /// The latest schema of `subject`.
    pub async fn latest(&self, subject: &str) -> Result<Writer, String> {
        let strategy = SubjectNameStrategy::RecordNameStrategy(subject.to_string());
        let registered = get_schema_by_subject(&self.settings, &strategy)
            .await
            .map_err(|e| format!("reading subject {subject} from {}: {e}", self.url))?;
        let version = registered.version.map_or_else(|| "latest".to_string(), |v| v.to_string());
        let dataschema = format!("{}/subjects/{subject}/versions/{version}", self.url);
        Writer::new(registered.id, &registered.schema, dataschema)
            .map_err(|e| format!("subject {subject}'s latest schema is not Avro Weft can encode to: {e}"))
    }
}

/// One subject and version a schema is registered under.
#[derive(Debug, Clone, serde::Deserialize)]
struct SubjectVersion {
    subject: String,
    version: u32,
}

/// The schema id of a record in the wire format.
fn schema_id(bytes: &[u8]) -> Option<u32> {
    match bytes {
        [0, a, b, c, d, _rest @ ..] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

/// A subject's latest schema, what emitted data is encoded to.
pub struct Writer {
    id: u32,
    schema: Schema,
    /// The `dataschema` of events encoded with it.
    pub dataschema: String,
}

impl Writer {
    /// The Avro schema `schema` (JSON text), registered with `id`, named `dataschema` in events.
    pub fn new(id: u32, schema: &str, dataschema: String) -> Result<Self, apache_avro::Error> {
        Ok(Self { id, schema: Schema::parse_str(schema)?, dataschema })
    }

    /// `json` encoded in the wire format, or why it does not fit the schema.
    pub fn encode(&self, json: &[u8]) -> Result<Vec<u8>, String> {
        let value: serde_json::Value = serde_json::from_slice(json)
            .map_err(|e| format!("data is not JSON, so it cannot be encoded to Avro ({e})"))?;
        let misfit = |e: apache_avro::Error| format!("data does not fit {}: {e}", self.dataschema);
        let value = apache_avro::types::Value::try_from(value)
            .map_err(misfit)?
            .resolve(&self.schema)
            .map_err(misfit)?;
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

/// The subjects plugins emit Avro to, by topic, each with its latest schema (read again every
/// `refresh_ms` by [`AvroOut::refresh`]).
pub struct AvroOut {
    subjects: HashMap<String, String>,
    writers: RwLock<HashMap<String, Result<Arc<Writer>, String>>>,
}

impl AvroOut {
    /// Encodes emits to `topic → subject`; no schema is read yet.
    pub fn new(subjects: HashMap<String, String>) -> Self {
        Self { subjects, writers: RwLock::new(HashMap::new()) }
    }

    /// Reads every subject's latest schema again; one the registry cannot give keeps the schema
    /// it had.
    pub async fn refresh(&self, registry: &Registry) {
        for (topic, subject) in &self.subjects {
            let read = registry.latest(subject).await;
            if let Err(error) = &read {
                tracing::warn!(topic, subject, %error, "cannot read the schema emits are encoded to");
            }
            let mut writers = self.writers.write().expect("writers poisoned");
            match (read, writers.get(topic)) {
                (Err(_), Some(Ok(_))) => {}
                (read, _) => {
                    writers.insert(topic.clone(), read.map(Arc::new));
                }
            }
        }
    }

    /// Encodes emits to `topic` with `writer` from now on.
    pub fn set(&self, topic: &str, writer: Writer) {
        self.writers.write().expect("writers poisoned").insert(topic.to_string(), Ok(Arc::new(writer)));
    }

    /// Encodes `data` for `topic`, if its emits are Avro: the bytes and the `dataschema`, or why
    /// not (`Err(Ok(reason))`: the data does not fit; `Err(Err(reason))`: no schema yet).
    #[allow(clippy::type_complexity)]
    pub fn encode(
        &self,
        topic: &str,
        data: Option<&[u8]>,
    ) -> Option<Result<(Vec<u8>, String), Result<String, String>>> {
        self.subjects.get(topic)?;
        let writers = self.writers.read().expect("writers poisoned");
        let writer = match writers.get(topic) {
            Some(Ok(writer)) => writer.clone(),
            Some(Err(error)) => return Some(Err(Err(error.clone()))),
            None => return Some(Err(Err(format!("the schema of {topic}'s emits is not read yet")))),
        };
        drop(writers);
        let Some(data) = data else {
            return Some(Err(Ok(format!("no data to encode to {}", writer.dataschema))));
        };
        Some(writer.encode(data).map(|bytes| (bytes, writer.dataschema.clone())).map_err(Ok))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}"#;

    fn writer() -> Writer {
        Writer::new(7, ORDER, "http://r/subjects/orders-value/versions/2".into()).unwrap()
    }

    #[test]
    fn json_that_fits_is_encoded_in_the_wire_format() {
        let bytes = writer().encode(br#"{"id": "o1", "qty": 3}"#).unwrap();
        assert_eq!(&bytes[..5], &[0, 0, 0, 0, 7]);
        assert_eq!(schema_id(&bytes), Some(7));
        // "o1": length 2 zig-zag (4), the bytes; 3 zig-zag (6).
        assert_eq!(&bytes[5..], &[4, b'o', b'1', 6]);
    }

    #[test]
    fn json_that_does_not_fit_is_refused_with_the_schema_named() {
        let error = writer().encode(br#"{"id": 5}"#).unwrap_err();
        assert!(error.contains("does not fit http://r/subjects/orders-value/versions/2"), "{error}");
        assert!(writer().encode(b"nope").unwrap_err().contains("not JSON"));
    }

    #[test]
    fn only_the_wire_format_has_a_schema_id() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 9]), Some(258));
        assert_eq!(schema_id(&[1, 0, 0, 1, 2, 9]), None);
        assert_eq!(schema_id(&[0, 0, 1]), None);
    }
}
