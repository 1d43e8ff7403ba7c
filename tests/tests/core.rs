//! The core path against a real broker: every CloudEvent handled once and in key order, commits that
//! reach the end, restarts that skip nothing, bad records and bad plugins that stop nothing.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cloudevents::{EventBuilder, EventBuilderV10};
use weft::Host;
use weft_tests::*;

const PARTITIONS: i32 = 3;

/// The sequence number in an id of the form `<prefix>-<n>`.
fn seq(id: &str) -> u64 {
    id.rsplit('-').next().and_then(|n| n.parse().ok()).expect("numbered id")
}

/// Produces `count` events over `keys` keys, alternating binary and structured mode.
fn produce_stream(producer: &TestProducer, topic: &str, count: u64, keys: u64) {
    for n in 0..count {
        let key = format!("user-{}", n % keys);
        let event = EventBuilderV10::new()
            .id(format!("ev-{n}"))
            .source("/weft/tests")
            .ty("com.example.test")
            .data("application/json", serde_json::json!({ "n": n, "key": key }))
            .build()
            .expect("valid event");
        let (headers, value) = if n.is_multiple_of(2) {
            weft::cli::dev::binary_record(&event)
        } else {
            weft::cli::dev::structured_record(&event)
        };
        producer.enqueue(topic, &key, &headers, &value);
    }
    producer.flush();
}

/// Asserts every id `ev-0..count` appears in `outputs`, and per key the inputs appear in order.
fn assert_each_once_in_key_order(outputs: &[Output], count: u64) {
    let mut seen = HashSet::new();
    let mut last_per_key: HashMap<String, u64> = HashMap::new();
    for output in outputs {
        let id = output.header("ce_id").expect("output has ce_id");
        assert!(seen.insert(id.to_string()), "{id} was handled twice");
        let n = seq(id);
        let key = output.key.clone().expect("output keyed like its input");
        if let Some(previous) = last_per_key.insert(key.clone(), n) {
            assert!(previous < n, "key {key}: {id} was handled after ev-{previous}");
        }
    }
    let missing: Vec<u64> = (0..count).filter(|n| !seen.contains(&format!("ev-{n}"))).take(10).collect();
    assert!(missing.is_empty(), "no output for ev-{missing:?} (and maybe more); got {}", seen.len());
}

fn assert_committed_to_end(group: &str, topic: &str, partitions: i32) {
    let offsets = committed_and_end(group, topic, partitions);
    for (p, (committed, end)) in offsets.iter().enumerate() {
        assert_eq!(committed, end, "partition {p}: committed offset {committed}, end offset {end}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_events_each_handled_once_in_key_order_and_committed() {
    let (topic, output) = topic_pair("core", PARTITIONS).await;
    let producer = TestProducer::new();
    produce_stream(&producer, &topic, 10_000, 100);

    let (host, group) = echo_host(&topic, &output).await;
    assert_eq!(host.topics(), std::slice::from_ref(&topic));
    let outputs = read(&output, 10_000, Duration::from_secs(120)).await;
    assert!(
        eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await,
        "events still in flight"
    );
    host.shutdown().await.expect("graceful shutdown");

    assert_eq!(outputs.len(), 10_000);
    assert_each_once_in_key_order(&outputs, 10_000);
    assert_committed_to_end(&group, &topic, PARTITIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_after_graceful_stop_skips_nothing() {
    let (topic, output) = topic_pair("restart", PARTITIONS).await;
    let producer = TestProducer::new();
    produce_stream(&producer, &topic, 3_000, 30);

    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.pipeline.lanes = 4;
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let group = config.kafka.group_id.clone();

    let first = Host::start(config.clone()).await.expect("first host");
    let handled = |host: &Host| host.metrics().handled.with_label_values(&[&topic, "echo"]).get();
    assert!(
        eventually(Duration::from_secs(60), || handled(&first) >= 500).await,
        "first host handled nothing"
    );
    first.shutdown().await.expect("graceful shutdown");
    let after_first = committed_and_end(&group, &topic, PARTITIONS);
    assert!(after_first.iter().any(|(c, _)| *c > 0), "the first run committed nothing: {after_first:?}");

    let second = Host::start(config).await.expect("second host");
    // Events the first run handled but had not committed are handled again: read until every id is seen.
    let outputs = read_until(&output, Duration::from_secs(120), distinct_ids(3_000)).await;
    let ids: HashSet<String> = outputs.iter().filter_map(|o| o.header("ce_id").map(str::to_string)).collect();
    let missing: Vec<u64> = (0..3_000).filter(|n| !ids.contains(&format!("ev-{n}"))).take(10).collect();
    assert!(missing.is_empty(), "skipped across the restart: ev-{missing:?}");
    assert!(eventually(Duration::from_secs(10), || second.metrics().in_flight.get() == 0).await);
    second.shutdown().await.expect("graceful shutdown");
    assert_committed_to_end(&group, &topic, PARTITIONS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_records_are_skipped_and_later_events_still_handled() {
    let (topic, output) = topic_pair("bad", 1).await;
    let producer = TestProducer::new();
    let structured: &[u8] = b"application/cloudevents+json";
    let ct = [("content-type", Some(structured))];
    producer.event(&topic, Some(0), "k", "good-0", Mode::Binary).await;
    // Not JSON; JSON that is not a CloudEvent; each required attribute missing; binary without specversion.
    type RawRecord<'a> = (Vec<(&'a str, Option<&'a [u8]>)>, Vec<u8>);
    let malformed: Vec<RawRecord> = vec![
        (ct.to_vec(), b"this is not json".to_vec()),
        (ct.to_vec(), br#"{"order_id": 7, "status": "paid"}"#.to_vec()),
        (ct.to_vec(), br#"{"specversion":"1.0","source":"/s","type":"t"}"#.to_vec()),
        (ct.to_vec(), br#"{"specversion":"1.0","id":"x","type":"t"}"#.to_vec()),
        (ct.to_vec(), br#"{"specversion":"1.0","id":"x","source":"/s"}"#.to_vec()),
        (ct.to_vec(), br#"{"id":"x","source":"/s","type":"t"}"#.to_vec()),
        (
            vec![
                ("ce_id", Some(b"x".as_slice())),
                ("ce_source", Some(b"/s".as_slice())),
                ("ce_type", Some(b"t".as_slice())),
            ],
            b"{}".to_vec(),
        ),
    ];
    for (headers, value) in &malformed {
        producer.raw(&topic, Some(0), Some(b"k"), headers, Some(value)).await;
    }
    producer.event(&topic, Some(0), "k", "good-1", Mode::Structured).await;
    producer.event(&topic, Some(0), "other", "good-2", Mode::Binary).await;

    let (host, group) = echo_host(&topic, &output).await;
    let outputs = read(&output, 3, Duration::from_secs(60)).await;
    let mut ids: Vec<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    ids.sort();
    assert_eq!(ids, ["good-0", "good-1", "good-2"]);
    assert!(eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await);
    assert_eq!(host.metrics().invalid.with_label_values(&[&topic]).get(), malformed.len() as u64);
    assert_eq!(host.metrics().handled.with_label_values(&[&topic, "echo"]).get(), 3);
    host.shutdown().await.expect("graceful shutdown");
    assert_committed_to_end(&group, &topic, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_plugin_files_do_not_stop_the_host() {
    let (topic, output) = topic_pair("refuse", 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM), ("other-world", WRONG_WORLD_WASM)]);
    std::fs::write(dir.join("random.wasm"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    let echo = std::fs::read(ECHO_WASM).unwrap();
    std::fs::write(dir.join("truncated.wasm"), &echo[..echo.len() / 2]).unwrap();
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);

    let host = Host::start(config).await.expect("host starts despite bad files");
    let mut refused: Vec<(String, String)> = host
        .refused()
        .iter()
        .map(|r| (r.path.file_name().unwrap().to_string_lossy().into_owned(), r.reason.clone()))
        .collect();
    refused.sort();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert_eq!(refused[0].0, "other-world.wasm");
    assert!(refused[0].1.contains("does not implement weft:handler/handler@0.1.0"), "{}", refused[0].1);
    assert_eq!(refused[1].0, "random.wasm");
    assert!(refused[1].1.contains("not a WebAssembly file"), "{}", refused[1].1);
    assert_eq!(refused[2].0, "truncated.wasm");
    assert!(refused[2].1.contains("not a valid WebAssembly component"), "{}", refused[2].1);
    assert!(refused.iter().all(|(_, reason)| !reason.contains('\n')));
    assert_eq!(host.plugins().len(), 1);

    TestProducer::new().event(&topic, None, "k", "still-served", Mode::Binary).await;
    let outputs = read(&output, 1, Duration::from_secs(60)).await;
    assert_eq!(outputs.first().and_then(|o| o.header("ce_id")), Some("still-served"));
    host.shutdown().await.expect("graceful shutdown");
}
