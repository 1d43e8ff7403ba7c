//! Weft's configuration: a TOML file, a few environment overrides, defaults in one place, and a
//! `validate()` that names the bad key.
//!
//! Every field's `///` doc is the reference documentation (README "Configuration").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::retry::{RetryPolicy, RetrySettings};
use crate::route::SubscriptionSpec;

/// Environment variables that override the file, applied after it is read.
pub const ENV_BROKERS: &str = "WEFT_KAFKA_BROKERS";
/// Overrides `kafka.group_id`.
pub const ENV_GROUP_ID: &str = "WEFT_KAFKA_GROUP_ID";
/// Overrides `plugins.dir`.
pub const ENV_PLUGINS_DIR: &str = "WEFT_PLUGINS_DIR";

/// librdkafka properties that Weft sets itself because its delivery guarantees depend on them.
const MANAGED_CONSUMER_PROPERTIES: &[&str] =
    &["bootstrap.servers", "group.id", "enable.auto.offset.store", "enable.auto.commit"];

/// Producer properties that dead letters and emits depend on, with the values that keep them safe.
const PRODUCER_GUARANTEES: &[(&str, &[&str])] =
    &[("acks", &["all", "-1"]), ("enable.idempotence", &["true"])];

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
    /// The `/metrics`, `/healthz`, `/readyz` and `/plugins` listener.
    #[serde(default)]
    pub http: HttpConfig,
    /// Trace export.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Topics whose records are not CloudEvents, and how to map them (`[topics."task-events"]`).
    #[serde(default)]
    pub topics: BTreeMap<String, crate::plain::TopicConfig>,
}

/// `[telemetry]`: exporting the handler spans over OTLP (logs always go to stderr).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector to send spans to, e.g. `http://otel-collector:4318` (`/v1/traces` is
    /// added). Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default `weft`.
    pub service_name: Option<String>,
}

/// `[http]`: the metrics and health listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the endpoints at all.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Address to listen on. Localhost by default: expose it deliberately (`0.0.0.0:9464`).
    #[serde(default = "defaults::http_listen")]
    pub listen: std::net::SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { enabled: true, listen: defaults::http_listen() }
    }
}

/// `[dlq]`: where events that cannot be handled go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DlqConfig {
    /// Suffix appended to a source topic to name its dead-letter topic (`task-events.dlq`).
    #[serde(default = "defaults::dlq_suffix")]
    pub topic_suffix: String,
    /// Dead-letter topic per source topic, replacing the suffix rule for that topic.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
    /// Also dead-letter valid events that no plugin subscribed to (reason `no_route`). Off by default:
    /// a topic usually carries event types that only some plugins want.
    #[serde(default)]
    pub unrouted: bool,
    /// Create missing dead-letter topics at start-up, with as many partitions as their source
    /// topic. Turn off where topics are managed elsewhere.
    #[serde(default = "defaults::yes")]
    pub create_topics: bool,
    /// Replication factor of dead-letter topics Weft creates; `-1` uses the broker's default.
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: i32,
    /// Let the `weft.replay.plugin` header (added by `weft dlq replay`) send a replayed record only
    /// to the plugin that failed it. The header can only narrow the route to a plugin that would
    /// have received the event anyway. Turn off where producers you do not control write to the
    /// topics: every record then goes to every subscribed plugin.
    #[serde(default = "defaults::yes")]
    pub replay_routing: bool,
}

impl Default for DlqConfig {
    fn default() -> Self {
        Self {
            topic_suffix: defaults::dlq_suffix(),
            topics: BTreeMap::new(),
            unrouted: false,
            create_topics: true,
            replication_factor: defaults::replication_factor(),
            replay_routing: true,
        }
    }
}

impl DlqConfig {
    /// The dead-letter topic for records of `topic`.
    pub fn topic_for(&self, topic: &str) -> String {
        self.topics.get(topic).cloned().unwrap_or_else(|| format!("{topic}{}", self.topic_suffix))
    }
}

/// `[kafka]`: the cluster, the group, and librdkafka properties passed through unchanged.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated `host:port` (`bootstrap.servers`). Env: `WEFT_KAFKA_BROKERS`.
    pub brokers: String,
    /// Consumer group id. Every Weft process of one deployment uses the same id; Kafka spreads the
    /// partitions among them. Env: `WEFT_KAFKA_GROUP_ID`.
    #[serde(default = "defaults::group_id")]
    pub group_id: String,
    /// librdkafka properties for both the consumer and the producer (SASL, SSL, `client.id`, …).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumer only (`fetch.wait.max.ms`, `session.timeout.ms`, …).
    #[serde(default)]
    pub consumer: BTreeMap<String, String>,
    /// librdkafka properties for the producer that writes emitted events (`linger.ms`, `compression.type`, …).
    #[serde(default)]
    pub producer: BTreeMap<String, String>,
}

/// `[plugins]`: the directory Weft loads components from and the default sandbox limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory holding the `*.wasm` components. Env: `WEFT_PLUGINS_DIR`.
    #[serde(default = "defaults::plugins_dir")]
    pub dir: PathBuf,
    /// Wall-clock limit for one call into a plugin, in milliseconds. A call that runs longer is
    /// interrupted and counts as a failure of the event.
    #[serde(default = "defaults::timeout_ms")]
    pub timeout_ms: u64,
    /// Memory one plugin instance may hold, in MiB: all of its linear memories and tables together
    /// (a table element counts 8 bytes). Growth past it traps the call (reason `memory_limit`).
    #[serde(default = "defaults::memory_limit_mib")]
    pub memory_limit_mib: u64,
    /// Fuel (roughly, WebAssembly instructions) one call may burn before it is stopped. Unset: no
    /// fuel metering (the wall-clock `timeout_ms` still applies). Setting it for any plugin turns
    /// metering on for all, which costs a few percent of plugin CPU time.
    #[serde(default)]
    pub fuel: Option<u64>,
    /// Instances of one plugin that may exist at once (calls beyond it wait for a free one).
    #[serde(default = "defaults::max_instances")]
    pub max_instances: usize,
    /// Events one call may emit. Past it, `emit` returns `forbidden` (the call goes on).
    #[serde(default = "defaults::max_emits")]
    pub max_emits: usize,
    /// Bytes one call may emit, in MiB (data, attributes and keys of all its events together).
    /// Past it, `emit` returns `forbidden` (the call goes on).
    #[serde(default = "defaults::max_emit_mib")]
    pub max_emit_mib: u64,
    /// `reuse` (default): an instance serves event after event until it traps. `fresh`: every
    /// event gets a new instance, so no state survives between events (slower; see the docs).
    #[serde(default)]
    pub instances: InstanceStrategy,
    /// Watch `dir` and load, replace or remove plugins while running.
    #[serde(default = "defaults::yes")]
    pub watch: bool,
    /// How long the directory must be quiet before changes are loaded, in milliseconds. A file
    /// still being written is not loaded until writing stops.
    #[serde(default = "defaults::reload_debounce_ms")]
    pub reload_debounce_ms: u64,
    /// Keep compiled plugins on disk so restarts and reloads of an unchanged file skip compilation.
    #[serde(default = "defaults::yes")]
    pub cache: bool,
    /// Where compiled plugins are kept (in its `compiled/` subdirectory, the only part wasmtime's
    /// cache prunes). Default: `$XDG_CACHE_HOME/weft` or `~/.cache/weft`.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
}

/// How a plugin's instances are used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstanceStrategy {
    /// Pooled instances serve many events; an instance that trapped is discarded.
    #[default]
    Reuse,
    /// A new instance for every event.
    Fresh,
}

/// `[plugin.<id>.limits]`: sandbox limits that differ from `[plugins]` for one plugin.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverrides {
    /// Overrides `plugins.timeout_ms`.
    pub timeout_ms: Option<u64>,
    /// Overrides `plugins.memory_limit_mib`.
    pub memory_limit_mib: Option<u64>,
    /// Overrides `plugins.fuel`.
    pub fuel: Option<u64>,
    /// Overrides `plugins.max_instances`.
    pub max_instances: Option<usize>,
    /// Overrides `plugins.max_emits`.
    pub max_emits: Option<usize>,
    /// Overrides `plugins.max_emit_mib`.
    pub max_emit_mib: Option<u64>,
    /// Overrides `plugins.instances`.
    pub instances: Option<InstanceStrategy>,
}

/// `[plugin.<name>]`: settings for one plugin, matched by the name its `describe()` returns.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Replaces the subscriptions the plugin asks for. Each entry: `{ topic = "…", types = ["…"],
    /// sources = ["…"] }`; a filter ending in `*` matches by prefix.
    pub subscriptions: Option<Vec<SubscriptionSpec>>,
    /// String values the plugin reads with `host.config-get(key)`.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// Retry policy fields that differ from the global `[retry]` for this plugin.
    #[serde(default)]
    pub retry: RetrySettings,
    /// What the plugin may reach beyond its own memory. Nothing by default.
    #[serde(default)]
    pub grants: Grants,
    /// Sandbox limits that differ from `[plugins]`.
    #[serde(default)]
    pub limits: LimitOverrides,
}

/// `[plugin.<id>.grants]`: capabilities given to one plugin. A plugin has no filesystem, no
/// environment variables and no network unless granted here (network is never granted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Host directories the plugin may read (read-only), as `{ host = "/srv/data", guest = "/data" }`.
    #[serde(default)]
    pub dirs: Vec<DirGrant>,
    /// Names of host environment variables the plugin may read; their values are taken when the
    /// plugin loads.
    #[serde(default)]
    pub env: Vec<String>,
    /// Topics the plugin may emit to. Empty: any topic.
    #[serde(default)]
    pub emit_topics: Vec<String>,
}

/// A host directory visible to a plugin, read-only.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    /// Path on the host.
    pub host: PathBuf,
    /// Path the plugin sees (`/data`).
    pub guest: String,
}

/// `[pipeline]`: concurrency and shutdown.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Number of lanes events are spread over by key. Events with the same key always use the same
    /// lane and are handled one after another; lanes run in parallel.
    #[serde(default = "defaults::lanes")]
    pub lanes: usize,
    /// Events that may wait in one lane before the consumer stops fetching.
    #[serde(default = "defaults::lane_capacity")]
    pub lane_capacity: usize,
    /// How long a partition revocation waits for the handler calls already running on that
    /// partition before it commits what finished, in milliseconds. Events of the partition that have
    /// not started (queued, or waiting for a retry) are not waited for: the next owner handles them.
    #[serde(default = "defaults::drain_timeout_ms")]
    pub drain_timeout_ms: u64,
    /// Events one lane may hold back behind keys that wait for a retry. Past it, the lane takes no
    /// new events until its retries drain (the fetch loop then waits: backpressure).
    #[serde(default = "defaults::max_parked")]
    pub max_parked: usize,
    /// How long a partition's oldest unfinished event may wait before `/readyz` reports the
    /// partition as stalled, in milliseconds. Leave room for the longest retry schedule.
    #[serde(default = "defaults::stall_timeout_ms")]
    pub stall_timeout_ms: u64,
    /// Events of one partition that may be fetched and not committed (the head unfinished, the rest
    /// waiting or finished behind it) before fetching pauses for that partition; it resumes below
    /// three quarters of it.
    #[serde(default = "defaults::max_uncommitted")]
    pub max_uncommitted: usize,
    /// Record data (keys, values, headers) the host may hold for events fetched and not finished,
    /// in MiB. Past it, fetching pauses until events finish.
    #[serde(default = "defaults::max_in_flight_mib")]
    pub max_in_flight_mib: u64,
}

mod defaults {
    use std::path::PathBuf;

    pub fn group_id() -> String {
        "weft".into()
    }
    pub fn plugins_dir() -> PathBuf {
        PathBuf::from("plugins")
    }
    pub fn timeout_ms() -> u64 {
        5_000
    }
    pub fn memory_limit_mib() -> u64 {
        64
    }
    pub fn max_instances() -> usize {
        16
    }
    pub fn max_emits() -> usize {
        1_000
    }
    pub fn max_emit_mib() -> u64 {
        16
    }
    pub fn reload_debounce_ms() -> u64 {
        250
    }
    pub fn lanes() -> usize {
        64
    }
    pub fn lane_capacity() -> usize {
        64
    }
    pub fn drain_timeout_ms() -> u64 {
        10_000
    }
    pub fn max_parked() -> usize {
        1_000
    }
    pub fn stall_timeout_ms() -> u64 {
        300_000
    }
    pub fn max_uncommitted() -> usize {
        100_000
    }
    pub fn max_in_flight_mib() -> u64 {
        256
    }
    pub fn http_listen() -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], 9464))
    }
    pub fn yes() -> bool {
        true
    }
    pub fn replication_factor() -> i32 {
        -1
    }
    pub fn dlq_suffix() -> String {
        ".dlq".into()
    }
}

impl Default for PluginsConfig {
    fn default() -> Self {
        Self {
            dir: defaults::plugins_dir(),
            timeout_ms: defaults::timeout_ms(),
            memory_limit_mib: defaults::memory_limit_mib(),
            fuel: None,
            max_instances: defaults::max_instances(),
            max_emits: defaults::max_emits(),
            max_emit_mib: defaults::max_emit_mib(),
            instances: InstanceStrategy::default(),
            watch: true,
            reload_debounce_ms: defaults::reload_debounce_ms(),
            cache: true,
            cache_dir: None,
        }
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            lanes: defaults::lanes(),
            lane_capacity: defaults::lane_capacity(),
            drain_timeout_ms: defaults::drain_timeout_ms(),
            max_parked: defaults::max_parked(),
            stall_timeout_ms: defaults::stall_timeout_ms(),
            max_uncommitted: defaults::max_uncommitted(),
            max_in_flight_mib: defaults::max_in_flight_mib(),
        }
    }
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
            http: HttpConfig::default(),
            telemetry: TelemetryConfig::default(),
            topics: BTreeMap::new(),
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
    /// `kafka.consumer`, `kafka.producer`) with the environment variable `NAME`, so that passwords
    /// and keys stay out of the file. An unset variable is an error naming it (never its value).
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
        Ok(())
    }

    /// Parses TOML text, without environment overrides or validation.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    /// Applies `WEFT_KAFKA_BROKERS`, `WEFT_KAFKA_GROUP_ID` and `WEFT_PLUGINS_DIR`, read through `var`.
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
    }

    /// Checks what serde cannot: empty values, zero limits, properties Weft manages itself.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.kafka.brokers.trim().is_empty() {
            bail!("kafka.brokers is empty: give at least one host:port (or set {ENV_BROKERS})");
        }
        if self.kafka.group_id.trim().is_empty() {
            bail!("kafka.group_id is empty");
        }
        for (table, properties) in
            [("kafka.properties", &self.kafka.properties), ("kafka.consumer", &self.kafka.consumer)]
        {
            if let Some(key) = properties.keys().find(|k| MANAGED_CONSUMER_PROPERTIES.contains(&k.as_str())) {
                bail!(
                    "{table}.\"{key}\" is managed by Weft (use kafka.brokers / kafka.group_id; offsets are \
                     stored only after events are handled)"
                );
            }
        }
        let p = &self.plugins;
        let global = LimitOverrides {
            timeout_ms: Some(p.timeout_ms),
            memory_limit_mib: Some(p.memory_limit_mib),
            fuel: p.fuel,
            max_instances: Some(p.max_instances),
            max_emits: Some(p.max_emits),
            max_emit_mib: Some(p.max_emit_mib),
            instances: Some(p.instances),
        };
        check_limits("plugins", &global)?;
        if self.pipeline.lanes == 0 {
            bail!("pipeline.lanes must be at least 1");
        }
        if self.pipeline.lane_capacity == 0 {
            bail!("pipeline.lane_capacity must be at least 1");
        }
        if self.pipeline.max_parked == 0 {
            bail!(
                "pipeline.max_parked must be at least 1 (a lane must be able to hold the event it retries)"
            );
        }
        for (key, value) in [
            ("stall_timeout_ms", self.pipeline.stall_timeout_ms),
            ("max_uncommitted", self.pipeline.max_uncommitted as u64),
            ("max_in_flight_mib", self.pipeline.max_in_flight_mib),
        ] {
            if value == 0 {
                bail!("pipeline.{key} must be greater than 0");
            }
        }
        for (table, properties) in
            [("kafka.properties", &self.kafka.properties), ("kafka.producer", &self.kafka.producer)]
        {
            for (key, safe) in PRODUCER_GUARANTEES {
                if let Some(value) = properties.get(*key)
                    && !safe.contains(&value.to_ascii_lowercase().as_str())
                {
                    bail!(
                        "{table}.\"{key}\" = {value:?} would let emitted events and dead letters be lost or \
                         duplicated; Weft needs {}",
                        safe.join(" or ")
                    );
                }
            }
        }
        RetryPolicy::default().with(&self.retry).validate("retry")?;
        if let Some(endpoint) = &self.telemetry.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            bail!("telemetry.otlp_endpoint {endpoint:?} must be an http:// or https:// URL (OTLP over HTTP)");
        }
        for (topic, mapping) in &self.topics {
            mapping.validate(topic)?;
        }
        if self.dlq.topic_suffix.is_empty() {
            bail!("dlq.topic_suffix is empty: a dead-letter topic must differ from its source topic");
        }
        if let Some((source, _)) = self.dlq.topics.iter().find(|(source, dlq)| source == dlq) {
            bail!("dlq.topics.\"{source}\" names the source topic itself");
        }
        for (name, plugin) in &self.plugin {
            self.retry_policy(name).validate(&format!("plugin.{name}.retry"))?;
            check_limits(&format!("plugin.{name}.limits"), &plugin.limits)?;
            for (i, sub) in plugin.subscriptions.iter().flatten().enumerate() {
                sub.validate().with_context(|| format!("plugin.{name}.subscriptions[{i}]"))?;
            }
        }
        Ok(())
    }
}

/// Zero is never a useful limit: refuse it by name rather than stop every call.
fn check_limits(table: &str, l: &LimitOverrides) -> anyhow::Result<()> {
    for (key, value) in [
        ("timeout_ms", l.timeout_ms),
        ("memory_limit_mib", l.memory_limit_mib),
        ("fuel", l.fuel),
        ("max_instances", l.max_instances.map(|n| n as u64)),
        ("max_emits", l.max_emits.map(|n| n as u64)),
        ("max_emit_mib", l.max_emit_mib),
    ] {
        if value == Some(0) {
            bail!("{table}.{key} must be greater than 0");
        }
    }
    Ok(())
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
        let config = Config::parse(include_str!("../../examples/weft.toml")).unwrap();
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
