//! Support for Weft's integration tests: the test broker's address, topics, an independent producer
//! built on the CloudEvents SDK, readers for output topics and committed offsets, and the test
//! plugins (built by `build.rs`).
//!
//! The broker comes from `scripts/kafka.sh start`; `scripts/test.sh` starts it and exports
//! `WEFT_TEST_BROKERS`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cloudevents::{EventBuilder, EventBuilderV10};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use weft::Config;

include!(concat!(env!("OUT_DIR"), "/plugins.rs"));

/// The cluster the helpers use instead of `WEFT_TEST_BROKERS`, once a test named one.
static BROKERS: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Makes every helper of this test binary use the cluster at `bootstrap` (a test's own cluster,
/// as the broker-fault tests start).
pub fn use_brokers(bootstrap: &str) {
    *BROKERS.lock().unwrap() = Some(bootstrap.to_string());
}

/// The test broker's bootstrap address (or the cluster named by [`use_brokers`]).
pub fn brokers() -> String {
    if let Some(bootstrap) = BROKERS.lock().unwrap().clone() {
        return bootstrap;
    }
    std::env::var("WEFT_TEST_BROKERS").expect(
        "WEFT_TEST_BROKERS is not set: run the tests with scripts/test.sh, or start a broker with \
         scripts/kafka.sh start and export WEFT_TEST_BROKERS=<address>",
    )
}

/// The test schema registry's Confluent-compatible API (`WEFT_TEST_REGISTRY`).
pub fn registry() -> String {
    std::env::var("WEFT_TEST_REGISTRY").expect(
        "WEFT_TEST_REGISTRY is not set: run the tests with scripts/test.sh, or start a registry with \
         scripts/registry.sh start and export WEFT_TEST_REGISTRY=<address>",
    )
}

/// A component built by scripts/polyglot-plugins.sh (`file`, e.g. `task-updates.wasm`), from the
/// directory in `WEFT_TEST_POLYGLOT_PLUGINS` (scripts/test.sh sets it).
pub fn polyglot_plugin(file: &str) -> PathBuf {
    let dir = std::env::var("WEFT_TEST_POLYGLOT_PLUGINS").expect(
        "WEFT_TEST_POLYGLOT_PLUGINS is not set: run ./scripts/test.sh, or \
         `export WEFT_TEST_POLYGLOT_PLUGINS=$(scripts/polyglot-plugins.sh)`",
    );
    let path = PathBuf::from(dir).join(file);
    assert!(path.exists(), "{} is missing: run scripts/polyglot-plugins.sh", path.display());
    path
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid_ish())
}

fn uuid_ish() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{:x}{:x}{}", nanos, std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// Logs go to the test output when `RUST_LOG` is set.
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = weft::ops::telemetry::init(weft::ops::telemetry::LogFormat::Text, &Default::default());
    }
}

/// Sets up logging and creates a fresh input topic and output topic, `<prefix>-in-…` and
/// `<prefix>-out-…`, each with `partitions` partitions.
pub async fn topic_pair(prefix: &str, partitions: i32) -> (String, String) {
    init_logging();
    let (topic, output) = (unique(&format!("{prefix}-in")), unique(&format!("{prefix}-out")));
    create_topic(&topic, partitions).await;
    create_topic(&output, partitions).await;
    (topic, output)
}

/// Creates `topic` with `partitions` partitions, replicated as the cluster's default says.
pub async fn create_topic(topic: &str, partitions: i32) {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers()).create().expect("admin client");
    let results = admin
        .create_topics(&[NewTopic::new(topic, partitions, TopicReplication::Fixed(-1))], &AdminOptions::new())
        .await
        .expect("create_topics request");
    for result in results {
        result.unwrap_or_else(|(t, e)| panic!("creating topic {t}: {e}"));
    }
}

/// The bytes of `examples/events/<name>`, a structured-mode CloudEvent.
pub fn example(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/events").join(name))
        .unwrap_or_else(|e| panic!("reading examples/events/{name}: {e}"))
}

/// A plugins directory holding copies of `plugins` as `(file stem, source path)`.
pub fn plugins_dir(plugins: &[(&str, &str)]) -> PathBuf {
    let dir = std::env::temp_dir().join(unique("weft-plugins"));
    std::fs::create_dir_all(&dir).expect("creating plugins dir");
    for (stem, source) in plugins {
        std::fs::copy(source, dir.join(format!("{stem}.wasm"))).expect("copying plugin");
    }
    dir
}

/// A host configuration for the test broker, a fresh group, and `dir`.
pub fn config(dir: &Path) -> Config {
    let mut config = Config::with_brokers(brokers());
    config.kafka.group_id = unique("weft-test");
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
    config.plugins.dir = dir.to_path_buf();
    config.plugins.reload_debounce_ms = 100;
    // Compiled plugins are shared by every test of a run, as by the restarts of one host.
    config.plugins.cache_dir = Some(std::env::temp_dir().join("weft-test-compiled"));
    // Many hosts run at once in the tests: each takes a free port.
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config
}

/// A host configuration for librdkafka's mock cluster at `bootstrap`: group `group`, the plugins
/// of `dir`, echo reading `topic` and emitting to `output`, no dead-letter topic creation (the
/// mock has the topics the test made) and the HTTP listener on a free port.
pub fn mock_config(bootstrap: &str, group: &str, dir: &Path, topic: &str, output: &str) -> Config {
    let mut config = Config::with_brokers(bootstrap);
    config.kafka.group_id = group.into();
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "10".into());
    config.plugins.dir = dir.to_path_buf();
    config.dlq.create_topics = false;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    plugin_config(&mut config, "echo", &[("topic", topic), ("output-topic", output)]);
    config
}

/// Writes one binary-mode record to `topic`: `attributes` are the `ce_*` headers (and any other),
/// names and values as given, and waits for its acknowledgement.
pub async fn send_headers(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    headers: &[(&str, &str)],
    value: &str,
) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(v.as_bytes()) }));
    producer
        .send(FutureRecord::to(topic).key(key).payload(value).headers(headers), Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .expect("record acknowledged");
}

/// A host running the echo plugin from `topic` to `output` with the test defaults; returns it with
/// its consumer group.
pub async fn echo_host(topic: &str, output: &str) -> (weft::Host, String) {
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", topic), ("output-topic", output)]);
    let group = config.kafka.group_id.clone();
    (weft::Host::start(config).await.expect("host starts"), group)
}

/// GETs `path` from `addr`; returns the status code and the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).await.expect("a response from the HTTP listener")
}

/// [`http_get`], or `None` when nothing answers (the listener is not up yet, or gone).
pub async fn try_http_get(addr: std::net::SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: weft\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok())?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Some((status, body))
}

/// Prometheus text parsed into (metric name, labels) → value.
pub fn parse_metrics(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            Some((name.to_string(), labels, value.parse().ok()?))
        })
        .collect()
}

/// The value of `name` whose labels include every pair of `labels`; 0 if absent.
pub fn metric(parsed: &[(String, HashMap<String, String>, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    parsed
        .iter()
        .filter(|(n, l, _)| {
            n == name && labels.iter().all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .sum()
}

/// Sets `[plugin.<id>] config` values.
pub fn plugin_config(config: &mut Config, id: &str, values: &[(&str, &str)]) {
    let entry = config.plugin.entry(id.to_string()).or_default();
    for (k, v) in values {
        entry.config.insert(k.to_string(), v.to_string());
    }
}

/// How a test event is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `ce_*` headers.
    Binary,
    /// `application/cloudevents+json`.
    Structured,
}

/// A producer independent of the host (the CloudEvents SDK builds the events). Records queued
/// together ([`TestProducer::enqueue`]) go out in multi-record batches, as a real producer's do,
/// so a consumer that resumes or seeks inside a batch is tested too.
pub struct TestProducer {
    producer: FutureProducer,
}

impl TestProducer {
    /// A producer for the test broker.
    pub fn new() -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("linger.ms", "0")
            .create()
            .expect("test producer");
        Self { producer }
    }

    /// A producer that waits 5 ms to fill its batches: a steady load goes out in batches of many
    /// records.
    pub fn batching() -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("linger.ms", "5")
            .create()
            .expect("test producer");
        Self { producer }
    }

    /// Produces a CloudEvent with `id`, type `com.example.test`, `data` as JSON, keyed by `key`.
    pub async fn event(&self, topic: &str, partition: Option<i32>, key: &str, id: &str, mode: Mode) {
        self.event_with(topic, partition, key, id, mode, &[]).await;
    }

    /// Like [`TestProducer::event`], with extension attributes (the echo plugin's failure switches).
    pub async fn event_with(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &str,
        id: &str,
        mode: Mode,
        extensions: &[(&str, &str)],
    ) {
        let mut builder = EventBuilderV10::new()
            .id(id)
            .source("/weft/tests")
            .ty("com.example.test")
            .data("application/json", serde_json::json!({ "id": id, "key": key }));
        for (name, value) in extensions {
            builder = builder.extension(name, *value);
        }
        let event = builder.build().expect("valid event");
        let (headers, value) = match mode {
            Mode::Binary => weft::cli::dev::binary_record(&event),
            Mode::Structured => weft::cli::dev::structured_record(&event),
        };
        let headers: Vec<(&str, Option<&[u8]>)> =
            headers.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))).collect();
        self.raw(topic, partition, Some(key.as_bytes()), &headers, Some(&value)).await;
    }

    /// Produces a record with header names given as bytes (they need not be UTF-8) and waits for
    /// the acknowledgement.
    pub async fn raw_bytes(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        headers: &[(&[u8], Option<&[u8]>)],
        value: Option<&[u8]>,
    ) {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic)
            .headers(weft::kafka::headers::build(headers.iter().copied()));
        if let Some(p) = partition {
            record = record.partition(p);
        }
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(v) = value {
            record = record.payload(v);
        }
        self.producer.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("produce");
    }

    /// Produces a record exactly as given and waits for the acknowledgement.
    pub async fn raw(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        value: Option<&[u8]>,
    ) {
        let headers: Vec<(&[u8], Option<&[u8]>)> = headers.iter().map(|(k, v)| (k.as_bytes(), *v)).collect();
        self.raw_bytes(topic, partition, key, &headers, value).await;
    }

    /// Sends without waiting; call [`TestProducer::flush`] afterwards.
    pub fn enqueue(&self, topic: &str, key: &str, headers: &[(String, Vec<u8>)], value: &[u8]) {
        let owned = headers
            .iter()
            .fold(OwnedHeaders::new(), |h, (k, v)| h.insert(Header { key: k, value: Some(v.as_slice()) }));
        let mut record = FutureRecord::to(topic).key(key).headers(owned).payload(value);
        loop {
            match self.producer.send_result(record) {
                Ok(_) => return,
                Err((_, back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    /// Waits until every enqueued record is acknowledged.
    pub fn flush(&self) {
        rdkafka::producer::Producer::flush(&self.producer, Duration::from_secs(60)).expect("flush");
    }
}

impl Default for TestProducer {
    fn default() -> Self {
        Self::new()
    }
}

/// The `weft.dlq.error` of event `id`'s dead letter among `letters`, which must be there with
/// reason `schema_invalid`.
pub fn schema_invalid_error(letters: &[Output], id: &str) -> String {
    let letter = letters
        .iter()
        .find(|d| d.header("ce_id") == Some(id))
        .unwrap_or_else(|| panic!("{id} dead-lettered"));
    assert_eq!(letter.header("weft.dlq.reason"), Some("schema_invalid"), "{id}'s reason");
    letter.header("weft.dlq.error").unwrap_or_default().to_string()
}

/// A record read back from an output topic.
#[derive(Debug, Clone)]
pub struct Output {
    /// Partition it was written to.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<String>,
    /// Its headers (names and values read as UTF-8, lossily).
    pub headers: HashMap<String, String>,
    /// Its headers byte for byte, in order.
    pub raw_headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// Its value.
    pub value: Vec<u8>,
    /// Its timestamp, milliseconds since the Unix epoch (for Weft's outputs: when Weft wrote it).
    pub timestamp_ms: u64,
}

impl Output {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads `topic` from the beginning until `count` records arrived or `timeout` passed; records of
/// one partition come back in order.
pub async fn read(topic: &str, count: usize, timeout: Duration) -> Vec<Output> {
    read_until(topic, timeout, |outputs| outputs.len() >= count).await
}

/// Reads `topic` from the beginning until `done` says so or `timeout` passed.
pub async fn read_until(topic: &str, timeout: Duration, done: impl FnMut(&[Output]) -> bool) -> Vec<Output> {
    let mut reader = ClientConfig::new();
    reader
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest");
    read_until_with(reader, topic, timeout, done).await
}

/// Reads `count` records of `topic` with the consumer settings `reader` (a cluster other than the
/// test broker, credentials), or what arrived within `timeout`.
pub async fn read_with(reader: ClientConfig, topic: &str, count: usize, timeout: Duration) -> Vec<Output> {
    read_until_with(reader, topic, timeout, |outputs| outputs.len() >= count).await
}

/// [`read_until`] with the consumer settings `reader`.
pub async fn read_until_with(
    mut reader: ClientConfig,
    topic: &str,
    timeout: Duration,
    mut done: impl FnMut(&[Output]) -> bool,
) -> Vec<Output> {
    let consumer: StreamConsumer =
        reader.set("enable.auto.commit", "false").set("fetch.wait.max.ms", "10").create().expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while !done(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        // Wake up now and then so `done` can also decide on time (an idle topic).
        match tokio::time::timeout(left.min(Duration::from_millis(200)), consumer.recv()).await {
            Err(_) => continue,
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Ok(Ok(m)) => {
                // Byte-level: a dead letter may carry a header name that is not UTF-8.
                let raw_headers: Vec<(Vec<u8>, Option<Vec<u8>>)> = m
                    .headers()
                    .map(weft::kafka::headers::read)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
                    .collect();
                out.push(Output {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    headers: raw_headers
                        .iter()
                        .map(|(k, v)| {
                            let value = v.as_deref().unwrap_or_default();
                            (
                                String::from_utf8_lossy(k).into_owned(),
                                String::from_utf8_lossy(value).into_owned(),
                            )
                        })
                        .collect(),
                    raw_headers,
                    value: m.payload().unwrap_or_default().to_vec(),
                    timestamp_ms: m.timestamp().to_millis().unwrap_or_default().max(0) as u64,
                })
            }
        }
    }
    out
}

/// Reads everything `topic` holds now: from the beginning until no record arrives for `idle`.
pub async fn read_all(topic: &str, idle: Duration) -> Vec<Output> {
    let mut last_len = 0;
    let mut last_change = Instant::now();
    read_until(topic, Duration::from_secs(600), |outputs| {
        if outputs.len() != last_len {
            last_len = outputs.len();
            last_change = Instant::now();
        }
        last_change.elapsed() >= idle
    })
    .await
}

/// For each partition of `topic`: (committed offset of `group`, end offset).
pub fn committed_and_end(group: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    committed_and_end_at(&brokers(), group, topic, partitions)
}

/// [`committed_and_end`] on the cluster at `bootstrap`.
pub fn committed_and_end_at(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> Vec<(i64, i64)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    let committed = consumer.committed_offsets(tpl, Duration::from_secs(10)).expect("committed offsets");
    (0..partitions)
        .map(|p| {
            let c = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10)).expect("watermarks");
            (c, high)
        })
        .collect()
}

/// A `read_until` condition: true once outputs carry `count` distinct `ce_id`s. Incremental, so
/// reading tens of thousands of records stays linear.
pub fn distinct_ids(count: usize) -> impl FnMut(&[Output]) -> bool {
    let mut seen = std::collections::HashSet::new();
    let mut checked = 0;
    move |outputs| {
        for output in &outputs[checked..] {
            if let Some(id) = output.header("ce_id") {
                seen.insert(id.to_string());
            }
        }
        checked = outputs.len();
        seen.len() >= count
    }
}

/// Polls `check` every 50 ms until it is true or `timeout` passes; returns whether it became true.
pub async fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    check()
}

/// A `weft run` process (the binary at `bin`, `run --config <config>`, stderr appended to `log`);
/// killed when dropped, so that no process outlives a failed test.
pub struct WeftProcess(pub std::process::Child);

impl WeftProcess {
    /// Starts it.
    pub fn spawn(bin: &str, config: &Path, log: &Path) -> Self {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
        std::process::Command::new(bin)
            .args(["run", "--config"])
            .arg(config)
            .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .map(Self)
            .expect("starting weft")
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        self.0.kill().expect("SIGKILL");
        self.0.wait().expect("reaped");
    }

    /// SIGTERM, and its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let status = std::process::Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        assert!(status.unwrap().success(), "sending SIGTERM");
        self.0.wait().unwrap()
    }
}

impl Drop for WeftProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The (partition, offset) pairs of the input that echo handled, from its outputs' `ce_inpartition`
/// and `ce_inoffset` headers.
pub fn echoed_offsets(outputs: &[Output]) -> std::collections::HashSet<(i32, i64)> {
    outputs
        .iter()
        .map(|o| {
            let p = o.header("ce_inpartition").and_then(|v| v.parse().ok()).expect("inpartition");
            let off = o.header("ce_inoffset").and_then(|v| v.parse().ok()).expect("inoffset");
            (p, off)
        })
        .collect()
}

/// Fails if `group` committed an offset of `topic` past an event echo has not handled (no output
/// on `output`).
pub async fn assert_nothing_committed_unhandled(group: &str, topic: &str, output: &str, partitions: i32) {
    let done = echoed_offsets(&read_all(output, Duration::from_secs(3)).await);
    for (p, (committed, _)) in committed_and_end(group, topic, partitions).into_iter().enumerate() {
        let p = p as i32;
        let missing: Vec<i64> = (0..committed.max(0)).filter(|o| !done.contains(&(p, *o))).take(5).collect();
        assert!(
            missing.is_empty(),
            "partition {p} committed up to {committed} but offsets {missing:?} have no output"
        );
    }
}

/// A `weft run` configuration for echo from `topic` to `output` in `group`, with a short session
/// timeout (a killed member's partitions move on after 6 s); returns its path.
pub fn echo_run_config(dir: &Path, group: &str, topic: &str, output: &str) -> PathBuf {
    let config = dir.join(format!("{}.toml", unique("weft")));
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n[kafka.consumer]\n\"fetch.wait.max.ms\" = \"10\"\n\
             \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{}\"\n[plugin.echo.config]\ntopic = \"{topic}\"\noutput-topic = \"{output}\"\n",
            brokers(),
            dir.display()
        ),
    )
    .unwrap();
    config
}

/// [`echo_run_config`] with exactly-once delivery under the stable transactional id `id` (a
/// restarted member with the same id aborts what its predecessor left open).
pub fn echo_run_config_exactly_once(dir: &Path, group: &str, topic: &str, output: &str, id: &str) -> PathBuf {
    let config = echo_run_config(dir, group, topic, output);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[delivery]\nmode = \"exactly-once\"\ntransactional_id = \"{group}-{id}\"\n"));
    std::fs::write(&config, text).unwrap();
    config
}

/// The `ce_id`s of `outputs` that appear more than once.
pub fn repeated_ids(outputs: &[Output]) -> Vec<&str> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for o in outputs {
        *seen.entry(o.header("ce_id").expect("ce_id")).or_default() += 1;
    }
    seen.into_iter().filter(|(_, n)| *n > 1).map(|(id, _)| id).collect()
}

/// Reads `count` records of `topic` (within `timeout`), waits two seconds for any that should not
/// come (a duplicate, a late write), and reads the topic again if the count was reached.
pub async fn read_settled(topic: &str, count: usize, timeout: Duration) -> Vec<Output> {
    let outputs = read(topic, count, timeout).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    if outputs.len() == count { read_all(topic, Duration::from_secs(2)).await } else { outputs }
}

/// Checks that every id `<prefix>-<n>` for `n` below `count` has exactly one output and that each
/// key's outputs follow its inputs' order; returns how many outputs there were.
pub fn assert_exactly_once_in_key_order(outputs: &[Output], prefix: &str, count: usize) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for o in outputs {
        *seen.entry(o.header("ce_id").expect("ce_id")).or_default() += 1;
    }
    let twice: Vec<String> =
        seen.iter().filter(|(_, n)| **n > 1).take(10).map(|(id, n)| format!("{id}×{n}")).collect();
    assert!(twice.is_empty(), "outputs delivered more than once: {twice:?}");
    let missing: Vec<usize> =
        (0..count).filter(|n| !seen.contains_key(format!("{prefix}-{n}").as_str())).take(10).collect();
    assert!(missing.is_empty(), "never handled: {prefix}-{missing:?}");
    assert_eq!(seen.len(), count, "outputs for events that were never produced");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for o in outputs {
        let n: u64 = o.header("ce_id").unwrap()[prefix.len() + 1..].parse().expect("a numbered id");
        let key = o.key.as_deref().unwrap_or_default();
        if let Some(previous) = last.insert(key, n) {
            assert!(previous < n, "key {key}: {prefix}-{n} delivered after {prefix}-{previous}");
        }
    }
}

/// Produces `chunks` × 500 binary-mode events to `topic` in the background, a chunk every `pause`,
/// in multi-record batches: ids `<prefix>-<n>`, keys `user-<n % keys>`, type `com.example.test`.
/// Every event of the first `retried_keys` keys asks echo to fail its first attempt, so it is
/// handled on a retry.
pub fn produce_steadily(
    topic: &str,
    prefix: &str,
    chunks: u64,
    keys: u64,
    retried_keys: u64,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    produce_steadily_failing(topic, prefix, chunks, keys, retried_keys, "retryable", pause)
}

/// [`produce_steadily`], the first attempts of the retried keys' events failing with echo's
/// `failmode` (`retryable`, or `emitthenfail`: emit, then fail).
pub fn produce_steadily_failing(
    topic: &str,
    prefix: &str,
    chunks: u64,
    keys: u64,
    retried_keys: u64,
    failmode: &'static str,
    pause: Duration,
) -> tokio::task::JoinHandle<()> {
    let (topic, prefix) = (topic.to_string(), prefix.to_string());
    tokio::task::spawn_blocking(move || {
        let producer = TestProducer::batching();
        for chunk in 0..chunks {
            for n in chunk * 500..(chunk + 1) * 500 {
                let mut headers = vec![
                    ("ce_specversion".to_string(), b"1.0".to_vec()),
                    ("ce_id".to_string(), format!("{prefix}-{n}").into_bytes()),
                    ("ce_source".to_string(), b"/weft/tests".to_vec()),
                    ("ce_type".to_string(), b"com.example.test".to_vec()),
                ];
                if n % keys < retried_keys {
                    headers.push(("ce_failmode".to_string(), failmode.as_bytes().to_vec()));
                    headers.push(("ce_failuntil".to_string(), b"2".to_vec()));
                    headers.push(("ce_faildelayms".to_string(), b"100".to_vec()));
                }
                producer.enqueue(&topic, &format!("user-{}", n % keys), &headers, b"{}");
            }
            std::thread::sleep(pause);
        }
        producer.flush();
    })
}
