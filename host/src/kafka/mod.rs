//! What Kafka in and Kafka out share: client configuration built from `[kafka]` (consumer,
//! producer, admin), which broker errors are final, and record headers as bytes.
//!
//! # Layout
//! - [`client`]: librdkafka configurations and `refused_for_good`.
//! - [`headers`]: reading and building headers without rdkafka's UTF-8 assumptions.
//!
//! Imports: configuration only.

pub mod client;
pub mod headers;
