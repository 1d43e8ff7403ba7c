//! `weft dev`: everything on one machine with no setup. It starts librdkafka's in-process mock
//! cluster (development only: nothing is persisted, nothing is reachable from other machines), loads
//! the plugins (the bundled `audit` example unless a directory is given) and feeds them until
//! Ctrl-C: the bundled example gets a stream of Todo `task-events` in both CloudEvents binding
//! modes; plugins from a directory get, on each topic they subscribe to, the events of an
//! `--events` file that match their subscriptions, or sample events made to match them.

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
    /// Structured-mode CloudEvents (one object, an array, or one per line) to feed the plugins
    /// instead of made-up samples.
    pub events: Option<PathBuf>,
    /// Where to serve /metrics and the health endpoints (default `127.0.0.1:9464`).
    pub listen: Option<std::net::SocketAddr>,
}

/// What a `weft dev` session did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevSummary {
    /// Sample events produced.
    pub produced: u64,
    /// Events the plugins handled.
    pub handled: u64,
    /// Events they emitted.
    pub emitted: u64,
}

/// Runs the development loop until `shutdown` resolves.
pub async fn run(
    options: DevOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<DevSummary> {
    let samples = match &options.events {
        Some(path) => read_events(path)?,
        None => Vec::new(),
    };
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
    // The plugins' topics are created once they are loaded: notice them within a second.
    config.kafka.properties.insert("topic.metadata.refresh.interval.ms".into(), "1000".into());
    let bundled = options.plugins_dir.is_none();
    if let Some(listen) = options.listen {
        config.http.listen = listen;
    }
    config.plugins.dir = plugins_dir;

    let host = Host::start(config).await?;
    let mut feed = if bundled {
        Feed::Todo
    } else {
        let feed = Feed::for_plugins(&host, samples)?;
        if let (Some(mock), Feed::Plugins { topics, .. }) = (&mock, &feed) {
            for topic in topics.iter().flat_map(|t| [t.clone(), format!("{t}.dlq")]) {
                // Already there is fine.
                let _ = mock.create_topic(&topic, 3, 1);
            }
        }
        feed
    };
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
                let (topic, key, headers, value) = feed.next(produced);
                let record = FutureRecord::to(&topic).key(&key).headers(headers).payload(&value);
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
                let (handled, failed, emitted) = totals(&host);
                println!("produced {produced}  handled {handled}  failed {failed}  emitted {emitted}");
            }
        }
    }
    // Close the sample clients before the mock cluster goes away, or they wait for it.
    tokio::task::spawn_blocking(move || {
        let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(1));
        drop((producer, audit));
    })
    .await?;
    let (handled, _, emitted) = totals(&host);
    let summary = DevSummary { produced, handled, emitted };
    host.shutdown().await?;
    drop(mock);
    Ok(summary)
}

/// Events handled, failed attempts and events emitted, over every plugin and topic so far.
fn totals(host: &Host) -> (u64, u64, u64) {
    let m = host.metrics();
    (
        crate::ops::metrics::total(&m.handled),
        crate::ops::metrics::total(&m.failed),
        crate::ops::metrics::total(&m.emitted),
    )
}

/// What `weft dev` produces.
enum Feed {
    /// The Todo sample stream, for the bundled example.
    Todo,
    /// For plugins from a directory: `(topic, event)` pairs, taken in turn.
    Plugins { topics: Vec<String>, events: Vec<(String, serde_json::Value)> },
}

impl Feed {
    /// Events for every subscription of the loaded plugins: those of `samples` that match it, or
    /// one made to match it when none does.
    fn for_plugins(host: &Host, samples: Vec<serde_json::Value>) -> anyhow::Result<Self> {
        let mut topics = Vec::new();
        let mut events = Vec::new();
        for plugin in host.plugins() {
            for subscription in &plugin.subscriptions {
                if !topics.contains(&subscription.topic) {
                    topics.push(subscription.topic.clone());
                }
                let matching: Vec<_> = samples
                    .iter()
                    .filter(|sample| {
                        let json = serde_json::to_vec(sample).unwrap_or_default();
                        let structured: &[u8] = b"application/cloudevents+json";
                        crate::kafka_in::decode::decode(&[("content-type", Some(structured))], Some(&json))
                            .is_ok_and(|(event, _)| subscription.matches(&event))
                    })
                    .cloned()
                    .collect();
                if matching.is_empty() {
                    if !samples.is_empty() {
                        tracing::warn!(plugin = %plugin.id, topic = %subscription.topic, "no event of --events matches this subscription; sending made-up ones");
                    }
                    events.push((subscription.topic.clone(), made_up(subscription)));
                } else {
                    events.extend(matching.into_iter().map(|e| (subscription.topic.clone(), e)));
                }
            }
        }
        anyhow::ensure!(
            !topics.is_empty(),
            "no plugin is loaded, or none subscribes to anything: nothing to feed"
        );
        tracing::info!(topics = %topics.join(","), "feeding the plugins' topics");
        Ok(Feed::Plugins { topics, events })
    }

    /// The `n`th record: topic, key, headers, value.
    fn next(&mut self, n: u64) -> (String, String, OwnedHeaders, Vec<u8>) {
        match self {
            Feed::Todo => {
                let (key, headers, value) = sample(n);
                (TASK_TOPIC.to_string(), key, headers, value)
            }
            Feed::Plugins { events, .. } => {
                let (topic, template) = &events[(n as usize) % events.len()];
                let mut event = template.clone();
                // Every record its own id, so that handlers that deduplicate see new events.
                let id = event["id"].as_str().unwrap_or("dev").to_string();
                event["id"] = format!("{id}-{n}").into();
                let headers = OwnedHeaders::new()
                    .insert(Header { key: "content-type", value: Some("application/cloudevents+json") });
                let value = serde_json::to_vec(&event).expect("JSON serializes");
                (topic.clone(), format!("key-{}", n % 5), headers, value)
            }
        }
    }
}

/// An event that passes `subscription`'s filters: the first type and source filter (a prefix
/// filter completed with `sample`), JSON data.
fn made_up(subscription: &crate::config::SubscriptionSpec) -> serde_json::Value {
    let pick = |filters: &[String], default: &str| {
        filters.first().map_or(default.to_string(), |f| match f.strip_suffix('*') {
            Some(prefix) => format!("{prefix}sample"),
            None => f.clone(),
        })
    };
    serde_json::json!({
        "specversion": "1.0",
        "id": "dev",
        "source": pick(&subscription.sources, "/weft/dev"),
        "type": pick(&subscription.types, "com.example.sample"),
        "datacontenttype": "application/json",
        "data": { "sample": true, "from": "weft dev" },
    })
}

/// Structured-mode events from `path`: one JSON object, an array of them, or one per line.
fn read_events(path: &std::path::Path) -> anyhow::Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let events: Vec<serde_json::Value> = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Array(events)) => events,
        Ok(event) => vec![event],
        Err(_) => text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .enumerate()
            .map(|(i, line)| {
                serde_json::from_str(line).with_context(|| format!("{} line {}", path.display(), i + 1))
            })
            .collect::<anyhow::Result<_>>()?,
    };
    for (i, event) in events.iter().enumerate() {
        let json = serde_json::to_vec(event)?;
        let structured: &[u8] = b"application/cloudevents+json";
        crate::kafka_in::decode::decode(&[("content-type", Some(structured))], Some(&json))
            .map_err(|e| anyhow::anyhow!("{} event {}: not a CloudEvent: {e}", path.display(), i + 1))?;
    }
    anyhow::ensure!(!events.is_empty(), "{} holds no event", path.display());
    Ok(events)
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
