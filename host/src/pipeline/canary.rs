//! Canary rollouts. A file `<id>.canary.wasm` beside `<id>.wasm` is a canary version of plugin
//! `<id>`: it serves as plugin `<id>.canary` (so metrics, logs, dead letters and `/plugins` name
//! the version that handled an event) and takes `[plugin.<id>.canary] share` of the keys — by key
//! hash, so all events of a key go to one version and stay in order (a keyless event goes by its
//! partition).
//!
//! Every attempt of either version is tallied. The canary is **rolled back** when its share of
//! failed attempts exceeds the stable version's by more than `max_failure_margin` (once both made
//! `min_attempts`), or when it traps `max_traps` times: its file is set aside
//! (`<id>.canary.wasm.rolled-back`, so a restart does not bring it back), its keys go back to the
//! stable version, and its events still under way — parked retries included — are handled by the
//! stable version, in order. An event the canary gives up on is never dead-lettered: the stable
//! version handles it. The canary is **promoted** by `weft plugin promote <id>`, or by itself with
//! `auto_promote` once it handled `promote_after_events` events for `promote_after_ms` within the
//! margin: its file replaces `<id>.wasm`, the hot swap every replacement takes.

use std::hash::{BuildHasher, BuildHasherDefault};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::config::CanaryConfig;
use crate::failure::Failure;

/// The suffix of a canary's plugin id (and of its file's stem).
pub const SUFFIX: &str = ".canary";

/// What a canary's file becomes when it is rolled back: no longer a plugin file.
pub const ROLLED_BACK: &str = ".rolled-back";

/// The stable plugin's id of canary `id` (`orders.canary` → `orders`); `None` if `id` is no canary.
pub fn base_of(id: &str) -> Option<&str> {
    id.strip_suffix(SUFFIX).filter(|base| !base.is_empty())
}

/// What one version's attempts came to since the canary came into service.
#[derive(Debug, Default)]
pub struct Tally {
    attempts: AtomicU64,
    failures: AtomicU64,
    traps: AtomicU64,
    handled: AtomicU64,
}

impl Tally {
    fn record(&self, result: Result<(), &Failure>) {
        self.attempts.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(()) => {
                self.handled.fetch_add(1, Ordering::Relaxed);
            }
            Err(failure) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                if matches!(
                    failure,
                    Failure::Trap(_)
                        | Failure::Timeout(_)
                        | Failure::MemoryLimit(_)
                        | Failure::FuelExhausted(_)
                ) {
                    self.traps.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Attempts, and the share of them that failed.
    pub fn failure_rate(&self) -> (u64, f64) {
        let attempts = self.attempts.load(Ordering::Relaxed);
        (attempts, self.failures.load(Ordering::Relaxed) as f64 / attempts.max(1) as f64)
    }

    /// Events handled.
    pub fn handled(&self) -> u64 {
        self.handled.load(Ordering::Relaxed)
    }

    /// Traps, timeouts, memory and fuel stops.
    pub fn traps(&self) -> u64 {
        self.traps.load(Ordering::Relaxed)
    }
}

/// What to do with a canary.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Keep serving it.
    Continue,
    /// Take it out, for this reason (with the figures).
    RollBack(String),
    /// Make it the stable version, for this reason.
    Promote(String),
}

/// One canary's rollout: its settings and what both versions did since it came into service.
/// Kept across swaps of the plugins in service, by the canary's digest.
#[derive(Debug)]
pub struct Rollout {
    /// `[plugin.<id>.canary]`.
    pub config: CanaryConfig,
    /// When the canary came into service.
    pub started: Instant,
    /// The stable version's attempts meanwhile.
    pub stable: Tally,
    /// The canary's attempts.
    pub canary: Tally,
    /// Rolled back or promoted: decided once.
    decided: AtomicBool,
    /// Rolled back: its keys go back to the stable version. (A promoted canary keeps its keys
    /// until it replaces the stable version, so no key goes back to the old version meanwhile.)
    rolled_back: AtomicBool,
}

impl Rollout {
    /// A rollout starting now.
    pub fn new(config: CanaryConfig) -> Self {
        Self {
            config,
            started: Instant::now(),
            stable: Tally::default(),
            canary: Tally::default(),
            decided: AtomicBool::new(false),
            rolled_back: AtomicBool::new(false),
        }
    }

    /// Whether the canary takes the event with `key` (or, keyless, of `partition`).
    pub fn takes(&self, key: Option<&[u8]>, partition: i32) -> bool {
        if self.rolled_back() {
            return false;
        }
        let hasher = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default();
        let hash = match key {
            Some(key) => hasher.hash_one(key),
            None => hasher.hash_one(partition),
        };
        (hash % 10_000) < (self.config.share * 10_000.0) as u64
    }

    /// Counts an attempt of the canary (`canary`) or of the stable version.
    pub fn record(&self, canary: bool, result: Result<(), &Failure>) {
        if canary { &self.canary } else { &self.stable }.record(result);
    }

    /// Whether the canary was rolled back: its keys and events go back to the stable version.
    pub fn rolled_back(&self) -> bool {
        self.rolled_back.load(Ordering::SeqCst)
    }

    /// Marks the rollout decided (`verdict` a rollback or a promotion); `true` for the one caller
    /// that did, who then acts on it.
    pub fn decide(&self, verdict: &Verdict) -> bool {
        let first = !self.decided.swap(true, Ordering::SeqCst);
        if first && matches!(verdict, Verdict::RollBack(_)) {
            self.rolled_back.store(true, Ordering::SeqCst);
        }
        first
    }

    /// What the figures say now.
    pub fn verdict(&self) -> Verdict {
        let config = &self.config;
        let (canary_attempts, canary_rate) = self.canary.failure_rate();
        let (stable_attempts, stable_rate) = self.stable.failure_rate();
        let figures = format!(
            "canary failed {:.1} % of {canary_attempts} attempts ({} traps), the stable version {:.1} % of {stable_attempts}",
            canary_rate * 100.0,
            self.canary.traps(),
            stable_rate * 100.0
        );
        if self.canary.traps() >= config.max_traps {
            return Verdict::RollBack(format!("{figures}: {} traps or more (max_traps)", config.max_traps));
        }
        let compared = canary_attempts >= config.min_attempts && stable_attempts >= config.min_attempts;
        if compared && canary_rate > stable_rate + config.max_failure_margin {
            return Verdict::RollBack(format!(
                "{figures}: more than {:.1} points above (max_failure_margin)",
                config.max_failure_margin * 100.0
            ));
        }
        let served = self.started.elapsed().as_millis() as u64 >= config.promote_after_ms;
        if config.auto_promote && compared && served && self.canary.handled() >= config.promote_after_events {
            return Verdict::Promote(format!(
                "{figures}, {} events handled over {:.0} s, within the margin",
                self.canary.handled(),
                self.started.elapsed().as_secs_f64()
            ));
        }
        Verdict::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rollout(config: CanaryConfig) -> Rollout {
        Rollout::new(config)
    }

    #[test]
    fn a_canary_id_names_its_stable_plugin() {
        assert_eq!(base_of("orders.canary"), Some("orders"));
        assert_eq!(base_of("orders"), None);
        assert_eq!(base_of(".canary"), None);
    }

    #[test]
    fn the_share_is_taken_by_key_and_a_key_stays_with_one_version() {
        let r = rollout(CanaryConfig { share: 0.25, ..CanaryConfig::default() });
        let taken = (0..10_000).filter(|n| r.takes(Some(format!("k{n}").as_bytes()), 0)).count();
        assert!((2_200..2_800).contains(&taken), "{taken} of 10,000 keys");
        assert_eq!(r.takes(Some(b"k7"), 0), r.takes(Some(b"k7"), 5), "the key decides, not the partition");
        let taken = r.takes(Some(b"k7"), 0);
        assert!(r.decide(&Verdict::Promote(String::new())));
        assert!(!r.decide(&Verdict::RollBack(String::new())), "decided once");
        assert_eq!(
            r.takes(Some(b"k7"), 0),
            taken,
            "a promoted canary keeps its keys until it replaces the stable one"
        );
        let rolled = rollout(CanaryConfig { share: 1.0, ..CanaryConfig::default() });
        assert!(rolled.takes(Some(b"k7"), 0));
        assert!(rolled.decide(&Verdict::RollBack(String::new())));
        assert!(
            (0..100).all(|n| !rolled.takes(Some(format!("k{n}").as_bytes()), 0)),
            "a rolled-back one takes none"
        );
    }

    #[test]
    fn a_canary_failing_more_than_the_margin_is_rolled_back_with_figures() {
        let r =
            rollout(CanaryConfig { min_attempts: 10, max_failure_margin: 0.1, ..CanaryConfig::default() });
        let failed = Failure::Permanent("no".into());
        for n in 0..20 {
            r.record(false, if n % 20 == 0 { Err(&failed) } else { Ok(()) });
            r.record(true, if n % 2 == 0 { Err(&failed) } else { Ok(()) });
        }
        match r.verdict() {
            Verdict::RollBack(why) => {
                assert!(why.contains("50.0 % of 20") && why.contains("5.0 % of 20"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn traps_roll_back_early_and_a_good_canary_is_promoted_when_asked_to() {
        let r = rollout(CanaryConfig { max_traps: 2, ..CanaryConfig::default() });
        r.record(true, Err(&Failure::Trap("boom".into())));
        assert_eq!(r.verdict(), Verdict::Continue);
        r.record(true, Err(&Failure::Timeout(std::time::Duration::from_secs(1))));
        assert!(matches!(r.verdict(), Verdict::RollBack(_)));
        let good = rollout(CanaryConfig {
            min_attempts: 5,
            auto_promote: true,
            promote_after_events: 5,
            promote_after_ms: 0,
            ..CanaryConfig::default()
        });
        for _ in 0..5 {
            good.record(true, Ok(()));
            good.record(false, Ok(()));
        }
        assert!(matches!(good.verdict(), Verdict::Promote(_)));
    }
}
