//! The conformance handler (plugins/conformance) in Rust, JavaScript, Python, C and Go, all loaded
//! by one host against the broker, each on its own topic, each given the same events: a handled
//! event and its emitted event's shape (id, source, type, subject, content type, data, key,
//! extensions), a retryable error with a delay hint, a permanent error and a trap, each
//! dead-lettered with its reason; `describe()` and config keys. The JavaScript, Python, C and Go
//! builds come from scripts/polyglot-plugins.sh (scripts/test.sh runs it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use weft::Host;
use weft_tests::*;

const LANGS: [&str; 5] = ["rust", "js", "python", "c", "go"];

fn component(lang: &str) -> PathBuf {
    match lang {
        "rust" => PathBuf::from(CONFORMANCE_RUST_WASM),
        _ => polyglot_plugin(&format!("conformance-{lang}.wasm")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_language_passes_the_same_cases_through_the_host() {
    init_logging();
    let dir = std::env::temp_dir().join(unique("weft-conformance"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut config = config(&dir);
    config.retry = weft::config::RetrySettings {
        max_attempts: Some(2),
        initial_backoff_ms: Some(50),
        max_backoff_ms: Some(5_000),
        jitter: Some(0.0),
        ..Default::default()
    };
    let mut topics = HashMap::new();
    for lang in LANGS {
        let (input, output) = topic_pair(&format!("conformance-{lang}"), 1).await;
        create_topic(&format!("{input}.dlq"), 1).await;
        std::fs::copy(component(lang), dir.join(format!("conformance-{lang}.wasm"))).unwrap();
        plugin_config(
            &mut config,
            &format!("conformance-{lang}"),
            &[("topic", &input), ("output-topic", &output)],
        );
        topics.insert(lang, (input, output));
    }
    let host = Host::start(config).await.expect("host starts");

    // describe(), with the topic from the config key.
    for lang in LANGS {
        let id = format!("conformance-{lang}");
        let plugin =
            host.plugins().into_iter().find(|p| p.id == id).unwrap_or_else(|| panic!("{id} not loaded"));
        assert_eq!(plugin.description.name, id);
        assert_eq!(plugin.description.version, "1.0.0");
        assert_eq!(plugin.description.subscriptions.len(), 1, "{lang}");
        assert_eq!(
            plugin.description.subscriptions[0].topic, topics[lang].0,
            "{lang}: topic from config-get"
        );
    }

    let producer = TestProducer::new();
    for lang in LANGS {
        let input = &topics[lang].0;
        producer.event_with(input, Some(0), "k-ok", &format!("{lang}-ok"), Mode::Structured, &[]).await;
        for case in ["retry", "permanent", "trap"] {
            let id = format!("{lang}-{case}");
            producer.event_with(input, Some(0), &id, &id, Mode::Binary, &[("conformance", case)]).await;
        }
    }

    for lang in LANGS {
        let (input, output) = &topics[lang];
        let outputs = read(output, 1, Duration::from_secs(60)).await;
        let out = &outputs[0];
        let expected = [
            ("ce_id", format!("{lang}-ok-out")),
            ("ce_source", "weft/conformance".to_string()),
            ("ce_type", "weft.conformance.echoed".to_string()),
            ("ce_subject", "com.example.test".to_string()),
            ("ce_lang", lang.to_string()),
            ("ce_attempt", "1".to_string()),
            ("content-type", "application/json".to_string()),
        ];
        for (header, value) in expected {
            assert_eq!(out.header(header), Some(value.as_str()), "{lang}: {header} of {:?}", out.headers);
        }
        assert_eq!(out.key.as_deref(), Some("k-ok"), "{lang}: keyed like the input");
        let data: serde_json::Value = serde_json::from_slice(&out.value).unwrap();
        assert_eq!(data["id"], format!("{lang}-ok"), "{lang}: the input's data");

        let dead = read(&format!("{input}.dlq"), 3, Duration::from_secs(60)).await;
        let reasons: HashMap<String, (String, String)> = dead
            .iter()
            .map(|d| {
                let id = d.header("ce_id").unwrap().to_string();
                let reason = d.header("weft.dlq.reason").unwrap().to_string();
                (id, (reason, d.header("weft.dlq.error").unwrap_or_default().to_string()))
            })
            .collect();
        let retry = &reasons[&format!("{lang}-retry")];
        assert_eq!(retry.0, "retries_exhausted", "{lang}: {reasons:?}");
        assert!(retry.1.contains(&format!("{lang}-retry asked for a retry")), "{lang}: {retry:?}");
        let permanent = &reasons[&format!("{lang}-permanent")];
        assert_eq!(permanent.0, "permanent_error", "{lang}: {reasons:?}");
        assert!(permanent.1.contains(&format!("{lang}-permanent is permanent")), "{lang}: {permanent:?}");
        assert_eq!(reasons[&format!("{lang}-trap")].0, "trap", "{lang}: {reasons:?}");
        let id = format!("conformance-{lang}");
        assert_eq!(host.metrics().handled.with_label_values(&[input, &id]).get(), 1, "{lang}");
    }
    host.shutdown().await.expect("graceful shutdown");

    // The delay hint, as the host reads it (no broker needed).
    for lang in LANGS {
        let event = serde_json::json!({
            "specversion": "1.0", "id": "hint", "source": "/c", "type": "t", "conformance": "retry"
        });
        let run = weft::cli::invoke::invoke(
            &component(lang),
            &serde_json::to_vec(&event).unwrap(),
            "conformance-in",
            &weft::config::PluginConfig::default(),
        )
        .await
        .unwrap();
        match run.outcome {
            Err(weft::failure::Failure::Retryable { delay, .. }) => {
                assert_eq!(delay, Some(Duration::from_millis(1234)), "{lang}")
            }
            other => panic!("{lang}: {other:?}"),
        }
    }
}
