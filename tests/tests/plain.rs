//! Plain-JSON topics against the broker: a Todo `task-events` record written by an ordinary client
//! (no CloudEvents headers) reaches a plugin with the mapped attributes and its bytes unchanged; one
//! without the mapped id field is dead-lettered byte for byte with the reason; a CloudEvent on the
//! same topic is still read as one.

use std::time::Duration;

use weft_tests::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_json_records_are_mapped_to_cloudevents_and_bad_ones_dead_lettered() {
    let (topic, output) = topic_pair("plain", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    let mapping = format!(
        r#"[topics."{topic}"]
format = "json"
source = "/todo/api"
id_field = "event_id"
type_field = "event_type"
type_prefix = "com.example.task."
time_field = "timestamp"
subject_field = "task_data.task_id"
"#
    );
    // As written in a configuration file.
    config.topics = weft::Config::parse(&format!("[kafka]\nbrokers = \"x\"\n{mapping}")).unwrap().topics;
    config.validate().unwrap();
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = weft::Host::start(config).await.expect("host starts");

    let producer = TestProducer::new();
    let created = br#"{"event_id":"evt-1","event_type":"created","timestamp":"2026-11-23T09:30:00Z","user_id":"user-7","task_data":{"task_id":"task-42","title":"Water the plants"}}"#;
    let anonymous = br#"{"event_type":"created","user_id":"user-7","task_data":{"task_id":"task-43"}}"#;
    producer.raw(&topic, Some(0), Some(b"user-7"), &[], Some(created)).await;
    producer.raw(&topic, Some(0), Some(b"user-7"), &[("x-origin", Some(b"todo-api"))], Some(anonymous)).await;
    producer.event(&topic, Some(0), "user-7", "ce-1", Mode::Binary).await;

    let outputs = read(&output, 2, Duration::from_secs(60)).await;
    let plain =
        outputs.iter().find(|o| o.header("ce_id") == Some("evt-1")).expect("the plain record's output");
    // echo copies the input's id and data and puts the input's type in the subject.
    assert_eq!(plain.header("ce_subject"), Some("com.example.task.created"));
    assert_eq!(plain.header("content-type"), Some("application/json"));
    assert_eq!(plain.value, created, "data byte for byte");
    assert!(
        outputs.iter().any(|o| o.header("ce_id") == Some("ce-1")),
        "a CloudEvent on the same topic still is one"
    );

    let dead = read(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("invalid_cloudevent"));
    let error = dead[0].header("weft.dlq.error").unwrap_or_default();
    assert!(error.contains("`event_id` field (id_field)"), "{error}");
    assert_eq!(dead[0].value, anonymous, "the original bytes");
    assert_eq!(dead[0].header("x-origin"), Some("todo-api"), "and headers");
    host.shutdown().await.unwrap();
}
