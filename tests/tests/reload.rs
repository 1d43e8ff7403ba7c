//! Hot reload against a real broker: versions swapped under load with every event handled once and
//! no key going back to an older version, plugins dropped in and deleted while running, bad files
//! refused while the running version keeps serving, and the compiled-plugin cache.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use weft::Host;
use weft_tests::*;

const PARTITIONS: i32 = 3;

fn digest_of(path: &str) -> String {
    weft::sandbox::plugin::digest(&std::fs::read(path).unwrap())
}

/// Replaces `dir/<stem>.wasm` the way deployment tools do: written beside it under a temp name,
/// then renamed over it.
fn deploy_by_rename(dir: &Path, stem: &str, source: &str) {
    let temp = dir.join(format!(".{stem}.wasm.tmp"));
    std::fs::copy(source, &temp).unwrap();
    std::fs::rename(&temp, dir.join(format!("{stem}.wasm"))).unwrap();
}

/// Replaces `dir/<stem>.wasm` in place, the way `cp` does: truncate, then write in pieces.
fn deploy_in_place(dir: &Path, stem: &str, source: &str) {
    use std::io::Write;
    let bytes = std::fs::read(source).unwrap();
    let mut file = std::fs::File::create(dir.join(format!("{stem}.wasm"))).unwrap();
    for chunk in bytes.chunks(bytes.len() / 4 + 1) {
        file.write_all(chunk).unwrap();
        file.flush().unwrap();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The digest of the one plugin in service.
fn serving(host: &Host, id: &str) -> Option<String> {
    host.plugins().iter().find(|p| p.id == id).map(|p| p.digest.clone())
}

fn handled(host: &Host, topic: &str, plugin: &str) -> u64 {
    host.metrics().handled.with_label_values(&[topic, plugin]).get()
}

/// Collapses runs: `[a, a, b, a]` → `[a, b, a]`.
fn runs(values: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for v in values {
        if out.last() != Some(&v) {
            out.push(v);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_swapped_under_load_handle_every_event_once_and_never_go_back() {
    init_logging();
    const EVENTS: u64 = 20_000;
    let (topic, output) = topic_pair("swap", PARTITIONS).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.expect("host starts");
    let (v1, v2) = (digest_of(ECHO_WASM), digest_of(ECHO_V2_WASM));
    assert_eq!(serving(&host, "echo").as_deref(), Some(v1.as_str()));

    // A steady stream, so every swap lands while events are being fetched and handled. The last
    // fifth waits for the last swap, so every partition sees the last version however slow the
    // broker is.
    let last_swap_done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producing = {
        let topic = topic.clone();
        let last_swap_done = last_swap_done.clone();
        tokio::task::spawn_blocking(move || {
            let producer = TestProducer::new();
            for chunk in 0..EVENTS / 250 {
                if chunk * 250 == EVENTS / 5 * 4 {
                    while !last_swap_done.load(std::sync::atomic::Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                for n in chunk * 250..(chunk + 1) * 250 {
                    let key = format!("user-{}", n % 300);
                    let (headers, value) = weft::cli::dev::binary_record(&event(n));
                    producer.enqueue(&topic, &key, &headers, &value);
                }
                producer.flush();
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // v1 → v2 → v1 → v2, each once the previous version has been routed a share of the stream.
    // Routing happens at fetch time, so the trigger counts fetched records: counting handled ones
    // would let a slow machine fetch (and route) the whole rest of a partition before the last swap.
    let fetched = |host: &Host| host.metrics().received.with_label_values(&[&topic]).get();
    let swaps = [(ECHO_V2_WASM, &v2, true), (ECHO_WASM, &v1, false), (ECHO_V2_WASM, &v2, true)];
    for (i, (source, digest, by_rename)) in swaps.into_iter().enumerate() {
        let target = (i as u64 + 1) * EVENTS / 5;
        assert!(
            eventually(Duration::from_secs(120), || fetched(&host) >= target).await,
            "stuck below {target} fetched events"
        );
        if by_rename {
            deploy_by_rename(&dir, "echo", source);
        } else {
            deploy_in_place(&dir, "echo", source);
        }
        assert!(
            eventually(Duration::from_secs(10), || serving(&host, "echo").as_deref() == Some(digest)).await,
            "swap {} did not take effect",
            i + 1
        );
    }
    last_swap_done.store(true, std::sync::atomic::Ordering::SeqCst);
    producing.await.unwrap();
    assert!(
        eventually(Duration::from_secs(180), || handled(&host, &topic, "echo") >= EVENTS).await,
        "only {} of {EVENTS} handled",
        handled(&host, &topic, "echo")
    );
    assert!(eventually(Duration::from_secs(20), || host.metrics().in_flight.get() == 0).await);
    let metrics = host.metrics().clone();
    host.shutdown().await.expect("graceful shutdown");

    let outputs = read_all(&output, Duration::from_secs(3)).await;
    let ids: HashSet<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    assert_eq!(ids.len() as u64, EVENTS, "distinct inputs with an output");
    assert_eq!(outputs.len() as u64, EVENTS, "an input had more than one output");

    // Per partition, in offset order, the versions are exactly v1, v2, v1, v2: each swap is one
    // point in the fetch order.
    let mut by_partition: BTreeMap<i64, Vec<(i64, String)>> = BTreeMap::new();
    let mut by_key: HashMap<String, Vec<(i64, i64, String)>> = HashMap::new();
    for o in &outputs {
        let partition: i64 = o.header("ce_inpartition").unwrap().parse().unwrap();
        let offset: i64 = o.header("ce_inoffset").unwrap().parse().unwrap();
        let version = o.header("ce_echoversion").unwrap().to_string();
        by_partition.entry(partition).or_default().push((offset, version.clone()));
        by_key.entry(o.key.clone().unwrap()).or_default().push((partition, offset, version));
    }
    assert_eq!(by_partition.len(), PARTITIONS as usize);
    for (partition, mut seen) in by_partition {
        seen.sort();
        let versions = runs(seen.into_iter().map(|(_, v)| v));
        assert_eq!(versions, ["v1", "v2", "v1", "v2"], "partition {partition}");
    }
    // Per key, in input order, a key never goes back: its versions are a sub-sequence of the swaps.
    for (key, mut seen) in by_key {
        seen.sort();
        let versions = runs(seen.into_iter().map(|(_, _, v)| v));
        let mut swaps = ["v1", "v2", "v1", "v2"].iter();
        assert!(versions.iter().all(|v| swaps.any(|s| s == v)), "key {key} went back: {versions:?}");
    }
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).iter().enumerate() {
        assert_eq!(committed, end, "partition {p}: committed offset {committed}, end offset {end}");
    }
    assert_eq!(metrics.plugin_reloads.with_label_values(&["replaced"]).get(), 3);
    assert_eq!(metrics.plugin_reloads.with_label_values(&["refused"]).get(), 0);
    let swap = &metrics.plugin_swap;
    assert_eq!(swap.get_sample_count(), 3, "one first event per new version");
    eprintln!(
        "swap latency (file stable → first event on the new version, compile excluded): mean {:.2} ms over {} swaps",
        swap.get_sample_sum() / swap.get_sample_count() as f64 * 1e3,
        swap.get_sample_count()
    );
}

fn event(n: u64) -> cloudevents::Event {
    use cloudevents::{EventBuilder, EventBuilderV10};
    EventBuilderV10::new()
        .id(format!("ev-{n}"))
        .source("/weft/tests")
        .ty("com.example.test")
        .data("application/json", serde_json::json!({ "n": n }))
        .build()
        .expect("valid event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_plugin_starts_within_two_seconds_and_a_deleted_one_stops_without_dead_letters() {
    init_logging();
    let (first, first_out) = topic_pair("drop-a", 1).await;
    let (late, late_out) = topic_pair("drop-b", 1).await;
    let late_dlq = format!("{late}.dlq");
    create_topic(&late_dlq, 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &first), ("output-topic", &first_out)]);
    plugin_config(&mut config, "late", &[("topic", &late), ("output-topic", &late_out)]);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.expect("host starts");
    let producer = TestProducer::new();
    producer.event(&first, None, "k", "warm-up", Mode::Binary).await;
    read(&first_out, 1, Duration::from_secs(60)).await;
    assert_eq!(host.topics(), std::slice::from_ref(&first));

    // Dropped in: its topic is consumed from the start, within 2 s of the file being written.
    producer.event(&late, None, "k", "waiting", Mode::Binary).await;
    let dropped = Instant::now();
    deploy_by_rename(&dir, "late", ECHO_WASM);
    let outputs = read(&late_out, 1, Duration::from_secs(30)).await;
    let started = dropped.elapsed();
    assert_eq!(outputs.first().and_then(|o| o.header("ce_id")), Some("waiting"));
    eprintln!("dropped plugin: first output {} ms after the file was written", started.as_millis());
    assert!(started < Duration::from_secs(2), "the new plugin took {started:?} to handle its first event");
    assert_eq!(host.metrics().plugin_reloads.with_label_values(&["loaded"]).get(), 2);

    // Deleted: its topic is no longer consumed; what arrives meanwhile waits, uncommitted and not
    // dead-lettered, for the plugin's return.
    std::fs::remove_file(dir.join("late.wasm")).unwrap();
    assert!(
        eventually(Duration::from_secs(5), || host.topics() == [first.clone()]).await,
        "the removed plugin's topic is still subscribed"
    );
    assert!(
        eventually(Duration::from_secs(10), || host.metrics().partitions_assigned.get() == 1).await,
        "the removed plugin's partition is still assigned"
    );
    for n in 0..5 {
        producer.event(&late, None, "k", &format!("while-gone-{n}"), Mode::Binary).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(read_all(&late_out, Duration::from_secs(1)).await.len(), 1, "handled after removal");
    assert!(read_all(&late_dlq, Duration::from_secs(1)).await.is_empty(), "dead-lettered after removal");
    let (committed, end) = committed_and_end(&group, &late, 1)[0];
    assert_eq!((committed, end), (1, 6), "the events after removal must stay uncommitted");
    assert_eq!(host.metrics().plugin_reloads.with_label_values(&["removed"]).get(), 1);

    // Back again: it picks up exactly where it stopped.
    deploy_by_rename(&dir, "late", ECHO_WASM);
    let outputs = read(&late_out, 6, Duration::from_secs(30)).await;
    let ids: Vec<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    assert_eq!(
        ids,
        ["waiting", "while-gone-0", "while-gone-1", "while-gone-2", "while-gone-3", "while-gone-4"]
    );
    assert!(eventually(Duration::from_secs(10), || host.metrics().in_flight.get() == 0).await);
    host.shutdown().await.expect("graceful shutdown");
    assert_eq!(committed_and_end(&group, &late, 1)[0], (6, 6));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_plugin_drops_its_pending_retries_without_dead_letters() {
    init_logging();
    let (topic, output) = topic_pair("drop-retries", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let dir = plugins_dir(&[("flaky", ECHO_WASM)]);
    let mut config = config(&dir);
    config.retry = weft::config::RetrySettings {
        max_attempts: Some(3),
        initial_backoff_ms: Some(1_500),
        jitter: Some(0.0),
        ..Default::default()
    };
    plugin_config(&mut config, "flaky", &[("topic", &topic), ("output-topic", &output)]);
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.expect("host starts");
    let producer = TestProducer::new();
    for n in 0..3 {
        let id = format!("failing-{n}");
        producer.event_with(&topic, None, &id, &id, Mode::Binary, &[("failmode", "retryable")]).await;
    }
    // Queued behind failing-0's retry (same key): it must be let go with it, not lost track of.
    producer.event(&topic, None, "failing-0", "follower", Mode::Binary).await;
    let retried = || host.metrics().retried.with_label_values(&[&topic, "flaky"]).get();
    assert!(eventually(Duration::from_secs(30), || retried() >= 3).await, "the events were not retried");

    // Deleted while its events wait for their next attempts: those attempts never come, and the
    // events stay uncommitted instead of going to the dead-letter topic.
    std::fs::remove_file(dir.join("flaky.wasm")).unwrap();
    assert!(eventually(Duration::from_secs(5), || host.topics().is_empty()).await);
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert!(
        read_all(&dlq, Duration::from_secs(1)).await.is_empty(),
        "retries of a removed plugin were dead-lettered"
    );
    assert_eq!(retried(), 3, "a removed plugin was called again");
    assert_eq!(host.metrics().in_flight.get(), 0, "an event was lost track of");
    assert_eq!(host.metrics().parked.get(), 0, "an event queued behind a retry was lost track of");
    host.shutdown().await.expect("graceful shutdown");
    let (committed, end) = committed_and_end(&group, &topic, 1)[0];
    assert!(committed <= 0 && end == 4, "committed {committed} of {end}: the unhandled events must stay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_files_written_while_running_are_refused_and_the_running_version_keeps_serving() {
    init_logging();
    let (topic, output) = topic_pair("badfiles", 1).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    plugin_config(&mut config, "trapper", &[("describe", "trap"), ("topic", &topic)]);
    let host = Host::start(config).await.expect("host starts");
    let addr = host.http_addr().unwrap();
    let v1 = digest_of(ECHO_WASM);

    // Over the running plugin: half a component. Beside it: random bytes, a component of another
    // world, and a plugin whose describe() traps.
    let echo = std::fs::read(ECHO_WASM).unwrap();
    std::fs::write(dir.join("echo.wasm"), &echo[..echo.len() / 2]).unwrap();
    std::fs::write(dir.join("random.wasm"), (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect::<Vec<_>>())
        .unwrap();
    std::fs::copy(WRONG_WORLD_WASM, dir.join("other-world.wasm")).unwrap();
    std::fs::copy(ECHO_WASM, dir.join("trapper.wasm")).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || host.refused().len() == 4).await,
        "refused: {:?}",
        host.refused()
    );
    let reasons: BTreeMap<String, String> = host
        .refused()
        .into_iter()
        .map(|r| (r.path.file_name().unwrap().to_string_lossy().into_owned(), r.reason))
        .collect();
    assert!(reasons["echo.wasm"].contains("not a valid WebAssembly component"), "{reasons:?}");
    assert!(reasons["random.wasm"].contains("not a WebAssembly file"), "{reasons:?}");
    assert!(
        reasons["other-world.wasm"].contains("does not implement weft:handler/handler@0.1.0"),
        "{reasons:?}"
    );
    assert!(reasons["trapper.wasm"].contains("describe() failed: trap"), "{reasons:?}");
    assert_eq!(serving(&host, "echo"), Some(v1.clone()), "the running version was replaced");
    assert_eq!(host.plugins().len(), 1);

    let producer = TestProducer::new();
    producer.event(&topic, None, "k", "still-served", Mode::Binary).await;
    let outputs = read(&output, 1, Duration::from_secs(30)).await;
    assert_eq!(outputs[0].header("ce_echoversion"), Some("v1"));

    let (_, body) = http_get(addr, "/plugins").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["refused"].as_array().unwrap().len(), 4, "{status}");
    assert_eq!(status["plugins"][0]["digest"], v1.as_str());
    let metrics = parse_metrics(&http_get(addr, "/metrics").await.1);
    assert_eq!(metric(&metrics, "weft_plugin_reloads_total", &[("result", "refused")]), 4.0);

    // A good file replaces the running version and clears its refusal; /plugins shows the reload.
    deploy_by_rename(&dir, "echo", ECHO_V2_WASM);
    let v2 = digest_of(ECHO_V2_WASM);
    assert!(eventually(Duration::from_secs(10), || serving(&host, "echo") == Some(v2.clone())).await);
    assert_eq!(host.refused().len(), 3);
    let (_, body) = http_get(addr, "/plugins").await;
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["plugins"][0]["version"], "2.0.0");
    assert_eq!(status["reloads"][0]["result"], "replaced", "{status}");
    assert_eq!(status["reloads"][0]["digest"], v2.as_str());
    producer.event(&topic, None, "k", "on-v2", Mode::Binary).await;
    let outputs = read(&output, 2, Duration::from_secs(30)).await;
    assert_eq!(outputs[1].header("ce_echoversion"), Some("v2"));
    host.shutdown().await.expect("graceful shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unchanged_file_is_not_compiled_again() {
    use weft::sandbox::runtime::{Runtime, RuntimeOptions};
    let cache_dir = std::env::temp_dir().join(unique("weft-cache"));
    let options = RuntimeOptions { fuel: false, cache_dir: Some(cache_dir.clone()) };
    let load = |runtime| async move {
        weft::sandbox::plugin::Plugin::load(
            &runtime,
            Path::new(ECHO_WASM),
            &Default::default(),
            weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092")),
            std::sync::Arc::new(weft::kafka_out::emit::Emitter::discard()),
        )
        .await
        .expect("echo loads")
    };
    let first = load(Runtime::with_options(&options).unwrap()).await;
    assert!(!first.from_cache);
    // A new process (a new engine) with the same settings finds the compiled form.
    let second = load(Runtime::with_options(&options).unwrap()).await;
    assert!(second.from_cache, "the second load compiled again");
    eprintln!(
        "echo.wasm: compile {:.1} ms, from the cache {:.1} ms",
        first.compile_time.as_secs_f64() * 1e3,
        second.compile_time.as_secs_f64() * 1e3
    );
    assert!(second.compile_time < first.compile_time);
    // Different engine settings (fuel metering) compile anew rather than reuse the wrong code.
    let metered = RuntimeOptions { fuel: true, cache_dir: Some(cache_dir) };
    assert!(!load(Runtime::with_options(&metered).unwrap()).await.from_cache);
}
