//! Schemas against the broker: events are checked before any handler sees them.
//!
//! JSON Schema: a topic's schema file (with a `$ref` to another file), one for an event type, and
//! schemas an event's `dataschema` names on an HTTP server under an allowed prefix. Events that match reach the
//! plugin; the others are dead-lettered as `schema_invalid` with the JSON paths of the errors, and
//! counted per topic and schema.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use weft_tests::*;

const ORDER: &str = r#"{
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["id", "items"],
    "properties": {
        "id": {"type": "string"},
        "items": {"type": "array", "minItems": 1, "items": {"$ref": "item.json"}}
    }
}"#;
const ITEM: &str =
    r#"{"type": "object", "required": ["price"], "properties": {"price": {"type": "number", "minimum": 0}}}"#;
const CANCELLED: &str = r#"{"type": "object", "required": ["id", "reason"]}"#;
const NOTED: &str =
    r#"{"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "required": ["note"]}"#;

/// Serves the files of `dir` over HTTP on a free port; gives the address, and the count of
/// requests served.
async fn serve(dir: &Path) -> (String, Arc<AtomicUsize>) {
    let (dir, requests) = (dir.to_path_buf(), Arc::new(AtomicUsize::new(0)));
    let counted = requests.clone();
    let app = axum::Router::new().route(
        "/{name}",
        axum::routing::get(move |axum::extract::Path(name): axum::extract::Path<String>| {
            counted.fetch_add(1, Ordering::SeqCst);
            let path = dir.join(name);
            async move { std::fs::read_to_string(path).map_err(|_| axum::http::StatusCode::NOT_FOUND) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, requests)
}

/// A binary-mode CloudEvent record: its headers and its JSON data.
fn event(id: &str, dataschema: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let ty =
        if id.starts_with("cancel") { "com.example.order.cancelled" } else { "com.example.order.placed" };
    let mut headers = vec![
        ("ce_specversion".to_string(), b"1.0".to_vec()),
        ("ce_id".to_string(), id.as_bytes().to_vec()),
        ("ce_source".to_string(), b"/shop".to_vec()),
        ("ce_type".to_string(), ty.as_bytes().to_vec()),
        ("content-type".to_string(), b"application/json".to_vec()),
    ];
    if let Some(dataschema) = dataschema {
        headers.push(("ce_dataschema".to_string(), dataschema.as_bytes().to_vec()));
    }
    headers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_do_not_match_their_json_schema_are_dead_lettered_with_the_paths() {
    json_schemas_checked(weft::config::DeliveryMode::AtLeastOnce).await;
}

/// With exactly-once delivery the dead letters are written by the events' transactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_exactly_once_events_that_do_not_match_are_dead_lettered_in_their_transactions() {
    json_schemas_checked(weft::config::DeliveryMode::ExactlyOnce).await;
}

async fn json_schemas_checked(mode: weft::config::DeliveryMode) {
    let (topic, output) = topic_pair("schemas", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let files = std::env::temp_dir().join(unique("weft-schemas"));
    std::fs::create_dir_all(&files).unwrap();
    std::fs::write(files.join("order.json"), ORDER).unwrap();
    std::fs::write(files.join("item.json"), ITEM).unwrap();
    std::fs::write(files.join("noted.json"), NOTED).unwrap();
    std::fs::write(files.join("cancelled.json"), CANCELLED).unwrap();
    let (server, requests) = serve(&files).await;
    let order = files.join("order.json").display().to_string();
    let cancelled = files.join("cancelled.json").display().to_string();

    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.delivery.mode = mode;
    let settings = format!(
        "[kafka]\nbrokers = \"x\"\n[topics.\"{topic}\"]\nschema = \"{order}\"\ndataschema = [\"{server}\"]\n\
         schemas = {{ \"com.example.order.cancelled\" = \"{cancelled}\" }}\n"
    );
    config.topics = weft::Config::parse(&settings).unwrap().topics;
    config.validate().unwrap();
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = weft::Host::start(config).await.expect("host starts");

    let producer = TestProducer::new();
    let noted = format!("{server}noted.json");
    let records: [(&str, Option<&str>, &[u8]); 7] = [
        ("fits", None, br#"{"id": "o1", "items": [{"price": 3}]}"#),
        ("negative", None, br#"{"id": "o2", "items": [{"price": 3}, {"price": -1}]}"#),
        // Its dataschema is under the allowed prefix: checked against that, not the topic's.
        ("unnoted", Some(&noted), br#"{"id": "o3", "items": [{"price": 3}]}"#),
        ("noted", Some(&noted), br#"{"note": "gift"}"#),
        // Not under the prefix: the topic's schema applies.
        (
            "elsewhere",
            Some("https://elsewhere.example.com/noted.json"),
            br#"{"id": "o5", "items": [{"price": 1}]}"#,
        ),
        // A cancellation has a schema of its own, by type; it needs no items.
        ("cancel-fits", None, br#"{"id": "o1", "reason": "late"}"#),
        ("cancel-bare", None, br#"{"id": "o1"}"#),
    ];
    for (id, dataschema, data) in records {
        let headers = event(id, dataschema);
        let headers: Vec<(&str, Option<&[u8]>)> =
            headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect();
        producer.raw(&topic, Some(0), Some(b"k"), &headers, Some(data)).await;
    }

    let outputs = read(&output, 4, Duration::from_secs(60)).await;
    let mut handled: Vec<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    handled.sort();
    assert_eq!(handled, ["cancel-fits", "elsewhere", "fits", "noted"]);
    let dead = read(&dlq, 3, Duration::from_secs(60)).await;
    let negative = schema_invalid_error(&dead, "negative");
    assert!(negative.contains("at /items/1/price: -1 is less than the minimum of 0"), "{negative}");
    let bare = schema_invalid_error(&dead, "cancel-bare");
    assert!(bare.contains("cancelled.json") && bare.contains("\"reason\" is a required property"), "{bare}");
    // Two events named the served schema: it was fetched once, then compiled from the cache.
    assert_eq!(requests.load(Ordering::SeqCst), 1, "the schema is fetched once");
    let unnoted = schema_invalid_error(&dead, "unnoted");
    assert!(
        unnoted.contains("noted.json") && unnoted.contains("\"note\" is a required property"),
        "{unnoted}"
    );

    let metrics = host.metrics().render();
    let invalid =
        format!("weft_schema_checks_total{{outcome=\"invalid\",schema=\"{order}\",topic=\"{topic}\"}} 1");
    assert!(metrics.contains(&invalid), "{invalid} in\n{metrics}");
    let valid =
        format!("weft_schema_checks_total{{outcome=\"valid\",schema=\"{noted}\",topic=\"{topic}\"}} 1");
    assert!(metrics.contains(&valid), "{valid}");
    let letters = format!("weft_events_dead_lettered_total{{reason=\"schema_invalid\",topic=\"{topic}\"}} 3");
    assert!(metrics.contains(&letters), "{letters}");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_schema_file_stops_the_start_with_its_key_named() {
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    let settings = "[kafka]\nbrokers = \"x\"\n[topics.\"orders\"]\nschema = \"no/such/order.json\"\n";
    config.topics = weft::Config::parse(settings).unwrap().topics;
    let error = weft::Host::start(config).await.err().expect("the start fails");
    let error = format!("{error:#}");
    assert!(error.contains("topics.\"orders\".schema") && error.contains("no/such/order.json"), "{error}");
}
