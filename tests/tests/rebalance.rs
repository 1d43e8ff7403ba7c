//! Revocation and shutdown while events wait. A key waiting for a retry: the revoked partition
//! is let go at once (the new member gets it in seconds, not after the retry or
//! `drain_timeout_ms`), the old member never handles its parked event afterwards and gives back
//! its place in the lane, and every partition commits to its end. Events whose emitted events
//! await acknowledgement: the revocation waits for them. A lane full of waiting events: shutdown
//! does not wait for their retries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use weft::Host;
use weft::config::RetrySettings;
use weft_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_does_not_wait_for_parked_retries_and_nothing_is_handled_twice() {
    let (topic, output) = topic_pair("rebalance", 2).await;
    create_topic(&format!("{topic}.dlq"), 2).await;
    let producer = TestProducer::new();
    for p in 0..2 {
        producer
            .event_with(
                &topic,
                Some(p),
                &format!("K{p}"),
                &format!("park-{p}"),
                Mode::Binary,
                &[("failmode", "retryable"), ("failuntil", "2"), ("faildelayms", "15000")],
            )
            .await;
        for n in 0..10 {
            producer.event(&topic, Some(p), &format!("k{n}"), &format!("p{p}-{n}"), Mode::Binary).await;
        }
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    config.pipeline.drain_timeout_ms = 30_000;
    config.retry = RetrySettings { max_backoff_ms: Some(20_000), ..RetrySettings::default() };
    let group = config.kafka.group_id.clone();

    let first = Host::start(config.clone()).await.unwrap();
    let metrics = first.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || metrics.parked.get() >= 2).await,
        "both keys should wait for their retry"
    );
    let joined = Instant::now();
    let second = Host::start(config).await.unwrap();
    let second_metrics = second.metrics().clone();
    assert!(
        eventually(Duration::from_secs(8), || second_metrics.partitions_assigned.get() >= 1).await,
        "the new member got no partition within 8 s: the revocation waited for a parked retry"
    );
    let took = joined.elapsed();

    let outputs = read_until(&output, Duration::from_secs(60), |o| {
        ["park-0", "park-1"].iter().all(|id| o.iter().any(|x| x.header("ce_id") == Some(id)))
    })
    .await;
    // Give a wrongly kept parked event time to be handled a second time.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outputs = if outputs.len() < 22 { read_all(&output, Duration::from_secs(2)).await } else { outputs };
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for o in &outputs {
        *counts.entry(o.header("ce_id").unwrap()).or_default() += 1;
    }
    assert_eq!(counts.get("park-0"), Some(&1), "park-0 handled {:?} times", counts.get("park-0"));
    assert_eq!(counts.get("park-1"), Some(&1), "park-1 handled {:?} times", counts.get("park-1"));
    for p in 0..2 {
        for n in 0..10 {
            assert!(counts.contains_key(format!("p{p}-{n}").as_str()), "p{p}-{n} never handled");
        }
    }
    let second_metrics = second.metrics().clone();
    assert!(
        eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0
            && second_metrics.in_flight.get() == 0)
        .await
    );
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    for (p, (committed, end)) in committed_and_end(&group, &topic, 2).iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
    eprintln!("the new member got its partition {took:?} after joining");
}

/// A partition is revoked while events of it wait for the broker to acknowledge what their handler
/// emitted (the producer holds each batch for a second): the revocation waits for those
/// acknowledgements and commits the events, so the new owner does not handle them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_waits_for_the_acknowledgements_of_its_events() {
    let (topic, output) = topic_pair("rebalance-acks", 4).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    config.kafka.producer.insert("linger.ms".into(), "1000".into());
    config.pipeline.drain_timeout_ms = 30_000;
    let group = config.kafka.group_id.clone();

    let producing = produce_steadily(&topic, "ack", 16, 200, 0, Duration::from_millis(250));
    let first = Host::start(config.clone()).await.unwrap();
    let handled = first.metrics().emitted.clone();
    assert!(
        eventually(Duration::from_secs(30), || handled.with_label_values(&["echo"]).get() > 0).await,
        "the first member should be handling events"
    );
    let second = Host::start(config).await.unwrap();
    let second_metrics = second.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || second_metrics.partitions_assigned.get() >= 1).await,
        "the second member got no partition"
    );
    producing.await.unwrap();
    let outputs = read_until(&output, Duration::from_secs(90), |o| o.len() >= 8_000).await;
    let outputs =
        if outputs.len() == 8_000 { read_all(&output, Duration::from_secs(3)).await } else { outputs };
    let twice = repeated_ids(&outputs);
    assert!(
        twice.is_empty(),
        "{} events handled twice, e.g. {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    let distinct: std::collections::HashSet<&str> =
        outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    assert_eq!(distinct.len(), 8_000, "every event handled");
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    for (p, (committed, end)) in committed_and_end(&group, &topic, 4).iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}

/// Parks one event on each of two partitions for a minute; the lane then holds its `max_parked`.
async fn park_one_per_partition(topic: &str) {
    let producer = TestProducer::new();
    for p in 0..2 {
        producer
            .event_with(
                topic,
                Some(p),
                &format!("K{p}"),
                &format!("park-{p}"),
                Mode::Binary,
                &[("failmode", "retryable"), ("failuntil", "2"), ("faildelayms", "60000")],
            )
            .await;
    }
}

/// One lane that holds at most two waiting events, retries a minute apart.
fn one_full_lane(dir: &std::path::Path, topic: &str, output: &str) -> weft::Config {
    let mut config = config(dir);
    plugin_config(&mut config, "echo", &[("topic", topic), ("output-topic", output)]);
    config.pipeline.lanes = 1;
    config.pipeline.max_parked = 2;
    config.retry = RetrySettings { max_backoff_ms: Some(60_000), ..RetrySettings::default() };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_waiting_events_give_back_their_places_at_once() {
    let (topic, output) = topic_pair("rebalance-places", 2).await;
    park_one_per_partition(&topic).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let config = one_full_lane(&dir, &topic, &output);
    let first = Host::start(config.clone()).await.unwrap();
    let metrics = first.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || metrics.parked.get() == 2).await,
        "both events should wait"
    );
    let second = Host::start(config).await.unwrap();
    let second_metrics = second.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || second_metrics.partitions_assigned.get() == 1
            && metrics.partitions_assigned.get() == 1)
        .await,
        "each member should own one partition"
    );
    // The first member's lane no longer holds the event of the partition it lost, so it takes
    // the new events of the partition it kept long before the minute is up.
    let producer = TestProducer::new();
    for p in 0..2 {
        for n in 0..10 {
            producer.event(&topic, Some(p), &format!("k{n}"), &format!("p{p}-{n}"), Mode::Binary).await;
        }
    }
    let outputs = read_until(&output, Duration::from_secs(25), |o| o.len() >= 20).await;
    assert_eq!(outputs.len(), 20, "the new events of both partitions should be handled");
    assert_eq!(metrics.parked.get(), 1, "the first member still waits only for its own partition's event");
    tokio::time::timeout(Duration::from_secs(15), async {
        first.shutdown().await.unwrap();
        second.shutdown().await.unwrap();
    })
    .await
    .expect("both members stop without waiting for their retries");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_the_retries_of_a_full_lane() {
    let (topic, output) = topic_pair("rebalance-full-stop", 2).await;
    park_one_per_partition(&topic).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let config = one_full_lane(&dir, &topic, &output);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || metrics.parked.get() == 2).await,
        "both events should wait"
    );
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), host.shutdown())
        .await
        .expect("shutdown should not wait for the retries of a full lane")
        .unwrap();
    eprintln!("stopped in {:?}", started.elapsed());
    for (p, (committed, _)) in committed_and_end(&group, &topic, 2).iter().enumerate() {
        assert!(
            *committed <= 0,
            "partition {p}: the waiting event must stay uncommitted, committed {committed}"
        );
    }
}
