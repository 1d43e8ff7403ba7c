//! Schemas: `[schema_registry]` (a Confluent-compatible registry for Avro) and the checks of a
//! topic's schema settings (the settings themselves are part of `[topics."<name>"]`).

use anyhow::ensure;
use serde::Deserialize;

use super::defaults;
use super::topics::{TopicConfig, TopicFormat};

/// `[schema_registry]`: the registry that holds the Avro schemas records are written with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// The registry's Confluent-compatible API, e.g. `http://registry:8081` (Confluent),
    /// `http://apicurio:8080/apis/ccompat/v7` (Apicurio). Env: `WEFT_SCHEMA_REGISTRY_URL`.
    pub url: String,
    /// Basic-auth user; `${NAME}` reads the environment variable `NAME`.
    pub username: Option<String>,
    /// Basic-auth password; `${NAME}` reads the environment variable `NAME`.
    pub password: Option<String>,
    /// How long one request to the registry may take.
    #[serde(default = "defaults::registry_timeout_ms")]
    pub timeout_ms: u64,
    /// How often the latest schema of each subject plugins emit Avro to, or records are read as,
    /// is read again.
    #[serde(default = "defaults::registry_refresh_ms")]
    pub refresh_ms: u64,
}

impl RegistryConfig {
    /// Refuses an empty or non-HTTP address and zero durations.
    pub fn validate(&self) -> anyhow::Result<()> {
        ensure!(
            self.url.starts_with("http://") || self.url.starts_with("https://"),
            "schema_registry.url must be an http:// or https:// address, not {:?}",
            self.url
        );
        ensure!(
            self.password.is_none() || self.username.is_some(),
            "schema_registry.password needs a username"
        );
        ensure!(self.timeout_ms > 0, "schema_registry.timeout_ms must be at least 1");
        ensure!(self.refresh_ms > 0, "schema_registry.refresh_ms must be at least 1");
        Ok(())
    }
}

/// How handlers receive Avro data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AvroData {
    /// Decoded to JSON (`datacontenttype: application/json`).
    Json,
    /// The record's bytes as they arrived (checked to decode).
    Bytes,
}

impl TopicConfig {
    /// Whether events read from the topic are checked at all.
    pub fn checks_events(&self) -> bool {
        self.schema.is_some()
            || !self.schemas.is_empty()
            || !self.dataschema.is_empty()
            || self.avro.is_some()
    }

    /// Refuses empty schema names and Avro without a registry, naming the key under `table`.
    pub fn validate_schemas(&self, table: &str, registry: Option<&RegistryConfig>) -> anyhow::Result<()> {
        if let Some(schema) = &self.schema {
            ensure!(!schema.is_empty(), "{table}.schema is empty");
        }
        for (ty, schema) in &self.schemas {
            ensure!(!ty.is_empty() && !schema.is_empty(), "{table}.schemas has an empty type or schema");
        }
        for prefix in &self.dataschema {
            ensure!(
                prefix.starts_with("http://")
                    || prefix.starts_with("https://")
                    || prefix.starts_with("file://"),
                "{table}.dataschema: {prefix:?} is not an http(s):// or file:// prefix"
            );
        }
        if self.avro.is_some() {
            ensure!(registry.is_some(), "{table}.avro needs a [schema_registry] to look writer schemas up");
            ensure!(
                self.format != TopicFormat::Json,
                "{table}: avro data needs format = \"cloudevents\" or \"bytes\", not \"json\""
            );
            ensure!(
                self.schema.is_none() && self.schemas.is_empty(),
                "{table}: avro data is checked against its writer schema; drop schema/schemas"
            );
        }
        if let Some(subject) = &self.avro_reader_subject {
            ensure!(!subject.is_empty(), "{table}.avro_reader_subject is empty");
            ensure!(
                self.avro == Some(AvroData::Json),
                "{table}.avro_reader_subject shapes the JSON handlers get: it needs avro = \"json\""
            );
        }
        if let Some(subject) = &self.avro_subject {
            ensure!(!subject.is_empty(), "{table}.avro_subject is empty");
            ensure!(
                registry.is_some(),
                "{table}.avro_subject needs a [schema_registry] to read the subject from"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> RegistryConfig {
        RegistryConfig {
            url: "http://r:8081".into(),
            username: None,
            password: None,
            timeout_ms: 5_000,
            refresh_ms: 30_000,
        }
    }

    #[test]
    fn avro_needs_a_registry_and_no_json_schema() {
        let avro = TopicConfig { avro: Some(AvroData::Json), ..TopicConfig::default() };
        let error = avro.validate_schemas("topics.\"o\"", None).unwrap_err().to_string();
        assert!(error.contains("topics.\"o\".avro needs a [schema_registry]"), "{error}");
        avro.validate_schemas("t", Some(&registry())).unwrap();
        let both = TopicConfig { schema: Some("s.json".into()), ..avro };
        assert!(
            both.validate_schemas("t", Some(&registry())).unwrap_err().to_string().contains("drop schema")
        );
    }

    #[test]
    fn a_reader_subject_shapes_json_so_it_needs_avro_json() {
        let bytes = TopicConfig {
            avro: Some(AvroData::Bytes),
            avro_reader_subject: Some("orders-value".into()),
            ..TopicConfig::default()
        };
        let error = bytes.validate_schemas("t", Some(&registry())).unwrap_err().to_string();
        assert!(error.contains("t.avro_reader_subject") && error.contains("avro = \"json\""), "{error}");
        let json = TopicConfig { avro: Some(AvroData::Json), ..bytes };
        json.validate_schemas("t", Some(&registry())).unwrap();
    }

    #[test]
    fn dataschema_prefixes_must_be_addresses() {
        let bad = TopicConfig { dataschema: vec!["schemas/".into()], ..TopicConfig::default() };
        assert!(bad.validate_schemas("t", None).unwrap_err().to_string().contains("\"schemas/\""));
        let good =
            TopicConfig { dataschema: vec!["https://s.example.com/".into()], ..TopicConfig::default() };
        good.validate_schemas("t", None).unwrap();
    }

    #[test]
    fn registry_address_and_password_are_checked() {
        let bad = RegistryConfig { url: "registry:8081".into(), ..registry() };
        assert!(bad.validate().unwrap_err().to_string().contains("http://"));
        let lone_password = RegistryConfig { password: Some("p".into()), ..registry() };
        assert!(lone_password.validate().unwrap_err().to_string().contains("needs a username"));
    }
}
