//! Running plugins without Kafka (`weft check`, `weft invoke`) with the example events.

use std::path::Path;

use weft::config::PluginConfig;
use weft_tests::{AUDIT_WASM, ECHO_WASM, WRONG_WORLD_WASM, example};

#[tokio::test]
async fn check_reports_what_the_plugin_describes() {
    let plugin = weft::cli::invoke::check(Path::new(AUDIT_WASM), &PluginConfig::default()).await.unwrap();
    assert_eq!(plugin.id, "audit");
    assert_eq!(plugin.description.name, "audit");
    assert_eq!(plugin.subscriptions.len(), 1);
    assert_eq!(plugin.subscriptions[0].topic, "task-events");
    assert_eq!(plugin.subscriptions[0].types, ["com.example.task.*"]);
    assert_eq!(plugin.digest.len(), 64);
}

#[tokio::test]
async fn check_refuses_another_world_with_the_reason() {
    let err =
        weft::cli::invoke::check(Path::new(WRONG_WORLD_WASM), &PluginConfig::default()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("does not implement weft:handler/handler@0.1.0"), "{text}");
}

#[tokio::test]
async fn audit_emits_one_record_per_task_event_with_trace_context() {
    let run = weft::cli::invoke::invoke(
        Path::new(AUDIT_WASM),
        &example("task-created.json"),
        "task-events",
        &PluginConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(run.outcome, Ok(1));
    assert_eq!(run.emitted.len(), 1);
    let audit = &run.emitted[0];
    assert_eq!(audit.topic, "audit-log");
    assert_eq!(audit.key.as_deref(), Some(b"user-7".as_slice()));
    assert_eq!(audit.event.ty, "com.example.audit.recorded");
    assert_eq!(audit.event.id, "7f3c1a52-6f0e-4f43-9a39-5c1d8e2b9a10-audit");
    // The host continues the input's trace: same trace id and flags, the handler call's span id.
    let traceparent = audit.event.extension("traceparent").expect("traceparent added by the host");
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "{traceparent}");
    assert!(traceparent.ends_with("-01"));
    assert!(!traceparent.contains("00f067aa0ba902b7"), "a new span, not the input's");
    let record: serde_json::Value = serde_json::from_slice(audit.event.data.as_deref().unwrap()).unwrap();
    assert_eq!(record["action"], "created");
    assert_eq!(record["task_id"], "task-42");
}

#[tokio::test]
async fn audit_fails_permanently_on_an_event_without_task_fields() {
    let run = weft::cli::invoke::invoke(
        Path::new(AUDIT_WASM),
        &example("not-a-task.json"),
        "task-events",
        &PluginConfig::default(),
    )
    .await
    .unwrap();
    let failure = run.outcome.unwrap_err();
    assert_eq!(failure.reason(), "permanent_error");
    assert!(run.emitted.is_empty());
}

#[tokio::test]
async fn config_values_reach_the_plugin() {
    let settings = PluginConfig {
        config: [("output-topic".to_string(), "elsewhere".to_string())].into_iter().collect(),
        ..PluginConfig::default()
    };
    let run = weft::cli::invoke::invoke(Path::new(ECHO_WASM), &example("task-created.json"), "in", &settings)
        .await
        .unwrap();
    assert_eq!(run.outcome, Ok(1));
    assert_eq!(run.emitted[0].topic, "elsewhere");
    assert_eq!(run.emitted[0].event.id, "7f3c1a52-6f0e-4f43-9a39-5c1d8e2b9a10");
}

/// Calls echo with `event` under `limits`.
async fn echo_under(limits: weft::sandbox::plugin::Limits, event: &[u8]) -> weft::cli::invoke::Invocation {
    weft::cli::invoke::invoke_with(Path::new(ECHO_WASM), event, "in", &PluginConfig::default(), limits)
        .await
        .unwrap()
}

/// A structured event for echo with the `failmode` extension.
fn failing(mode: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "specversion": "1.0", "id": "f-1", "source": "/test", "type": "t", "failmode": mode
    }))
    .unwrap()
}

#[tokio::test]
async fn a_fuel_limit_stops_a_loop_long_before_the_deadline() {
    let limits = weft::sandbox::plugin::Limits {
        fuel: Some(50_000_000),
        timeout: std::time::Duration::from_secs(60),
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    let started = std::time::Instant::now();
    let run = echo_under(limits, &failing("loop")).await;
    let failure = run.outcome.unwrap_err();
    assert_eq!(failure.reason(), "fuel_exhausted", "{failure}");
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "stopped by fuel, not by the deadline");
    // The same limits leave an ordinary event enough fuel.
    assert_eq!(echo_under(limits, &example("task-created.json")).await.outcome, Ok(1));
}

#[tokio::test]
async fn fresh_instances_with_a_cap_of_one_still_handle_events() {
    let limits = weft::sandbox::plugin::Limits {
        instances: weft::config::InstanceStrategy::Fresh,
        max_instances: 1,
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    assert_eq!(echo_under(limits, &example("task-created.json")).await.outcome, Ok(1));
}

/// Loads echo under `limits` and calls it with a looping event and an ordinary one at once;
/// returns how long the ordinary one took.
async fn ordinary_call_beside_a_loop(limits: weft::sandbox::plugin::Limits) -> std::time::Duration {
    let plugin = loaded_echo(limits).await;
    let looping = failing("loop");
    let slow = handle_json(&plugin, &looping);
    let fast = async {
        // Let the looping call take its instance first.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        let started = std::time::Instant::now();
        assert_eq!(handle_json(&plugin, &example("task-created.json")).await, Ok(1));
        started.elapsed()
    };
    let (slow, took) = tokio::join!(slow, fast);
    assert_eq!(slow.unwrap_err().reason(), "timeout");
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_instances_caps_concurrent_calls() {
    let limits = weft::sandbox::plugin::Limits {
        timeout: std::time::Duration::from_millis(1_000),
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    // One instance: the ordinary call waits for the looping one to be stopped.
    let capped =
        ordinary_call_beside_a_loop(weft::sandbox::plugin::Limits { max_instances: 1, ..limits }).await;
    assert!(
        capped >= std::time::Duration::from_millis(700),
        "did not wait for the only instance: {capped:?}"
    );
    // Two: it runs beside the loop on its own instance.
    let free =
        ordinary_call_beside_a_loop(weft::sandbox::plugin::Limits { max_instances: 2, ..limits }).await;
    assert!(free < std::time::Duration::from_millis(700), "waited although an instance was free: {free:?}");
}

/// A structured event for echo with `failmode` and more extensions.
fn failing_with(mode: &str, extensions: &[(&str, &str)]) -> Vec<u8> {
    let mut event = serde_json::json!({
        "specversion": "1.0", "id": "f-1", "source": "/test", "type": "t", "failmode": mode
    });
    for (name, value) in extensions {
        event[*name] = (*value).into();
    }
    serde_json::to_vec(&event).unwrap()
}

/// Echo loaded under `limits`, and a structured event decoded for it.
async fn loaded_echo(limits: weft::sandbox::plugin::Limits) -> weft::sandbox::plugin::Plugin {
    weft::sandbox::plugin::Plugin::load(
        &weft::sandbox::runtime::Runtime::new().unwrap(),
        Path::new(ECHO_WASM),
        &PluginConfig::default(),
        limits,
        std::sync::Arc::new(weft::kafka_out::emit::Emitter::discard()),
    )
    .await
    .unwrap()
}

/// A structured event decoded for a handler, with its `delivery` at attempt `attempt`.
fn input(json: &[u8], attempt: u32) -> (weft::sandbox::plugin::Cloudevent, weft::sandbox::plugin::Delivery) {
    let structured: &[u8] = b"application/cloudevents+json";
    let (event, headers) =
        weft::kafka_in::decode::decode(&[("content-type", Some(structured))], Some(json)).unwrap();
    let record = weft::event::Record {
        topic: "in".into(),
        partition: 0,
        offset: 0,
        key: None,
        timestamp_ms: None,
        headers,
    };
    (event.into(), weft::sandbox::plugin::delivery(&record, attempt))
}

/// Decodes a structured event and calls `plugin` with it.
async fn handle_json(
    plugin: &weft::sandbox::plugin::Plugin,
    json: &[u8],
) -> Result<usize, weft::failure::Failure> {
    let (event, delivery) = input(json, 1);
    plugin.handle(&event, &delivery).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_asleep_in_a_wasi_call_is_stopped_at_its_deadline() {
    let limits = weft::sandbox::plugin::Limits {
        timeout: std::time::Duration::from_millis(1_000),
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    let plugin = loaded_echo(limits).await;
    let started = std::time::Instant::now();
    let failure = handle_json(&plugin, &failing_with("sleep", &[("sleepms", "20000")])).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(failure.reason(), "timeout", "{failure}");
    // The deadline plus one epoch tick, with room for a busy machine; nowhere near the 20 s sleep.
    assert!(took < std::time::Duration::from_millis(2_500), "stopped after {took:?}");
    // The abandoned instance is gone; the plugin serves the next event.
    assert_eq!(handle_json(&plugin, &example("task-created.json")).await, Ok(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_floods_its_log_and_stdio_is_capped() {
    // Lines count against the cap only when the log level shows them: show everything, nowhere.
    let everything =
        tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(std::io::sink);
    let _ = tracing::subscriber::set_global_default(everything.finish());
    let plugin =
        loaded_echo(weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092")))
            .await;
    // 2,000 lines through each of host.log, stdout and stderr; one 1 MiB line through each.
    let lines = failing_with("flood", &[("floodlines", "2000"), ("floodbytes", "100")]);
    assert_eq!(handle_json(&plugin, &lines).await, Ok(1));
    let long = failing_with("flood", &[("floodlines", "1"), ("floodbytes", "1048576")]);
    assert_eq!(handle_json(&plugin, &long).await, Ok(1));
    let dropped = plugin.log_lines_dropped();
    assert!(dropped >= 4_000, "only {dropped} of 6,000 lines were dropped; the burst is 1,000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emits_past_the_quota_of_a_call_are_refused() {
    let limits = weft::sandbox::plugin::Limits {
        max_emits: 10,
        max_emit_bytes: 64 << 10,
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    let plugin = loaded_echo(limits).await;
    let refused = |failure: weft::failure::Failure, after: &str, limit: &str| {
        let message = failure.to_string();
        assert!(message.contains(&format!("emit refused after {after} events")), "{message}");
        assert!(message.contains("Forbidden") && message.contains(limit), "{message}");
    };
    // Ten small events fit; the eleventh is refused.
    let many = failing_with("emitflood", &[("floodemits", "100000"), ("floodbytes", "10")]);
    refused(handle_json(&plugin, &many).await.unwrap_err(), "10", "max_emits");
    // Bytes: 16 KiB events, so the fourth passes 64 KiB.
    let large = failing_with("emitflood", &[("floodemits", "10"), ("floodbytes", "16384")]);
    refused(handle_json(&plugin, &large).await.unwrap_err(), "3", "max_emit_mib");
    // The quota is per call: the next call starts from nothing (nine, then echo's own output).
    let fits = failing_with("emitflood", &[("floodemits", "9"), ("floodbytes", "10")]);
    assert_eq!(handle_json(&plugin, &fits).await, Ok(10));
}

/// A full producer queue is backpressure, never an attempt: echo, whose `emit` says `unavailable`
/// because the host's producer cannot take another record (its queue holds one, and the cluster
/// never answers), gives up with a retryable error; Weft waits for the cluster instead of counting
/// the attempt, so an outage cannot dead-letter healthy events of other plugins.
#[tokio::test]
async fn a_full_producer_queue_uses_up_no_attempt() {
    use weft::config::RetryPolicy;
    use weft::failure::Failure;
    use weft::pipeline::retry::{Decision, decide};

    let producer: rdkafka::producer::FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9")
        .set("queue.buffering.max.messages", "1")
        .create()
        .unwrap();
    let plugin = weft::sandbox::plugin::Plugin::load(
        &weft::sandbox::runtime::Runtime::new().unwrap(),
        Path::new(ECHO_WASM),
        &PluginConfig::default(),
        weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092")),
        std::sync::Arc::new(weft::kafka_out::emit::Destination::Kafka(producer).into()),
    )
    .await
    .unwrap();
    let json = br#"{"specversion":"1.0","id":"q-1","source":"/test","type":"t","data":{}}"#;
    let (event, delivery) = input(json, 5);
    let queued = plugin.call(&event, &delivery, None).await.expect("the first emit fills the queue");
    let failure = plugin.call(&event, &delivery, None).await.err().expect("the second emit finds it full");
    assert!(matches!(failure, Failure::EmitUnavailable(_)), "{failure:?}");
    assert!(
        matches!(decide(&RetryPolicy::default(), &failure, 5), Decision::Wait(_)),
        "the fifth attempt of five waits; it is not dead-lettered"
    );
    drop(queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_deadline_covers_start_up_and_the_call() {
    // Fresh instances: every event pays the start-up code. Start-up and the call each take 60 % of
    // the deadline; together they are past it.
    let limits = weft::sandbox::plugin::Limits {
        timeout: std::time::Duration::from_millis(1_000),
        instances: weft::config::InstanceStrategy::Fresh,
        ..weft::sandbox::plugin::Limits::from_config(&weft::Config::with_brokers("unused:9092"))
    };
    let config = PluginConfig { config: [("startms".into(), "600".into())].into(), ..Default::default() };
    let plugin = weft::sandbox::plugin::Plugin::load(
        &weft::sandbox::runtime::Runtime::new().unwrap(),
        Path::new(ECHO_WASM),
        &config,
        limits,
        std::sync::Arc::new(weft::kafka_out::emit::Emitter::discard()),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let failure = handle_json(&plugin, &failing_with("sleep", &[("sleepms", "600")])).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(failure.reason(), "timeout", "{failure}");
    assert!(took < std::time::Duration::from_millis(1_150), "stopped after {took:?}");
    // Start-up alone fits: an ordinary event is handled.
    assert_eq!(handle_json(&plugin, &example("task-created.json")).await, Ok(1));
}
