//! Schemas events are checked against before any handler sees them.
//!
//! Per topic (`[topics."<name>"]`): the JSON Schema an event's `dataschema` names (under an allowed
//! prefix), else the one configured for its type, else the topic's; or, for an Avro topic, the
//! writer's schema from the registry, which also turns the data into JSON for handlers. An event
//! that fails is refused ([`Refusal::Invalid`]: dead-lettered as `schema_invalid`); one that cannot
//! be checked now ([`Refusal::Unavailable`]: the registry or a schema's server does not answer)
//! waits and is checked again, never dead-lettered for it.
//!
//! # Layout
//! - [`Schemas`] (here): each topic's settings and the check the lanes call before dispatch.
//! - [`json`]: JSON Schemas read from files or HTTP(S), compiled once and cached; the check itself.
//! - [`avro`]: the registry client (writer schemas by id; subject and version for `dataschema`).
//! - [`subjects`]: subjects' latest schemas by topic: what emits to an Avro topic are encoded to,
//!   and what records are read as.

pub mod avro;
pub mod json;
pub mod subjects;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use crate::config::{AvroData, Config};
use crate::ops::metrics::Metrics;

use self::avro::Registry;
use self::json::JsonSchemas;
use self::subjects::LatestSchemas;

/// Why an event's data cannot go to its handlers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It does not match its schema, or its schema cannot be used: it is dead-lettered.
    #[error("{reason}")]
    Invalid {
        /// The schema it was checked against (the metrics' `schema` label).
        schema: String,
        /// What is wrong, with JSON paths where there are some.
        reason: String,
    },
    /// Its schema cannot be read now: it is checked again later.
    #[error("{0}")]
    Unavailable(String),
}

impl Refusal {
    fn invalid(schema: &str, reason: String) -> Self {
        Refusal::Invalid { schema: schema.to_string(), reason }
    }
}

/// The parts of an event a check reads and (Avro decoded to JSON) rewrites.
pub struct EventData<'a> {
    /// `type`.
    pub ty: &'a str,
    /// `datacontenttype`.
    pub datacontenttype: &'a mut Option<String>,
    /// `dataschema`.
    pub dataschema: &'a mut Option<String>,
    /// The data.
    pub data: &'a mut Option<Vec<u8>>,
}

/// One topic's schema settings.
struct TopicRules {
    schema: Option<String>,
    by_type: BTreeMap<String, String>,
    dataschema: Vec<String>,
    avro: Option<AvroData>,
}

/// Every topic's schemas, the compiled JSON Schemas and the registry client.
pub struct Schemas {
    topics: HashMap<String, TopicRules>,
    json: Arc<JsonSchemas>,
    registry: Option<Arc<Registry>>,
    /// Emits encoded to Avro, by topic.
    pub avro_out: Option<Arc<LatestSchemas>>,
    /// Avro records read as a subject's latest schema, by topic.
    avro_readers: Option<Arc<LatestSchemas>>,
    metrics: Metrics,
}

impl Schemas {
    /// The schemas `config` names. Every JSON Schema it names is read and compiled now, so a
    /// missing or broken one stops the start with its key named; the latest schemas of Avro emit
    /// and reader subjects are read by [`Schemas::refresh_subjects`].
    pub async fn open(config: &Config, metrics: Metrics) -> anyhow::Result<Arc<Self>> {
        let timeout = Duration::from_millis(config.schema_registry.as_ref().map_or(5_000, |r| r.timeout_ms));
        let json = Arc::new(JsonSchemas::new(timeout));
        let registry = match &config.schema_registry {
            Some(registry) => Some(Arc::new(Registry::new(registry)?)),
            None => None,
        };
        let mut topics = HashMap::new();
        let mut subjects = HashMap::new();
        let mut readers = HashMap::new();
        for (topic, settings) in &config.topics {
            if let Some(subject) = &settings.avro_subject {
                subjects.insert(topic.clone(), subject.clone());
            }
            if let Some(subject) = &settings.avro_reader_subject {
                readers.insert(topic.clone(), subject.clone());
            }
            if !settings.checks_events() {
                continue;
            }
            let named = settings.schema.iter().map(|s| ("schema".to_string(), s.clone()));
            let by_type = settings.schemas.iter().map(|(ty, s)| (format!("schemas.\"{ty}\""), s.clone()));
            for (key, address) in named.chain(by_type) {
                let json = json.clone();
                let loaded = tokio::task::spawn_blocking(move || json.load(&address).map(|_| ())).await?;
                if let Err(refusal) = loaded {
                    anyhow::bail!("topics.\"{topic}\".{key}: {refusal}");
                }
            }
            // The series exist from the start, at 0: an alert sees the first wait.
            metrics.schema_unavailable.with_label_values(&[topic]);
            topics.insert(
                topic.clone(),
                TopicRules {
                    schema: settings.schema.clone(),
                    by_type: settings.schemas.clone(),
                    dataschema: settings.dataschema.clone(),
                    avro: settings.avro,
                },
            );
        }
        let latest = |purpose, subjects: HashMap<String, String>| {
            (!subjects.is_empty()).then(|| Arc::new(LatestSchemas::new(purpose, subjects)))
        };
        let avro_out = latest("emits are encoded to", subjects);
        let avro_readers = latest("records are read as", readers);
        Ok(Arc::new(Self { topics, json, registry, avro_out, avro_readers, metrics }))
    }

    /// Whether the events of `topic` are checked.
    pub fn checks(&self, topic: &str) -> bool {
        !self.topics.is_empty() && self.topics.contains_key(topic)
    }

    /// Whether some topic's emits are encoded to, or records read as, a subject's latest schema.
    pub fn reads_subjects(&self) -> bool {
        self.avro_out.is_some() || self.avro_readers.is_some()
    }

    /// Reads the latest schema of every subject plugins emit Avro to or records are read as, now
    /// and then every `refresh` until `stop`.
    pub async fn refresh_subjects(&self, refresh: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let Some(registry) = &self.registry else { return };
        let subjects: Vec<&Arc<LatestSchemas>> = self.avro_out.iter().chain(&self.avro_readers).collect();
        if subjects.is_empty() {
            return;
        }
        loop {
            for latest in &subjects {
                latest.refresh(registry).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(refresh) => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Checks an event of `topic` against its schema (Avro: decodes it, and hands handlers JSON
    /// unless the topic keeps the bytes).
    pub async fn check(&self, topic: &str, event: EventData<'_>) -> Result<(), Refusal> {
        let Some(rules) = self.topics.get(topic) else { return Ok(()) };
        let result = self.check_with(topic, rules, event).await;
        let schema = match &result {
            Ok(schema) => schema.as_str(),
            Err(Refusal::Invalid { schema, .. }) => schema.as_str(),
            Err(Refusal::Unavailable(_)) => {
                self.metrics.schema_unavailable.with_label_values(&[topic]).inc();
                return result.map(|_| ());
            }
        };
        let outcome = if result.is_ok() { "valid" } else { "invalid" };
        self.metrics.schema_checks.with_label_values(&[topic, schema, outcome]).inc();
        result.map(|_| ())
    }

    /// The check itself; the schema checked against on success.
    async fn check_with(
        &self,
        topic: &str,
        rules: &TopicRules,
        event: EventData<'_>,
    ) -> Result<String, Refusal> {
        if let Some(avro) = rules.avro {
            let registry = self.registry.as_ref().expect("validated: avro needs a registry");
            let reader = match self.avro_readers.as_ref().and_then(|readers| readers.of(topic)) {
                None => None,
                Some(Ok(reader)) => Some(reader),
                // The event waits until the subject is read, like for a registry outage.
                Some(Err(missing)) => return Err(Refusal::Unavailable(missing)),
            };
            let decoded =
                registry.decode(event.data.as_deref(), avro == AvroData::Json, reader.as_deref()).await?;
            let name = match &reader {
                Some(reader) => reader.dataschema.clone(),
                None => registry.dataschema(decoded.id, topic).await,
            };
            if avro == AvroData::Json {
                *event.data = decoded.json;
                *event.datacontenttype = Some("application/json".into());
            }
            *event.dataschema = Some(name.clone());
            return Ok(name);
        }
        let named = event
            .dataschema
            .as_deref()
            .filter(|d| rules.dataschema.iter().any(|p| d.starts_with(p.as_str())));
        let Some(address) =
            named.or(rules.by_type.get(event.ty).map(String::as_str)).or(rules.schema.as_deref())
        else {
            return Ok("none".into());
        };
        let validator = match self.json.cached(address) {
            Some(validator) => validator,
            None => {
                let (json, owned) = (self.json.clone(), address.to_string());
                tokio::task::spawn_blocking(move || json.load(&owned))
                    .await
                    .map_err(|e| Refusal::Unavailable(format!("reading schema {address}: {e}")))??
            }
        };
        json::check(&validator, address, event.data.as_deref())?;
        Ok(address.to_string())
    }
}
