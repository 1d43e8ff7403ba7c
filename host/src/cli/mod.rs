//! The commands beside `weft run`: each builds on the host or on its parts.
//!
//! # Layout
//! - [`commands`]: the command line's arguments and what each subcommand does.
//! - [`dev`]: `weft dev`, everything local with an embedded default; [`load`]: `weft load`.
//! - [`invoke`]: `weft invoke` and `weft check`, a handler with no Kafka.
//! - [`produce`]: `weft produce`, records described in JSON; [`dlq`]: `weft dlq inspect|replay`.
//! - [`scaffold`]: `weft plugin new`.
//!
//! Imports: anything below (the host, every stage).

pub mod commands;
pub mod dev;
pub mod dlq;
pub mod invoke;
pub mod load;
pub mod produce;
pub mod scaffold;
