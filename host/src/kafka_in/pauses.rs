//! Which assigned partitions the fetch loop keeps from fetching, and why.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::kafka_in::group::describe;
use crate::kafka_in::intake::Intake;
use crate::pipeline::catalog::InService;

/// Which assigned partitions the fetch loop keeps from fetching, and why:
/// - all of them while the host holds `pipeline.max_in_flight_mib` of records;
/// - those with events that have waited [`HOLD_BEFORE_PAUSE`](super::backlog::HOLD_BEFORE_PAUSE) for their full lanes;
/// - a partition with `pipeline.max_uncommitted` events fetched and not committed (its head is
///   stuck: a parked retry, a call that does not return), until it drops below three quarters;
/// - a partition of a topic no plugin subscribes to any more, from the first record of it that
///   was not handled: the consumer is sent back to that record, so nothing past it can be
///   committed; it is fetched again if a plugin subscribes to the topic again, or by the next
///   owner once the partition is revoked.
#[derive(Default)]
pub struct Pauses {
    /// Every partition is paused (in-flight bytes at their cap).
    pub all: bool,
    /// Events wait for full lanes: `waiting` holds their partitions.
    stuck: bool,
    pub waiting: HashSet<(String, i32)>,
    crowded: HashSet<(String, i32)>,
    aside: HashSet<(String, i32)>,
}

impl Pauses {
    /// Finds the partitions with too many uncommitted events (every store tick, not per record)
    /// and pauses or resumes them.
    pub fn recount(&mut self, intake: &Intake) {
        let max = intake.config.pipeline.max_uncommitted;
        let crowded: HashSet<(String, i32)> = intake
            .pipeline
            .tracker
            .uncommitted()
            .into_iter()
            .filter(|(tp, n)| *n >= max || (self.crowded.contains(tp) && *n > max / 4 * 3))
            .map(|(tp, _)| tp)
            .collect();
        if crowded == self.crowded {
            return;
        }
        for (topic, partition) in crowded.difference(&self.crowded) {
            warn_crowded(topic, *partition, max);
        }
        self.crowded = crowded;
        self.update(intake, self.all);
    }

    /// Pauses the partition of the record just fetched if it reached `pipeline.max_uncommitted`
    /// (cheap enough for every record; [`Pauses::recount`] resumes it).
    pub fn check(&mut self, intake: &Intake, topic: &str, partition: i32) {
        let max = intake.config.pipeline.max_uncommitted;
        if intake.pipeline.tracker.in_flight(topic, partition) < max {
            return;
        }
        if self.crowded.insert((topic.to_string(), partition)) {
            warn_crowded(topic, partition, max);
            pause_one(intake, topic, partition);
        }
    }

    /// Pauses every assigned partition while `all`, else only the crowded, set-aside and (while
    /// `stuck`) waiting ones. `again`: re-pause even if nothing changed (a partition may have
    /// been assigned since).
    pub fn apply(&mut self, intake: &Intake, all: bool, stuck: bool, again: bool) {
        if stuck != self.stuck {
            self.stuck = stuck;
            if !stuck {
                self.waiting.clear();
            }
            return self.update(intake, all);
        }
        if all != self.all || (again && all) {
            self.update(intake, all);
        }
    }

    /// While stuck: the partitions whose events wait for full lanes are `waiting` now.
    pub fn wait_for(&mut self, intake: &Intake, waiting: HashSet<(String, i32)>) {
        if waiting != self.waiting {
            self.waiting = waiting;
            self.update(intake, self.all);
        }
    }

    /// While stuck: an event of this partition waits too.
    pub fn wait_also(&mut self, intake: &Intake, topic: &str, partition: i32) {
        if !self.waiting.contains(&(topic.to_string(), partition)) {
            self.waiting.insert((topic.to_string(), partition));
            pause_one(intake, topic, partition);
        }
    }

    fn update(&mut self, intake: &Intake, all: bool) {
        let assignment = match intake.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => return tracing::warn!(%error, "cannot read the assignment"),
        };
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for element in assignment.elements() {
            let tp = (element.topic().to_string(), element.partition());
            let paused =
                all || self.crowded.contains(&tp) || self.aside.contains(&tp) || self.waiting.contains(&tp);
            let list = if paused { &mut pause } else { &mut resume };
            list.add_partition(element.topic(), element.partition());
        }
        if pause.count() > 0
            && let Err(error) = intake.consumer.pause(&pause)
        {
            tracing::warn!(%error, partitions = %describe(&pause), "cannot pause fetching");
        }
        if resume.count() > 0
            && let Err(error) = intake.consumer.resume(&resume)
        {
            tracing::warn!(%error, partitions = %describe(&resume), "cannot resume fetching");
        }
        if all != self.all {
            tracing::debug!(
                "fetching {}",
                if all { "paused: in-flight records at their cap" } else { "resumed" }
            );
        }
        intake.pipeline.metrics.fetch_paused.set(i64::from(all || !self.waiting.is_empty()));
        self.all = all;
    }

    /// A record of a topic no plugin subscribes to any more (fetched before the subscription
    /// changed, or the change failed): pause its partition and go back to it.
    pub fn set_aside(&mut self, intake: &Intake, message: &BorrowedMessage<'_>) {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        if !self.aside.insert((topic.to_string(), partition)) {
            return;
        }
        tracing::debug!(
            topic,
            partition,
            offset,
            "record of a topic no plugin subscribes to any more; set aside"
        );
        pause_one(intake, topic, partition);
        // Without blocking: the position moves back before fetching resumes.
        if let Err(error) = intake.consumer.seek(topic, partition, Offset::Offset(offset), Duration::ZERO) {
            tracing::warn!(%error, topic, partition, offset, "cannot go back to a record set aside");
        }
    }

    /// Resumes the partitions set aside whose topic a plugin subscribes to again, and forgets the
    /// ones no longer assigned.
    pub fn take_back(&mut self, intake: &Intake, live: &InService) {
        if self.aside.is_empty() {
            return;
        }
        let assigned: HashSet<(String, i32)> = intake
            .consumer
            .assignment()
            .map(|a| a.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect())
            .unwrap_or_default();
        let mut resume = TopicPartitionList::new();
        let all = self.all;
        self.aside.retain(|(topic, partition)| {
            if !assigned.contains(&(topic.clone(), *partition)) {
                return false;
            }
            if live.subscribes(topic) {
                if !all {
                    resume.add_partition(topic, *partition);
                }
                return false;
            }
            true
        });
        if resume.count() > 0
            && let Err(error) = intake.consumer.resume(&resume)
        {
            tracing::warn!(%error, "cannot resume partitions set aside");
        }
    }
}

fn warn_crowded(topic: &str, partition: i32, max: usize) {
    tracing::warn!(
        topic,
        partition,
        max,
        "partition has too many uncommitted events; fetching paused for it"
    );
}

/// Stops fetching one partition.
fn pause_one(intake: &Intake, topic: &str, partition: i32) {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    if let Err(error) = intake.consumer.pause(&tpl) {
        tracing::warn!(%error, topic, partition, "cannot pause fetching");
    }
}
