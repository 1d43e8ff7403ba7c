//! Scale-out: three `weft run` processes share a consumer group while events flow; one is
//! SIGKILLed and another joins mid-run (cooperative rebalancing). Every event is handled at least
//! once, no offset is committed past an unhandled event, and per key no event is handled for the
//! first time before an earlier one of its key (order per key holds; only redeliveries go back).

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use weft_tests::*;

const EVENTS: u64 = 12_000;
const PARTITIONS: i32 = 6;
const KEYS: u64 = 60;

fn spawn(config: &std::path::Path, log: &std::path::Path) -> WeftProcess {
    WeftProcess::spawn(env!("CARGO_BIN_EXE_weft"), config, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_killed_one_added_lose_nothing_and_keep_key_order() {
    let (topic, output) = topic_pair("scale", PARTITIONS).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("scale-group");
    let config = echo_run_config(&dir, &group, &topic, &output);
    let log = dir.join("weft.log");

    let producing = produce_steadily(&topic, "s", 24, KEYS, 0, Duration::from_millis(500));

    let mut members: Vec<WeftProcess> = (0..3).map(|_| spawn(&config, &log)).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    members[1].kill();
    assert_nothing_committed_unhandled(&group, &topic, &output, PARTITIONS).await;
    eprintln!("scale-out: one member killed, invariant holds");
    tokio::time::sleep(Duration::from_secs(2)).await;
    members.push(spawn(&config, &log));
    producing.await.unwrap();

    let outputs = read_until(&output, Duration::from_secs(240), distinct_ids(EVENTS as usize)).await;
    let ids: HashSet<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    let missing: Vec<u64> =
        (0..EVENTS).filter(|n| !ids.contains(format!("s-{n}").as_str())).take(10).collect();
    assert!(missing.is_empty(), "never handled: s-{missing:?}");

    // Outputs are keyed like the inputs, so one key's outputs are in one partition, in the order
    // they were emitted: first handlings must follow the input order of the key.
    let mut per_key: HashMap<&str, Vec<u64>> = HashMap::new();
    let mut by_position: Vec<&Output> = outputs.iter().collect();
    by_position.sort_by_key(|o| (o.partition, o.offset));
    let mut seen = HashSet::new();
    for o in by_position {
        let id = o.header("ce_id").unwrap();
        if seen.insert(id) {
            let n: u64 = id.trim_start_matches("s-").parse().unwrap();
            per_key.entry(o.key.as_deref().unwrap()).or_default().push(n);
        }
    }
    for (key, ns) in &per_key {
        assert!(ns.windows(2).all(|w| w[0] < w[1]), "{key}: first handlings out of order: {ns:?}");
    }
    eprintln!(
        "scale-out: {EVENTS} events, 3 members, 1 killed, 1 added: {} duplicate outputs (at-least-once)",
        outputs.len() as u64 - EVENTS
    );

    // Graceful stops of the survivors commit everything.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, member) in members.iter_mut().enumerate().filter(|(i, _)| *i != 1) {
        let exit = member.stop();
        assert!(exit.success(), "member {i} exited with {exit}; log: {}", log.display());
    }
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).into_iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}
