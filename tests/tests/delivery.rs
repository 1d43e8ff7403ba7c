//! The delivery layer against a real broker: retries with backoff, dead letters with their headers,
//! per-key parking that lets other keys flow, and invalid records kept byte for byte.

use std::time::{Duration, Instant};

use cloudevents::EventBuilder;
use weft::Host;
use weft::config::RetrySettings;
use weft_tests::*;

fn fast_retries(max_attempts: u32, initial_ms: u64) -> RetrySettings {
    RetrySettings {
        max_attempts: Some(max_attempts),
        initial_backoff_ms: Some(initial_ms),
        multiplier: Some(2.0),
        max_backoff_ms: Some(10_000),
        jitter: Some(0.0),
    }
}

struct Setup {
    topic: String,
    output: String,
    dlq: String,
    group: String,
    host: Host,
}

async fn start(partitions: i32, retry: RetrySettings) -> Setup {
    init_logging();
    let (topic, output) = (unique("dl-in"), unique("dl-out"));
    let dlq = format!("{topic}.dlq");
    create_topic(&topic, partitions).await;
    create_topic(&output, 1).await;
    create_topic(&dlq, 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.retry = retry;
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.expect("host starts");
    Setup { topic, output, dlq, group, host }
}

fn ids(outputs: &[Output]) -> Vec<&str> {
    outputs.iter().filter_map(|o| o.header("ce_id")).collect()
}

async fn finish(setup: Setup, partitions: i32) {
    let metrics = setup.host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0).await,
        "events still in flight"
    );
    setup.host.shutdown().await.expect("graceful shutdown");
    for (p, (committed, end)) in committed_and_end(&setup.group, &setup.topic, partitions).iter().enumerate()
    {
        assert_eq!(committed, end, "partition {p} not committed to its end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_pill_is_dead_lettered_with_reason_and_the_rest_flows() {
    let s = start(1, fast_retries(5, 50)).await;
    let producer = TestProducer::new();
    producer.event(&s.topic, Some(0), "k1", "e0", Mode::Binary).await;
    producer.event_with(&s.topic, Some(0), "k1", "e1", Mode::Structured, &[("failmode", "permanent")]).await;
    producer.event(&s.topic, Some(0), "k1", "e2", Mode::Binary).await;
    producer.event(&s.topic, Some(0), "k2", "e3", Mode::Structured).await;

    let outputs = read(&s.output, 3, Duration::from_secs(60)).await;
    let mut handled = ids(&outputs);
    handled.sort();
    assert_eq!(handled, ["e0", "e2", "e3"]);
    let dead = read(&s.dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 1);
    let letter = &dead[0];
    assert_eq!(letter.header("weft.dlq.reason"), Some("permanent_error"));
    assert!(letter.header("weft.dlq.error").unwrap().contains("e1 is marked permanent"));
    assert_eq!(letter.header("weft.dlq.plugin"), Some("echo"));
    assert_eq!(letter.header("weft.dlq.plugin.digest").map(str::len), Some(64));
    assert_eq!(letter.header("weft.dlq.attempts"), Some("1"));
    assert_eq!(letter.header("weft.original.topic"), Some(s.topic.as_str()));
    assert_eq!(letter.header("weft.original.partition"), Some("0"));
    assert_eq!(letter.header("weft.original.offset"), Some("1"));
    assert_eq!(letter.header("content-type"), Some("application/cloudevents+json"), "original headers kept");
    assert_eq!(letter.key.as_deref(), Some("k1"));
    let original: serde_json::Value = serde_json::from_slice(&letter.value).expect("original value kept");
    assert_eq!(original["id"], "e1");
    assert_eq!(s.host.metrics().dead_lettered.with_label_values(&[&s.topic, "permanent_error"]).get(), 1);
    finish(s, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_failure_is_retried_with_backoff_and_handled_once() {
    let s = start(1, fast_retries(5, 200)).await;
    let producer = TestProducer::new();
    let sent = Instant::now();
    producer
        .event_with(
            &s.topic,
            Some(0),
            "k",
            "flaky",
            Mode::Binary,
            &[("failmode", "retryable"), ("failuntil", "3")],
        )
        .await;
    let outputs = read(&s.output, 1, Duration::from_secs(60)).await;
    let elapsed = sent.elapsed();
    assert_eq!(ids(&outputs), ["flaky"]);
    assert_eq!(outputs[0].header("ce_attempt"), Some("3"), "the plugin saw attempt 3");
    // Two waits: 200 ms, then 400 ms.
    assert!(elapsed >= Duration::from_millis(600), "retried too early: {elapsed:?}");
    assert_eq!(s.host.metrics().retried.with_label_values(&[&s.topic, "echo"]).get(), 2);
    let more = read(&s.output, 2, Duration::from_secs(2)).await;
    assert_eq!(more.len(), 1, "handled exactly once");
    finish(s, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_retries_are_dead_lettered_with_the_attempt_count() {
    let s = start(1, fast_retries(3, 20)).await;
    let producer = TestProducer::new();
    producer.event_with(&s.topic, Some(0), "k", "doomed", Mode::Binary, &[("failmode", "retryable")]).await;
    producer.event(&s.topic, Some(0), "k", "after", Mode::Binary).await;
    let dead = read(&s.dlq, 1, Duration::from_secs(30)).await;
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("retries_exhausted"));
    assert_eq!(dead[0].header("weft.dlq.attempts"), Some("3"));
    assert_eq!(dead[0].header("ce_id"), Some("doomed"));
    let outputs = read(&s.output, 1, Duration::from_secs(30)).await;
    assert_eq!(ids(&outputs), ["after"], "the same key continues after the dead letter");
    finish(s, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_backoff_does_not_hold_back_other_keys_and_keeps_its_own_order() {
    let mut retry = fast_retries(5, 50);
    retry.max_backoff_ms = Some(60_000);
    let s = start(1, retry).await;
    let producer = TestProducer::new();
    // A-1 fails once and asks to be retried in 15 s: ample time for 1,000 other events, even on a busy machine.
    producer.event(&s.topic, Some(0), "A", "A-0", Mode::Binary).await;
    fails_once(&producer, &s.topic, 0, "A", "A-1", 15000).await;
    producer.event(&s.topic, Some(0), "A", "A-2", Mode::Structured).await;
    for n in 0..1_000 {
        let key = format!("{}", (b'B' + (n % 25) as u8) as char);
        producer.enqueue(&s.topic, &key, &binary(&format!("{key}-{n}")), b"{}");
    }
    producer.flush();
    producer.event(&s.topic, Some(0), "A", "A-3", Mode::Binary).await;

    let outputs = read(&s.output, 1_004, Duration::from_secs(90)).await;
    let order = ids(&outputs);
    assert_eq!(order.len(), 1_004);
    let position = |id: &str| order.iter().position(|o| *o == id).unwrap_or_else(|| panic!("{id} missing"));
    let a1 = position("A-1");
    let others: Vec<usize> =
        order.iter().enumerate().filter(|(_, id)| !id.starts_with("A-")).map(|(i, _)| i).collect();
    assert_eq!(others.len(), 1_000);
    assert!(others.iter().all(|&i| i < a1), "other keys waited for A's retry");
    assert!(
        position("A-0") < a1 && a1 < position("A-2") && position("A-2") < position("A-3"),
        "A out of order: {order:?}"
    );
    finish(s, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_in_backoff_on_one_partition_does_not_hold_back_the_same_key_on_another() {
    let s = start(2, fast_retries(5, 50)).await;
    let producer = TestProducer::new();
    // The same key on two partitions (a producer that picks partitions itself): Kafka orders
    // nothing across them, so a retry on partition 0 must not hold partition 1 back.
    fails_once(&producer, &s.topic, 0, "A", "p0-A-0", 8000).await;
    producer.event(&s.topic, Some(0), "A", "p0-A-1", Mode::Binary).await;
    let metrics = s.host.metrics().clone();
    assert!(eventually(Duration::from_secs(30), || metrics.parked.get() >= 1).await, "A never parked");
    for n in 0..5 {
        producer.event(&s.topic, Some(1), "A", &format!("p1-A-{n}"), Mode::Binary).await;
    }
    let outputs = read(&s.output, 7, Duration::from_secs(60)).await;
    let order = ids(&outputs);
    assert_eq!(order.len(), 7, "{order:?}");
    let position = |id: &str| order.iter().position(|o| *o == id).unwrap_or_else(|| panic!("{id} missing"));
    for n in 0..5 {
        assert!(position(&format!("p1-A-{n}")) < position("p0-A-0"), "partition 1 waited: {order:?}");
    }
    assert!(position("p0-A-0") < position("p0-A-1"), "partition 0 out of order: {order:?}");
    finish(s, 2).await;
}

/// Produces an event that fails its first attempt with a retryable error and a `delay_ms` hint,
/// and succeeds on the second.
async fn fails_once(
    producer: &TestProducer,
    topic: &str,
    partition: i32,
    key: &str,
    id: &str,
    delay_ms: u32,
) {
    let delay = delay_ms.to_string();
    let extensions = [("failmode", "retryable"), ("failuntil", "2"), ("faildelayms", delay.as_str())];
    producer.event_with(topic, Some(partition), key, id, Mode::Binary, &extensions).await;
}

/// Binary-mode headers for a minimal event with `id`.
fn binary(id: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("ce_specversion".into(), b"1.0".to_vec()),
        ("ce_id".into(), id.as_bytes().to_vec()),
        ("ce_source".into(), b"/weft/tests".to_vec()),
        ("ce_type".into(), b"com.example.test".to_vec()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_records_land_in_the_dlq_byte_for_byte() {
    let s = start(1, fast_retries(5, 50)).await;
    let producer = TestProducer::new();
    let structured: &[u8] = b"application/cloudevents+json";
    let bad_value: &[u8] = b"{\"specversion\":\"1.0\",\"source\":\"/s\",\"type\":\"t\"}";
    producer
        .raw(
            &s.topic,
            Some(0),
            Some(b"key-1"),
            &[("content-type", Some(structured)), ("x-trace", None)],
            Some(bad_value),
        )
        .await;
    producer.raw(&s.topic, Some(0), None, &[], Some(b"\x00\x01 not json")).await;
    producer.event(&s.topic, Some(0), "k", "valid", Mode::Binary).await;

    let mut dead = read(&s.dlq, 2, Duration::from_secs(30)).await;
    assert_eq!(dead.len(), 2);
    assert!(dead.iter().all(|d| d.header("weft.dlq.reason") == Some("invalid_cloudevent")));
    // Different keys take different lanes: their dead letters may be written in either order.
    dead.sort_by_key(|d| d.header("weft.original.offset").map(str::to_string));
    assert_eq!(dead[0].value, bad_value);
    assert_eq!(dead[0].key.as_deref(), Some("key-1"));
    assert_eq!(dead[0].header("x-trace"), Some(""), "null header kept");
    assert!(dead[0].header("weft.dlq.error").unwrap().contains("`id` is missing"));
    assert_eq!(dead[1].value, b"\x00\x01 not json");
    assert_eq!(dead[1].key, None);
    assert_eq!(ids(&read(&s.output, 1, Duration::from_secs(30)).await), ["valid"]);
    finish(s, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loops_runaway_allocation_and_panics_end_in_the_dlq_with_their_reason() {
    init_logging();
    let (topic, output) = (unique("limits-in"), unique("limits-out"));
    let (steady, steady_out) = topic_pair("limits-steady", 2).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&topic, 1).await;
    create_topic(&output, 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM), ("steady", ECHO_WASM)]);
    let mut config = config(&dir);
    // Two attempts a second apart: each bad event occupies the host for well over a second.
    config.retry = fast_retries(2, 1_000);
    config.plugins.timeout_ms = 300;
    config.plugins.memory_limit_mib = 16;
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    plugin_config(&mut config, "steady", &[("topic", &steady), ("output-topic", &steady_out)]);
    let host = Host::start(config).await.expect("host starts");
    let producer = TestProducer::new();
    for (id, mode) in [("spin", "loop"), ("hog", "alloc"), ("boom", "trap")] {
        producer.event_with(&topic, Some(0), id, id, Mode::Binary, &[("failmode", mode)]).await;
    }
    producer.event(&topic, Some(0), "fine", "fine", Mode::Binary).await;
    // Meanwhile another plugin's partitions keep flowing: all of its events are handled before
    // the bad ones have used up their attempts.
    let started = Instant::now();
    for n in 0..300 {
        let (headers, value) = weft::cli::dev::binary_record(
            &cloudevents::EventBuilderV10::new()
                .id(format!("steady-{n}"))
                .source("/t")
                .ty("t")
                .build()
                .unwrap(),
        );
        producer.enqueue(&steady, &format!("k{n}"), &headers, &value);
    }
    producer.flush();
    let steady_read = tokio::spawn(async move {
        let outputs = read(&steady_out, 300, Duration::from_secs(60)).await;
        (outputs.len(), started.elapsed())
    });

    let dead = read(&dlq, 3, Duration::from_secs(60)).await;
    let dead_after = started.elapsed();
    let (steady_handled, steady_after) = steady_read.await.unwrap();
    assert_eq!(steady_handled, 300);
    assert!(
        steady_after < dead_after,
        "the other plugin finished after {steady_after:?}, the bad events were dead-lettered after {dead_after:?}"
    );
    let reasons: std::collections::HashMap<&str, &str> =
        dead.iter().map(|d| (d.header("ce_id").unwrap(), d.header("weft.dlq.reason").unwrap())).collect();
    assert_eq!(reasons.get("spin"), Some(&"timeout"), "{reasons:?}");
    assert_eq!(reasons.get("hog"), Some(&"memory_limit"), "{reasons:?}");
    assert_eq!(reasons.get("boom"), Some(&"trap"), "{reasons:?}");
    assert!(dead.iter().all(|d| d.header("weft.dlq.attempts") == Some("2")));
    assert_eq!(ids(&read(&output, 1, Duration::from_secs(30)).await), ["fine"], "the host kept serving");
    assert!(eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await);
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_lanes_pause_fetching_and_the_member_stays_in_the_group() {
    let (topic, output) = topic_pair("pause", 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.retry = fast_retries(5, 50);
    config.retry.max_backoff_ms = Some(60_000);
    // One lane holding one parked event and one queued: the third event finds it full.
    config.pipeline.lanes = 1;
    config.pipeline.lane_capacity = 1;
    config.pipeline.max_parked = 1;
    // A retry wait longer than max.poll.interval.ms: without pausing, the member would be evicted.
    config.kafka.consumer.insert("session.timeout.ms".into(), "6000".into());
    config.kafka.consumer.insert("max.poll.interval.ms".into(), "7000".into());
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = Host::start(config).await.expect("host starts");
    let producer = TestProducer::new();
    fails_once(&producer, &topic, 0, "A", "A-1", 12000).await;
    for (key, id) in [("A", "A-2"), ("B", "B-1"), ("A", "A-3"), ("C", "C-1")] {
        producer.event(&topic, Some(0), key, id, Mode::Binary).await;
    }
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(10), || metrics.fetch_paused.get() == 1).await,
        "fetching never paused"
    );
    let outputs = read(&output, 5, Duration::from_secs(60)).await;
    let order = ids(&outputs);
    let position =
        |id: &str| order.iter().position(|o| *o == id).unwrap_or_else(|| panic!("{id} missing: {order:?}"));
    assert!(position("A-1") < position("A-2") && position("A-2") < position("A-3"), "{order:?}");
    assert_eq!(metrics.fetch_paused.get(), 0, "fetching resumed");
    assert_eq!(
        metrics.rebalances.with_label_values(&["revoke"]).get(),
        0,
        "the member was evicted from its group"
    );
    assert!(
        eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0).await,
        "events still in flight"
    );
    host.shutdown().await.expect("graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_lane_pauses_only_the_partition_whose_events_wait_for_it() {
    let (topic, output) = topic_pair("pause-one", 2).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.retry = fast_retries(5, 50);
    config.retry.max_backoff_ms = Some(60_000);
    // Two lanes, each holding one parked event and one queued; `A` and `K` in different lanes.
    config.pipeline.lanes = 2;
    config.pipeline.lane_capacity = 1;
    config.pipeline.max_parked = 1;
    let lane = |key: &str| weft::pipeline::lanes::lane_of(&topic, 0, Some(key.as_bytes()), 2);
    let other = (0..).map(|n| format!("K{n}")).find(|k| lane(k) != lane("A")).unwrap();
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = Host::start(config).await.expect("host starts");
    let producer = TestProducer::new();
    // A-1 waits 15 s for its retry, A-2 fills A's lane, A-3 waits for it: partition 0 pauses.
    fails_once(&producer, &topic, 0, "A", "A-1", 15_000).await;
    for id in ["A-2", "A-3"] {
        producer.event(&topic, Some(0), "A", id, Mode::Binary).await;
    }
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(10), || metrics.fetch_paused.get() == 1).await,
        "fetching never paused"
    );
    // Partition 1, another lane: it keeps flowing while A waits.
    let started = Instant::now();
    for n in 0..20 {
        producer.event(&topic, Some(1), &other, &format!("{other}-{n}"), Mode::Binary).await;
    }
    let outputs = read_until(&output, Duration::from_secs(30), |o| o.len() >= 20).await;
    let flowed = started.elapsed();
    let order = ids(&outputs);
    assert!(order.iter().filter(|id| id.starts_with(&other)).count() == 20, "{order:?}");
    assert!(
        !order.contains(&"A-1") && flowed < Duration::from_secs(10),
        "partition 1 waited for partition 0's retry ({flowed:?}): {order:?}"
    );
    let outputs = read(&output, 23, Duration::from_secs(60)).await;
    let order = ids(&outputs);
    let position = |id: &str| order.iter().position(|o| *o == id).unwrap();
    assert!(position("A-1") < position("A-2") && position("A-2") < position("A-3"), "{order:?}");
    assert!(eventually(Duration::from_secs(5), || metrics.fetch_paused.get() == 0).await, "fetching resumed");
    assert!(
        eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0).await,
        "events still in flight"
    );
    host.shutdown().await.expect("graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_head_bounds_the_uncommitted_events_of_its_partition() {
    init_logging();
    let (topic, output) = topic_pair("crowded", 1).await;
    create_topic(&format!("{topic}.dlq"), 1).await;
    let producer = TestProducer::new();
    fails_once(&producer, &topic, 0, "A", "A-0", 6000).await;
    for n in 0..1_000 {
        let key = format!("k{}", n % 50);
        producer.enqueue(&topic, &key, &binary(&format!("{key}-{n}")), b"{}");
    }
    producer.flush();
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.pipeline.max_uncommitted = 100;
    config.retry = fast_retries(5, 50);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    assert!(eventually(Duration::from_secs(30), || metrics.parked.get() >= 1).await, "A never parked");
    // While A waits (6 s), the partition may hold at most about 100 uncommitted events.
    let mut most = 0;
    for _ in 0..30 {
        most = most.max(metrics.in_flight.get());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled_while_stuck = metrics.handled.with_label_values(&[&topic, "echo"]).get();
    eprintln!("in flight at most {most}, handled while stuck {handled_while_stuck}");
    assert!(most <= 200, "{most} events in flight behind a stuck head; the cap is 100");
    assert!(handled_while_stuck < 150, "{handled_while_stuck} handled behind a stuck head");
    // Once A is handled, the rest follow and everything commits.
    assert!(
        eventually(Duration::from_secs(60), || metrics.handled.with_label_values(&[&topic, "echo"]).get()
            >= 1_001)
        .await
    );
    assert!(eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0).await);
    host.shutdown().await.unwrap();
    assert_eq!(committed_and_end(&group, &topic, 1), [(1_001, 1_001)]);
}

/// A native handler: records every call, fails `ev-<n>` with `n % 50 == 7` once (retryable),
/// panics at the first attempt of `ev-21`, and fails `ev-13` for good.
struct Recorder(std::sync::Mutex<Vec<(String, String, u32)>>);

impl weft::sandbox::plugin::NativeHandler for Recorder {
    fn handle(
        &self,
        event: &weft::sandbox::plugin::Cloudevent,
        delivery: &weft::sandbox::plugin::Delivery,
    ) -> Result<(), weft::sandbox::plugin::HandleError> {
        let key = String::from_utf8_lossy(delivery.key.as_deref().unwrap_or_default()).into_owned();
        self.0.lock().unwrap().push((key, event.id.clone(), delivery.attempt));
        let n: u64 = event.id.trim_start_matches("ev-").parse().unwrap();
        if n == 13 {
            return Err(weft::sandbox::plugin::HandleError::Permanent(format!("{} is refused", event.id)));
        }
        assert!(!(n == 21 && delivery.attempt == 1), "the handler panics at ev-21's first attempt");
        if n % 50 == 7 && delivery.attempt == 1 {
            let reason = format!("{} fails its first attempt", event.id);
            return Err(weft::sandbox::plugin::HandleError::Retryable(
                weft::sandbox::plugin::RetryableError { reason, delay_ms: None },
            ));
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_handlers_take_the_components_path() {
    init_logging();
    let (topic, output) = topic_pair("native", 3).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let producer = TestProducer::new();
    for n in 0..600u64 {
        let key = format!("user-{}", n % 30);
        let event = cloudevents::EventBuilderV10::new()
            .id(format!("ev-{n}"))
            .source("/weft/tests")
            .ty("com.example.test")
            .data("application/json", serde_json::json!({ "n": n }))
            .build()
            .unwrap();
        let (headers, value) = weft::cli::dev::structured_record(&event);
        producer.enqueue(&topic, &key, &headers, &value);
    }
    producer.flush();

    // A component beside it, and a file that takes the native handler's id (refused).
    let dir = plugins_dir(&[("echo", ECHO_WASM), ("recorder", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let recorder_settings = config.plugin.entry("recorder".into()).or_default();
    recorder_settings.retry = fast_retries(3, 20);
    let group = config.kafka.group_id.clone();
    let recorder = std::sync::Arc::new(Recorder(Default::default()));
    let description = weft::sandbox::plugin::Description {
        name: "recorder".into(),
        version: "1.0.0".into(),
        description: "records what it is given".into(),
        subscriptions: vec![weft::config::SubscriptionSpec {
            topic: topic.clone(),
            types: vec![],
            sources: vec![],
        }],
    };
    let native = weft::sandbox::plugin::Plugin::native("recorder", description, recorder.clone()).unwrap();
    let host = Host::start_with(config, vec![native]).await.expect("host starts");
    let refused = host.refused();
    assert_eq!(refused.len(), 1, "{refused:?}");
    assert!(refused[0].reason.contains("a native handler has the id \"recorder\""), "{}", refused[0].reason);
    assert!(host.plugins().iter().any(|p| p.id == "recorder" && p.is_native()));

    let dead = read(&dlq, 1, Duration::from_secs(60)).await;
    let letter: serde_json::Value = serde_json::from_slice(&dead[0].value).unwrap();
    assert_eq!(letter["id"], "ev-13", "the record byte for byte");
    assert_eq!(dead[0].header("weft.dlq.plugin"), Some("recorder"));
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("permanent_error"));
    let echoed = read(&output, 600, Duration::from_secs(60)).await;
    assert_eq!(echoed.len(), 600, "the component beside it handled every event");
    let metrics = host.metrics().clone();
    assert!(eventually(Duration::from_secs(30), || metrics.in_flight.get() == 0).await, "events in flight");
    assert_eq!(metrics.handled.with_label_values(&[&topic, "recorder"]).get(), 599);
    assert_eq!(metrics.retried.with_label_values(&[&topic, "recorder"]).get(), 13);
    assert_eq!(metrics.failed.with_label_values(&[&topic, "recorder", "trap"]).get(), 1, "the panic");
    host.shutdown().await.expect("graceful shutdown");
    for (p, (committed, end)) in committed_and_end(&group, &topic, 3).iter().enumerate() {
        assert_eq!(committed, end, "partition {p} not committed to its end");
    }

    // Per key, in order; each retried event tried twice, its key's later events after it.
    let calls = recorder.0.lock().unwrap().clone();
    let mut last: std::collections::HashMap<&str, (u64, u32)> = std::collections::HashMap::new();
    for (key, id, attempt) in &calls {
        let n: u64 = id.trim_start_matches("ev-").parse().unwrap();
        if let Some(&(previous, previous_attempt)) = last.get(key.as_str()) {
            let retried_after_itself = previous == n && *attempt == previous_attempt + 1;
            assert!(
                previous < n || retried_after_itself,
                "key {key}: {id} (attempt {attempt}) after ev-{previous}"
            );
        }
        last.insert(key, (n, *attempt));
    }
    assert_eq!(calls.len(), 600 + 13, "every event once, the 13 retried ones twice");
}
