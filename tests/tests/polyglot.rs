//! Plugins written in other languages run like Rust ones: the JavaScript `task-updates` plugin
//! (plugins/task-updates-js, built by scripts/js-plugins.sh, which scripts/test.sh runs) handles
//! Todo task events from a real broker, emits through the host, and fails bad events permanently.

use std::path::PathBuf;
use std::time::Duration;

use weft::Host;
use weft_tests::*;

fn js_plugin(name: &str) -> PathBuf {
    let dir = std::env::var("WEFT_TEST_JS_PLUGINS").expect(
        "WEFT_TEST_JS_PLUGINS is not set: run ./scripts/test.sh, or `export WEFT_TEST_JS_PLUGINS=$(scripts/js-plugins.sh)`",
    );
    let path = PathBuf::from(dir).join(format!("{name}.wasm"));
    assert!(path.exists(), "{} is missing: run scripts/js-plugins.sh", path.display());
    path
}

fn example(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events").join(name))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_handles_task_events_from_kafka() {
    init_logging();
    let (topic, output) = topic_pair("js-tasks", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let plugin = js_plugin("task-updates");
    let dir = plugins_dir(&[("task-updates", plugin.to_str().unwrap())]);
    let mut config = config(&dir);
    config.retry.max_attempts = Some(1);
    plugin_config(&mut config, "task-updates", &[("output-topic", &output)]);
    config.plugin.get_mut("task-updates").unwrap().subscriptions =
        Some(vec![weft::route::SubscriptionSpec {
            topic: topic.clone(),
            types: vec!["com.example.task.*".into()],
            sources: vec![],
        }]);
    let host = Host::start(config).await.expect("host starts with the JavaScript plugin");
    let loaded = host.plugins();
    assert_eq!(loaded[0].description.name, "task-updates");
    assert_eq!(loaded[0].description.subscriptions[0].types, ["com.example.task.*"]);

    let structured: &[u8] = b"application/cloudevents+json";
    let producer = TestProducer::new();
    for (key, file) in [("user-7", "task-created.json"), ("user-9", "not-a-task.json")] {
        let value = example(file);
        producer
            .raw(&topic, None, Some(key.as_bytes()), &[("content-type", Some(structured))], Some(&value))
            .await;
    }

    let outputs = read(&output, 1, Duration::from_secs(120)).await;
    let update = &outputs[0];
    assert_eq!(update.key.as_deref(), Some("user-7"));
    assert_eq!(update.header("ce_type"), Some("com.example.task.update"));
    assert_eq!(update.header("ce_id"), Some("update-7f3c1a52-6f0e-4f43-9a39-5c1d8e2b9a10"));
    assert_eq!(update.header("ce_subject"), Some("/users/user-7"));
    let traceparent = update.header("ce_traceparent").expect("the host continued the input's trace");
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    let data: serde_json::Value = serde_json::from_slice(&update.value).unwrap();
    assert_eq!(data["change"], "created");
    assert_eq!(data["task_id"], "task-42");
    assert_eq!(data["title"], "Renew passport");
    assert_eq!(data["source_offset"], 0);

    let dead = read(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("permanent_error"));
    assert_eq!(dead[0].header("weft.dlq.plugin"), Some("task-updates"));
    assert!(dead[0].header("weft.dlq.error").unwrap().contains("has no task_id/user_id"));
    assert!(eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await);
    host.shutdown().await.expect("graceful shutdown");
}
