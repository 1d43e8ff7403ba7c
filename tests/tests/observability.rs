//! The HTTP listener against a real broker: `/metrics` moves by exactly what happened, `/readyz`
//! follows group membership, `/plugins` shows what is loaded and refused.

use std::time::Duration;

use weft::Host;
use weft_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_exactly_what_happened() {
    let (topic, output) = topic_pair("obs", 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    std::fs::write(dir.join("broken.wasm"), b"not wasm").unwrap();
    let mut config = config(&dir);
    config.retry.max_attempts = Some(1);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = Host::start(config).await.unwrap();
    let addr = host.http_addr().expect("listener enabled");

    let producer = TestProducer::new();
    for n in 0..5 {
        producer.event(&topic, Some(0), "k", &format!("ok-{n}"), Mode::Binary).await;
    }
    producer.event_with(&topic, Some(0), "k", "bad", Mode::Structured, &[("failmode", "permanent")]).await;
    let ct: &[u8] = b"application/cloudevents+json";
    producer.raw(&topic, Some(0), None, &[("content-type", Some(ct))], Some(b"{")).await;
    producer.raw(&topic, Some(0), None, &[], Some(b"plain")).await;
    assert_eq!(read(&output, 5, Duration::from_secs(60)).await.len(), 5);
    let metrics = host.metrics().clone();
    assert!(eventually(Duration::from_secs(20), || metrics.in_flight.get() == 0).await);

    let (status, body) = http_get(addr, "/metrics").await;
    assert_eq!(status, 200);
    let m = parse_metrics(&body);
    let t = topic.as_str();
    assert_eq!(metric(&m, "weft_events_received_total", &[("topic", t)]), 8.0);
    assert_eq!(metric(&m, "weft_events_invalid_total", &[("topic", t)]), 2.0);
    assert_eq!(metric(&m, "weft_events_handled_total", &[("topic", t), ("plugin", "echo")]), 5.0);
    assert_eq!(metric(&m, "weft_events_emitted_total", &[("plugin", "echo")]), 5.0);
    assert_eq!(
        metric(
            &m,
            "weft_events_failed_total",
            &[("topic", t), ("plugin", "echo"), ("reason", "permanent_error")]
        ),
        1.0
    );
    assert_eq!(
        metric(&m, "weft_events_dead_lettered_total", &[("topic", t), ("reason", "invalid_cloudevent")]),
        2.0
    );
    assert_eq!(
        metric(&m, "weft_events_dead_lettered_total", &[("topic", t), ("reason", "permanent_error")]),
        1.0
    );
    assert_eq!(metric(&m, "weft_events_retried_total", &[("topic", t)]), 0.0);
    assert_eq!(metric(&m, "weft_handler_duration_seconds_count", &[("plugin", "echo")]), 6.0);
    assert!(metric(&m, "weft_handler_duration_seconds_sum", &[("plugin", "echo")]) > 0.0);
    assert_eq!(metric(&m, "weft_events_in_flight", &[]), 0.0);
    let memory = metric(&m, "weft_plugin_memory_bytes", &[("plugin", "echo")]);
    assert!((65536.0..=64.0 * 1048576.0).contains(&memory), "instance memory {memory}");
    assert_eq!(metric(&m, "weft_partitions_assigned", &[]), 1.0);
    assert_eq!(metric(&m, "weft_plugin_reloads_total", &[("result", "refused")]), 1.0);
    assert_eq!(metric(&m, "weft_plugin_reloads_total", &[("result", "loaded")]), 1.0);
    assert_eq!(metric(&m, "weft_plugin_info", &[("plugin", "echo"), ("name", "echo")]), 1.0);

    let (status, body) = http_get(addr, "/plugins").await;
    assert_eq!(status, 200);
    let plugins: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plugins["plugins"][0]["id"], "echo");
    assert_eq!(plugins["plugins"][0]["subscriptions"][0]["topic"], topic.as_str());
    assert_eq!(plugins["plugins"][0]["digest"].as_str().map(str::len), Some(64));
    assert!(plugins["refused"][0]["reason"].as_str().unwrap().contains("not a WebAssembly file"));
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_until_the_group_is_joined() {
    init_logging();
    let topic = unique("ready-in");
    create_topic(&topic, 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);

    // A cluster that never answers: the consumer cannot join, so the host is alive but not ready.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let mut unreachable = config(&dir);
    unreachable.kafka.brokers = closed.to_string();
    unreachable.dlq.create_topics = false;
    plugin_config(&mut unreachable, "echo", &[("topic", &topic)]);
    let lonely = Host::start(unreachable).await.unwrap();
    let addr = lonely.http_addr().unwrap();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    lonely.shutdown().await.unwrap();

    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic)]);
    let host = Host::start(config).await.unwrap();
    let addr = host.http_addr().unwrap();
    let mut ready = false;
    for _ in 0..200 {
        if http_get(addr, "/readyz").await.0 == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "never ready after joining");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traceparent_is_continued_onto_emitted_events() {
    let (topic, output) = topic_pair("trace", 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = Host::start(config).await.unwrap();
    let producer = TestProducer::new();
    let input = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    producer.event_with(&topic, Some(0), "k", "traced", Mode::Binary, &[("traceparent", input)]).await;
    producer.event(&topic, Some(0), "k", "untraced", Mode::Structured).await;
    let outputs = read(&output, 2, Duration::from_secs(60)).await;
    host.shutdown().await.unwrap();

    let traced = outputs.iter().find(|o| o.header("ce_id") == Some("traced")).unwrap();
    let continued = traced.header("ce_traceparent").expect("emitted event carries a traceparent");
    let parsed = weft::ops::trace::TraceParent::parse(continued).expect("a valid traceparent");
    assert_eq!(parsed.trace_id, "0af7651916cd43dd8448eb211c80319c", "same trace");
    assert_eq!(parsed.flags, "01");
    assert_ne!(parsed.span_id, "b7ad6b7169203331", "a child span, not the input's");
    let untraced = outputs.iter().find(|o| o.header("ce_id") == Some("untraced")).unwrap();
    assert_eq!(untraced.header("ce_traceparent"), None, "no trace is invented");
}
