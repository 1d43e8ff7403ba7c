//! Crash safety: the `weft` process is SIGKILLed three times at random moments while 20,000 events
//! flow and restarted each time. After every kill, no committed offset may be past an event that
//! has no output; at the end every input has been handled at least once and a graceful stop
//! commits to the end. The number of duplicates (events handled again after a kill) is printed.
//!
//! A killed process does not leave the group: its partitions move to the restarted one when its
//! session times out, so the test uses a short `session.timeout.ms`.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use weft_tests::*;

const EVENTS: u64 = 20_000;
const PARTITIONS: i32 = 3;

fn random_ms(low: u64, high: u64) -> u64 {
    low + RandomState::new().hash_one(std::time::Instant::now()) % (high - low)
}

/// The running host; killed if the test fails so no process outlives it.
struct Weft(Child);

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(config: &Path, log: &Path) -> Weft {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map(Weft)
        .expect("starting weft")
}

/// Handled (partition, offset) pairs of the input topic, from the outputs' `ce_inpartition` and
/// `ce_inoffset` headers.
fn handled(outputs: &[Output]) -> HashSet<(i32, i64)> {
    outputs
        .iter()
        .map(|o| {
            let p = o.header("ce_inpartition").and_then(|v| v.parse().ok()).expect("inpartition");
            let off = o.header("ce_inoffset").and_then(|v| v.parse().ok()).expect("inoffset");
            (p, off)
        })
        .collect()
}

async fn assert_nothing_committed_unhandled(group: &str, topic: &str, output: &str) {
    let done = handled(&read_all(output, Duration::from_secs(3)).await);
    for (p, (committed, _)) in committed_and_end(group, topic, PARTITIONS).into_iter().enumerate() {
        let p = p as i32;
        let missing: Vec<i64> = (0..committed.max(0)).filter(|o| !done.contains(&(p, *o))).take(5).collect();
        assert!(
            missing.is_empty(),
            "partition {p} committed up to {committed} but offsets {missing:?} have no output"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_three_times_loses_nothing_and_commits_nothing_unhandled() {
    let (topic, output) = topic_pair("crash", PARTITIONS).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("crash-group");
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{group}\"\n[kafka.consumer]\n\"fetch.wait.max.ms\" = \"10\"\n\
             \"session.timeout.ms\" = \"6000\"\n\"heartbeat.interval.ms\" = \"1000\"\n\
             [kafka.producer]\n\"batch.num.messages\" = \"1\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{}\"\n[plugin.echo.config]\ntopic = \"{topic}\"\noutput-topic = \"{output}\"\n",
            brokers(),
            dir.display()
        ),
    )
    .unwrap();
    let log = dir.join("weft.log");

    // Events keep arriving while the host is killed and restarted.
    let producing = {
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || {
            let producer = TestProducer::new();
            for chunk in 0..40 {
                for n in chunk * 500..(chunk + 1) * 500 {
                    let key = format!("user-{}", n % 100);
                    let headers = vec![
                        ("ce_specversion".to_string(), b"1.0".to_vec()),
                        ("ce_id".to_string(), format!("c-{n}").into_bytes()),
                        ("ce_source".to_string(), b"/weft/tests".to_vec()),
                        ("ce_type".to_string(), b"com.example.test".to_vec()),
                    ];
                    producer.enqueue(&topic, &key, &headers, b"{}");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            producer.flush();
        })
    };

    let mut child = spawn(&config, &log);
    for kill in 1..=3 {
        tokio::time::sleep(Duration::from_millis(random_ms(1_500, 4_000))).await;
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reaped");
        assert_nothing_committed_unhandled(&group, &topic, &output).await;
        eprintln!("kill {kill}: invariant holds");
        // Restart once the killed member's session has expired, so the group has one member again.
        tokio::time::sleep(Duration::from_secs(7)).await;
        child = spawn(&config, &log);
    }
    producing.await.unwrap();

    let outputs = read_until(&output, Duration::from_secs(240), distinct_ids(EVENTS as usize)).await;
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for o in &outputs {
        *per_id.entry(o.header("ce_id").unwrap()).or_default() += 1;
    }
    let missing: Vec<u64> =
        (0..EVENTS).filter(|n| !per_id.contains_key(format!("c-{n}").as_str())).take(10).collect();
    assert!(missing.is_empty(), "never handled: c-{missing:?}");
    let duplicates = outputs.len() as u64 - EVENTS;
    eprintln!("crash test: {EVENTS} events, 3 SIGKILLs, {duplicates} duplicate outputs (at-least-once)");

    // A graceful stop commits everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = Command::new("kill").args(["-TERM", &child.0.id().to_string()]).status().unwrap();
    assert!(status.success());
    let exit = child.0.wait().unwrap();
    assert!(exit.success(), "weft exited with {exit} after SIGTERM; log: {}", log.display());
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).into_iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}
