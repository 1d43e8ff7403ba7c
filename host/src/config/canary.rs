//! `[plugin.<id>.canary]`: how a canary version of a plugin (`<id>.canary.wasm` beside
//! `<id>.wasm`) is rolled out: the share of keys it takes, when it is rolled back, when it is
//! promoted. `[plugin.<id>.shadow]`: how a shadow version (`<id>.shadow.wasm`) runs.

use std::collections::BTreeMap;

use anyhow::bail;
use serde::Deserialize;

use super::defaults;

/// `[plugin.<id>.canary]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CanaryConfig {
    /// Share of the keys (by key hash; a keyless event by its partition) the canary handles,
    /// from 0 to 1. A key's events all go to one version.
    #[serde(default = "defaults::canary_share")]
    pub share: f64,
    /// Attempts each version must have made before their failure rates are compared.
    #[serde(default = "defaults::canary_min_attempts")]
    pub min_attempts: u64,
    /// The canary is rolled back when its share of failed attempts (retryable, permanent, trap,
    /// timeout, memory) exceeds the stable version's by more than this, from 0 to 1.
    #[serde(default = "defaults::canary_max_failure_margin")]
    pub max_failure_margin: f64,
    /// The canary is rolled back when it traps (or runs out of time, memory or fuel) this often.
    #[serde(default = "defaults::canary_max_traps")]
    pub max_traps: u64,
    /// Promote the canary by itself once it has handled `promote_after_events` events for at
    /// least `promote_after_ms`, within the margin. Off: promote with `weft plugin promote`.
    #[serde(default)]
    pub auto_promote: bool,
    /// Events the canary must have handled before it is promoted by itself.
    #[serde(default = "defaults::canary_promote_after_events")]
    pub promote_after_events: u64,
    /// How long the canary must have served before it is promoted by itself, in milliseconds.
    #[serde(default = "defaults::canary_promote_after_ms")]
    pub promote_after_ms: u64,
    /// `config` values that differ for the canary (merged over `[plugin.<id>] config`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Default for CanaryConfig {
    fn default() -> Self {
        Self {
            share: defaults::canary_share(),
            min_attempts: defaults::canary_min_attempts(),
            max_failure_margin: defaults::canary_max_failure_margin(),
            max_traps: defaults::canary_max_traps(),
            auto_promote: false,
            promote_after_events: defaults::canary_promote_after_events(),
            promote_after_ms: defaults::canary_promote_after_ms(),
            config: BTreeMap::new(),
        }
    }
}

impl CanaryConfig {
    /// Refuses shares and margins outside 0..=1 and a zero trap limit, naming the key.
    pub fn validate(&self, table: &str) -> anyhow::Result<()> {
        for (key, value) in [("share", self.share), ("max_failure_margin", self.max_failure_margin)] {
            if !(0.0..=1.0).contains(&value) {
                bail!("{table}.{key} = {value} must be between 0 and 1");
            }
        }
        if self.max_traps == 0 {
            bail!("{table}.max_traps must be at least 1");
        }
        if self.min_attempts == 0 {
            bail!("{table}.min_attempts must be at least 1");
        }
        Ok(())
    }
}

/// `[plugin.<id>.shadow]`: how a shadow version (`<id>.shadow.wasm`) runs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowConfig {
    /// Copies of events that may wait for the shadow; past it, copies are dropped (and counted),
    /// so the shadow never slows the stable version.
    #[serde(default = "defaults::shadow_queue")]
    pub queue: usize,
    /// `config` values that differ for the shadow (merged over `[plugin.<id>] config`).
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        Self { queue: defaults::shadow_queue(), config: BTreeMap::new() }
    }
}

impl ShadowConfig {
    /// Refuses an empty queue.
    pub fn validate(&self, table: &str) -> anyhow::Result<()> {
        if self.queue == 0 {
            bail!("{table}.queue must be at least 1");
        }
        Ok(())
    }
}
