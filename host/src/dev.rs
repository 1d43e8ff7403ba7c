//! `weft dev`: everything on one machine with no setup. It starts librdkafka's in-process mock
//! cluster (development only: nothing is persisted, nothing is reachable from other machines), loads
//! the plugins (the bundled `audit` example unless a directory is given), produces a stream of Todo
//! `task-events` in both CloudEvents binding modes, and prints what flows until Ctrl-C.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use cloudevents::{Data, Event, EventBuilder, EventBuilderV10};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::Config;
use crate::host::Host;

/// The example plugin bundled into the binary.
pub const AUDIT_WASM: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/audit.wasm"));

const TASK_TOPIC: &str = "task-events";
const AUDIT_TOPIC: &str = "audit-log";
const ACTIONS: [&str; 4] = ["created", "updated", "completed", "deleted"];

/// Options of `weft dev`.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// A real cluster to use instead of the mock one.
    pub brokers: Option<String>,
    /// A plugins directory to use instead of the bundled example.
    pub plugins_dir: Option<PathBuf>,
    /// Sample events produced per second.
    pub rate: u32,
}

/// What a `weft dev` session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevSummary {
    /// Sample events produced.
    pub produced: u64,
    /// Events the audit plugin handled.
    pub handled: u64,
    /// Audit records it emitted.
    pub emitted: u64,
}

/// Runs the development loop until `shutdown` resolves.
pub async fn run(
    options: DevOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<DevSummary> {
    let (mock, brokers) = match &options.brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let mock = MockCluster::new(1).context("starting the mock Kafka cluster")?;
            mock.create_topic(TASK_TOPIC, 3, 1).context("creating task-events")?;
            mock.create_topic(AUDIT_TOPIC, 1, 1).context("creating audit-log")?;
            mock.create_topic(&format!("{TASK_TOPIC}.dlq"), 3, 1).context("creating task-events.dlq")?;
            let brokers = mock.bootstrap_servers();
            tracing::warn!(%brokers, "using an in-process MOCK Kafka cluster: development only, nothing is kept");
            (Some(mock), brokers)
        }
    };
    let plugins_dir = match &options.plugins_dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = std::env::temp_dir().join(format!("weft-dev-{}", std::process::id()));
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(dir.join("audit.wasm"), AUDIT_WASM).context("writing the bundled audit plugin")?;
            dir
        }
    };
    let mut config = Config::with_brokers(&brokers);
    config.kafka.group_id = "weft-dev".into();
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
    config.plugins.dir = plugins_dir;

    let host = Host::start(config).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .context("creating the sample producer")?;
    let audit: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "weft-dev-viewer")
        .set("auto.offset.reset", "latest")
        .create()
        .context("creating the audit-log viewer")?;
    audit.subscribe(&[AUDIT_TOPIC])?;

    let period = Duration::from_secs_f64(1.0 / f64::from(options.rate.max(1)));
    let mut tick = tokio::time::interval(period);
    let mut report = tokio::time::interval(Duration::from_secs(5));
    let mut produced = 0u64;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let (key, headers, value) = sample(produced);
                let record = FutureRecord::to(TASK_TOPIC).key(&key).headers(headers).payload(&value);
                if let Err((error, _)) = producer.send_result(record) {
                    tracing::warn!(%error, "sample event not produced");
                } else {
                    produced += 1;
                }
            }
            Ok(message) = audit.recv() => {
                let text = message.payload().map(String::from_utf8_lossy).unwrap_or_default();
                println!("audit-log  {text}");
            }
            _ = report.tick() => {
                let m = host.metrics();
                println!(
                    "produced {produced}  handled {}  failed {}  emitted audit records {}",
                    m.handled.with_label_values(&[TASK_TOPIC, "audit"]).get(),
                    sum_failed(m),
                    m.emitted.with_label_values(&["audit"]).get(),
                );
            }
        }
    }
    // Close the sample clients before the mock cluster goes away, or they wait for it.
    tokio::task::spawn_blocking(move || {
        let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(1));
        drop((producer, audit));
    })
    .await?;
    let summary = DevSummary {
        produced,
        handled: host.metrics().handled.with_label_values(&[TASK_TOPIC, "audit"]).get(),
        emitted: host.metrics().emitted.with_label_values(&["audit"]).get(),
    };
    host.shutdown().await?;
    drop(mock);
    Ok(summary)
}

fn sum_failed(m: &crate::metrics::Metrics) -> u64 {
    ["retryable_error", "permanent_error", "trap", "timeout", "emit_failed"]
        .iter()
        .map(|r| m.failed.with_label_values(&[TASK_TOPIC, "audit", r]).get())
        .sum()
}

/// The `n`th sample Todo event, keyed by user id: even ones in binary mode, odd ones structured.
fn sample(n: u64) -> (String, OwnedHeaders, Vec<u8>) {
    let user = format!("user-{}", n % 5);
    let task = format!("task-{}", n / 4);
    let action = ACTIONS[(n % 4) as usize];
    let event = EventBuilderV10::new()
        .id(format!("dev-{n}"))
        .source("/todo/api")
        .ty(format!("com.example.task.{action}"))
        .subject(format!("/tasks/{task}"))
        .time(chrono::Utc::now())
        .data(
            "application/json",
            serde_json::json!({ "task_id": task, "user_id": user, "title": "Water the plants" }),
        )
        .build()
        .expect("sample events are valid");
    let (headers, value) =
        if n.is_multiple_of(2) { binary_record(&event) } else { structured_record(&event) };
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value.as_slice()) }));
    (user, headers, value)
}

/// A CloudEvents SDK event in Kafka binary mode: `ce_*` headers and the data as the value.
pub fn binary_record(event: &Event) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let mut headers = Vec::new();
    for (name, value) in event.iter() {
        let name = if name == "datacontenttype" { "content-type".to_string() } else { format!("ce_{name}") };
        headers.push((name, value.to_string().into_bytes()));
    }
    let value = match event.data() {
        Some(Data::Binary(bytes)) => bytes.clone(),
        Some(Data::String(text)) => text.clone().into_bytes(),
        Some(Data::Json(json)) => serde_json::to_vec(json).expect("JSON serializes"),
        None => Vec::new(),
    };
    (headers, value)
}

/// A CloudEvents SDK event in Kafka structured mode: the whole event as JSON.
pub fn structured_record(event: &Event) -> (Vec<(String, Vec<u8>)>, Vec<u8>) {
    let headers = vec![("content-type".to_string(), b"application/cloudevents+json".to_vec())];
    (headers, serde_json::to_vec(event).expect("events serialize"))
}
