//! Text a plugin controls reaches the host's log only cut, like the plugin's own lines: a handler
//! whose retryable error carries a reason of megabytes does not grow the log by megabytes per
//! attempt. Its own binary: it installs the process's log subscriber, which counts what is written.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::FutureProducer;
use weft::Host;
use weft_tests::*;

/// Counts the bytes the log subscriber writes.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Write for Counted {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.fetch_add(bytes.len(), Ordering::Relaxed);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_megabyte_failure_reason_is_logged_cut() {
    let written = Counted::default();
    let writer = written.clone();
    tracing_subscriber::fmt()
        .with_env_filter("info,librdkafka=warn,rdkafka=warn")
        .with_writer(move || writer.clone())
        .init();

    let mock = MockCluster::new(1).unwrap();
    let bootstrap = mock.bootstrap_servers();
    for topic in ["t", "t.out", "t.dlq"] {
        mock.create_topic(topic, 1, 1).unwrap();
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = mock_config(&bootstrap, "log-limits", &dir, "t", "t.out");
    config.retry.initial_backoff_ms = Some(10);
    config.retry.jitter = Some(0.0);

    let producer: FutureProducer = ClientConfig::new().set("bootstrap.servers", &bootstrap).create().unwrap();
    for n in 0..2 {
        let id = format!("l-{n}");
        let attributes = [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_source", "/t"),
            ("ce_type", "t"),
            ("ce_failmode", "retryable"),
            ("ce_failuntil", "3"),
            ("ce_failreasonbytes", "4194304"),
        ];
        send_headers(&producer, "t", &id, &attributes, "{}").await;
    }

    let host = Host::start(config).await.unwrap();
    let metrics = host.metrics().clone();
    assert!(
        eventually(Duration::from_secs(60), || metrics.handled.with_label_values(&["t", "echo"]).get() == 2)
            .await,
        "both events are handled on their third attempt"
    );
    assert_eq!(weft::ops::metrics::total(&metrics.retried), 4, "two failed attempts each");
    host.shutdown().await.unwrap();
    let bytes = written.0.load(Ordering::Relaxed);
    assert!(
        bytes < 1 << 20,
        "four failed attempts with a 4 MiB reason each wrote {bytes} bytes to the log; each line is cut at 4 KiB"
    );
}
