//! `weft load`: a load test of the whole path. Produces Todo task events at a fixed rate for a
//! while, lets Weft run them through the bundled `audit` plugin, reads the audit records it emits,
//! and reports what was sent, handled, dead-lettered and lost, the throughput and the end-to-end
//! latency (from the moment an event was produced to the moment its audit record was read), with a
//! progress line every second. It runs on librdkafka's in-process mock cluster unless given a real
//! one.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::SubscriptionSpec;
use crate::config::{Config, PluginConfig};
use crate::host::Host;

/// Options of `weft load`.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// A real cluster instead of the mock one (its topics are created, 3 partitions each).
    pub brokers: Option<String>,
    /// Events produced per second.
    pub rate: u32,
    /// How long to produce.
    pub duration: Duration,
    /// How long to wait, after the last event was produced, for the stragglers.
    pub drain: Duration,
    /// Where to serve /metrics and the health endpoints.
    pub listen: std::net::SocketAddr,
}

/// What a load run measured.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadReport {
    /// Events produced.
    pub sent: u64,
    /// Distinct events whose audit record was read.
    pub handled: u64,
    /// Events dead-lettered.
    pub dead_lettered: u64,
    /// Events neither handled nor dead-lettered.
    pub lost: u64,
    /// Audit records read more than once (at-least-once redeliveries).
    pub duplicates: u64,
    /// Handled events per second over the run.
    pub throughput: f64,
    /// End-to-end latency percentiles, in milliseconds: p50, p99, p999, max.
    pub latency_ms: [f64; 4],
    /// Offsets of the input the broker no longer had when Weft asked for them
    /// (`weft_offsets_skipped_total`): records deleted before they were read, by retention on a
    /// cluster that cannot keep up. Lost at the broker, never seen by Weft.
    pub skipped_by_broker: u64,
    /// Weft's own part of it (`weft_event_host_seconds`: the record returned by the consumer until
    /// the plugin finished with it), in milliseconds, at bucket resolution: the upper bounds of the
    /// buckets holding p50, p99, p999.
    pub host_ms: [f64; 3],
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [p50, p99, p999, max] = self.latency_ms;
        let [own50, own99, own999] = self.host_ms;
        write!(
            f,
            "sent {}  handled {}  dead-lettered {}  lost {}  duplicates {}\n\
             throughput {:.0} events/s  latency p50 {p50:.2} ms  p99 {p99:.2} ms  p999 {p999:.2} ms  max {max:.2} ms\n\
             of which Weft (weft_event_host_seconds): p50 ≤ {own50} ms  p99 ≤ {own99} ms  p999 ≤ {own999} ms",
            self.sent, self.handled, self.dead_lettered, self.lost, self.duplicates, self.throughput
        )?;
        if self.skipped_by_broker > 0 {
            write!(
                f,
                "\nthe cluster deleted {} input records before they could be read (retention): lost at the \
                 broker, before Weft; the load is more than this cluster keeps up with",
                self.skipped_by_broker
            )?;
        }
        Ok(())
    }
}

/// Runs a load test; `progress` gets a line every second.
pub async fn run(options: LoadOptions, mut progress: impl FnMut(&str)) -> anyhow::Result<LoadReport> {
    anyhow::ensure!(options.rate > 0, "--rate must be at least 1");
    let run_id =
        format!("{:x}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis());
    let (input, output) = (format!("weft-load-{run_id}"), format!("weft-load-{run_id}.audit"));
    let (mock, brokers) = match &options.brokers {
        Some(brokers) => (None, brokers.clone()),
        None => {
            let mock = MockCluster::new(1).context("starting the mock Kafka cluster")?;
            (Some(mock), String::new())
        }
    };
    let brokers = match &mock {
        Some(mock) => mock.bootstrap_servers(),
        None => brokers,
    };
    create_topics(mock.as_ref(), &brokers, &[&input, &output, &format!("{input}.dlq")]).await?;

    let plugins = std::env::temp_dir().join(format!("weft-load-{}", std::process::id()));
    std::fs::create_dir_all(&plugins).with_context(|| format!("creating {}", plugins.display()))?;
    std::fs::write(plugins.join("audit.wasm"), crate::cli::dev::AUDIT_WASM)
        .context("writing the audit plugin")?;
    let mut config = Config::with_brokers(&brokers);
    config.kafka.group_id = format!("weft-load-{run_id}");
    config.plugins.dir = plugins.clone();
    config.plugins.watch = false;
    config.http.listen = options.listen;
    if mock.is_some() {
        // The mock cluster answers a fetch only when fetch.wait.max.ms runs out.
        config.kafka.consumer.insert("fetch.wait.max.ms".into(), "5".into());
    }
    config.plugin.insert(
        "audit".into(),
        PluginConfig {
            subscriptions: Some(vec![SubscriptionSpec {
                topic: input.clone(),
                types: vec!["com.example.task.*".into()],
                sources: vec![],
            }]),
            config: [("output-topic".to_string(), output.clone())].into(),
            ..PluginConfig::default()
        },
    );
    let host = Host::start(config).await?;

    let reader: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", format!("weft-load-reader-{run_id}"))
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "5")
        .create()
        .context("creating the audit-record reader")?;
    reader.subscribe(&[&output])?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "1")
        .create()
        .context("creating the load producer")?;

    // One event through the whole path first: the host and the reader have joined their groups.
    let (key, headers, value) = load_event(u64::MAX);
    producer
        .send(FutureRecord::to(&input).key(&key).headers(headers).payload(&value), Duration::from_secs(10))
        .await
        .map_err(|(error, _)| error)
        .context("producing the warm-up event")?;
    let warm = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            let message = reader.recv().await?;
            let record: serde_json::Value =
                serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
            if record["event_id"] == format!("load-{}", u64::MAX) {
                return anyhow::Ok(());
            }
        }
    });
    warm.await.context("the warm-up event did not come through within 60 s")??;

    let started = Instant::now();
    let period = Duration::from_secs_f64(1.0 / f64::from(options.rate));
    let mut next = tokio::time::Instant::now();
    let mut report_at = Instant::now() + Duration::from_secs(1);
    let (mut sent, mut read) = (0u64, 0u64);
    let mut seen: HashSet<String> = HashSet::new();
    let mut latencies: Vec<f64> = Vec::new();
    // Where the current second's latencies start, for the progress line.
    let mut second_start = 0;
    let mut last_handled = Instant::now();
    let producing = |elapsed: Duration| elapsed < options.duration;
    loop {
        let elapsed = started.elapsed();
        if !producing(elapsed)
            && (seen.len() as u64 + dead_lettered(&host) >= sent || last_handled.elapsed() > options.drain)
        {
            break;
        }
        let tick = async {
            if producing(started.elapsed()) {
                tokio::time::sleep_until(next).await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            () = tick => {
                let (key, headers, value) = load_event(sent);
                let record = FutureRecord::to(&input).key(&key).headers(headers).payload(&value);
                match producer.send_result(record) {
                    Ok(_) => sent += 1,
                    Err((error, _)) => tracing::warn!(%error, "load event not produced"),
                }
                next += period;
            }
            message = reader.recv() => {
                let message = message?;
                read += 1;
                let record: serde_json::Value = serde_json::from_slice(message.payload().unwrap_or_default()).unwrap_or_default();
                if let Some(id) = record["event_id"].as_str()
                    && seen.insert(id.to_string())
                {
                    last_handled = Instant::now();
                    if let Some(at) = record["event_time"].as_str().and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok()) {
                        let ms = (chrono::Utc::now() - at.with_timezone(&chrono::Utc)).num_microseconds().unwrap_or(0) as f64 / 1e3;
                        latencies.push(ms.max(0.0));
                    }
                }
            }
            () = tokio::time::sleep_until(report_at.into()) => {
                report_at += Duration::from_secs(1);
                let p99 = percentile(&mut latencies[second_start..].to_vec(), 0.99);
                second_start = latencies.len();
                progress(&format!(
                    "{:>4} s  sent {sent}  handled {}  dead-lettered {}  p99 of the last second {p99:.2} ms",
                    started.elapsed().as_secs(),
                    seen.len(),
                    dead_lettered(&host)
                ));
            }
        }
    }
    // From the first event produced to the last one handled.
    let seconds = last_handled.duration_since(started).as_secs_f64();
    let dead = dead_lettered(&host);
    let handled = seen.len() as u64;
    let report = LoadReport {
        sent,
        handled,
        dead_lettered: dead,
        lost: sent.saturating_sub(handled + dead),
        duplicates: read - handled,
        throughput: handled as f64 / seconds.max(0.001),
        latency_ms: [
            percentile(&mut latencies, 0.5),
            percentile(&mut latencies, 0.99),
            percentile(&mut latencies, 0.999),
            percentile(&mut latencies, 1.0),
        ],
        skipped_by_broker: crate::ops::metrics::total(&host.metrics().offsets_skipped),
        host_ms: [0.5, 0.99, 0.999]
            .map(|q| crate::ops::metrics::bucket_quantile(&host.metrics().event_host_time, q) * 1e3),
    };
    tokio::task::spawn_blocking(move || {
        let _ = rdkafka::producer::Producer::flush(&producer, Duration::from_secs(1));
        drop((producer, reader));
    })
    .await?;
    host.shutdown().await?;
    drop(mock);
    let _ = std::fs::remove_dir_all(plugins);
    Ok(report)
}

fn dead_lettered(host: &Host) -> u64 {
    crate::ops::metrics::total(&host.metrics().dead_lettered)
}

/// The `q` quantile (0..=1) of `values`, sorting them; 0 for none.
fn percentile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 * q) as usize).min(values.len() - 1)]
}

/// The `n`th load event: a Todo task event stamped with the time it is produced.
fn load_event(n: u64) -> (String, rdkafka::message::OwnedHeaders, Vec<u8>) {
    let user = format!("user-{}", n % 50);
    let event = serde_json::json!({
        "specversion": "1.0",
        "id": format!("load-{n}"),
        "source": "/todo/api",
        "type": "com.example.task.updated",
        "time": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "datacontenttype": "application/json",
        "data": { "task_id": format!("task-{n}"), "user_id": user, "title": "Water the plants" },
    });
    let headers = rdkafka::message::OwnedHeaders::new().insert(rdkafka::message::Header {
        key: "content-type",
        value: Some("application/cloudevents+json"),
    });
    (user, headers, serde_json::to_vec(&event).expect("JSON serializes"))
}

async fn create_topics(
    mock: Option<&MockCluster<'_, rdkafka::producer::DefaultProducerContext>>,
    brokers: &str,
    topics: &[&str],
) -> anyhow::Result<()> {
    if let Some(mock) = mock {
        // One partition each: the mock cluster finds a fetch's offset by walking the partition's
        // whole retained log (up to 5 MB), so every extra partition is one more walk per fetch and
        // its thread saturates sooner. Weft's lanes still spread the keys of the one partition.
        for topic in topics {
            mock.create_topic(topic, 1, 1).with_context(|| format!("creating {topic}"))?;
        }
        return Ok(());
    }
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    let admin: AdminClient<rdkafka::client::DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the admin client")?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|t| NewTopic::new(t, 3, TopicReplication::Fixed(-1))).collect();
    for result in admin.create_topics(&new, &AdminOptions::new()).await.context("creating the load topics")? {
        result.map_err(|(topic, error)| anyhow::anyhow!("creating {topic}: {error}"))?;
    }
    Ok(())
}
