//! Weft's configuration: a TOML file, a few environment overrides, defaults in one place, and a
//! `validate()` that names the bad key.
//!
//! Every field's `///` doc is the reference documentation (README "Configuration").
//!
//! # Layout
//! One file per section, each with its own checks: [`kafka`] (`[kafka]`), [`plugins`] (`[plugins]`
//! and `[plugin.<id>]`: limits, grants; [`canary`]: a canary's rollout), [`pipeline`], [`retry`] (the policy and its backoff),
//! [`dlq`], [`delivery`] (at-least-once or exactly-once), [`topics`] (plain JSON topics, schemas),
//! [`schemas`] (`[schema_registry]`), [`operations`] (`[http]`, `[telemetry]`),
//! [`subscription`] (a plugin's topic and filters); [`defaults`] holds every default value.
//!
//! Configuration sits at the bottom of the crate: every stage reads it, and it imports nothing but
//! the event type.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::Deserialize;

pub mod canary;
pub mod defaults;
pub mod delivery;
pub mod dlq;
pub mod kafka;
pub mod operations;
pub mod pipeline;
pub mod plugins;
pub mod retry;
pub mod schemas;
pub mod subscription;
pub mod topics;

pub use canary::{CanaryConfig, ShadowConfig};
pub use delivery::{DeliveryConfig, DeliveryMode};
pub use dlq::DlqConfig;
pub use kafka::KafkaConfig;
pub use operations::{HttpConfig, TelemetryConfig};
pub use pipeline::PipelineConfig;
pub use plugins::{DirGrant, Grants, InstanceStrategy, LimitOverrides, PluginConfig, PluginsConfig};
pub use retry::{RetryPolicy, RetrySettings};
pub use schemas::{AvroData, RegistryConfig};
pub use subscription::SubscriptionSpec;
pub use topics::{TopicConfig, TopicFormat};

/// Environment variables that override the file, applied after it is read.
pub const ENV_BROKERS: &str = "WEFT_KAFKA_BROKERS";
/// Overrides `kafka.group_id`.
pub const ENV_GROUP_ID: &str = "WEFT_KAFKA_GROUP_ID";
/// Overrides `plugins.dir`.
pub const ENV_PLUGINS_DIR: &str = "WEFT_PLUGINS_DIR";
/// Overrides `schema_registry.url` (and makes a `[schema_registry]` if the file has none).
pub const ENV_SCHEMA_REGISTRY_URL: &str = "WEFT_SCHEMA_REGISTRY_URL";

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Connection to the Kafka cluster and the consumer group Weft joins.
    pub kafka: KafkaConfig,
    /// Where plugins come from and the limits they run under.
    #[serde(default)]
    pub plugins: PluginsConfig,
    /// Per-plugin settings, keyed by the plugin's name (`[plugin.audit]`).
    #[serde(default)]
    pub plugin: BTreeMap<String, PluginConfig>,
    /// How events flow from the consumer to the handlers.
    #[serde(default)]
    pub pipeline: PipelineConfig,
    /// The retry policy for every plugin (`[plugin.<id>.retry]` overrides it per plugin).
    #[serde(default)]
    pub retry: RetrySettings,
    /// Dead-letter topics.
    #[serde(default)]
    pub dlq: DlqConfig,
    /// At-least-once or exactly-once delivery.
    #[serde(default)]
    pub delivery: DeliveryConfig,
    /// The `/metrics`, `/healthz`, `/readyz` and `/plugins` listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// Trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Per topic: records that are not CloudEvents and how to map them, and the schemas events
    /// are checked against (`[topics."task-events"]`).
    #[serde(default)]
    pub topics: BTreeMap<String, TopicConfig>,
    /// The schema registry Avro topics are read and written with.
    pub schema_registry: Option<RegistryConfig>,
}

impl Config {
    /// A configuration with every default, for `brokers`.
    pub fn with_brokers(brokers: impl Into<String>) -> Self {
        Self {
            kafka: KafkaConfig {
                brokers: brokers.into(),
                group_id: defaults::group_id(),
                properties: BTreeMap::new(),
                consumer: BTreeMap::new(),
                producer: BTreeMap::new(),
            },
            plugins: PluginsConfig::default(),
            plugin: BTreeMap::new(),
            pipeline: PipelineConfig::default(),
            retry: RetrySettings::default(),
            dlq: DlqConfig::default(),
            delivery: DeliveryConfig::default(),
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            topics: BTreeMap::new(),
            schema_registry: None,
        }
    }

    /// The retry policy of plugin `id`: defaults, then `[retry]`, then `[plugin.<id>.retry]`.
    pub fn retry_policy(&self, id: &str) -> RetryPolicy {
        let global = RetryPolicy::default().with(&self.retry);
        match self.plugin.get(id) {
            Some(plugin) => global.with(&plugin.retry),
            None => global,
        }
    }

    /// Whether any plugin has a fuel limit (then the engine meters fuel for every plugin).
    pub fn meters_fuel(&self) -> bool {
        self.plugins.fuel.is_some() || self.plugin.values().any(|p| p.limits.fuel.is_some())
    }

    /// Where compiled plugins are cached, if caching is on and a directory can be named.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        if !self.plugins.cache {
            return None;
        }
        self.plugins.cache_dir.clone().or_else(|| {
            let base = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
            Some(base.join("weft"))
        })
    }

    /// Reads `path`, applies the environment overrides and validates the result.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config file {}", path.display()))?;
        let mut config = Self::parse(&text).with_context(|| format!("in config file {}", path.display()))?;
        config.apply_env(|name| std::env::var(name).ok());
        config.expand_secrets(|name| std::env::var(name).ok())?;
        config.validate()?;
        Ok(config)
    }

    /// Replaces every librdkafka property value written `${NAME}` (in `kafka.properties`,
    /// `kafka.consumer`, `kafka.producer`), and the registry's `username` and `password`, with the
    /// environment variable `NAME`, so that passwords and keys stay out of the file. An unset variable is an error naming it (never its value).
    pub fn expand_secrets(&mut self, var: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
        let kafka = &mut self.kafka;
        for (table, properties) in [
            ("kafka.properties", &mut kafka.properties),
            ("kafka.consumer", &mut kafka.consumer),
            ("kafka.producer", &mut kafka.producer),
        ] {
            for (key, value) in properties.iter_mut() {
                let Some(name) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) else { continue };
                *value = var(name).with_context(|| {
                    format!("{table}.\"{key}\" names the environment variable {name}, which is not set")
                })?;
            }
        }
        if let Some(registry) = &mut self.schema_registry {
            for (key, value) in [("username", &mut registry.username), ("password", &mut registry.password)] {
                let Some(name) = value.as_deref().and_then(|v| v.strip_prefix("${")?.strip_suffix('}'))
                else {
                    continue;
                };
                *value = Some(var(name).with_context(|| {
                    format!("schema_registry.{key} names the environment variable {name}, which is not set")
                })?);
            }
        }
        Ok(())
    }

    /// Parses TOML text, without environment overrides or validation.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `WEFT_KAFKA_BROKERS`, `WEFT_KAFKA_GROUP_ID`, `WEFT_PLUGINS_DIR` and
    /// `WEFT_SCHEMA_REGISTRY_URL`, read through `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(brokers) = var(ENV_BROKERS) {
            self.kafka.brokers = brokers;
        }
        if let Some(group) = var(ENV_GROUP_ID) {
            self.kafka.group_id = group;
        }
        if let Some(dir) = var(ENV_PLUGINS_DIR) {
            self.plugins.dir = dir.into();
        }
        if let Some(url) = var(ENV_SCHEMA_REGISTRY_URL) {
            match &mut self.schema_registry {
                Some(registry) => registry.url = url,
                None => {
                    self.schema_registry = Some(RegistryConfig {
                        url,
                        username: None,
                        password: None,
                        timeout_ms: defaults::registry_timeout_ms(),
                        refresh_ms: defaults::registry_refresh_ms(),
                    })
                }
            }
        }
    }

    /// Checks what serde cannot: empty values, zero limits, properties Weft manages itself. Each
    /// section checks its own keys (beside its definition) and names the bad one.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.kafka.validate()?;
        self.plugins.validate()?;
        self.pipeline.validate()?;
        RetryPolicy::default().with(&self.retry).validate("retry")?;
        self.telemetry.validate()?;
        if let Some(registry) = &self.schema_registry {
            registry.validate()?;
        }
        for (topic, mapping) in &self.topics {
            mapping.validate(topic)?;
            mapping.validate_schemas(&format!("topics.\"{topic}\""), self.schema_registry.as_ref())?;
        }
        self.dlq.validate()?;
        self.delivery.validate()?;
        self.kafka.validate_for(&self.delivery)?;
        for (name, plugin) in &self.plugin {
            self.retry_policy(name).validate(&format!("plugin.{name}.retry"))?;
            plugin.validate(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal() -> &'static str {
        "[kafka]\nbrokers = \"localhost:9092\"\n"
    }

    #[test]
    fn defaults_fill_everything_but_brokers() {
        let config = Config::parse(minimal()).unwrap();
        config.validate().unwrap();
        assert_eq!(config.kafka.group_id, "weft");
        assert_eq!(config.plugins.dir, PathBuf::from("plugins"));
        assert_eq!(config.plugins.timeout_ms, 5_000);
        assert_eq!(config.pipeline.lanes, 64);
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[kafka]\nbrokers = \"b:9092\"\ngroupid = \"x\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("groupid"), "{err:#}");
    }

    #[test]
    fn env_overrides_brokers_group_and_dir() {
        let mut config = Config::parse(minimal()).unwrap();
        config.apply_env(|name| match name {
            ENV_BROKERS => Some("k1:9092,k2:9092".into()),
            ENV_GROUP_ID => Some("orders".into()),
            ENV_PLUGINS_DIR => Some("/srv/plugins".into()),
            _ => None,
        });
        assert_eq!(config.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(config.kafka.group_id, "orders");
        assert_eq!(config.plugins.dir, PathBuf::from("/srv/plugins"));
    }

    #[test]
    fn registry_url_comes_from_the_environment_and_its_password_from_a_variable() {
        let mut bare = Config::parse(minimal()).unwrap();
        bare.apply_env(|name| (name == ENV_SCHEMA_REGISTRY_URL).then(|| "http://sr:8081".to_string()));
        assert_eq!(bare.schema_registry.as_ref().map(|r| r.url.as_str()), Some("http://sr:8081"));
        let text = "[kafka]\nbrokers = \"b:9092\"\n[schema_registry]\nurl = \"http://r\"\nusername = \"weft\"\n\
                    password = \"${SR_PASSWORD}\"\n[topics.orders]\navro = \"json\"\n";
        let mut config = Config::parse(text).unwrap();
        config.expand_secrets(|name| (name == "SR_PASSWORD").then(|| "s3cret".to_string())).unwrap();
        assert_eq!(config.schema_registry.as_ref().unwrap().password.as_deref(), Some("s3cret"));
        config.validate().unwrap();
        let mut unset = Config::parse(text).unwrap();
        let error = unset.expand_secrets(|_| None).unwrap_err().to_string();
        assert!(error.contains("schema_registry.password") && error.contains("SR_PASSWORD"), "{error}");
        let no_registry =
            Config::parse("[kafka]\nbrokers = \"b:9092\"\n[topics.orders]\navro = \"json\"\n").unwrap();
        let error = no_registry.validate().unwrap_err().to_string();
        assert!(error.contains("topics.\"orders\".avro needs a [schema_registry]"), "{error}");
    }

    #[test]
    fn managed_property_is_refused_by_name() {
        let config = Config::parse(
            "[kafka]\nbrokers = \"b:9092\"\n[kafka.consumer]\n\"enable.auto.offset.store\" = \"true\"\n",
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("kafka.consumer.\"enable.auto.offset.store\""), "{err}");
    }

    #[test]
    fn bad_subscription_override_names_plugin_and_index() {
        let config = Config::parse(
            "[kafka]\nbrokers = \"b:9092\"\n[plugin.audit]\nsubscriptions = [{ topic = \"\" }]\n",
        )
        .unwrap();
        let err = format!("{:#}", config.validate().unwrap_err());
        assert!(err.contains("plugin.audit.subscriptions[0]"), "{err}");
    }

    #[test]
    fn example_config_is_valid() {
        let config = Config::parse(include_str!("../../../examples/weft.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.plugin["audit"].config["output-topic"], "audit-log");
    }

    #[test]
    fn plugin_limits_override_the_defaults_and_zero_is_named() {
        let config = Config::parse(
            "[kafka]\nbrokers = \"b:9092\"\n[plugin.audit.limits]\nfuel = 1000\ninstances = \"fresh\"\n",
        )
        .unwrap();
        config.validate().unwrap();
        assert!(config.meters_fuel());
        assert_eq!(config.plugin["audit"].limits.instances, Some(InstanceStrategy::Fresh));
        let zero = Config::parse("[kafka]\nbrokers = \"b:9092\"\n[plugin.audit.limits]\nmax_instances = 0\n")
            .unwrap();
        assert!(zero.validate().unwrap_err().to_string().contains("plugin.audit.limits.max_instances"));
        assert!(!Config::parse(minimal()).unwrap().meters_fuel());
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let refused = |text: &str, key: &str| {
            let config = Config::parse(&format!("[kafka]\nbrokers = \"b:9092\"\n{text}")).unwrap();
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        };
        refused("[pipeline]\nmax_parked = 0\n", "pipeline.max_parked");
        refused("[pipeline]\nstall_timeout_ms = 0\n", "pipeline.stall_timeout_ms");
        refused("[plugins]\nmax_emits = 0\n", "plugins.max_emits");
        refused("[plugin.audit.limits]\nmax_emit_mib = 0\n", "plugin.audit.limits.max_emit_mib");
        refused("[kafka.producer]\nacks = \"1\"\n", "kafka.producer.\"acks\"");
        refused(
            "[kafka.properties]\n\"enable.idempotence\" = \"false\"\n",
            "kafka.properties.\"enable.idempotence\"",
        );
        let safe =
            Config::parse("[kafka]\nbrokers = \"b:9092\"\n[kafka.producer]\nacks = \"all\"\n").unwrap();
        safe.validate().unwrap();
    }

    #[test]
    fn settings_accepted_but_wrong_are_refused_by_name() {
        let refused = |text: &str, key: &str| {
            let config = Config::parse(&format!("[kafka]\nbrokers = \"b:9092\"\n{text}")).unwrap();
            let err = config.validate().expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        };
        // Would wrap when turned into bytes.
        refused("[pipeline]\nmax_in_flight_mib = 18446744073709551615\n", "pipeline.max_in_flight_mib");
        // The alias of `acks` is held to the same rule.
        refused(
            "[kafka.producer]\n\"request.required.acks\" = \"1\"\n",
            "kafka.producer.\"request.required.acks\"",
        );
        refused(
            "[kafka.properties]\n\"request.required.acks\" = \"0\"\n",
            "kafka.properties.\"request.required.acks\"",
        );
        // Every emit would fail: a transactional producer needs transactions Weft does not run.
        refused("[kafka.producer]\n\"transactional.id\" = \"weft\"\n", "kafka.producer.\"transactional.id\"");
        refused(
            "[kafka.properties]\n\"transactional.id\" = \"weft\"\n",
            "kafka.properties.\"transactional.id\"",
        );
        // End-of-partition events are no use to Weft, and a partition that cannot reset stalls.
        refused(
            "[kafka.consumer]\n\"enable.partition.eof\" = \"true\"\n",
            "kafka.consumer.\"enable.partition.eof\"",
        );
        refused(
            "[kafka.consumer]\n\"auto.offset.reset\" = \"error\"\n",
            "kafka.consumer.\"auto.offset.reset\"",
        );
        // Static membership keeps a stopped member's partitions until its session times out.
        refused(
            "[kafka.consumer]\n\"group.instance.id\" = \"weft-1\"\n",
            "kafka.consumer.\"group.instance.id\"",
        );
        // No wait between attempts: a hot loop.
        refused("[retry]\ninitial_backoff_ms = 0\n", "retry.initial_backoff_ms");
        refused("[plugin.audit.retry]\ninitial_backoff_ms = 0\n", "plugin.audit.retry.initial_backoff_ms");
        let fine = Config::parse(
            "[kafka]\nbrokers = \"b:9092\"\n[kafka.consumer]\n\"auto.offset.reset\" = \"latest\"\n\"enable.partition.eof\" = \"false\"\n\
             [kafka.producer]\n\"request.required.acks\" = \"-1\"\n",
        )
        .unwrap();
        fine.validate().unwrap();
    }

    #[test]
    fn property_values_can_come_from_the_environment() {
        let text = "[kafka]\nbrokers = \"b:9092\"\n[kafka.properties]\n\"sasl.password\" = \"${KAFKA_PASSWORD}\"\n\
                    \"sasl.username\" = \"weft\"\n";
        let mut config = Config::parse(text).unwrap();
        config.expand_secrets(|name| (name == "KAFKA_PASSWORD").then(|| "s3cret".to_string())).unwrap();
        assert_eq!(config.kafka.properties["sasl.password"], "s3cret");
        assert_eq!(config.kafka.properties["sasl.username"], "weft");
        let mut unset = Config::parse(text).unwrap();
        let error = unset.expand_secrets(|_| None).unwrap_err().to_string();
        assert!(error.contains("KAFKA_PASSWORD") && error.contains("sasl.password"), "{error}");
    }

    #[test]
    fn zero_lanes_is_refused() {
        let config = Config::parse("[kafka]\nbrokers = \"b:9092\"\n[pipeline]\nlanes = 0\n").unwrap();
        assert!(config.validate().unwrap_err().to_string().contains("pipeline.lanes"));
    }
}
