//! Emitted events and their acknowledgements, on librdkafka's mock cluster with a slow broker: a
//! lane does not wait for the broker to acknowledge one event's emits before it handles events of
//! other keys, while events of the same key still wait for the one before them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use weft::Host;
use weft_tests::*;

/// Reads `count` records of `topic` on the mock cluster: (key, ce_id) in the order read.
async fn read_mock(bootstrap: &str, topic: &str, count: usize) -> Vec<(String, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut read = Vec::new();
    while read.len() < count {
        let message = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} of {count} records on {topic}", read.len()))
            .unwrap();
        let id = weft::kafka::headers::read(message.headers().unwrap())
            .into_iter()
            .find(|(name, _)| *name == b"ce_id")
            .and_then(|(_, value)| value.map(|v| String::from_utf8_lossy(v).into_owned()))
            .unwrap_or_default();
        read.push((String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned(), id));
    }
    read
}

async fn produce(producer: &FutureProducer, topic: &str, key: &str, id: &str) {
    let headers = [("ce_specversion", "1.0"), ("ce_id", id), ("ce_source", "/acks"), ("ce_type", "acks")]
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(*value) }));
    producer
        .send(FutureRecord::to(topic).key(key).payload("{}").headers(headers), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_handles_other_keys_while_the_broker_acknowledges_emits() {
    init_logging();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for topic in ["acks-in", "acks-out"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = weft::Config::with_brokers(&bootstrap);
    config.kafka.group_id = unique("acks");
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
    config.plugins.dir = dir;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    // One lane: every event goes through it.
    config.pipeline.lanes = 1;
    plugin_config(&mut config, "echo", &[("topic", "acks-in"), ("output-topic", "acks-out")]);
    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let host = Host::start(config).await.unwrap();
    produce(&producer, "acks-in", "warm", "warm-up").await;
    read_mock(&bootstrap, "acks-out", 1).await;

    // Every request now takes 400 ms: twenty events acknowledged one after another take 8 s.
    mock.broker_round_trip_time(1, Duration::from_millis(400)).unwrap();
    // All twenty in one request or so (sent together, acknowledged together).
    let started = Instant::now();
    let ids: Vec<(String, String)> = ["a", "b"]
        .iter()
        .flat_map(|turn| (0..10).map(move |n| (format!("k{n}"), format!("k{n}-{turn}"))))
        .collect();
    futures::future::join_all(ids.iter().map(|(key, id)| produce(&producer, "acks-in", key, id))).await;
    let produced = started.elapsed();
    let metrics = host.metrics().clone();
    let handled = || metrics.handled.with_label_values(&["acks-in", "echo"]).get();
    assert!(eventually(Duration::from_secs(60), || handled() == 21).await, "handled {}", handled());
    let took = started.elapsed() - produced;
    mock.broker_round_trip_time(1, Duration::ZERO).unwrap();
    let outputs = read_mock(&bootstrap, "acks-out", 21).await;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for (key, id) in outputs.into_iter().skip(1) {
        seen.entry(key).or_default().push(id);
    }
    for n in 0..10 {
        let key = format!("k{n}");
        assert_eq!(seen[&key], [format!("{key}-a"), format!("{key}-b")], "order of {key}");
    }
    eprintln!("20 events, 400 ms per request: handled {took:?} after the last was produced");
    assert!(took < Duration::from_secs(5), "the lane waited for each acknowledgement in turn: {took:?}");
    host.shutdown().await.unwrap();
}
