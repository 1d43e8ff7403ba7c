//! `weft load` in the suite: 1,000 events/s for 60 s through Weft and the audit plugin on the
//! in-process mock cluster; nothing may be lost or dead-lettered, and every event's audit record
//! is read back.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_at_a_thousand_events_a_second_loses_nothing() {
    weft_tests::init_logging();
    let options = weft::cli::load::LoadOptions {
        brokers: None,
        rate: 1_000,
        duration: Duration::from_secs(60),
        drain: Duration::from_secs(30),
        listen: "127.0.0.1:0".parse().unwrap(),
    };
    let report = weft::cli::load::run(options, |line| eprintln!("{line}")).await.unwrap();
    eprintln!("{report}");
    assert!(report.sent >= 59_000, "the producer fell behind: {report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.dead_lettered, 0, "{report}");
    assert_eq!(report.handled, report.sent, "{report}");
}
