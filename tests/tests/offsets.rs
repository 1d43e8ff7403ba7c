//! The offset store as wired to a real librdkafka consumer (mock cluster): eight threads finish
//! every event of a partition in interleaved order, each storing positions as it goes, and the
//! commit that follows is the end of the partition. The interleaving that used to move a stored
//! offset back is reproduced deterministically by the unit test
//! `offsets::tests::a_slow_store_cannot_be_overtaken_by_a_later_position`; this one checks that
//! `store_positions` hands the tracker's positions to librdkafka and that a commit carries them.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weft::kafka_in::commit::store_positions;
use weft::pipeline::offsets::OffsetTracker;

const EVENTS: i64 = 20_000;
const LANES: usize = 8;

#[test]
fn positions_stored_by_concurrent_finishers_are_what_the_commit_carries() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("orders", 1, 1).unwrap();
    for round in 0..3 {
        let group = format!("offsets-{round}");
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", &group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .unwrap();
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset("orders", 0, Offset::Beginning).unwrap();
        consumer.assign(&assignment).unwrap();

        let tracker = OffsetTracker::new();
        let tickets: Vec<_> = (0..EVENTS).map(|offset| tracker.begin("orders", 0, offset)).collect();
        std::thread::scope(|scope| {
            for lane in 0..LANES {
                let (tracker, consumer, tickets) = (&tracker, &consumer, &tickets);
                scope.spawn(move || {
                    for ticket in tickets.iter().skip(lane).step_by(LANES) {
                        tracker.finish(ticket);
                        store_positions(tracker, consumer);
                    }
                });
            }
        });
        // What shutdown does: store what finished, commit synchronously.
        store_positions(&tracker, &consumer);
        consumer.commit_consumer_state(CommitMode::Sync).unwrap();
        let committed = consumer.committed(Duration::from_secs(10)).unwrap();
        let offset = committed.find_partition("orders", 0).unwrap().offset();
        assert_eq!(
            offset,
            Offset::Offset(EVENTS),
            "round {round}: every event finished, yet the commit fell short"
        );
    }
}
