//! The four example systems under examples/, end to end against the broker: each example's own
//! weft.toml, plugins and sample records (examples/<name>/records.jsonl, written with
//! `weft::cli::produce`, the code behind `weft produce`), plus generated load where ordering or volume
//! matters. Topic names get a per-run suffix so the tests can run again on the same broker; each
//! plugin is subscribed to what its own `describe()` asks for, on the renamed topics.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use weft::config::SubscriptionSpec;
use weft_tests::*;

const WAIT: Duration = Duration::from_secs(90);

/// One example system, loaded for this run.
struct Example {
    config: weft::Config,
    records: Vec<weft::cli::produce::Record>,
    /// Example topic name -> this run's topic.
    topics: HashMap<&'static str, String>,
}

impl Example {
    /// Loads examples/`name` with every topic of `topics` (name, partitions) renamed and created,
    /// its plugins taken from `plugins` (id, component), and the test broker's settings.
    async fn load(name: &str, topics: &[(&'static str, i32)], plugins: &[(&str, PathBuf)]) -> Self {
        init_logging();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
        let run = unique("x");
        let mut config_text = std::fs::read_to_string(root.join("weft.toml")).unwrap();
        let mut records_text = std::fs::read_to_string(root.join("records.jsonl")).unwrap();
        let mut renamed = HashMap::new();
        for (topic, partitions) in topics {
            let new = format!("{topic}-{run}");
            config_text = config_text.replace(&format!("\"{topic}\""), &format!("\"{new}\""));
            records_text =
                records_text.replace(&format!("\"topic\": \"{topic}\""), &format!("\"topic\": \"{new}\""));
            create_topic(&new, *partitions).await;
            renamed.insert(*topic, new);
        }
        let mut config = weft::Config::parse(&config_text).expect("the example's weft.toml parses");
        let paths: Vec<(&str, String)> =
            plugins.iter().map(|(id, path)| (*id, path.display().to_string())).collect();
        let paths: Vec<(&str, &str)> = paths.iter().map(|(id, path)| (*id, path.as_str())).collect();
        let test = weft_tests::config(&plugins_dir(&paths));
        config.kafka = test.kafka;
        config.plugins.dir = test.plugins.dir;
        config.plugins.cache_dir = test.plugins.cache_dir;
        config.plugins.reload_debounce_ms = test.plugins.reload_debounce_ms;
        config.http = test.http;
        // Schema files are named from the repository root, where `weft run` is started.
        let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for topic in config.topics.values_mut() {
            if let Some(schema) = topic.schema.as_mut().filter(|s| !s.contains("://")) {
                *schema = repository.join(&*schema).display().to_string();
            }
        }
        config.validate().expect("the example's configuration is valid");
        let records = weft::cli::produce::parse(&records_text).expect("records.jsonl parses");
        let mut example = Example { config, records, topics: renamed };
        for (id, path) in plugins {
            example.subscribe_as_described(id, path).await;
        }
        example
    }

    /// Subscribes plugin `id` to what its `describe()` asks for, on this run's topics (a topic
    /// the example does not list is a failure: the plugin and the example disagree).
    async fn subscribe_as_described(&mut self, id: &str, path: &Path) {
        let plugin = weft::cli::invoke::check(path, &Default::default()).await.expect("the plugin loads");
        let subscriptions = plugin
            .description
            .subscriptions
            .iter()
            .map(|s| SubscriptionSpec { topic: self.topic(&s.topic), ..s.clone() })
            .collect();
        let settings = self.config.plugin.get_mut(id).expect("the example configures the plugin");
        settings.subscriptions = Some(subscriptions);
    }

    /// This run's name of the example's `topic`.
    fn topic(&self, topic: &str) -> String {
        self.topics[topic].clone()
    }

    /// Writes the example's records and then `extra`, as `weft produce` does.
    async fn produce(&self, extra: &[weft::cli::produce::Record]) {
        let all: Vec<_> = self.records.iter().chain(extra).cloned().collect();
        let written =
            weft::cli::produce::send(&self.config.kafka, &all).await.expect("producing the records");
        assert_eq!(written, all.len());
    }
}

fn record(topic: &str, key: &str, value: &Value) -> weft::cli::produce::Record {
    weft::cli::produce::Record {
        topic: topic.to_string(),
        partition: None,
        key: Some(key.to_string()),
        headers: Vec::new(),
        value: Some(value.to_string().into_bytes()),
    }
}

fn json_of(output: &Output) -> Value {
    serde_json::from_slice(&output.value)
        .unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(&output.value)))
}

fn by_id(outputs: &[Output]) -> BTreeMap<String, &Output> {
    outputs.iter().map(|o| (o.header("ce_id").unwrap_or_default().to_string(), o)).collect()
}

fn built(package: &str) -> PathBuf {
    PathBuf::from(match package {
        "audit" => AUDIT_WASM,
        "recurring" => RECURRING_WASM,
        "order-saga" => ORDER_SAGA_WASM,
        "resource-catalog" => RESOURCE_CATALOG_WASM,
        "detection" => DETECTION_WASM,
        other => panic!("no plugin {other}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn todo_app_plain_json_through_rust_javascript_and_python_plugins() {
    let plugins = [
        ("audit", built("audit")),
        ("recurring", built("recurring")),
        ("task-updates", polyglot_plugin("task-updates.wasm")),
        ("notifications", polyglot_plugin("notifications.wasm")),
    ];
    let topics =
        [("task-events", 3), ("reminders", 1), ("audit-log", 1), ("task-updates", 1), ("notifications", 1)];
    let example = Example::load("todo", &topics, &plugins).await;
    let host = weft::Host::start(example.config.clone()).await.expect("host starts with the Todo plugins");
    example.produce(&[]).await;

    // Five task records with an id, and the next occurrence of the completed weekly task.
    let audit = read(&example.topic("audit-log"), 6, WAIT).await;
    let audit = by_id(&audit);
    let ids: Vec<&str> = audit.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        [
            "evt-1001-audit",
            "evt-1002-audit",
            "evt-1003-audit",
            "evt-1004-audit",
            "evt-1004-recur-audit",
            "evt-1005-audit"
        ]
    );
    let created = audit["evt-1001-audit"];
    assert_eq!(created.key.as_deref(), Some("user-7"), "keyed by user");
    assert_eq!(created.header("ce_subject"), Some("/tasks/task-42"));
    let record = json_of(created);
    assert_eq!((record["action"].as_str(), record["task_id"].as_str()), (Some("created"), Some("task-42")));
    assert_eq!(record["event_time"], "2026-11-23T09:30:00Z", "time from the record's timestamp field");

    // The recurring plugin wrote the next task back in the app's own shape.
    let tasks = read(&example.topic("task-events"), 7, WAIT).await;
    let next =
        tasks.iter().find(|t| t.header("ce_id") == Some("evt-1004-recur")).expect("the next occurrence");
    assert_eq!(next.header("ce_type"), Some("com.example.task.created"));
    assert_eq!(next.key.as_deref(), Some("user-7"));
    let next = json_of(next);
    assert_eq!(next["event_type"], "created");
    assert_eq!(next["event_id"], "evt-1004-recur");
    assert_eq!(next["user_id"], "user-7");
    assert_eq!(next["task_data"]["task_id"], "task-42@2026-12-01");
    assert_eq!(next["task_data"]["due_date"], "2026-12-01");
    assert_eq!(next["task_data"]["previous_task_id"], "task-42");
    assert_eq!(next["task_data"]["title"], "Water the plants (and the herbs)");

    let updates = read(&example.topic("task-updates"), 6, WAIT).await;
    let updates = by_id(&updates);
    assert_eq!(json_of(updates["update-evt-1004"])["change"], "completed");
    assert_eq!(json_of(updates["update-evt-1004-recur"])["task_id"], "task-42@2026-12-01");

    let notifications = read(&example.topic("notifications"), 1, WAIT).await;
    assert_eq!(notifications[0].header("ce_id"), Some("notify-rem-2001"));
    assert_eq!(json_of(&notifications[0])["message"], "Renew passport is due tomorrow");

    // A task record without an id and a reminder nobody can deliver are dead-lettered as written.
    let dead = read(&format!("{}.dlq", example.topic("task-events")), 1, WAIT).await;
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("invalid_cloudevent"));
    assert!(dead[0].header("weft.dlq.error").unwrap().contains("`event_id` field (id_field)"));
    assert_eq!(json_of(&dead[0])["event_type"], "deleted", "the original bytes");
    let dead = read(&format!("{}.dlq", example.topic("reminders")), 1, WAIT).await;
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("permanent_error"));
    assert_eq!(dead[0].header("weft.dlq.plugin"), Some("notifications"));
    assert!(dead[0].header("weft.dlq.error").unwrap().contains("unknown reminder_type '1_week_before'"));

    // Nothing else arrives: one audit record and one update per event, nothing twice.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(read_all(&example.topic("audit-log"), Duration::from_secs(2)).await.len(), 6);
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_sagas_keep_each_orders_steps_in_order_and_carry_the_trace() {
    let topics = [("oms.saga.events", 3), ("oms.order.events", 3)];
    let example = Example::load("orders", &topics, &[("order-saga", built("order-saga"))]).await;
    let saga_topic = example.topic("oms.saga.events");
    // Forty more orders, each through the whole saga, their steps interleaved.
    const STEPS: [(&str, Option<&str>, &str); 5] = [
        ("OrderPlaced", None, "PENDING"),
        ("PaymentAuthorized", Some("PENDING"), "PAID"),
        ("InventoryReserved", Some("PAID"), "CONFIRMED"),
        ("OrderShipped", Some("CONFIRMED"), "SHIPPED"),
        ("OrderDelivered", Some("SHIPPED"), "DELIVERED"),
    ];
    let mut generated = Vec::new();
    for (step, (name, from, _)) in STEPS.iter().enumerate() {
        for order in 0..40 {
            let order_id = format!("order-gen-{order}");
            let value = json!({
                "event_id": format!("gen-{order}-{step}"), "event_type": name, "order_id": order_id,
                "saga_id": format!("saga-gen-{order}"), "from_status": from,
                "occurred_at": "2026-11-23T10:30:00Z", "payload": {},
            });
            generated.push(record(&saga_topic, &order_id, &value));
        }
    }
    let host = weft::Host::start(example.config.clone()).await.expect("host starts with order-saga");
    example.produce(&generated).await;

    let statuses = read(&example.topic("oms.order.events"), 7 + 40 * 5, WAIT).await;
    let mut per_order: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for output in &statuses {
        let status = json_of(output);
        assert_eq!(output.key.as_deref(), status["order_id"].as_str(), "keyed by order");
        per_order
            .entry(status["order_id"].as_str().unwrap().into())
            .or_default()
            .push(status["status"].as_str().unwrap().into());
    }
    assert_eq!(per_order["order-1001"], ["PENDING", "PAID", "CONFIRMED", "SHIPPED"]);
    assert_eq!(per_order["order-1002"], ["PENDING", "PAID", "CANCELLED"]);
    for order in 0..40 {
        assert_eq!(
            per_order[&format!("order-gen-{order}")],
            STEPS.map(|(_, _, status)| status),
            "order {order}"
        );
    }
    assert!(!per_order.contains_key("order-1003"), "no status for steps that do not fit");
    let cancelled = json_of(by_id(&statuses)["saga-6-status"]);
    assert_eq!(cancelled["reason"], "sku-7 out of stock");

    // The saga's trace goes on in the status event: same trace id, a new span.
    let placed = by_id(&statuses)["saga-1-status"];
    let traceparent = placed.header("ce_traceparent").expect("the status event carries the trace");
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    assert!(!traceparent.contains("00f067aa0ba902b7"), "a child span of the handler call: {traceparent}");

    // Dead letters are the saga's records as written: plain JSON, named by their event_id.
    let dead = read(&format!("{saga_topic}.dlq"), 2, WAIT).await;
    let dead: BTreeMap<String, &Output> =
        dead.iter().map(|d| (json_of(d)["event_id"].as_str().unwrap().to_string(), d)).collect();
    let errors: Vec<(&str, &str)> = ["saga-8", "saga-9"]
        .iter()
        .map(|id| (dead[*id].header("weft.dlq.reason").unwrap(), dead[*id].header("weft.dlq.error").unwrap()))
        .collect();
    assert_eq!(errors[0].0, "permanent_error");
    assert!(
        errors[0].1.contains("OrderShipped moves an order from CONFIRMED, but the saga says it was PENDING"),
        "{}",
        errors[0].1
    );
    assert!(errors[1].1.contains("OrderTeleported is not a step of the order saga"), "{}", errors[1].1);
    assert_eq!(dead["saga-8"].header("weft.dlq.attempts"), Some("1"), "permanent: not retried");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_resource_events_retry_until_their_kind_is_deployed() {
    let topics = [("platform.resource.events", 1), ("platform.resource.index", 1)];
    let mut example =
        Example::load("platform", &topics, &[("resource-catalog", built("resource-catalog"))]).await;
    // The kinds directory, with the example's definitions, where the test can add one.
    let kinds = std::env::temp_dir().join(unique("weft-kinds"));
    std::fs::create_dir_all(&kinds).unwrap();
    let examples_kinds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/platform/kinds");
    for entry in std::fs::read_dir(examples_kinds).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), kinds.join(entry.file_name())).unwrap();
    }
    let grants = &mut example.config.plugin.get_mut("resource-catalog").unwrap().grants;
    assert_eq!(grants.dirs[0].guest, "/kinds");
    grants.dirs[0].host = kinds.clone();
    let policy = example.config.retry_policy("resource-catalog");
    assert_eq!(
        (policy.max_attempts, policy.initial_backoff, policy.multiplier, policy.max_backoff),
        (5, Duration::from_secs(1), 2.0, Duration::from_secs(60)),
        "the platform's policy"
    );
    let host = weft::Host::start(example.config.clone()).await.expect("host starts with resource-catalog");
    example.produce(&[]).await;

    // The pipeline kind is not defined yet: its event fails and waits for a retry, then the
    // definition is rolled out.
    let retried = || weft::ops::metrics::total(&host.metrics().retried);
    assert!(eventually(WAIT, || retried() >= 1).await, "the undefined kind's event is retried");
    std::fs::write(kinds.join("pipeline.json"), r#"{"required": ["spec.schedule"]}"#).unwrap();

    let index = read(&example.topic("platform.resource.index"), 4, WAIT).await;
    let index = by_id(&index);
    let ids: Vec<&str> = index.keys().map(String::as_str).collect();
    assert_eq!(
        ids,
        ["cat-1-index", "cat-2-index", "cat-4-index", "cat-5-index"],
        "binary, structured, retried"
    );
    assert_eq!(json_of(index["cat-5-index"])["state"], "deleted");
    let model = json_of(index["cat-1-index"]);
    assert_eq!((model["kind"].as_str(), model["state"].as_str()), (Some("model"), Some("active")));
    assert_eq!(index["cat-4-index"].key.as_deref(), Some("res-pipe-1"), "keyed by resource");

    // A model without its artifact is refused at once; a kind that never arrives runs out of
    // attempts (1 + 2 + 4 + 8 s of backoff) and is dead-lettered with the platform's suffix.
    let dead = read(&format!("{}.dlq", example.topic("platform.resource.events")), 3, WAIT).await;
    let dead = by_id(&dead);
    // A resource whose data does not match the catalog's schema never reaches the plugin.
    assert_eq!(dead["cat-7"].header("weft.dlq.reason"), Some("schema_invalid"));
    let error = dead["cat-7"].header("weft.dlq.error").unwrap();
    assert!(error.contains("at /version: \"two\" is not of type \"integer\""), "{error}");
    assert!(error.contains("\"owner\" is a required property"), "{error}");
    assert_eq!(dead["cat-3"].header("weft.dlq.reason"), Some("permanent_error"));
    assert!(dead["cat-3"].header("weft.dlq.error").unwrap().contains("a model has spec.artifact_uri"));
    assert_eq!(dead["cat-6"].header("weft.dlq.reason"), Some("retries_exhausted"));
    assert_eq!(dead["cat-6"].header("weft.dlq.attempts"), Some("5"));
    assert!(dead["cat-6"].header("weft.dlq.error").unwrap().contains("kind notebook is not defined yet"));
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detection_frames_across_six_partitions_become_one_alert_per_frame() {
    let topics = [("detection-events", 6), ("detection-alerts", 6)];
    let example = Example::load("detection", &topics, &[("detection", built("detection"))]).await;
    let frames = example.topic("detection-events");
    // 24 cameras, 25 frames each: a person at 0.9 in every third frame, at 0.3 in the others.
    let mut generated = Vec::new();
    for frame in 0..25 {
        for camera in 0..24 {
            let confidence = if frame % 3 == 0 { 0.9 } else { 0.3 };
            let value = json!({
                "camera_id": format!("cam-{camera}"), "frame_id": format!("g-{camera}-{frame}"),
                "model": "yolo-v8n", "captured_at": "2026-11-23T12:01:00Z",
                "detections": [{"label": "person", "confidence": confidence}],
            });
            generated.push(record(&frames, &format!("cam-{camera}"), &value));
        }
    }
    let host = weft::Host::start(example.config.clone()).await.expect("host starts with detection");
    example.produce(&generated).await;

    let expected = 2 + 24 * 9;
    let alerts = read(&example.topic("detection-alerts"), expected, WAIT).await;
    assert_eq!(alerts.len(), expected);
    let mut per_camera: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for alert in &alerts {
        let alert = json_of(alert);
        let frame = alert["frame_id"].as_str().unwrap();
        if let Some(number) =
            frame.rsplit('-').next().and_then(|n| n.parse().ok()).filter(|_| frame.starts_with("g-"))
        {
            per_camera.entry(alert["camera_id"].as_str().unwrap().into()).or_default().push(number);
        }
    }
    for (camera, frames) in &per_camera {
        assert_eq!(frames, &(0..25).filter(|f| f % 3 == 0).collect::<Vec<u32>>(), "{camera}: in order, once");
    }
    assert_eq!(per_camera.len(), 24);

    let sample: Vec<Value> =
        alerts.iter().map(json_of).filter(|a| !a["frame_id"].as_str().unwrap().starts_with("g-")).collect();
    let entrance = sample.iter().find(|a| a["frame_id"] == "f-1").expect("an alert for f-1");
    assert_eq!(entrance["severity"], "warning");
    assert_eq!(
        entrance["labels"],
        json!({"person": {"count": 2, "max_confidence": 0.91}}),
        "the cat is not watched"
    );
    let yard = sample.iter().find(|a| a["frame_id"] == "f-3").expect("an alert for f-3");
    assert_eq!(yard["severity"], "critical");
    assert_eq!(yard["labels"]["fire"]["count"], 1);

    let dead = read(&format!("{frames}.dlq"), 2, WAIT).await;
    let mut reasons: Vec<&str> = dead.iter().map(|d| d.header("weft.dlq.reason").unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_cloudevent", "permanent_error"]);
    let bad = dead.iter().find(|d| d.header("weft.dlq.reason") == Some("permanent_error")).unwrap();
    assert!(
        bad.header("weft.dlq.error").unwrap().contains("confidence 1.7 of person is not between 0 and 1")
    );
    host.shutdown().await.unwrap();
}
