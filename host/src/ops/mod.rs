//! Operations: what tells an operator how the host is doing, and keeps it honest about it.
//!
//! # Layout
//! - [`metrics`]: every `weft_*` metric, defined in one place; [`initial_series`]: the series
//!   made at zero before the first event.
//! - [`health`]: why the host is not ready (a task ended, dead-letter writes failing, a stalled
//!   partition); [`tasks`]: the supervised long-lived tasks.
//! - [`http`]: the `/metrics`, `/healthz`, `/readyz`, `/plugins` listener.
//! - [`telemetry`]: logging and span export; [`trace`]: W3C trace-context continuation.
//!
//! Imports: configuration and the event type only. What the listener shows of the pipeline comes
//! through [`http::Status`], implemented by the host.

pub mod health;
pub mod http;
pub mod initial_series;
pub mod metrics;
pub mod tasks;
pub mod telemetry;
pub mod trace;
