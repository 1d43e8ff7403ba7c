//! Every default value of the configuration, in one place.

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

pub fn transaction_interval_ms() -> u64 {
    100
}

pub fn transaction_max_events() -> usize {
    5_000
}

pub fn transaction_timeout_ms() -> u64 {
    10_000
}

pub fn canary_share() -> f64 {
    0.1
}

pub fn canary_min_attempts() -> u64 {
    50
}

pub fn canary_max_failure_margin() -> f64 {
    0.1
}

pub fn canary_max_traps() -> u64 {
    5
}

pub fn canary_promote_after_events() -> u64 {
    1_000
}

pub fn canary_promote_after_ms() -> u64 {
    300_000
}

pub fn shadow_queue() -> usize {
    1_000
}

/// `schema_registry.timeout_ms`: one registry request.
pub fn registry_timeout_ms() -> u64 {
    5_000
}

/// `schema_registry.refresh_ms`: how often the latest schema of an emit subject is read again.
pub fn registry_refresh_ms() -> u64 {
    30_000
}
