//! Plugins written in other languages run like Rust ones: the JavaScript `task-updates` plugin
//! (plugins/task-updates-js) and the Python `notifications` plugin (plugins/notifications-py), built
//! by scripts/polyglot-plugins.sh (which scripts/test.sh runs), handle Todo events from a real
//! broker, emit through the host, and fail bad events permanently.

use std::time::Duration;

use weft::Host;
use weft_tests::*;

/// A host running plugin `id` from `path`, reading `topic` (events of `types`) and writing `output`.
async fn host_with(id: &str, path: &std::path::Path, topic: &str, types: &str, output: &str) -> Host {
    let dir = plugins_dir(&[(id, path.to_str().unwrap())]);
    let mut config = config(&dir);
    config.retry.max_attempts = Some(1);
    plugin_config(&mut config, id, &[("output-topic", output)]);
    config.plugin.get_mut(id).unwrap().subscriptions = Some(vec![weft::config::SubscriptionSpec {
        topic: topic.to_string(),
        types: vec![types.into()],
        sources: vec![],
    }]);
    Host::start(config).await.expect("host starts with the plugin")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_plugin_handles_task_events_from_kafka() {
    init_logging();
    let (topic, output) = topic_pair("js-tasks", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let plugin = polyglot_plugin("task-updates.wasm");
    let host = host_with("task-updates", &plugin, &topic, "com.example.task.*", &output).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_plugin_handles_reminders_from_kafka() {
    init_logging();
    let (topic, output) = topic_pair("py-reminders", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let plugin = polyglot_plugin("notifications.wasm");
    let host = host_with("notifications", &plugin, &topic, "com.example.reminder.*", &output).await;
    assert_eq!(host.plugins()[0].description.name, "notifications");

    let producer = TestProducer::new();
    let structured: &[u8] = b"application/cloudevents+json";
    for (id, kind) in [("r-1", "1_day_before"), ("r-2", "next_week"), ("r-3", "1_hour_before")] {
        let event = serde_json::json!({
            "specversion": "1.0", "id": id, "source": "/todo/reminders",
            "type": "com.example.reminder.due", "datacontenttype": "application/json",
            "data": {
                "task_id": "task-42", "user_id": "user-7", "title": "Renew passport",
                "remind_at": "2026-11-24T09:00:00Z", "reminder_type": kind,
            },
        });
        let value = serde_json::to_vec(&event).unwrap();
        producer
            .raw(&topic, None, Some(b"user-7"), &[("content-type", Some(structured))], Some(&value))
            .await;
    }

    // One user's notifications in order; the unknown reminder type is dead-lettered.
    let outputs = read(&output, 2, Duration::from_secs(120)).await;
    let messages: Vec<String> = outputs
        .iter()
        .map(|o| {
            assert_eq!(o.key.as_deref(), Some("user-7"));
            assert_eq!(o.header("ce_type"), Some("com.example.notification.requested"));
            let data: serde_json::Value = serde_json::from_slice(&o.value).unwrap();
            data["message"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(messages, ["Renew passport is due tomorrow", "Renew passport is due in one hour"]);
    let dead = read(&dlq, 1, Duration::from_secs(60)).await;
    // Dead-lettered byte for byte: the structured record with its id inside.
    assert_eq!(dead[0].header("weft.original.offset"), Some("1"));
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&dead[0].value).unwrap()["id"], "r-2");
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("permanent_error"));
    assert!(dead[0].header("weft.dlq.error").unwrap().contains("unknown reminder_type 'next_week'"));
    assert!(eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await);
    host.shutdown().await.expect("graceful shutdown");
}
