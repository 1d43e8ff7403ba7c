//! Avro against the broker and a real schema registry (`scripts/registry.sh`): records in the
//! registry's wire format reach handlers as JSON, with `dataschema` naming the writer's subject and
//! version; records the registry cannot decode are dead-lettered as `schema_invalid`; a registry
//! that does not answer makes events wait, never dead-letters them; what a handler emits to an
//! Avro topic is encoded to its subject's latest schema; with `avro = "bytes"` handlers get the
//! record as it arrived, once it decodes.

use std::time::Duration;

use apache_avro::Schema;
use weft_tests::*;

const ORDER: &str = r#"{"type": "record", "name": "Order", "namespace": "com.example",
    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"},
               {"name": "note", "type": ["null", "string"], "default": null}]}"#;

/// Registers `schema` under `subject`; gives its id.
async fn register(registry: &str, subject: &str, schema: &str) -> u32 {
    let body = serde_json::json!({ "schema": schema });
    let response = reqwest::Client::new()
        .post(format!("{registry}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body.to_string())
        .send()
        .await
        .expect("the registry answers");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "registering {subject}: {status} {text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["id"].as_u64().expect("an id") as u32
}

/// `value` in the registry's wire format for schema `id`.
fn wire(schema: &Schema, id: u32, value: apache_avro::types::Value) -> Vec<u8> {
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(schema).build().unwrap();
    let mut bytes = vec![0];
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend(writer.write_value_to_vec(value).unwrap());
    bytes
}

fn order(id: &str, qty: i32) -> apache_avro::types::Value {
    use apache_avro::types::Value;
    Value::Record(vec![
        ("id".into(), Value::String(id.into())),
        ("qty".into(), Value::Int(qty)),
        ("note".into(), Value::Union(0, Box::new(Value::Null))),
    ])
}

/// Binary-mode CloudEvent headers for an Avro record.
fn headers(id: &str) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("ce_specversion", b"1.0".to_vec()),
        ("ce_id", id.as_bytes().to_vec()),
        ("ce_source", b"/shop".to_vec()),
        ("ce_type", b"com.example.order.placed".to_vec()),
        ("content-type", b"application/avro".to_vec()),
    ]
}

async fn produce(producer: &TestProducer, topic: &str, id: &str, value: &[u8]) {
    let headers = headers(id);
    let headers: Vec<(&str, Option<&[u8]>)> = headers.iter().map(|(k, v)| (*k, Some(v.as_slice()))).collect();
    producer.raw(topic, Some(0), Some(b"k"), &headers, Some(value)).await;
}

fn avro_config(topic: &str, output: &str, registry: &str) -> weft::Config {
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    let settings = format!(
        "[kafka]\nbrokers = \"x\"\n[schema_registry]\nurl = \"{registry}\"\ntimeout_ms = 2000\n\
         [topics.\"{topic}\"]\navro = \"json\"\n[topics.\"{output}\"]\navro_subject = \"{output}-value\"\n"
    );
    let parsed = weft::Config::parse(&settings).unwrap();
    config.topics = parsed.topics;
    config.schema_registry = parsed.schema_registry;
    config.validate().unwrap();
    plugin_config(&mut config, "echo", &[("topic", topic), ("output-topic", output)]);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_records_reach_handlers_as_json_and_emits_are_encoded_to_the_subject() {
    let registry = registry();
    let (topic, output) = topic_pair("avro", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let schema = Schema::parse_str(ORDER).unwrap();
    let id = register(&registry, &format!("{topic}-value"), ORDER).await;
    let out_id = register(&registry, &format!("{output}-value"), ORDER).await;
    let host = weft::Host::start(avro_config(&topic, &output, &registry)).await.expect("host starts");

    let producer = TestProducer::new();
    produce(&producer, &topic, "fits", &wire(&schema, id, order("o1", 3))).await;
    produce(&producer, &topic, "unknown-id", &wire(&schema, 987_654, order("o2", 1))).await;
    produce(&producer, &topic, "not-avro", br#"{"id": "o3"}"#).await;
    let mut cut = wire(&schema, id, order("o4", 2));
    cut.truncate(7);
    produce(&producer, &topic, "cut-short", &cut).await;

    let outputs = read(&output, 1, Duration::from_secs(60)).await;
    let out = &outputs[0];
    assert_eq!(out.header("ce_id"), Some("fits"));
    // The handler got JSON, emitted it, and the host encoded it to the output subject's schema.
    assert_eq!(out.header("content-type"), Some("application/avro"));
    let dataschema = out.header("ce_dataschema").unwrap_or_default();
    assert!(dataschema.ends_with(&format!("/subjects/{output}-value/versions/1")), "{dataschema}");
    assert_eq!(out.value, wire(&schema, out_id, order("o1", 3)), "the same order, in the output's schema");

    let dead = read(&dlq, 3, Duration::from_secs(60)).await;
    assert!(schema_invalid_error(&dead, "unknown-id").contains("schema id 987654 is not in the registry"));
    assert!(
        schema_invalid_error(&dead, "not-avro").contains("not Avro in the schema registry's wire format")
    );
    assert!(
        schema_invalid_error(&dead, "cut-short")
            .contains(&format!("does not decode with writer schema id {id}"))
    );
    let metrics = host.metrics().render();
    let valid = format!(
        "weft_schema_checks_total{{outcome=\"valid\",schema=\"{registry}/subjects/{topic}-value/versions/1\",topic=\"{topic}\"}} 1"
    );
    assert!(metrics.contains(&valid), "{valid} in\n{metrics}");
    host.shutdown().await.unwrap();
}

/// A TCP proxy to `upstream` on `port`, from when it is started.
async fn proxy(port: u16, upstream: String) {
    let listener =
        tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("the proxy's port is free");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let upstream = upstream.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_registry_does_not_answer_events_wait_and_none_is_dead_lettered() {
    let registry = registry();
    let (topic, output) = topic_pair("avro-outage", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let schema = Schema::parse_str(ORDER).unwrap();
    let id = register(&registry, &format!("{topic}-value"), ORDER).await;
    register(&registry, &format!("{output}-value"), ORDER).await;
    // The host reaches the registry through a proxy that is not listening yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = reqwest::Url::parse(&registry).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap());
    let through_proxy = registry.replacen(&upstream, &format!("127.0.0.1:{port}"), 1);
    let host = weft::Host::start(avro_config(&topic, &output, &through_proxy)).await.expect("host starts");

    let producer = TestProducer::new();
    for n in 0..3 {
        produce(&producer, &topic, &format!("e{n}"), &wire(&schema, id, order(&format!("o{n}"), n))).await;
    }
    let waited = eventually(Duration::from_secs(30), || {
        weft::ops::metrics::total(&host.metrics().schema_unavailable) >= 2
    })
    .await;
    assert!(waited, "lookups were tried and put off");
    assert!(read_all(&dlq, Duration::from_secs(2)).await.is_empty(), "nothing dead-lettered");

    proxy(port, upstream).await;
    let outputs = read(&output, 3, Duration::from_secs(60)).await;
    let ids: Vec<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    assert_eq!(ids, ["e0", "e1", "e2"], "all of them, in order");
    assert!(read_all(&dlq, Duration::from_secs(1)).await.is_empty(), "still nothing dead-lettered");
    host.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_avro_bytes_handlers_get_the_record_as_it_arrived_once_it_decodes() {
    let registry = registry();
    let (topic, output) = topic_pair("avro-bytes", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let schema = Schema::parse_str(ORDER).unwrap();
    let id = register(&registry, &format!("{topic}-value"), ORDER).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    let settings = format!(
        "[kafka]\nbrokers = \"x\"\n[schema_registry]\nurl = \"{registry}\"\n[topics.\"{topic}\"]\navro = \"bytes\"\n"
    );
    let parsed = weft::Config::parse(&settings).unwrap();
    (config.topics, config.schema_registry) = (parsed.topics, parsed.schema_registry);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = weft::Host::start(config).await.expect("host starts");

    let producer = TestProducer::new();
    let record = wire(&schema, id, order("o1", 3));
    produce(&producer, &topic, "fits", &record).await;
    let mut cut = record.clone();
    cut.truncate(6);
    produce(&producer, &topic, "cut-short", &cut).await;

    let outputs = read(&output, 1, Duration::from_secs(60)).await;
    assert_eq!(outputs[0].header("ce_id"), Some("fits"));
    assert_eq!(outputs[0].value, record, "the bytes as they arrived");
    assert_eq!(outputs[0].header("content-type"), Some("application/avro"));
    let dataschema = outputs[0].header("ce_dataschema").unwrap_or_default();
    assert!(dataschema.ends_with(&format!("/subjects/{topic}-value/versions/1")), "{dataschema}");
    let dead = read(&dlq, 1, Duration::from_secs(60)).await;
    assert_eq!(dead[0].header("ce_id"), Some("cut-short"));
    assert_eq!(dead[0].header("weft.dlq.reason"), Some("schema_invalid"));
    host.shutdown().await.unwrap();
}

/// An order as first written, and the version after it: a `note` with a default (a backward
/// compatible change).
const ORDER_V1: &str = r#"{"type": "record", "name": "Order", "namespace": "com.example.v",
    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}"#;
const ORDER_V2: &str = r#"{"type": "record", "name": "Order", "namespace": "com.example.v",
    "fields": [{"name": "id", "type": "string"}, {"name": "qty", "type": "int"},
               {"name": "note", "type": "string", "default": "none"}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_reader_subject_handlers_see_every_record_in_its_latest_shape() {
    use apache_avro::types::Value;
    let registry = registry();
    let (topic, output) = topic_pair("avro-reader", 1).await;
    let subject = format!("{topic}-value");
    let v1 = register(&registry, &subject, ORDER_V1).await;
    let v2 = register(&registry, &subject, ORDER_V2).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    let settings = format!(
        "[kafka]\nbrokers = \"x\"\n[schema_registry]\nurl = \"{registry}\"\n[topics.\"{topic}\"]\navro = \"json\"\n\
         avro_reader_subject = \"{subject}\"\n"
    );
    let parsed = weft::Config::parse(&settings).unwrap();
    (config.topics, config.schema_registry) = (parsed.topics, parsed.schema_registry);
    config.validate().unwrap();
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let host = weft::Host::start(config).await.expect("host starts");

    let producer = TestProducer::new();
    let old = Value::Record(vec![("id".into(), Value::String("o1".into())), ("qty".into(), Value::Int(3))]);
    produce(&producer, &topic, "old", &wire(&Schema::parse_str(ORDER_V1).unwrap(), v1, old)).await;
    let new = Value::Record(vec![
        ("id".into(), Value::String("o2".into())),
        ("qty".into(), Value::Int(1)),
        ("note".into(), Value::String("gift".into())),
    ]);
    produce(&producer, &topic, "new", &wire(&Schema::parse_str(ORDER_V2).unwrap(), v2, new)).await;

    let outputs = read(&output, 2, Duration::from_secs(60)).await;
    let json = |id: &str| {
        let out =
            outputs.iter().find(|o| o.header("ce_id") == Some(id)).unwrap_or_else(|| panic!("{id} handled"));
        let dataschema = out.header("ce_dataschema").unwrap_or_default();
        assert!(dataschema.ends_with(&format!("/subjects/{subject}/versions/2")), "{dataschema}");
        serde_json::from_slice::<serde_json::Value>(&out.value).unwrap()
    };
    assert_eq!(
        json("old"),
        serde_json::json!({"id": "o1", "qty": 3, "note": "none"}),
        "the default fills in"
    );
    assert_eq!(json("new"), serde_json::json!({"id": "o2", "qty": 1, "note": "gift"}));
    host.shutdown().await.unwrap();
}
