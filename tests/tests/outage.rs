//! The broker goes away for 30 s while events flow (librdkafka's mock cluster takes its only broker
//! down). Weft resumes by itself once it is back: every event is handled, none is dead-lettered
//! because of the outage, and the commit reaches the end. Emits that time out during the outage
//! are waited out without using up the events' attempts.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use weft::Host;
use weft_tests::*;

const EVENTS: usize = 400;

fn enqueue(producer: &FutureProducer, range: std::ops::Range<usize>) {
    for n in range {
        let id = format!("o-{n}");
        // Each event takes 100 ms, so plenty are in flight, emitting, when the broker goes away.
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", "/orders"),
            ("ce_type", "order.created"),
            ("ce_failmode", "sleep"),
            ("ce_sleepms", "100"),
        ]
        .iter()
        .fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
            h.insert(rdkafka::message::Header { key: k, value: Some(v.as_bytes()) })
        });
        let key = format!("order-{}", n % 20);
        let record = FutureRecord::to("orders").key(&key).payload("{}").headers(headers);
        drop(producer.send_result(record).map_err(|(e, _)| e).expect("enqueue"));
    }
    producer.flush(Duration::from_secs(60)).expect("flush");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thirty_second_broker_outage_loses_nothing_and_dead_letters_nothing() {
    init_logging();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for topic in ["orders", "orders.out", "orders.dlq"] {
        mock.create_topic(topic, 3, 1).unwrap();
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = weft::Config::with_brokers(&bootstrap);
    config.kafka.group_id = "outage".into();
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
    // Emits give up quickly, so an outage would use up every attempt many times over.
    config.kafka.producer.insert("message.timeout.ms".into(), "2000".into());
    config.plugins.dir = dir;
    config.dlq.create_topics = false;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    plugin_config(&mut config, "echo", &[("topic", "orders"), ("output-topic", "orders.out")]);

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap();
    enqueue(&producer, 0..EVENTS / 2);
    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    let handled = || metrics.handled.with_label_values(&["orders", "echo"]).get() as usize;
    assert!(
        eventually(Duration::from_secs(60), || handled() >= 20).await,
        "nothing handled before the outage"
    );
    assert!(handled() < EVENTS / 2, "everything was handled before the outage; the test shows nothing");

    mock.broker_down(1).unwrap();
    tokio::time::sleep(Duration::from_secs(30)).await;
    mock.broker_up(1).unwrap();
    enqueue(&producer, EVENTS / 2..EVENTS);

    assert!(
        eventually(Duration::from_secs(120), || handled() >= EVENTS).await,
        "only {} of {EVENTS} events handled after the broker came back",
        handled()
    );
    let dead_lettered: u64 = ["retries_exhausted", "trap", "timeout", "permanent_error"]
        .iter()
        .map(|reason| metrics.dead_lettered.with_label_values(&["orders", reason]).get())
        .sum();
    assert_eq!(dead_lettered, 0, "events were dead-lettered because the broker was away");
    assert!(eventually(Duration::from_secs(30), || metrics.in_flight.get() == 0).await);
    host.shutdown().await.unwrap();
    let offsets = committed_and_end_at(&bootstrap, "outage", "orders", 3);
    for (p, (committed, end)) in offsets.iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}
