//! End to end against a real broker: how fast Weft consumes a topic next to a plain rdkafka
//! consumer of the same topic, measured in the same run.
//!
//! One topic is produced once (`WEFT_BENCH_EVENTS` structured CloudEvents of 1 KiB, default
//! 100,000, on 6 partitions with 1,000 keys) and then consumed, each time by a fresh consumer
//! group, by:
//! - a plain rdkafka group consumer that reads every record and decodes nothing, with the consumer
//!   properties Weft uses (the baseline), and with librdkafka's defaults;
//! - `weft run` (the release binary, default configuration) with a WebAssembly handler that returns
//!   at once, one that parses the event's JSON data, and echo, which emits one event per input;
//! - the same two handlers compiled natively, on the same dispatch path (this binary runs Weft as
//!   a library with a native handler, see `native_weft`): the difference is the WebAssembly call;
//! - echo with exactly-once delivery, in transactions of 100 ms and of 1 s;
//! - the same no-op run with 1 % of the events failing once (retried after 50 ms);
//! - the same no-op run with the plugin hot-swapped to another version halfway through;
//! - the same no-op run with every event checked against a JSON Schema, and (with a schema registry
//!   in `WEFT_TEST_REGISTRY`, as `scripts/bench.sh` starts one) the same events written as Avro in
//!   the registry's wire format and decoded to JSON before the handler: what a check costs.
//!
//! Each consumer is its own process, so its CPU time and peak RSS are its own. Throughput and CPU
//! are taken from the first event handled to the last (the group join is left out of both).
//! Then latency at half echo's rate, on librdkafka's mock cluster (in process: the test broker's
//! own delays would swamp it), and `weft run` idling with 1, 10 and 100 plugins loaded, for the
//! memory each plugin costs.
//!
//! Run: `scripts/bench.sh` (starts the test broker, then `cargo bench -p weft --bench pipeline`).
//! `WEFT_BENCH_LATENCY_RATE=<events/s>` runs only the latency part, at that rate.
//! `WEFT_BENCH_PROFILE=<dir>` also records a `perf` profile of each `weft run` into `<dir>`.
//! `WEFT_BENCH_ONLY=<text>` runs the baseline and only the Weft runs whose name contains `<text>`
//! (no latency or memory part), for profiling one of them.
//! `WEFT_BENCH_REPEAT=<n>` runs them `n` times (default 1), the chosen runs taking turns, and prints
//! each one's CPU per event (min and median) and events/s (max and median).
//! `WEFT_BENCH_BIN=<path>[,<path>…]` runs those `weft` binaries instead of this build's, in turn:
//! on a shared machine two builds are compared only that way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use weft_tests::{ECHO_V2_WASM, ECHO_WASM, brokers, create_topic, parse_metrics, unique};

/// The `weft` binary's allocator, so that the native handlers run like the components do.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const PARTITIONS: i32 = 6;
const KEYS: usize = 1_000;
const DATA_BYTES: usize = 1_024;

/// What one consumer did between its first and its last event.
struct Run {
    name: String,
    events: u64,
    seconds: f64,
    cpu_seconds: f64,
    peak_rss_kib: u64,
    note: String,
}

impl Run {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("raw-consumer") {
        return raw_consumer(&args[2], &args[3], args[4].parse().expect("event count"), &args[5]);
    }
    if args.get(1).map(String::as_str) == Some("native-weft") {
        return native_weft(Path::new(&args[2]), &args[3], args[4] == "parse");
    }
    if let Some(rate) = std::env::var("WEFT_BENCH_LATENCY_RATE").ok().and_then(|r| r.parse().ok()) {
        // Only the latency part, at this rate.
        let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
        return runtime.block_on(latency(rate));
    }
    let events: u64 = std::env::var("WEFT_BENCH_EVENTS").ok().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let topic = unique("bench");
    let retry_topic = unique("bench-retry");
    runtime.block_on(async {
        create_topic(&topic, PARTITIONS).await;
        create_topic(&retry_topic, PARTITIONS).await;
    });
    println!(
        "broker {} · {events} events of {DATA_BYTES} B · {PARTITIONS} partitions · {KEYS} keys",
        brokers()
    );
    let started = Instant::now();
    produce(&topic, events, 0);
    if std::env::var_os("WEFT_BENCH_ONLY").is_none() {
        produce(&retry_topic, events, 100);
    }
    let json_schema = json_schema_settings(&topic);
    let avro = runtime.block_on(avro_topic(events));
    println!(
        "produced both topics in {:.1} s ({} records per batch)\n",
        started.elapsed().as_secs_f64(),
        batch()
    );

    let mut runs = vec![raw(&topic, events, "weft"), raw(&topic, events, "defaults")];
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average before the runs: {}",
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    if let Ok(only) = std::env::var("WEFT_BENCH_ONLY") {
        let output = format!("{topic}.out");
        runtime.block_on(create_topic(&output, PARTITIONS));
        let echo = [("output-topic", output.as_str())];
        let scenarios = [
            Scenario::new("weft, no-op WASM handler", &topic, events, &[("noop", "1")]),
            Scenario::new("weft, JSON-parsing WASM handler", &topic, events, &[("parse", "1")]),
            Scenario { native: true, ..Scenario::new("weft, no-op native handler", &topic, events, &[]) },
            Scenario {
                native: true,
                ..Scenario::new("weft, JSON-parsing native handler", &topic, events, &[("parse", "1")])
            },
            Scenario {
                swap: true,
                ..Scenario::new("weft, no-op, hot swap a quarter in", &topic, events, &[("noop", "1")])
            },
            Scenario {
                settings: &json_schema,
                ..Scenario::new("weft, no-op WASM handler + JSON Schema", &topic, events, &[("noop", "1")])
            },
            Scenario::new("weft, echo: emits 1 event per input", &topic, events, &echo),
            Scenario {
                transactions_ms: Some(100),
                ..Scenario::new("weft, echo, exactly-once, 100 ms txns", &topic, events, &echo)
            },
            Scenario {
                transactions_ms: Some(1_000),
                ..Scenario::new("weft, echo, exactly-once, 1 s txns", &topic, events, &echo)
            },
        ];
        let repeat: usize = std::env::var("WEFT_BENCH_REPEAT").ok().and_then(|n| n.parse().ok()).unwrap_or(1);
        let bins: Vec<Option<String>> = match std::env::var("WEFT_BENCH_BIN") {
            Ok(list) => list.split(',').map(|b| Some(b.to_string())).collect(),
            Err(_) => vec![None],
        };
        let avro_scenario = avro.as_ref().map(|(avro_topic, settings)| Scenario {
            settings,
            ..Scenario::new("weft, no-op WASM handler + Avro to JSON", avro_topic, events, &[("noop", "1")])
        });
        let chosen: Vec<&Scenario> =
            scenarios.iter().chain(avro_scenario.as_ref()).filter(|s| s.name.contains(&only)).collect();
        // Per scenario and binary: (CPU µs per event, events/s) of each run. The scenarios take
        // turns in every round, so a noisy minute falls on all of them.
        let mut figures: Vec<Vec<Vec<(f64, f64)>>> = vec![vec![Vec::new(); bins.len()]; chosen.len()];
        for _ in 0..repeat {
            for (s, scenario) in chosen.iter().enumerate() {
                for (n, bin) in bins.iter().enumerate() {
                    let mut run = weft(&Scenario { bin: bin.as_deref(), ..**scenario });
                    figures[s][n].push((run.cpu_seconds * 1e6 / run.events as f64, run.rate()));
                    if let Some(bin) = bin {
                        run.name = format!("{} ({bin})", run.name);
                    }
                    runs.push(run);
                }
            }
        }
        for (scenario, per_bin) in chosen.iter().zip(figures) {
            for (bin, runs) in bins.iter().zip(per_bin) {
                let mut cpu: Vec<f64> = runs.iter().map(|r| r.0).collect();
                let mut rate: Vec<f64> = runs.iter().map(|r| r.1).collect();
                cpu.sort_by(f64::total_cmp);
                rate.sort_by(f64::total_cmp);
                println!(
                    "{} · {}: CPU µs/event min {:.2} median {:.2}; events/s max {:.0} median {:.0} ({} runs)",
                    scenario.name,
                    bin.as_deref().unwrap_or("this build"),
                    cpu[0],
                    cpu[cpu.len() / 2],
                    rate[rate.len() - 1],
                    rate[rate.len() / 2],
                    cpu.len()
                );
            }
        }
        return report(&runs);
    }
    runs.push(weft(&Scenario::new("weft, no-op WASM handler", &topic, events, &[("noop", "1")])));
    runs.push(weft(&Scenario::new("weft, JSON-parsing WASM handler", &topic, events, &[("parse", "1")])));
    runs.push(weft(&Scenario {
        native: true,
        ..Scenario::new("weft, no-op native handler", &topic, events, &[])
    }));
    runs.push(weft(&Scenario {
        native: true,
        ..Scenario::new("weft, JSON-parsing native handler", &topic, events, &[("parse", "1")])
    }));
    let output = format!("{topic}.out");
    runtime.block_on(create_topic(&output, PARTITIONS));
    runs.push(weft(&Scenario::new(
        "weft, echo: emits 1 event per input",
        &topic,
        events,
        &[("output-topic", &output)],
    )));
    // The same, exactly once: outputs and offsets committed in transactions of 100 ms and of 1 s.
    for (name, ms) in
        [("weft, echo, exactly-once, 100 ms txns", 100), ("weft, echo, exactly-once, 1 s txns", 1_000)]
    {
        runs.push(weft(&Scenario {
            transactions_ms: Some(ms),
            ..Scenario::new(name, &topic, events, &[("output-topic", &output)])
        }));
    }
    // The topic with failing events is another topic: its own plain-consumer rate is the reference.
    let retry_base = raw(&retry_topic, events, "weft").rate();
    let mut retried = weft(&Scenario {
        retry: true,
        ..Scenario::new("weft, no-op, 1 % fail once", &retry_topic, events, &[("noop", "1")])
    });
    retried.note =
        format!("{}; {:.2}× a plain consumer of its topic", retried.note, retried.rate() / retry_base);
    runs.push(retried);
    runs.push(weft(&Scenario {
        swap: true,
        ..Scenario::new("weft, no-op, hot swap a quarter in", &topic, events, &[("noop", "1")])
    }));
    // What checking each event costs: the no-op run again, with a JSON Schema, and with the events
    // written as Avro and decoded to JSON.
    runs.push(weft(&Scenario {
        settings: &json_schema,
        ..Scenario::new("weft, no-op WASM handler + JSON Schema", &topic, events, &[("noop", "1")])
    }));
    if let Some((avro_topic, settings)) = &avro {
        runs.push(weft(&Scenario {
            settings,
            ..Scenario::new("weft, no-op WASM handler + Avro to JSON", avro_topic, events, &[("noop", "1")])
        }));
    }
    report(&runs);

    // Latency on librdkafka's mock cluster (in process, no broker delay) at half the rate Weft
    // reached above with echo.
    let echo = runs.iter().find(|run| run.name.starts_with("weft, echo: emits")).expect("the echo run");
    let rate = (echo.rate() / 2.0).min(50_000.0) as u64;
    println!("\nlatency at {rate} events/s on the mock cluster (produce → consumed)");
    runtime.block_on(latency(rate));

    println!("\nmemory with plugins loaded (idle, echo.wasm copies)");
    let mut base = None;
    for count in [1, 10, 100] {
        let rss = idle_rss(count);
        let per = base.map(|b: (usize, u64)| (rss - b.1) as f64 / 1024.0 / (count - b.0) as f64);
        base.get_or_insert((count, rss));
        let per = per.map_or(String::new(), |p| format!("  {p:.2} MiB per extra plugin"));
        println!("{count:>4} plugins  RSS {:>7.1} MiB{per}", rss as f64 / 1024.0);
    }
}

fn report(runs: &[Run]) {
    let baseline = runs[0].rate();
    println!("baseline: {}", runs[0].name);
    println!(
        "{:<36} {:>9} {:>10} {:>8} {:>12} {:>9}  notes",
        "consumer", "events/s", "× baseline", "CPU µs/ev", "peak RSS MiB", "seconds"
    );
    for run in runs {
        println!(
            "{:<36} {:>9.0} {:>10.2} {:>8.2} {:>12.1} {:>9.2}  {}",
            run.name,
            run.rate(),
            run.rate() / baseline,
            run.cpu_seconds * 1e6 / run.events as f64,
            run.peak_rss_kib as f64 / 1024.0,
            run.seconds,
            run.note
        );
    }
}

/// Latency percentiles of a plain consumer reading the input topic (one hop), and of echo through
/// Weft (input → handled → emitted → read from the output topic: two hops), at `rate` events/s.
async fn latency(rate: u64) {
    let mock = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let brokers = mock.bootstrap_servers();
    let events = (rate * 5).max(1_000);
    let report = |name: &str, mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        let at = |q: f64| ms[((ms.len() as f64 * q) as usize).min(ms.len() - 1)];
        println!(
            "{name:<36} p50 {:>7.2} ms  p99 {:>7.2} ms  p999 {:>7.2} ms  ({} events)",
            at(0.5),
            at(0.99),
            at(0.999),
            ms.len()
        );
    };

    mock.create_topic("plain", PARTITIONS, 1).unwrap();
    let reader = latency_reader(&brokers, "plain");
    let received = tokio::task::spawn_blocking(move || read_latencies(&reader, events));
    tokio::time::sleep(Duration::from_secs(3)).await;
    paced(&brokers, "plain", events, rate).await;
    report("rdkafka consumer (one hop)", received.await.unwrap());

    mock.create_topic("in", PARTITIONS, 1).unwrap();
    mock.create_topic("out", PARTITIONS, 1).unwrap();
    let dir = work_dir("latency");
    std::fs::copy(ECHO_WASM, dir.join("echo.wasm")).unwrap();
    let mut config = weft::Config::with_brokers(brokers.clone());
    config.kafka.group_id = unique("bench-latency");
    config.plugins.dir = dir.clone();
    config.plugins.cache_dir = Some(std::env::temp_dir().join("weft-bench-cache"));
    config.http.enabled = false;
    // The mock cluster answers a fetch only when `fetch.wait.max.ms` runs out; the reader uses 5 ms.
    config.kafka.consumer.insert("fetch.wait.max.ms".into(), "5".into());
    let settings = weft::config::PluginConfig {
        config: [("topic", "in"), ("output-topic", "out")].map(|(k, v)| (k.into(), v.into())).into(),
        ..Default::default()
    };
    config.plugin.insert("echo".into(), settings);
    let host = weft::Host::start(config.clone()).await.expect("weft starts");
    let reader = latency_reader(&brokers, "out");
    let received = tokio::task::spawn_blocking(move || read_latencies(&reader, events));
    tokio::time::sleep(Duration::from_secs(3)).await;
    paced(&brokers, "in", events, rate).await;
    report("weft, echo (two hops)", received.await.unwrap());
    // Weft's own part, which no broker delay enters: the record returned by the consumer until
    // echo finished with it (its emitted event acknowledged included), at bucket resolution.
    own_part("weft's own part, echo", &host);
    host.shutdown().await.expect("weft stops");

    // Echo exactly once: an output is readable (`read_committed`) once its transaction commits.
    mock.create_topic("in-eos", PARTITIONS, 1).unwrap();
    mock.create_topic("out-eos", PARTITIONS, 1).unwrap();
    let mut eos = config.clone();
    eos.kafka.group_id = unique("bench-latency-eos");
    eos.delivery.mode = weft::config::DeliveryMode::ExactlyOnce;
    let settings = weft::config::PluginConfig {
        config: [("topic", "in-eos"), ("output-topic", "out-eos")].map(|(k, v)| (k.into(), v.into())).into(),
        ..Default::default()
    };
    eos.plugin.insert("echo".into(), settings);
    let host = weft::Host::start(eos).await.expect("weft starts");
    let reader = latency_reader(&brokers, "out-eos");
    let received = tokio::task::spawn_blocking(move || read_latencies(&reader, events));
    tokio::time::sleep(Duration::from_secs(3)).await;
    paced(&brokers, "in-eos", events, rate).await;
    report("weft, echo exactly-once 100 ms (two hops)", received.await.unwrap());
    host.shutdown().await.expect("weft stops");

    // The same events through the no-op handler: Weft's own part with no emitted event's
    // acknowledgement (and the producer's `linger.ms`) in it.
    mock.create_topic("in-noop", PARTITIONS, 1).unwrap();
    config.kafka.group_id = unique("bench-latency-noop");
    let settings = weft::config::PluginConfig {
        config: [("topic", "in-noop"), ("noop", "1")].map(|(k, v)| (k.into(), v.into())).into(),
        ..Default::default()
    };
    config.plugin.insert("echo".into(), settings);
    let host = weft::Host::start(config).await.expect("weft starts");
    tokio::time::sleep(Duration::from_secs(3)).await;
    paced(&brokers, "in-noop", events, rate).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while weft::ops::metrics::total(&host.metrics().handled) < events && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    own_part("weft's own part, no-op", &host);
    host.shutdown().await.expect("weft stops");
}

/// Prints Weft's own part of the delay (`weft_event_host_seconds`) at bucket resolution.
fn own_part(name: &str, host: &weft::Host) {
    let own =
        |q| format!("{:.2}", weft::ops::metrics::bucket_quantile(&host.metrics().event_host_time, q) * 1e3);
    println!(
        "{name:<36} p50 ≤ {:>5} ms  p99 ≤ {:>5} ms  p999 ≤ {:>5} ms  (weft_event_host_seconds)",
        own(0.5),
        own(0.99),
        own(0.999)
    );
}

fn latency_reader(brokers: &str, topic: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("bench-reader"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .expect("reader");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Reads `events` records whose value holds `{"data": {"sent_ns": …}}` or `{"sent_ns": …}` and
/// returns how long after `sent_ns` each arrived, in ms.
fn read_latencies(consumer: &BaseConsumer, events: u64) -> Vec<f64> {
    let mut latencies = Vec::with_capacity(events as usize);
    let deadline = Instant::now() + Duration::from_secs(120);
    while (latencies.len() as u64) < events && Instant::now() < deadline {
        let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else { continue };
        let now = now_ns();
        let value: serde_json::Value =
            serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
        let sent = value["data"]["sent_ns"].as_u64().or(value["sent_ns"].as_u64());
        if let Some(sent) = sent {
            latencies.push(now.saturating_sub(sent) as f64 / 1e6);
        }
    }
    latencies
}

fn now_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
}

/// Produces `events` small structured events at `rate` per second, each stamped with its send time.
async fn paced(brokers: &str, topic: &str, events: u64, rate: u64) {
    let producer: rdkafka::producer::FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "0")
        .create()
        .expect("producer");
    let started = Instant::now();
    for n in 0..events {
        let due = started + Duration::from_secs_f64(n as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            tokio::time::sleep(wait).await;
        }
        let event = serde_json::json!({
            "specversion": "1.0", "id": format!("l-{n}"), "source": "/bench", "type": "com.example.bench",
            "datacontenttype": "application/json", "data": { "sent_ns": now_ns() },
        });
        let value = serde_json::to_vec(&event).unwrap();
        let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
            key: "content-type",
            value: Some("application/cloudevents+json"),
        });
        let key = format!("key-{}", n as usize % KEYS);
        let record = rdkafka::producer::FutureRecord::to(topic).key(&key).headers(headers).payload(&value);
        let _ = producer.send_result(record);
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(60)).expect("flush");
}

/// Produces `events` structured CloudEvents to `topic`; one in `fail_every` (if not 0), spread over the keys,
/// fails its first attempt in echo.
fn produce(topic: &str, events: u64, fail_every: u64) {
    let producer = bench_producer();
    let note = "x".repeat(DATA_BYTES - 80);
    for n in 0..events {
        let mut event = serde_json::json!({
            "specversion": "1.0", "id": format!("ev-{n}"), "source": "/bench", "type": "com.example.bench",
            "datacontenttype": "application/json",
            "data": { "n": n, "note": note },
        });
        // Spread over the keys (`n % fail_every` alone would pick the same few keys every time).
        if fail_every > 0 && (n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % fail_every == 0 {
            event["failmode"] = "retryable".into();
            event["failuntil"] = "2".into();
        }
        let headers = [("content-type".to_string(), b"application/cloudevents+json".to_vec())];
        let key = format!("key-{}", n as usize % KEYS);
        let value = serde_json::to_vec(&event).unwrap();
        let owned = headers.iter().fold(rdkafka::message::OwnedHeaders::new(), |h, (k, v)| {
            h.insert(rdkafka::message::Header { key: k, value: Some(v.as_slice()) })
        });
        let mut record = rdkafka::producer::FutureRecord::to(topic).key(&key).headers(owned).payload(&value);
        while let Err((_, back)) = producer.send_result(record) {
            record = back;
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(120)).expect("flush");
}

/// `[topics."<topic>"]` with a JSON Schema (draft 2020-12) every produced event's data matches.
fn json_schema_settings(topic: &str) -> String {
    let schema = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["n", "note"],
        "properties": {
            "n": {"type": "integer", "minimum": 0},
            "note": {"type": "string", "maxLength": 4096, "pattern": "^x*$"}
        },
        "additionalProperties": false
    }"#;
    let path = work_dir("schema").join("bench.json");
    std::fs::write(&path, schema).unwrap();
    format!("[topics.\"{topic}\"]\nschema = \"{}\"\n", path.display())
}

/// With a registry in `WEFT_TEST_REGISTRY`: a topic of `events` binary-mode CloudEvents whose data
/// is the produced events' data as Avro in the registry's wire format, and the settings that make
/// Weft decode it to JSON.
async fn avro_topic(events: u64) -> Option<(String, String)> {
    let registry = std::env::var("WEFT_TEST_REGISTRY").ok()?;
    let topic = unique("bench-avro");
    create_topic(&topic, PARTITIONS).await;
    let schema = r#"{"type": "record", "name": "Bench", "fields": [
        {"name": "n", "type": "long"}, {"name": "note", "type": "string"}]}"#;
    let body = serde_json::json!({ "schema": schema }).to_string();
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!("{registry}/subjects/{topic}-value/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body)
        .send()
        .await
        .expect("the registry answers")
        .json()
        .await
        .expect("an id");
    let id = registered["id"].as_u64().expect("an id") as u32;
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&parsed).build().unwrap();
    let note = "x".repeat(DATA_BYTES - 80);
    let producer = bench_producer();
    for n in 0..events {
        use apache_avro::types::Value;
        let data = Value::Record(vec![
            ("n".into(), Value::Long(n as i64)),
            ("note".into(), Value::String(note.clone())),
        ]);
        let mut value = vec![0];
        value.extend_from_slice(&id.to_be_bytes());
        value.extend(writer.write_value_to_vec(data).unwrap());
        let id = format!("ev-{n}");
        let headers = [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", "/bench"),
            ("ce_type", "com.example.bench"),
            ("content-type", "application/avro"),
        ]
        .iter()
        .fold(rdkafka::message::OwnedHeaders::new(), |h, (key, value)| {
            h.insert(rdkafka::message::Header { key, value: Some(*value) })
        });
        let key = format!("key-{}", n as usize % KEYS);
        let mut record =
            rdkafka::producer::FutureRecord::to(&topic).key(&key).headers(headers).payload(&value);
        while let Err((_, back)) = producer.send_result(record) {
            record = back;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    rdkafka::producer::Producer::flush(&producer, Duration::from_secs(120)).expect("flush");
    let settings =
        format!("[schema_registry]\nurl = \"{registry}\"\n[topics.\"{topic}\"]\navro = \"json\"\n");
    Some((topic, settings))
}

/// The producer that writes the bench's topics, batching up to [`batch`] records.
fn bench_producer() -> rdkafka::producer::FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", if batch() > 1 { "20" } else { "0" })
        .set("batch.num.messages", batch().to_string())
        .create()
        .expect("producer")
}

/// Records per produced batch at most (`WEFT_BENCH_BATCH`, default 1,000: what a producer under
/// load sends; 1 writes a batch per record).
fn batch() -> usize {
    std::env::var("WEFT_BENCH_BATCH").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000)
}

/// A plain consumer in its own process: this binary again, as `raw-consumer`. `settings`: `weft`
/// for the consumer properties Weft uses (the baseline), `defaults` for librdkafka's.
fn raw(topic: &str, events: u64, settings: &str) -> Run {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["raw-consumer", &brokers(), topic, &events.to_string(), settings])
        .stderr(Stdio::inherit())
        .output()
        .expect("running the raw consumer");
    let line = String::from_utf8_lossy(&output.stdout);
    let fields: Vec<f64> = line.split_whitespace().map(|f| f.parse().expect("a number")).collect();
    Run {
        name: match settings {
            "weft" => "rdkafka consumer, no decode (baseline)".into(),
            _ => "rdkafka consumer, librdkafka defaults".into(),
        },
        events,
        seconds: fields[0],
        cpu_seconds: fields[1],
        peak_rss_kib: fields[2] as u64,
        note: String::new(),
    }
}

/// A plain group consumer: poll, touch the payload, nothing else. Prints seconds, CPU seconds and
/// peak RSS (KiB) from the first record to the last.
fn raw_consumer(brokers: &str, topic: &str, events: u64, settings: &str) {
    let group = unique("bench-raw");
    let mut config = if settings == "weft" {
        let mut weft = weft::Config::with_brokers(brokers);
        weft.kafka.group_id = group;
        let mut config = weft::kafka::client::consumer_config(&weft.kafka);
        // A plain consumer stores what it polls.
        config.set("enable.auto.offset.store", "true");
        config
    } else {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers).set("group.id", group);
        config
    };
    let consumer: BaseConsumer = config.set("auto.offset.reset", "earliest").create().expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let (mut count, mut bytes, mut first) = (0u64, 0usize, None);
    let mut last = Instant::now();
    while count < events {
        // `poll` also returns `None` after serving a rebalance, before its timeout.
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                first.get_or_insert_with(|| (Instant::now(), cpu_seconds("self")));
                bytes += message.payload().map_or(0, <[u8]>::len);
                count += 1;
                last = Instant::now();
            }
            Some(Err(error)) => eprintln!("raw consumer: {error}"),
            None => assert!(
                last.elapsed() < Duration::from_secs(60),
                "raw consumer: no record for 60 s after {count}"
            ),
        }
    }
    std::hint::black_box(bytes);
    let (at, cpu) = first.expect("at least one record");
    println!("{} {} {}", at.elapsed().as_secs_f64(), cpu_seconds("self") - cpu, status_kib("self", "VmHWM"));
}

/// What a native handler does: nothing, or parse the event's data as JSON (the echo component's
/// `noop` and `parse`, compiled natively).
struct Native {
    parse: bool,
}

impl weft::sandbox::plugin::NativeHandler for Native {
    fn handle(
        &self,
        event: &weft::sandbox::plugin::Cloudevent,
        _: &weft::sandbox::plugin::Delivery,
    ) -> Result<(), weft::sandbox::plugin::HandleError> {
        if self.parse {
            let data = event.data.as_deref().unwrap_or_default();
            let value = serde_json::from_slice::<serde_json::Value>(data).map_err(|e| {
                weft::sandbox::plugin::HandleError::Permanent(format!("data is not JSON: {e}"))
            })?;
            drop(std::hint::black_box(value));
        }
        Ok(())
    }
}

/// Weft in this process, as `weft run` would be with `config`, with a native handler subscribed to
/// `topic` on the same dispatch path (routing, lanes, retries, offsets, metrics) instead of a
/// component: what the WebAssembly call costs is the difference. Stops at SIGTERM.
fn native_weft(config: &Path, topic: &str, parse: bool) {
    let config = weft::Config::load(config).expect("configuration");
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    runtime.block_on(async {
        let description = weft::sandbox::plugin::Description {
            name: "native".into(),
            version: "1".into(),
            description: "a native handler".into(),
            subscriptions: vec![weft::config::SubscriptionSpec {
                topic: topic.into(),
                types: vec![],
                sources: vec![],
            }],
        };
        let native = weft::sandbox::plugin::Plugin::native(
            "native",
            description,
            std::sync::Arc::new(Native { parse }),
        )
        .expect("native handler");
        let host = weft::Host::start_with(config, vec![native]).await.expect("weft starts");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        term.recv().await;
        host.shutdown().await.expect("weft stops");
    });
}

/// One `weft run`.
#[derive(Clone, Copy)]
struct Scenario<'a> {
    name: &'a str,
    topic: &'a str,
    events: u64,
    config: &'a [(&'a str, &'a str)],
    retry: bool,
    swap: bool,
    /// The `weft` binary to run; `None`: this build's.
    bin: Option<&'a str>,
    /// A native handler in place of the component (see [`native_weft`]).
    native: bool,
    /// Exactly-once delivery, with transactions of this many milliseconds; `None`: at-least-once.
    transactions_ms: Option<u64>,
    /// More configuration for the run (schemas).
    settings: &'a str,
}

impl<'a> Scenario<'a> {
    fn new(name: &'a str, topic: &'a str, events: u64, config: &'a [(&'a str, &'a str)]) -> Self {
        Self {
            name,
            topic,
            events,
            config,
            retry: false,
            swap: false,
            bin: None,
            native: false,
            transactions_ms: None,
            settings: "",
        }
    }
}

fn weft(scenario: &Scenario) -> Run {
    let dir = work_dir(scenario.name);
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    if !scenario.native {
        std::fs::copy(ECHO_WASM, plugins.join("echo.wasm")).unwrap();
    }
    let mut settings: Vec<(&str, &str)> = vec![("topic", scenario.topic)];
    settings.extend_from_slice(scenario.config);
    let plugin_config = vec![("echo".to_string(), settings)];
    let mut extra =
        if scenario.retry { "[retry]\ninitial_backoff_ms = 50\njitter = 0.0\n" } else { "" }.to_string();
    if let Some(ms) = scenario.transactions_ms {
        extra.push_str(&format!("[delivery]\nmode = \"exactly-once\"\ntransaction_interval_ms = {ms}\n"));
    }
    extra.push_str(scenario.settings);
    let native = scenario.native.then(|| {
        let parse = scenario.config.iter().any(|(k, _)| *k == "parse");
        (scenario.topic, if parse { "parse" } else { "noop" })
    });
    let mut weft = Weft::start(&dir, &plugin_config, &extra, scenario.bin, native);
    let handled = |m: &Metrics| m.sum("weft_events_handled_total");
    weft.wait(Duration::from_secs(120), |m| handled(m) > 0.0);
    let (t0, cpu0) = (Instant::now(), cpu_seconds(&weft.pid()));
    let profile = profile(scenario.name, &weft.pid());
    let mut note = String::new();
    if scenario.swap {
        // A quarter in: the new version has most of the topic left to show its first event.
        weft.wait(Duration::from_secs(300), |m| handled(m) >= scenario.events as f64 / 4.0);
        let temp = plugins.join(".echo.wasm.tmp");
        std::fs::copy(ECHO_V2_WASM, &temp).unwrap();
        std::fs::rename(&temp, plugins.join("echo.wasm")).unwrap();
        let swapped = weft.wait(Duration::from_secs(60), |m| {
            m.sum("weft_plugin_swap_seconds_count") >= 1.0 || handled(m) >= scenario.events as f64
        });
        note = if swapped.sum("weft_plugin_swap_seconds_count") >= 1.0 {
            format!("swap {:.1} ms (less compilation)", swapped.sum("weft_plugin_swap_seconds_sum") * 1e3)
        } else {
            "every event was handled before the new version went live".into()
        };
    }
    let end = weft.progress(handled, scenario.events as f64);
    let (seconds, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds(&weft.pid()) - cpu0);
    let peak = status_kib(&weft.pid(), "VmHWM");
    if let Some(mut perf) = profile {
        let _ = Command::new("kill").args(["-INT", &perf.id().to_string()]).status();
        let _ = perf.wait();
    }
    // Nothing more arrives, nothing went to the dead-letter topic.
    std::thread::sleep(Duration::from_millis(500));
    let settled = weft.metrics();
    let (total, dead) = (handled(&settled) as u64, settled.sum("weft_events_dead_lettered_total") as u64);
    assert_eq!(dead, 0, "{}: {dead} events dead-lettered", scenario.name);
    if scenario.retry {
        note = format!("{} retries", end.sum("weft_events_retried_total"));
    }
    let skipped = settled.sum("weft_offsets_skipped_total");
    if total != scenario.events {
        note = format!("STALLED: handled {total}, {skipped} offsets skipped by the broker; {note}");
    } else if skipped > 0.0 {
        note = format!("{skipped} offsets skipped by the broker; {note}");
    }
    weft.stop();
    Run {
        name: scenario.name.into(),
        events: scenario.events,
        seconds,
        cpu_seconds: cpu,
        peak_rss_kib: peak,
        note,
    }
}

/// With `WEFT_BENCH_PROFILE=<dir>`: `perf record` of the weft process, into
/// `<dir>/<scenario>.perf.data` (read it with `perf report -i`).
fn profile(scenario: &str, pid: &str) -> Option<Child> {
    let dir = PathBuf::from(std::env::var_os("WEFT_BENCH_PROFILE")?);
    std::fs::create_dir_all(&dir).ok()?;
    let slug: String = scenario.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let output = dir.join(format!("{slug}.perf.data"));
    Command::new("perf")
        .args(["record", "-g", "-F", "999", "-p", pid, "-o"])
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

/// Peak of RSS while idle with `count` copies of echo loaded.
fn idle_rss(count: usize) -> u64 {
    let dir = work_dir(&format!("idle-{count}"));
    let plugins = dir.join("plugins");
    std::fs::create_dir_all(&plugins).unwrap();
    let idle = unique("bench-idle");
    let mut configs = Vec::new();
    for n in 0..count {
        std::fs::copy(ECHO_WASM, plugins.join(format!("echo-{n}.wasm"))).unwrap();
        configs.push((format!("echo-{n}"), vec![("topic", idle.as_str())]));
    }
    let mut weft = Weft::start(&dir, &configs, "", None, None);
    weft.wait(Duration::from_secs(300), |m| m.count("weft_plugin_info") >= count);
    std::thread::sleep(Duration::from_secs(2));
    let rss = status_kib(&weft.pid(), "VmRSS");
    weft.stop();
    rss
}

fn work_dir(name: &str) -> PathBuf {
    let slug: String = name.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let dir = std::env::temp_dir().join(unique(&format!("weft-bench-{slug}")));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A `weft run` process with its metrics endpoint.
struct Weft {
    child: Child,
    address: String,
}

impl Weft {
    /// `native`: the topic and the handler (`noop`, `parse`) of a native handler run by this
    /// binary as `native-weft` instead of `weft run`.
    fn start(
        dir: &Path,
        plugins: &[(String, Vec<(&str, &str)>)],
        extra: &str,
        bin: Option<&str>,
        native: Option<(&str, &str)>,
    ) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        drop(listener);
        let mut config = format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\n\n[plugins]\ndir = \"{}\"\ncache_dir = \"{}\"\n\n\
             [http]\nlisten = \"{address}\"\n\n{extra}",
            brokers(),
            unique("bench-weft"),
            dir.join("plugins").display(),
            std::env::temp_dir().join("weft-bench-cache").display(),
        );
        for (id, settings) in plugins {
            let values: Vec<String> = settings.iter().map(|(k, v)| format!("{k:?} = {v:?}")).collect();
            config.push_str(&format!("\n[plugin.{id:?}]\nconfig = {{ {} }}\n", values.join(", ")));
        }
        let path = dir.join("weft.toml");
        std::fs::write(&path, config).unwrap();
        let log = std::fs::File::create(dir.join("weft.log")).unwrap();
        let mut command = match native {
            Some((topic, handler)) => {
                let mut command = Command::new(std::env::current_exe().unwrap());
                command.arg("native-weft").arg(&path).args([topic, handler]);
                command
            }
            None => {
                let mut command = Command::new(bin.unwrap_or(env!("CARGO_BIN_EXE_weft")));
                command.arg("run").arg("--config").arg(&path);
                command
            }
        };
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting weft");
        Self { child, address }
    }

    fn pid(&self) -> String {
        self.child.id().to_string()
    }

    /// The metrics now; none while the endpoint is not up yet.
    fn metrics(&self) -> Metrics {
        use std::io::{Read, Write};
        let mut text = String::new();
        let fetched = std::net::TcpStream::connect(&self.address).and_then(|mut stream| {
            stream.write_all(b"GET /metrics HTTP/1.0\r\nHost: weft\r\n\r\n")?;
            stream.read_to_string(&mut text)
        });
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Metrics(if fetched.is_ok() { parse_metrics(body) } else { Vec::new() })
    }

    /// Polls the metrics every 50 ms until `done` holds; gives up (and panics) after `limit`.
    fn wait(&mut self, limit: Duration, done: impl Fn(&Metrics) -> bool) -> Metrics {
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("weft exited with {status}");
            }
            let metrics = self.metrics();
            if done(&metrics) {
                return metrics;
            }
            assert!(started.elapsed() < limit, "weft did not get there in {limit:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Polls until `count` reaches `goal`, or it has not moved for 30 s (a stall: returns then).
    fn progress(&mut self, count: impl Fn(&Metrics) -> f64, goal: f64) -> Metrics {
        let (mut last, mut moved) = (0.0, Instant::now());
        loop {
            let metrics = self.wait(Duration::from_secs(60), |_| true);
            let now = count(&metrics);
            if now >= goal || moved.elapsed() > Duration::from_secs(30) {
                return metrics;
            }
            if now > last {
                (last, moved) = (now, Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stop(mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.pid()]).status();
        let _ = self.child.wait();
    }
}

struct Metrics(Vec<(String, HashMap<String, String>, f64)>);

impl Metrics {
    fn sum(&self, name: &str) -> f64 {
        self.0.iter().filter(|(n, _, _)| n == name).map(|(_, _, v)| v).sum()
    }

    fn count(&self, name: &str) -> usize {
        self.0.iter().filter(|(n, _, v)| n == name && *v > 0.0).count()
    }
}

/// CPU time (user + system) of a process so far, from `/proc/<pid>/stat`, in seconds.
fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/<pid>/stat");
    // Fields after the command name (which may hold spaces), starting with field 3.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    ticks as f64 / 100.0
}

/// A `kB` line of `/proc/<pid>/status` (`VmHWM`: peak RSS; `VmRSS`: RSS now).
fn status_kib(pid: &str, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/<pid>/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a kB field")
}
