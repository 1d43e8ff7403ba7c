//! Exactly-once delivery (`delivery.mode = "exactly-once"`) against the broker: what a handler
//! emits and the dead letters an event needs are committed with the consumed offsets in one
//! transaction, so a `read_committed` reader sees each input's outputs exactly once, in key order,
//! and never what a failed attempt emitted.

use std::collections::HashMap;
use std::time::Duration;

use weft::Host;
use weft::config::{DeliveryMode, RetrySettings};
use weft_tests::*;

const EVENTS: usize = 2_000;
const KEYS: usize = 40;

/// The headers of binary-mode event `n`: every 50th emits, then fails its first attempt; every
/// 200th (from 7) fails for good.
fn headers(n: usize) -> Vec<(String, Vec<u8>)> {
    let mut headers = vec![
        ("ce_specversion".to_string(), b"1.0".to_vec()),
        ("ce_id".to_string(), format!("e-{n}").into_bytes()),
        ("ce_source".to_string(), b"/weft/tests".to_vec()),
        ("ce_type".to_string(), b"com.example.test".to_vec()),
    ];
    if n.is_multiple_of(50) {
        headers.push(("ce_failmode".into(), b"emitthenfail".to_vec()));
        headers.push(("ce_failuntil".into(), b"2".to_vec()));
        headers.push(("ce_faildelayms".into(), b"50".to_vec()));
    } else if n % 200 == 7 {
        headers.push(("ce_failmode".into(), b"permanent".to_vec()));
    }
    headers
}

fn permanent(n: usize) -> bool {
    !n.is_multiple_of(50) && n % 200 == 7
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_and_dead_letters_are_committed_once_in_key_order_and_failed_attempts_emit_nothing() {
    let (topic, output) = topic_pair("eos", 3).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 3).await;
    let producer = TestProducer::batching();
    for n in 0..EVENTS {
        producer.enqueue(&topic, &format!("k{}", n % KEYS), &headers(n), format!("{{\"n\":{n}}}").as_bytes());
    }
    producer.flush();
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    plugin_config(&mut config, "echo", &[("topic", &topic), ("output-topic", &output)]);
    config.delivery.mode = DeliveryMode::ExactlyOnce;
    config.retry =
        RetrySettings { max_attempts: Some(3), initial_backoff_ms: Some(50), ..RetrySettings::default() };
    let group = config.kafka.group_id.clone();
    let host = Host::start(config).await.unwrap();

    let expected = (0..EVENTS).filter(|n| !permanent(*n)).count();
    let outputs = read_until(&output, Duration::from_secs(120), |o| o.len() >= expected).await;
    // Anything written twice, or by a failed attempt, would show up by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let outputs =
        if outputs.len() == expected { read_all(&output, Duration::from_secs(2)).await } else { outputs };
    let mut count: HashMap<&str, usize> = HashMap::new();
    for o in &outputs {
        *count.entry(o.header("ce_id").unwrap()).or_default() += 1;
    }
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).map(|(id, n)| format!("{id}×{n}")).collect();
    assert!(twice.is_empty(), "outputs written more than once: {twice:?}");
    assert_eq!(count.len(), expected, "every event handled");
    // Each key's outputs in input order.
    let mut last: HashMap<String, usize> = HashMap::new();
    for o in &outputs {
        let n: usize = o.header("ce_id").unwrap()[2..].parse().unwrap();
        let key = o.key.clone().unwrap();
        if let Some(previous) = last.insert(key.clone(), n) {
            assert!(previous < n, "key {key}: e-{n} after e-{previous}");
        }
    }
    let dead = read(&dlq, EVENTS / 200, Duration::from_secs(30)).await;
    let dead = if dead.len() == EVENTS / 200 { read_all(&dlq, Duration::from_secs(2)).await } else { dead };
    let mut dead_ids: Vec<usize> =
        dead.iter().map(|d| d.header("ce_id").unwrap()[2..].parse().unwrap()).collect();
    dead_ids.sort_unstable();
    assert_eq!(dead_ids, (0..EVENTS).filter(|n| permanent(*n)).collect::<Vec<_>>(), "each dead letter once");

    host.shutdown().await.unwrap();
    for (p, (committed, end)) in committed_and_end(&group, &topic, 3).iter().enumerate() {
        assert_eq!(committed, end, "partition {p}");
    }
}
