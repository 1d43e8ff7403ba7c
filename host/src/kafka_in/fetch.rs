//! The fetch loop: polls the consumer, takes each record in ([`accept`](super::accept)), hands
//! the jobs to their lanes (or to the [`Backlog`] while a lane is full), decides which partitions
//! fetch ([`Pauses`]), stores finished positions, and follows the catalog's topics. It knows
//! nothing about WebAssembly.

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use tokio::sync::watch;

use crate::kafka_in::accept::{SeriesByTopic, accept};
use crate::kafka_in::backlog::Backlog;
use crate::kafka_in::commit::{STORE_INTERVAL, store_positions};
use crate::kafka_in::intake::Intake;
use crate::kafka_in::pauses::Pauses;
use crate::pipeline::catalog::Catalog;
use crate::pipeline::lanes::Lanes;

/// Fetched events that may wait for full lanes before the loop stops taking records.
const MAX_HELD: usize = 1_024;

/// Records already fetched that the loop takes in at most before handing them to their lanes.
const TAKE_TOGETHER: usize = 64;

/// Fetches until `stop` turns true: decode, route with the plugins in service, hand to a lane.
/// Follows the catalog: when the topics the plugins need change, the subscription changes with them.
pub async fn fetch_loop(
    intake: Arc<Intake>,
    catalog: Arc<Catalog>,
    lanes: Lanes,
    mut stop: watch::Receiver<bool>,
) {
    let mut swaps = catalog.swaps();
    let mut subscribed: Vec<String> = Vec::new();
    follow_topics(&intake, &catalog.in_service().topics, &mut subscribed);
    let mut backlog = Backlog::new(lanes.count());
    let mut series = SeriesByTopic::default();
    // The events taken in together; kept across fetches, so its buffer is allocated once.
    let mut jobs = Vec::with_capacity(TAKE_TOGETHER);
    // One stream for the whole loop: `recv()` would register and drop a waker slot per record.
    let consumer = intake.consumer.clone();
    let mut messages = consumer.stream();
    let mut pauses = Pauses::default();
    let mut tick = tokio::time::interval(STORE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if !backlog.send(&lanes) {
            return;
        }
        let stuck = backlog.stuck();
        pauses.apply(&intake, intake.in_flight.over(), stuck, false);
        if stuck && pauses.waiting.is_empty() {
            pauses.wait_for(&intake, backlog.partitions());
        }
        let take = backlog.waiting() < MAX_HELD || stuck;
        let room = backlog.first_lane().map(|lane| lanes.room_in(lane));
        let message = tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => break,
            _ = tick.tick() => {
                // With exactly-once delivery, offsets are committed by the transactions instead.
                if !intake.pipeline.exactly_once() {
                    store_positions(&intake.pipeline.tracker, intake.consumer.as_ref());
                }
                pauses.recount(&intake);
                if stuck {
                    pauses.wait_for(&intake, backlog.partitions());
                }
                continue;
            }
            Ok(()) = swaps.changed() => {
                let live = catalog.in_service();
                follow_topics(&intake, &live.topics, &mut subscribed);
                pauses.take_back(&intake, &live);
                continue;
            }
            _ = async { room.expect("guarded").await }, if room.is_some() => continue,
            Some(message) = messages.next(), if take => message,
        };
        match message {
            Ok(first) => {
                // Records already fetched are taken in together and handed to their lanes after:
                // a lane woken once gets several events, instead of one wake-up (and often one
                // thread parked and woken) per event.
                let mut next = Some(first);
                while let Some(message) = next.take() {
                    let live = catalog.in_service();
                    if live.subscribes(message.topic()) {
                        jobs.extend(accept(&intake, &live, &mut series, &message));
                        pauses.check(&intake, message.topic(), message.partition());
                    } else {
                        pauses.set_aside(&intake, &message);
                    }
                    if jobs.len() < TAKE_TOGETHER {
                        match messages.next().now_or_never() {
                            Some(Some(Ok(message))) => next = Some(message),
                            Some(Some(Err(error))) => tracing::warn!(%error, "consumer error"),
                            Some(None) | None => {}
                        }
                    }
                }
                for job in jobs.drain(..) {
                    let waiting = stuck.then(|| (job.ticket.topic.clone(), job.ticket.partition));
                    if !backlog.offer(&lanes, job)
                        && let Some((topic, partition)) = waiting
                    {
                        pauses.wait_also(&intake, &topic, partition);
                    }
                }
                // A partition may have been assigned meanwhile, or a message fetched before a pause.
                pauses.apply(&intake, pauses.all, stuck, true);
            }
            Err(error) => {
                tracing::warn!(%error, "consumer error");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Subscribes to `topics` if they differ from `subscribed`. Partitions of topics no plugin needs any
/// more are revoked (after the calls running on them return, and a commit); records of them fetched
/// before that are set aside (see [`Pauses::set_aside`]).
fn follow_topics(intake: &Intake, topics: &[String], subscribed: &mut Vec<String>) {
    if topics == subscribed.as_slice() {
        return;
    }
    if topics.is_empty() {
        intake.consumer.unsubscribe();
        tracing::warn!("no plugin subscribes to any topic; idle");
    } else {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        if let Err(error) = intake.consumer.subscribe(&names) {
            // The previous subscription stays; the next swap tries again.
            return tracing::error!(%error, topics = %topics.join(","), "cannot change the subscription");
        }
        tracing::info!(topics = %topics.join(","), "subscribed");
    }
    *subscribed = topics.to_vec();
}
