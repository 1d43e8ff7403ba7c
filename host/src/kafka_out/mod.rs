//! Kafka out: what Weft writes. Events plugins emit (CloudEvents binary mode, acknowledged before
//! their input counts as handled) and dead letters (the original record byte for byte, with headers
//! that say why).
//!
//! # Layout
//! - [`emit`]: the emit producer, the capture buffer of `weft invoke`, and [`Emits`](emit::Emits),
//!   one call's emitted events on their way to the broker.
//! - [`outgoing`]: a record held with its event, written by the transaction that commits it
//!   (exactly-once delivery).
//! - [`dead_letters`]: the dead-letter writer, its headers, [`DlqReason`](dead_letters::DlqReason),
//!   and the creation of dead-letter topics.
//!
//! Imports: the Kafka client glue, operations (metrics, health) and the layers below.

pub mod dead_letters;
pub mod emit;
pub mod outgoing;
