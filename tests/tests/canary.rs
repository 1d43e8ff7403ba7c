//! Canary rollouts against the broker, under load: `echo.canary.wasm` beside `echo.wasm` takes a
//! share of the keys. A canary that fails half its events is rolled back by itself: nothing is lost
//! or dead-lettered (the stable version handles what the canary failed), every key's events stay in
//! order, and its file is set aside. A good canary is promoted by itself and becomes the stable
//! version with no event lost or handled twice, and no key going back to the old version. A shadow
//! (`echo.shadow.wasm`) that differs from the stable version on a known subset of events reports
//! exactly that subset, and nothing it emits is produced.

use std::collections::HashMap;
use std::time::Duration;

use weft::Host;
use weft::config::{CanaryConfig, RetrySettings};
use weft_tests::*;

const EVENTS: usize = 3_000;
const KEYS: u64 = 100;

/// A host serving `echo.wasm` (stable) and `canary` as `echo.canary.wasm`, under `rollout`.
async fn start(canary: &str, rollout: CanaryConfig) -> (Host, String, String, std::path::PathBuf, String) {
    let (topic, output) = topic_pair("canary", 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM), ("echo.canary", canary)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    config.plugin.get_mut("echo").unwrap().canary = rollout;
    config.retry =
        RetrySettings { max_attempts: Some(2), initial_backoff_ms: Some(20), ..RetrySettings::default() };
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.expect("host starts");
    (host, topic, output, dir, group)
}

/// Each event's output once, each key's outputs in input order; returns the outputs by id.
fn check_once_in_order(outputs: &[Output]) -> HashMap<String, Output> {
    assert_exactly_once_in_key_order(outputs, "c", EVENTS);
    outputs.iter().map(|o| (o.header("ce_id").unwrap().to_string(), o.clone())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_failing_half_its_events_is_rolled_back_and_nothing_is_lost() {
    let rollout = CanaryConfig {
        share: 0.5,
        min_attempts: 40,
        max_failure_margin: 0.2,
        config: [("fail-half".to_string(), "1".to_string())].into(),
        ..CanaryConfig::default()
    };
    let (host, topic, output, dir, group) = start(ECHO_WASM, rollout).await;
    produce_steadily(&topic, "c", (EVENTS / 500) as u64, KEYS, 0, Duration::from_millis(300)).await.unwrap();
    let outputs = read_settled(&output, EVENTS, Duration::from_secs(120)).await;
    check_once_in_order(&outputs);
    let metrics = host.metrics();
    assert_eq!(
        metrics.canary_decisions.with_label_values(&["echo", "rolled_back"]).get(),
        1,
        "rolled back once"
    );
    assert!(dir.join("echo.canary.wasm.rolled-back").exists(), "its file is set aside");
    assert!(!dir.join("echo.canary.wasm").exists());
    assert!(host.catalog().in_service().canaries.is_empty(), "out of service");
    let letters = read_all(&format!("{topic}.dlq"), Duration::from_secs(2)).await;
    assert!(letters.is_empty(), "{} events dead-lettered", letters.len());
    // The canary handled some events before it was rolled back.
    let by_canary = metrics.handled.with_label_values(&[&topic, "echo.canary"]).get();
    assert!(by_canary > 0, "the canary handled nothing");
    host.shutdown().await.unwrap();
    for (p, (committed, end)) in committed_and_end(&group, &topic, 3).iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_good_canary_is_promoted_and_no_key_goes_back_to_the_old_version() {
    let rollout = CanaryConfig {
        share: 0.3,
        min_attempts: 20,
        auto_promote: true,
        promote_after_events: 200,
        promote_after_ms: 0,
        ..CanaryConfig::default()
    };
    let (host, topic, output, dir, _) = start(ECHO_V2_WASM, rollout).await;
    produce_steadily(&topic, "c", (EVENTS / 500) as u64, KEYS, 0, Duration::from_millis(300)).await.unwrap();
    let outputs = read_settled(&output, EVENTS, Duration::from_secs(120)).await;
    check_once_in_order(&outputs);
    assert_eq!(host.metrics().canary_decisions.with_label_values(&["echo", "promoted"]).get(), 1);
    assert!(!dir.join("echo.canary.wasm").exists(), "the canary's file became echo.wasm");
    assert_eq!(std::fs::read(dir.join("echo.wasm")).unwrap(), std::fs::read(ECHO_V2_WASM).unwrap());
    let live = host.catalog().in_service();
    let echo = live.plugins.iter().find(|p| p.id == "echo").unwrap();
    assert_eq!(echo.description.version, "2.0.0", "the stable version is the promoted canary");
    // Per key, once an event was handled by version 2, no later one was handled by version 1.
    let mut upgraded: HashMap<String, bool> = HashMap::new();
    for o in &outputs {
        let v2 = o.header("ce_echoversion") == Some("v2");
        let key = o.key.clone().unwrap();
        let was = upgraded.entry(key.clone()).or_default();
        assert!(!*was || v2, "key {key} went back to version 1 at {}", o.header("ce_id").unwrap());
        *was |= v2;
    }
    let last = &outputs[outputs.len() - 1];
    assert_eq!(last.header("ce_echoversion"), Some("v2"), "after the promotion every key is on version 2");
    host.shutdown().await.unwrap();
}

/// The events echo's `alter-some` changes (see plugins/echo).
fn altered(id: &str) -> bool {
    id.bytes().map(u32::from).sum::<u32>().is_multiple_of(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_that_differs_on_a_known_subset_reports_exactly_that_subset() {
    let (topic, output) = topic_pair("shadow", 3).await;
    create_topic(&format!("{topic}.dlq"), 3).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM), ("echo.shadow", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    let echo = config.plugin.get_mut("echo").unwrap();
    echo.shadow.config.insert("alter-some".into(), "1".into());
    echo.shadow.queue = EVENTS;
    let host = Host::start(config).await.expect("host starts");
    produce_steadily(&topic, "c", (EVENTS / 500) as u64, KEYS, 0, Duration::from_millis(300)).await.unwrap();
    let outputs = read(&output, EVENTS, Duration::from_secs(120)).await;
    let counts =
        |result: &str| host.metrics().shadow_events.with_label_values(&["echo.shadow", result]).get();
    assert!(
        eventually(Duration::from_secs(60), || counts("match") + counts("mismatch") == EVENTS as u64).await,
        "the shadow ran {} of {EVENTS} copies ({} dropped, {} failed)",
        counts("match") + counts("mismatch"),
        counts("dropped"),
        counts("failed")
    );
    let expected = (0..EVENTS).filter(|n| altered(&format!("c-{n}"))).count() as u64;
    assert!(expected > 0);
    assert_eq!(counts("mismatch"), expected, "mismatches are exactly the altered events");
    assert_eq!(counts("match"), EVENTS as u64 - expected);
    assert_eq!((counts("failed"), counts("dropped")), (0, 0));
    // Only the stable version's outputs were produced: none altered, each once.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let outputs =
        if outputs.len() == EVENTS { read_all(&output, Duration::from_secs(2)).await } else { outputs };
    assert_exactly_once_in_key_order(&outputs, "c", EVENTS);
    assert!(outputs.iter().all(|o| o.value != b"\"altered\""), "a shadow's output was produced");
    host.shutdown().await.unwrap();
}
