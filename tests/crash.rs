//! Crash safety: the `weft` process is SIGKILLed three times at random moments while 20,000 events
//! flow, produced in multi-record batches, every event of ten keys in a hundred failing its first
//! attempt (so it is parked for a retry when the kill comes), and restarted each time. After every kill, no committed offset may be past an event that
//! has no output; at the end every input has been handled at least once and a graceful stop
//! commits to the end. The number of duplicates (events handled again after a kill) is printed.
//!
//! With exactly-once delivery, a member frozen (SIGSTOP) past its session timeout is fenced: it
//! cannot commit what it had under way, and every output is read exactly once.
//!
//! A killed process does not leave the group: its partitions move to the restarted one when its
//! session times out, so the test uses a short `session.timeout.ms`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::time::Duration;

use weft_tests::*;

const EVENTS: u64 = 20_000;
const PARTITIONS: i32 = 3;

fn random_ms(low: u64, high: u64) -> u64 {
    low + RandomState::new().hash_one(std::time::Instant::now()) % (high - low)
}

fn spawn(config: &Path, log: &Path) -> WeftProcess {
    WeftProcess::spawn(env!("CARGO_BIN_EXE_weft"), config, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_three_times_loses_nothing_and_commits_nothing_unhandled() {
    let (topic, output) = topic_pair("crash", PARTITIONS).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("crash-group");
    let config = echo_run_config(&dir, &group, &topic, &output);
    let log = dir.join("weft.log");

    // Events keep arriving while the host is killed and restarted.
    let producing = produce_steadily(&topic, "c", 40, 100, 10, Duration::from_millis(200));

    let mut child = spawn(&config, &log);
    for kill in 1..=3 {
        tokio::time::sleep(Duration::from_millis(random_ms(1_500, 4_000))).await;
        child.kill();
        assert_nothing_committed_unhandled(&group, &topic, &output, PARTITIONS).await;
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
    let exit = child.stop();
    assert!(exit.success(), "weft exited with {exit} after SIGTERM; log: {}", log.display());
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).into_iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}

/// Sends `signal` (`STOP`, `CONT`) to the process.
fn signal(child: &WeftProcess, signal: &str) {
    let status =
        std::process::Command::new("kill").args([&format!("-{signal}"), &child.0.id().to_string()]).status();
    assert!(status.unwrap().success(), "sending SIG{signal}");
}

/// Exactly-once delivery: a member frozen (SIGSTOP) past its session timeout while events flow
/// loses its partitions to the other member; resumed, it cannot commit what it had under way (its
/// transaction is fenced) and restarts its pipeline, and nothing it emitted is delivered: every
/// event's output is read exactly once, in key order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_frozen_past_its_session_is_fenced_and_nothing_it_emitted_appears() {
    let (topic, output) = topic_pair("fenced", PARTITIONS).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("fenced-group");
    let (config_a, config_b) = (
        echo_run_config_exactly_once(&dir, &group, &topic, &output, "a"),
        echo_run_config_exactly_once(&dir, &group, &topic, &output, "b"),
    );
    // Member a keeps its transactions open for 4 s, so the freeze finds one with events in it.
    let mut text = std::fs::read_to_string(&config_a).unwrap();
    text.push_str("transaction_interval_ms = 4000\n");
    std::fs::write(&config_a, text).unwrap();
    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    eprintln!("logs: {}", dir.display());
    const COUNT: usize = 15_000;
    let producing =
        produce_steadily_failing(&topic, "s", 30, 100, 1, "emitthenfail", Duration::from_millis(500));
    let mut a = spawn(&config_a, &log_a);
    let mut b = spawn(&config_b, &log_b);
    // Both members handle events for a while, then one is frozen with its work under way.
    tokio::time::sleep(Duration::from_secs(8)).await;
    signal(&a, "STOP");
    eprintln!("member a frozen");
    tokio::time::sleep(Duration::from_secs(15)).await;
    signal(&a, "CONT");
    eprintln!("member a resumed");
    producing.await.unwrap();
    let outputs = read_until(&output, Duration::from_secs(180), distinct_ids(COUNT)).await;
    // What the resumed member might still get through would show up by now.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let outputs =
        if outputs.len() == COUNT { read_all(&output, Duration::from_secs(3)).await } else { outputs };
    assert_exactly_once_in_key_order(&outputs, "s", COUNT);
    let a_log = std::fs::read_to_string(&log_a).unwrap_or_default();
    let refused = a_log.lines().filter(|l| l.contains("ERROR") && l.contains("transaction")).count();
    let restarted = a_log.contains("restarting the pipeline");
    eprintln!(
        "member a after it resumed: {refused} transaction errors in its log, pipeline restarted: {restarted}"
    );
    // It could not commit what it had under way: its transaction was refused, and it started over.
    assert!(refused > 0, "member a committed after its partitions were taken; log: {}", log_a.display());
    assert!(restarted, "member a went on after it was fenced; log: {}", log_a.display());
    assert!(a.stop().success(), "member a, restarted, stops cleanly; log: {}", log_a.display());
    assert!(b.stop().success(), "member b; log: {}", log_b.display());
}

/// At-least-once delivery records the events finished past a waiting one with the commit: after a
/// crash, the partition's next owner skips them instead of handling them again. The partition's
/// first event waits 8 s for its retry while 200 events of other keys finish past it; `weft run`
/// is killed and restarted: those 200 are not handled again, the waiting one is handled once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_events_finished_past_a_waiting_one_are_not_handled_again() {
    let (topic, output) = topic_pair("finished-past", 1).await;
    let producer = TestProducer::new();
    let retry = [("failmode", "retryable"), ("failuntil", "2"), ("faildelayms", "8000")];
    producer.event_with(&topic, Some(0), "K", "waits", Mode::Binary, &retry).await;
    for n in 0..200 {
        producer.event(&topic, Some(0), &format!("k{n}"), &format!("p-{n}"), Mode::Binary).await;
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("finished-past-group");
    let config = echo_run_config(&dir, &group, &topic, &output);
    let log = dir.join("weft.log");
    let mut child = spawn(&config, &log);
    let outputs = read(&output, 200, Duration::from_secs(60)).await;
    assert_eq!(outputs.len(), 200, "the events past the waiting one are handled");
    // Their record reaches the broker with the next automatic commit (every second).
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    child.kill();
    let mut child = spawn(&config, &log);
    let outputs = read_until(&output, Duration::from_secs(60), |o| {
        o.iter().any(|o| o.header("ce_id") == Some("waits"))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outputs =
        if outputs.len() == 201 { read_all(&output, Duration::from_secs(2)).await } else { outputs };
    let again = repeated_ids(&outputs);
    assert!(
        again.is_empty(),
        "{} events handled again after the crash, e.g. {:?}",
        again.len(),
        &again[..again.len().min(5)]
    );
    assert_eq!(outputs.len(), 201);
    assert!(child.stop().success(), "log: {}", log.display());
    assert_eq!(committed_and_end(&group, &topic, 1), [(201, 201)]);
}
