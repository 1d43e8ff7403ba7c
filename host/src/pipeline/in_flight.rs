//! What the host holds of events fetched and not finished: how many (`weft_events_in_flight`) and
//! how many bytes of record data. The bytes bound the host's memory: past
//! `pipeline.max_in_flight_bytes` the fetch loop pauses fetching until enough events finish, so
//! large records or a stuck partition cannot grow the process without limit.
//!
//! Each event carries a [`Share`] from the moment it is fetched; dropping it — when the event
//! finishes, is dead-lettered, is let go (revoked partition) or abandoned (shutdown) — gives the
//! count and the bytes back, so no exit path can leak them.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus::IntGauge;

/// The host's in-flight events.
#[derive(Debug)]
pub struct InFlight {
    gauge: IntGauge,
    bytes: AtomicUsize,
    max_bytes: usize,
}

impl InFlight {
    /// Counts into `gauge`; fetching should pause past `max_bytes`.
    pub fn new(gauge: IntGauge, max_bytes: usize) -> Arc<Self> {
        Arc::new(Self { gauge, bytes: AtomicUsize::new(0), max_bytes })
    }

    /// Takes a share for one event of `bytes` bytes.
    pub fn take(self: &Arc<Self>, bytes: usize) -> Share {
        self.gauge.inc();
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        Share { in_flight: self.clone(), bytes }
    }

    /// Bytes of record data held now.
    pub fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Whether the host holds more than it should: fetching must wait.
    pub fn over(&self) -> bool {
        self.bytes() > self.max_bytes
    }
}

/// One event's part of [`InFlight`], given back on drop.
#[derive(Debug)]
pub struct Share {
    in_flight: Arc<InFlight>,
    bytes: usize,
}

impl Drop for Share {
    fn drop(&mut self) {
        self.in_flight.gauge.dec();
        self.in_flight.bytes.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_give_back_what_they_took() {
        let gauge = IntGauge::new("in_flight", "test").unwrap();
        let in_flight = InFlight::new(gauge.clone(), 1_000);
        let a = in_flight.take(600);
        let b = in_flight.take(600);
        assert_eq!((gauge.get(), in_flight.bytes()), (2, 1_200));
        assert!(in_flight.over());
        drop(a);
        assert_eq!((gauge.get(), in_flight.bytes()), (1, 600));
        assert!(!in_flight.over());
        drop(b);
        assert_eq!((gauge.get(), in_flight.bytes()), (0, 0));
    }
}
