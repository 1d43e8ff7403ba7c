//! `[retry]` and `[plugin.<id>.retry]`: how many attempts an event gets and how long to wait between
//! them (exponential backoff with jitter, capped). What a failure means for delivery is decided in
//! `pipeline/retry.rs`.

use std::time::Duration;

use serde::Deserialize;

/// `[retry]` and `[plugin.<id>.retry]`: every field optional; unset fields fall back to the global
/// policy, then to the defaults (1 s initial, ×2, 60 s max, 5 attempts, 20 % jitter).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySettings {
    /// Attempts in total, the first included. `1` disables retries.
    pub max_attempts: Option<u32>,
    /// Wait before the second attempt, in milliseconds.
    pub initial_backoff_ms: Option<u64>,
    /// Factor the wait grows by after each attempt.
    pub multiplier: Option<f64>,
    /// Longest wait between two attempts, in milliseconds. Also caps a plugin's delay hint.
    pub max_backoff_ms: Option<u64>,
    /// Random spread of each wait, as a fraction (`0.2`: ±20 %), so retries of many events do not
    /// arrive together.
    pub jitter: Option<f64>,
}

/// A resolved retry policy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in total.
    pub max_attempts: u32,
    /// First wait.
    pub initial_backoff: Duration,
    /// Growth factor.
    pub multiplier: f64,
    /// Longest wait.
    pub max_backoff: Duration,
    /// Jitter fraction, 0..=1.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_secs(1),
            multiplier: 2.0,
            max_backoff: Duration::from_secs(60),
            jitter: 0.2,
        }
    }
}

impl RetryPolicy {
    /// `settings` on top of `self`.
    pub fn with(&self, settings: &RetrySettings) -> Self {
        Self {
            max_attempts: settings.max_attempts.unwrap_or(self.max_attempts),
            initial_backoff: settings.initial_backoff_ms.map_or(self.initial_backoff, Duration::from_millis),
            multiplier: settings.multiplier.unwrap_or(self.multiplier),
            max_backoff: settings.max_backoff_ms.map_or(self.max_backoff, Duration::from_millis),
            jitter: settings.jitter.unwrap_or(self.jitter),
        }
    }

    /// Checks the values; `table` names the config table in the error.
    pub fn validate(&self, table: &str) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_attempts >= 1, "{table}.max_attempts must be at least 1");
        anyhow::ensure!(
            !self.initial_backoff.is_zero(),
            "{table}.initial_backoff_ms must be at least 1 (with no wait, retries run in a hot loop)"
        );
        anyhow::ensure!(
            self.multiplier.is_finite() && self.multiplier >= 1.0,
            "{table}.multiplier must be 1 or more"
        );
        anyhow::ensure!((0.0..=1.0).contains(&self.jitter), "{table}.jitter must be between 0 and 1");
        anyhow::ensure!(
            self.max_backoff >= self.initial_backoff,
            "{table}.max_backoff_ms must not be below initial_backoff_ms"
        );
        Ok(())
    }

    /// The wait after failed attempt number `attempt` (1-based) without jitter: the plugin's hint
    /// if it gave one, else `initial × multiplier^(attempt-1)`; never above `max_backoff`.
    pub fn base_delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let delay = hint.unwrap_or_else(|| {
            let factor = self.multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
            Duration::try_from_secs_f64(self.initial_backoff.as_secs_f64() * factor)
                .unwrap_or(self.max_backoff)
        });
        delay.min(self.max_backoff)
    }

    /// [`RetryPolicy::base_delay`] spread by ±`jitter`, still capped at `max_backoff`.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let base = self.base_delay(attempt, hint);
        let spread = 1.0 + self.jitter * (rand::random::<f64>() * 2.0 - 1.0);
        base.mul_f64(spread).min(self.max_backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_jitter() -> RetryPolicy {
        RetryPolicy { jitter: 0.0, ..RetryPolicy::default() }
    }

    #[test]
    fn defaults_are_one_second_doubling_to_a_minute_five_attempts() {
        let p = no_jitter();
        let delays: Vec<u64> = (1..=8).map(|a| p.delay(a, None).as_millis() as u64).collect();
        assert_eq!(delays, [1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000]);
        assert_eq!(p.max_attempts, 5);
    }

    #[test]
    fn hint_is_honoured_within_the_cap() {
        let p = no_jitter();
        assert_eq!(p.delay(1, Some(Duration::from_millis(250))), Duration::from_millis(250));
        assert_eq!(p.delay(1, Some(Duration::from_secs(600))), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy { jitter: 0.5, ..RetryPolicy::default() };
        for _ in 0..200 {
            let d = p.delay(2, None);
            assert!(d >= Duration::from_millis(1_000) && d <= Duration::from_millis(3_000), "{d:?}");
        }
    }

    #[test]
    fn overrides_apply_field_by_field_and_bad_values_are_named() {
        let p = RetryPolicy::default().with(&RetrySettings { max_attempts: Some(2), ..Default::default() });
        assert_eq!(p.max_attempts, 2);
        assert_eq!(p.initial_backoff, Duration::from_secs(1));
        let bad = RetryPolicy::default().with(&RetrySettings { multiplier: Some(0.5), ..Default::default() });
        assert!(
            bad.validate("plugin.audit.retry")
                .unwrap_err()
                .to_string()
                .contains("plugin.audit.retry.multiplier")
        );
    }
}
