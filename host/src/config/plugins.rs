//! `[plugins]` and `[plugin.<id>]`: where plugins come from, their sandbox limits, grants and
//! per-plugin settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

use super::defaults;
use super::retry::RetrySettings;
use super::subscription::SubscriptionSpec;

/// `[plugins]`: the directory Weft loads components from and the default sandbox limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginsConfig {
    /// Directory holding the `*.wasm` components. Env: `WEFT_PLUGINS_DIR`.
    #[serde(default = "defaults::plugins_dir")]
    pub dir: PathBuf,
    /// Wall-clock limit for one attempt, in milliseconds: the call into a plugin and, when the
    /// attempt needs a new instance, its start-up code. An attempt that runs longer is interrupted
    /// and counts as a failure of the event.
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
    /// How a canary version (`<id>.canary.wasm`) is rolled out.
    #[serde(default)]
    pub canary: super::canary::CanaryConfig,
    /// How a shadow version (`<id>.shadow.wasm`) runs.
    #[serde(default)]
    pub shadow: super::canary::ShadowConfig,
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

impl PluginsConfig {
    /// Refuses zero limits, by name.
    pub fn validate(&self) -> anyhow::Result<()> {
        let global = LimitOverrides {
            timeout_ms: Some(self.timeout_ms),
            memory_limit_mib: Some(self.memory_limit_mib),
            fuel: self.fuel,
            max_instances: Some(self.max_instances),
            max_emits: Some(self.max_emits),
            max_emit_mib: Some(self.max_emit_mib),
            instances: Some(self.instances),
        };
        check_limits("plugins", &global)
    }
}

impl PluginConfig {
    /// Refuses zero limits and invalid subscriptions of plugin `name`, naming the key.
    pub fn validate(&self, name: &str) -> anyhow::Result<()> {
        check_limits(&format!("plugin.{name}.limits"), &self.limits)?;
        self.canary.validate(&format!("plugin.{name}.canary"))?;
        self.shadow.validate(&format!("plugin.{name}.shadow"))?;
        for (i, sub) in self.subscriptions.iter().flatten().enumerate() {
            sub.validate().with_context(|| format!("plugin.{name}.subscriptions[{i}]"))?;
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
