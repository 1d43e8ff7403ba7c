//! Fault injection with librdkafka's mock cluster: while the dead-letter topic refuses writes, the
//! poison event's offset is not committed; once the topic accepts them again, the dead letter is
//! written and the commit moves to the end. Nothing is lost, and `/readyz` says why the host is
//! stuck while it is.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaRespErr;
use weft::Host;
use weft_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_waits_for_an_acknowledged_dead_letter_write() {
    init_logging();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for topic in ["orders", "orders.out", "orders.dlq"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    mock.topic_error("orders.dlq", RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED).unwrap();

    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let config = mock_config(&bootstrap, "dlq-failure", &dir, "orders", "orders.out");

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    let event = |id: &str, extra: &[(&str, &[u8])]| {
        let mut headers = vec![
            ("ce_specversion".to_string(), b"1.0".to_vec()),
            ("ce_id".to_string(), id.as_bytes().to_vec()),
            ("ce_source".to_string(), b"/orders".to_vec()),
            ("ce_type".to_string(), b"order.created".to_vec()),
        ];
        headers.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_vec())));
        headers
    };
    for (id, extra) in
        [("o-0", vec![]), ("o-1", vec![("ce_failmode", b"permanent".as_slice())]), ("o-2", vec![])]
    {
        let headers = event(id, &extra).iter().fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
            h.insert(rdkafka::message::Header { key: k, value: Some(v.as_slice()) })
        });
        producer
            .send(FutureRecord::to("orders").key(id).payload("{}").headers(headers), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }

    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || metrics.dlq_write_failures.get() >= 2).await,
        "the dead-letter write was never refused"
    );
    // Give the auto-commit (every second) time to run: it must not move past o-1 (offset 1).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let stuck = committed_and_end_at(&bootstrap, "dlq-failure", "orders", 1)[0].0;
    assert!(stuck <= 1, "committed {stuck} while o-1's dead letter was unwritten");
    assert_eq!(metrics.dead_lettered.with_label_values(&["orders", "permanent_error"]).get(), 0);
    // The operator is told: not ready, with the reason.
    let addr = host.http_addr().expect("http listener");
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("dead-letter writes are failing: orders.dlq"), "{body}");
    assert_eq!(metrics.not_ready.get(), 1);

    mock.topic_error("orders.dlq", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || metrics
            .dead_lettered
            .with_label_values(&["orders", "permanent_error"])
            .get()
            == 1)
        .await,
        "the dead letter was not written once the topic accepted writes"
    );
    assert!(eventually(Duration::from_secs(10), || metrics.in_flight.get() == 0).await);
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "ready again once the dead letter is written: {body}");
    host.shutdown().await.unwrap();
    assert_eq!(committed_and_end_at(&bootstrap, "dlq-failure", "orders", 1)[0], (3, 3));
    assert_eq!(metrics.handled.with_label_values(&["orders", "echo"]).get(), 2);
}

/// One topic's dead-letter topic refusing writes holds back only the record waiting for it: with
/// a single lane, every event of another topic is still handled meanwhile, and the record is
/// dead-lettered (and its partition committed) once the topic accepts writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_dead_letter_topic_holds_back_nothing_else() {
    init_logging();
    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for topic in ["a", "b", "out", "a.dlq", "b.dlq"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    mock.topic_error("a.dlq", RDKafkaRespErr::RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED).unwrap();

    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = mock_config(&bootstrap, "dlq-aside", &dir, "a", "out");
    config.pipeline.lanes = 1;
    config.plugin.get_mut("echo").unwrap().subscriptions = Some(
        ["a", "b"]
            .map(|topic| weft::config::SubscriptionSpec {
                topic: topic.into(),
                types: vec![],
                sources: vec![],
            })
            .to_vec(),
    );

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    // Not a CloudEvent: bound for a.dlq.
    producer
        .send(FutureRecord::to("a").key("k").payload("not a cloudevent"), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    for n in 0..20 {
        let id = format!("b-{n}");
        let attributes =
            [("ce_specversion", "1.0"), ("ce_id", id.as_str()), ("ce_source", "/b"), ("ce_type", "t")];
        send_headers(&producer, "b", "k", &attributes, "{}").await;
    }

    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(30), || metrics.handled.with_label_values(&["b", "echo"]).get() == 20)
            .await,
        "b's events wait behind a's unwritable dead letter: {} of 20 handled",
        metrics.handled.with_label_values(&["b", "echo"]).get()
    );
    assert!(metrics.dlq_write_failures.get() >= 1, "the dead-letter write was never refused");
    let addr = host.http_addr().expect("http listener");
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("a.dlq"), "/readyz names the topic: {body}");
    // b commits to its end; a commits nothing past its waiting record.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(committed_and_end_at(&bootstrap, "dlq-aside", "b", 1)[0], (20, 20));
    assert!(committed_and_end_at(&bootstrap, "dlq-aside", "a", 1)[0].0 <= 0);

    mock.topic_error("a.dlq", RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || metrics
            .dead_lettered
            .with_label_values(&["a", "invalid_cloudevent"])
            .get()
            == 1)
        .await,
        "the dead letter was not written once a.dlq accepted writes"
    );
    host.shutdown().await.unwrap();
    assert_eq!(committed_and_end_at(&bootstrap, "dlq-aside", "a", 1)[0], (1, 1));
}
