//! Kafka in: the consumer-group member and everything between a fetched record and a lane job.
//!
//! # Layout
//! - [`group`]: group membership callbacks (revocation drains and commits, assignment, client
//!   errors kept for `/readyz`); [`statistics`]: librdkafka's statistics as metrics.
//! - [`fetch`]: the fetch loop, over an [`intake`]; [`accept`]: one record taken in (offset registered, headers read,
//!   decoded, routed, made a job); [`backlog`]: jobs waiting for full lanes; [`pauses`]: which
//!   partitions fetch; [`commit`]: finished positions stored and committed, and the record of
//!   events finished past them; [`transactions`]: exactly-once delivery's transaction committer.
//! - [`decode`]: the CloudEvents Kafka binding (binary and structured mode); [`plain`]: plain JSON
//!   and bytes topics mapped to CloudEvents.
//!
//! Imports: the pipeline, the sandbox's event types, Kafka out (dead-letter records), and the
//! layers below them. Nothing here calls a plugin.

pub mod accept;
pub mod backlog;
pub mod commit;
pub mod decode;
pub mod fetch;
pub mod group;
pub mod intake;
pub mod pauses;
pub mod plain;
pub mod statistics;
pub mod transactions;
