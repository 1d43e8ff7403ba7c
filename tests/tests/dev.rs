//! `weft dev`, the README's first command: with nothing but the binary, sample events flow through
//! the bundled audit plugin on the in-process mock cluster.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_audit_plugin_on_the_mock_cluster() {
    weft_tests::init_logging();
    let options = weft::cli::dev::DevOptions {
        brokers: None,
        plugins_dir: None,
        rate: 50,
        events: None,
        listen: any_port(),
    };
    let summary = weft::cli::dev::run(options, tokio::time::sleep(Duration::from_secs(8))).await.unwrap();
    assert!(summary.produced >= 100, "{summary:?}");
    assert!(summary.handled >= 50, "the audit plugin handled too little: {summary:?}");
    assert_eq!(summary.emitted, summary.handled, "one audit record per handled event: {summary:?}");
}

/// Tests run at once: each host on a port of its own.
fn any_port() -> Option<std::net::SocketAddr> {
    Some("127.0.0.1:0".parse().unwrap())
}

/// A directory with the conformance plugin subscribed (by config default) to `conformance-in`.
fn conformance_dir() -> std::path::PathBuf {
    weft_tests::plugins_dir(&[("conformance", weft_tests::CONFORMANCE_RUST_WASM)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_feeds_a_plugins_directory_on_the_topics_it_subscribes_to() {
    weft_tests::init_logging();
    let options = weft::cli::dev::DevOptions {
        brokers: None,
        plugins_dir: Some(conformance_dir()),
        rate: 50,
        events: None,
        listen: any_port(),
    };
    let summary = weft::cli::dev::run(options, tokio::time::sleep(Duration::from_secs(8))).await.unwrap();
    assert!(summary.handled >= 50, "made-up events did not reach the plugin: {summary:?}");
    assert_eq!(summary.emitted, summary.handled, "one output per handled event: {summary:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_feeds_the_events_of_a_file_to_the_subscriptions_they_match() {
    weft_tests::init_logging();
    // One event the plugin handles, one it rejects for good: both reach it.
    let events = std::env::temp_dir().join(format!("{}.jsonl", weft_tests::unique("dev-events")));
    std::fs::write(
        &events,
        concat!(
            r#"{"specversion":"1.0","id":"fine","source":"/dev","type":"t","data":{"a":1}}"#,
            "\n",
            r#"{"specversion":"1.0","id":"bad","source":"/dev","type":"t","conformance":"permanent"}"#,
            "\n"
        ),
    )
    .unwrap();
    let options = weft::cli::dev::DevOptions {
        brokers: None,
        plugins_dir: Some(conformance_dir()),
        rate: 50,
        events: Some(events),
        listen: any_port(),
    };
    let summary = weft::cli::dev::run(options, tokio::time::sleep(Duration::from_secs(8))).await.unwrap();
    assert!(summary.handled >= 25, "{summary:?}");
    assert!(summary.produced >= summary.handled * 2 - 2, "half of them fail for good: {summary:?}");
}

#[tokio::test]
async fn dev_refuses_an_events_file_that_is_not_cloudevents() {
    let events = std::env::temp_dir().join(format!("{}.json", weft_tests::unique("dev-bad")));
    std::fs::write(&events, r#"{"id": 7}"#).unwrap();
    let options = weft::cli::dev::DevOptions {
        brokers: None,
        plugins_dir: Some(conformance_dir()),
        rate: 5,
        events: Some(events),
        listen: any_port(),
    };
    let error = weft::cli::dev::run(options, std::future::pending()).await.unwrap_err();
    assert!(format!("{error:#}").contains("not a CloudEvent"), "{error:#}");
}
