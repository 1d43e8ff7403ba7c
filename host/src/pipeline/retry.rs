//! What a failed attempt means for delivery: try again (after the policy's backoff), wait without
//! counting the attempt (the cluster, not the event, is at fault), or give up into the dead-letter
//! topic. The policy's values and backoff arithmetic are configuration (`config/retry.rs`).

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::failure::Failure;
use crate::kafka_out::dead_letters::DlqReason;

/// The delivery decision after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Try again after this wait, without counting the failed attempt (the cause lies outside the
    /// event and the plugin).
    Wait(Duration),
    /// Try again after this wait.
    Retry(Duration),
    /// Give up: write the event to the dead-letter topic.
    DeadLetter(DlqReason),
}

/// What to do after `failure` on attempt number `attempt` under `policy`.
pub fn decide(policy: &RetryPolicy, failure: &Failure, attempt: u32) -> Decision {
    match failure {
        Failure::Permanent(_) => return Decision::DeadLetter(DlqReason::PermanentError),
        // The same code with the same fuel stops at the same instruction: trying again cannot help.
        Failure::FuelExhausted(_) => return Decision::DeadLetter(DlqReason::FuelExhausted),
        // The broker, not the event, is at fault: wait for it without using up the event's
        // attempts, so an outage does not dead-letter healthy events.
        Failure::EmitUnavailable(_) => return Decision::Wait(policy.delay(attempt, None)),
        _ => {}
    }
    if attempt < policy.max_attempts {
        let hint = match failure {
            Failure::Retryable { delay, .. } => *delay,
            _ => None,
        };
        return Decision::Retry(policy.delay(attempt, hint));
    }
    Decision::DeadLetter(match failure {
        Failure::Trap(_) => DlqReason::Trap,
        Failure::Timeout(_) => DlqReason::Timeout,
        Failure::MemoryLimit(_) => DlqReason::MemoryLimit,
        _ => DlqReason::RetriesExhausted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_follow_the_failure_and_the_attempt() {
        // Without jitter the waits are exact (the backoff itself is tested in config/retry.rs).
        let p = RetryPolicy { jitter: 0.0, ..RetryPolicy::default() };
        let retryable = Failure::Retryable { reason: "down".into(), delay: None };
        assert_eq!(decide(&p, &retryable, 1), Decision::Retry(Duration::from_secs(1)));
        assert_eq!(decide(&p, &retryable, 5), Decision::DeadLetter(DlqReason::RetriesExhausted));
        assert_eq!(
            decide(&p, &Failure::Permanent("bad".into()), 1),
            Decision::DeadLetter(DlqReason::PermanentError)
        );
        assert_eq!(
            decide(&p, &Failure::Trap("unreachable".into()), 2),
            Decision::Retry(Duration::from_secs(2))
        );
        assert_eq!(
            decide(&p, &Failure::Trap("unreachable".into()), 5),
            Decision::DeadLetter(DlqReason::Trap)
        );
        assert_eq!(
            decide(&p, &Failure::Timeout(Duration::from_secs(5)), 5),
            Decision::DeadLetter(DlqReason::Timeout)
        );
        assert_eq!(
            decide(&p, &Failure::FuelExhausted(100), 1),
            Decision::DeadLetter(DlqReason::FuelExhausted),
            "fuel runs out at the same place every time"
        );
        let outage = Failure::EmitUnavailable("all brokers down".into());
        assert_eq!(decide(&p, &outage, 5), Decision::Wait(Duration::from_secs(16)), "never dead-lettered");
        let too_large = Failure::Emit("message too large".into());
        assert_eq!(decide(&p, &too_large, 5), Decision::DeadLetter(DlqReason::RetriesExhausted));
    }
}
