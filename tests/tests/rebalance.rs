//! Revocation while a key waits for a retry: the revoked partition is let go at once (the new
//! member gets it in seconds, not after the retry or `drain_timeout_ms`), the old member never
//! handles its parked event afterwards, and every partition commits to its end.

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
