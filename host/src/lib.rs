//! Weft: runs sandboxed WebAssembly event handlers on Kafka.
//!
//! Records flow one way: the consumer decodes each record as a CloudEvent (both Kafka binding
//! modes), routes it to the plugins whose subscriptions match, hands it to the lane of its key, and
//! a lane calls each plugin's `handle` in a WebAssembly component. When every plugin is done with
//! an event its offset may be committed, never past an unfinished event of the same partition.
//!
//! # Layout
//! - [`config`]: the TOML configuration, env overrides and validation.
//! - [`event`], [`decode`]: the CloudEvent model and the Kafka binding (read side); [`emit`]: the
//!   write side for events plugins emit; [`headers`]: record headers as bytes.
//! - [`route`]: subscriptions and the routing table.
//! - [`runtime`], [`plugin`], [`catalog`]: the WebAssembly engine, one loaded plugin with its
//!   instance pool, and the plugins directory; [`plugin_log`]: plugins' log lines, capped.
//! - [`consumer`], [`lanes`], [`offsets`]: the fetch loop and group membership, per-key ordering
//!   and retry parking, contiguous commits; [`in_flight`]: what the host holds, bounded.
//! - [`retry`], [`dlq`]: the retry policy and the dead-letter writer; [`replay`]: `weft dlq
//!   inspect|replay`.
//! - [`host`]: a running host (start and graceful shutdown), [`tasks`]: its supervised tasks; [`dev`]: the self-contained `weft dev`.
//! - [`metrics`], [`http`], [`telemetry`], [`trace`]: Prometheus metrics, the `/metrics` `/healthz`
//!   `/readyz` `/plugins` listener, logging, and W3C trace-context continuation; [`health`]: what
//!   `/readyz` reports when the pipeline stops making progress.

mod bindings;
pub mod catalog;
pub mod config;
pub mod consumer;
pub mod decode;
pub mod dev;
pub mod dlq;
pub mod emit;
pub mod event;
pub mod headers;
pub mod health;
pub mod host;
pub mod http;
pub mod in_flight;
pub mod invoke;
pub mod kafka;
pub mod lanes;
pub mod load;
pub mod metrics;
pub mod offsets;
pub mod plain;
pub mod plugin;
pub mod plugin_log;
pub mod produce;
pub mod replay;
pub mod retry;
pub mod route;
pub mod runtime;
pub mod scaffold;
pub mod tasks;
pub mod telemetry;
pub mod trace;

pub use config::Config;
pub use host::{Host, run};
