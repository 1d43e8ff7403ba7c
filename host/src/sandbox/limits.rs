//! A plugin's sandbox limits: deadline, memory, fuel, instances, emit quota, resolved from
//! `[plugins]` and `[plugin.<id>.limits]`.

use std::time::Duration;

use crate::config::{Config, InstanceStrategy};

/// Per-plugin sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    #[serde(serialize_with = "as_millis", rename = "timeout_ms")]
    pub timeout: Duration,
    /// Memory one instance may hold, in bytes: all its linear memories and tables together.
    pub memory_bytes: usize,
    /// Fuel one call may burn; `None`: unmetered.
    pub fuel: Option<u64>,
    /// Instances that may exist at once.
    pub max_instances: usize,
    /// Events one call may emit.
    pub max_emits: usize,
    /// Bytes one call may emit (data, attributes and keys).
    pub max_emit_bytes: usize,
    /// Whether instances serve many events or one.
    pub instances: InstanceStrategy,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Limits {
    /// The limits `config` sets for every plugin.
    pub fn from_config(config: &Config) -> Self {
        let p = &config.plugins;
        Self {
            timeout: Duration::from_millis(p.timeout_ms),
            memory_bytes: mib(p.memory_limit_mib),
            fuel: p.fuel,
            max_instances: p.max_instances,
            max_emits: p.max_emits,
            max_emit_bytes: mib(p.max_emit_mib),
            instances: p.instances,
        }
    }

    /// The limits of plugin `id`: `[plugins]`, then `[plugin.<id>.limits]`.
    pub fn for_plugin(config: &Config, id: &str) -> Self {
        let global = Self::from_config(config);
        let Some(o) = config.plugin.get(id).map(|p| &p.limits) else { return global };
        Self {
            timeout: o.timeout_ms.map_or(global.timeout, Duration::from_millis),
            memory_bytes: o.memory_limit_mib.map_or(global.memory_bytes, mib),
            fuel: o.fuel.or(global.fuel),
            max_instances: o.max_instances.unwrap_or(global.max_instances),
            max_emits: o.max_emits.unwrap_or(global.max_emits),
            max_emit_bytes: o.max_emit_mib.map_or(global.max_emit_bytes, mib),
            instances: o.instances.unwrap_or(global.instances),
        }
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}
