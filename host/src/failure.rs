//! Why one attempt of a plugin on an event did not succeed: what the sandbox reports (the plugin's
//! own answer, a trap, a limit) and what the broker said of the events it emitted. The pipeline's
//! retry policy turns it into a delivery decision; logs and metrics use its bounded reason code.

use std::time::Duration;

/// Why one call into a plugin did not handle the event. The consumer maps these to its delivery
/// policy; the `reason` codes are the bounded values used in logs and metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The plugin returned `retryable`.
    #[error("retryable error: {reason}")]
    Retryable {
        /// The plugin's message.
        reason: String,
        /// The plugin's delay hint.
        delay: Option<Duration>,
    },
    /// The plugin returned `permanent`.
    #[error("permanent error: {0}")]
    Permanent(String),
    /// The call trapped (panic, unreachable, out-of-bounds access, memory limit).
    #[error("trap: {0}")]
    Trap(String),
    /// The call ran past the plugin's deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The instance tried to grow its memory past the plugin's limit.
    #[error("memory limit: {0}")]
    MemoryLimit(String),
    /// The call burned all the fuel it was given.
    #[error("fuel exhausted after {0} units")]
    FuelExhausted(u64),
    /// An event the plugin emitted was refused by the broker for a reason that retrying will not
    /// change soon (too large, not authorized, invalid).
    #[error("emitted event not delivered: {0}")]
    Emit(String),
    /// An event the plugin emitted was not acknowledged because the cluster is unreachable or
    /// unhealthy (timeouts, no leader, not enough replicas).
    #[error("emitted event not delivered, cluster unavailable: {0}")]
    EmitUnavailable(String),
}

impl Failure {
    /// A bounded code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Retryable { .. } => "retryable_error",
            Failure::Permanent(_) => "permanent_error",
            Failure::Trap(_) => "trap",
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit(_) => "memory_limit",
            Failure::FuelExhausted(_) => "fuel_exhausted",
            Failure::Emit(_) => "emit_failed",
            Failure::EmitUnavailable(_) => "emit_unavailable",
        }
    }
}
