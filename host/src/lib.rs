//! Weft: runs sandboxed WebAssembly event handlers on Kafka.
//!
//! Records flow one way: the consumer decodes each record as a CloudEvent (both Kafka binding
//! modes), routes it to the plugins whose subscriptions match, hands it to the lane of its key, and
//! a lane calls each plugin's `handle` in a WebAssembly component. When every plugin is done with
//! an event its offset may be committed, never past an unfinished event of the same partition.
//!
//! # Layout
//! Folders by stage, from top to bottom; a module imports its own stage and the ones below it,
//! never one above (`layering.rs` checks it):
//! - [`cli`]: the commands beside `weft run` (`main.rs` parses the command line).
//! - [`host`]: a running host: the stages assembled, started and shut down.
//! - [`kafka_in`]: the group member, the fetch loop, decoding, pauses, commits.
//! - [`pipeline`]: the plugins in service and routing, lanes, attempts and retries, offsets.
//! - [`sandbox`]: the WebAssembly engine, plugins, their instances and host imports.
//! - [`kafka_out`]: emitted events and dead letters.
//! - [`schemas`]: JSON Schemas and Avro with a schema registry: events checked before dispatch.
//! - [`kafka`]: Kafka client configuration and headers, shared by Kafka in and out.
//! - [`ops`]: metrics, health, the HTTP listener, logging and tracing, supervised tasks.
//! - [`config`]: the configuration, a file per section.
//! - [`event`], [`failure`]: the CloudEvent model, and why an attempt failed.

pub mod cli;
pub mod config;
pub mod event;
pub mod failure;
pub mod host;
pub mod kafka;
pub mod kafka_in;
pub mod kafka_out;
pub mod ops;
pub mod pipeline;
pub mod sandbox;
pub mod schemas;

pub use config::Config;
pub use host::{Host, run};

#[cfg(test)]
mod layering;
