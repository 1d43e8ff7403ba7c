//! `weft dev`, the README's first command: with nothing but the binary, sample events flow through
//! the bundled audit plugin on the in-process mock cluster.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_runs_the_audit_plugin_on_the_mock_cluster() {
    weft_tests::init_logging();
    let options = weft::dev::DevOptions { brokers: None, plugins_dir: None, rate: 50 };
    let summary = weft::dev::run(options, tokio::time::sleep(Duration::from_secs(8))).await.unwrap();
    assert!(summary.produced >= 100, "{summary:?}");
    assert!(summary.handled >= 50, "the audit plugin handled too little: {summary:?}");
    assert_eq!(summary.emitted, summary.handled, "one audit record per handled event: {summary:?}");
}
