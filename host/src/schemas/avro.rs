//! Avro in the schema registry's wire format (magic byte 0, the writer schema's id in 4 bytes,
//! Avro binary): records decoded with the writer's schema looked up by id, and what plugins emit
//! encoded to a subject's latest schema. The registry client caches schemas.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

use apache_avro::reader::datum::GenericDatumReader;
use schema_registry_converter::async_impl::avro::AvroDecoder;
use schema_registry_converter::async_impl::schema_registry::{SrSettings, get_schema_by_subject};
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::SubjectNameStrategy;

use super::Refusal;
use super::subjects::SubjectSchema;
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
    ///
    /// With a `reader` schema the data is resolved to it (Avro schema resolution: fields the
    /// writer lacks get the reader's defaults, fields the reader lacks are dropped), so handlers
    /// see every record in one shape; data that cannot be resolved is refused.
    pub async fn decode(
        &self,
        bytes: Option<&[u8]>,
        to_json: bool,
        reader: Option<&SubjectSchema>,
    ) -> Result<Decoded, Refusal> {
        let label = "not in the wire format";
        let (Some(id), Some(bytes)) = (bytes.and_then(schema_id), bytes) else {
            return Err(Refusal::invalid(
                label,
                "data is not Avro in the schema registry's wire format (magic byte 0, then a 4-byte schema id)".into(),
            ));
        };
        let value = match reader {
            None => self.decoder.decode(Some(bytes)).await.map_err(|error| self.refusal(id, error))?.value,
            Some(reader) => {
                let writer = self.decoder.get_schema(id).await.map_err(|error| self.refusal(id, error))?;
                let mut body = &bytes[5..];
                GenericDatumReader::builder(&writer.parsed)
                    .reader_schema(reader.schema())
                    .build()
                    .and_then(|datum| datum.read_value(&mut body))
                    .map_err(|error| {
                        Refusal::invalid(
                            &reader.dataschema,
                            format!(
                                "data written with schema id {id} does not read as {}: {error}",
                                reader.dataschema
                            ),
                        )
                    })?
            }
        };
        if !to_json {
            return Ok(Decoded { json: None, id });
        }
        let json = serde_json::Value::try_from(value).map_err(|error| {
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
    pub async fn latest(&self, subject: &str) -> Result<SubjectSchema, String> {
        let strategy = SubjectNameStrategy::RecordNameStrategy(subject.to_string());
        let registered = get_schema_by_subject(&self.settings, &strategy)
            .await
            .map_err(|e| format!("reading subject {subject} from {}: {e}", self.url))?;
        let version = registered.version.map_or_else(|| "latest".to_string(), |v| v.to_string());
        let dataschema = format!("{}/subjects/{subject}/versions/{version}", self.url);
        SubjectSchema::new(registered.id, &registered.schema, dataschema)
            .map_err(|e| format!("subject {subject}'s latest schema is not an Avro schema Weft can use: {e}"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_wire_format_has_a_schema_id() {
        assert_eq!(schema_id(&[0, 0, 0, 1, 2, 9]), Some(258));
        assert_eq!(schema_id(&[1, 0, 0, 1, 2, 9]), None);
        assert_eq!(schema_id(&[0, 0, 1]), None);
    }
}
