//! Weft: runs sandboxed WebAssembly event handlers on Kafka.
//!
//! Records flow one way: the consumer decodes each record as a CloudEvent (both Kafka binding
//! modes), routes it to the plugins whose subscriptions match, hands it to the lane of its key, and
//! a lane calls each plugin's `handle` in a WebAssembly component. When every plugin is done with
//! an event its offset may be committed, never past an unfinished event of the same partition.
//!
//! # Layout
//! TODO

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

pub use config::Config;
pub use host::{Host, run};
