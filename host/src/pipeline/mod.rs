//! The delivery pipeline: from a decoded event to a finished one. Which plugins an event goes to,
//! the lane that keeps its key in order, its attempts and retries, and the offset bookkeeping that
//! decides what may be committed.
//!
//! # Layout
//! - [`catalog`]: the plugins directory and the set in service (hot reload); [`route`]: the
//!   routing table over that set; [`in_service`]: that set, with its canaries and shadows;
//!   [`shadow`]: shadow runs compared with the stable version; [`canary`]: canary rollouts (share of keys, rollback,
//!   promotion).
//! - [`job`]: one routed event; [`lanes`]: the lanes' front (start, hand a job to its key's lane);
//!   [`lane`]: a lane's worker (per-key order, parked retries, acknowledgement waits);
//!   [`attempt`]: one attempt of every pending plugin; [`retry`]: what a failure means for
//!   delivery.
//! - [`offsets`]: in-flight offsets per partition and the contiguous commit position;
//!   [`in_flight`]: the events and bytes the host holds; [`context`]: what the fetch loop and every
//!   lane share; [`handoff`]: exactly-once delivery's way from a finished event to its transaction.
//!
//! Imports: the sandbox (plugins and their calls), Kafka out (dead letters, emit acknowledgements)
//! and the layers below. Nothing here reads from Kafka.

pub mod attempt;
pub mod canary;
pub mod catalog;
pub mod context;
pub mod handoff;
pub mod in_flight;
pub mod in_service;
pub mod job;
pub mod lane;
pub mod lanes;
pub mod offsets;
pub mod retry;
pub mod route;
pub mod shadow;
