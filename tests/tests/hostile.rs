//! Hostile records against a real broker: bytes a producer can write that are no CloudEvent (or
//! not even a well-formed Kafka record) never stop a partition. Each is dead-lettered byte for byte
//! with a reason, the events after it are handled, and the commit reaches the end.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use weft_tests::*;

fn binary(id: &str) -> RawHeaders {
    [("ce_specversion", "1.0"), ("ce_id", id), ("ce_source", "/hostile"), ("ce_type", "com.example.test")]
        .iter()
        .map(|(k, v)| (k.as_bytes().to_vec(), Some(v.as_bytes().to_vec())))
        .collect()
}

async fn produce(
    producer: &TestProducer,
    topic: &str,
    key: &[u8],
    headers: &[(Vec<u8>, Option<Vec<u8>>)],
    value: &[u8],
) {
    let headers: Vec<(&[u8], Option<&[u8]>)> =
        headers.iter().map(|(k, v)| (k.as_slice(), v.as_deref())).collect();
    producer.raw_bytes(topic, Some(0), Some(key), &headers, Some(value)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_names_that_are_not_utf8_or_hold_a_nul_and_a_numeric_id_are_dead_lettered_and_the_rest_flow() {
    let (topic, output) = topic_pair("hostile", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let producer = TestProducer::new();
    for n in 0..7 {
        let mut headers = binary(&format!("e-{n}"));
        if n == 1 {
            headers.push((b"\xff\xfe".to_vec(), Some(b"\x00bytes".to_vec())));
        }
        if n == 3 {
            // A forged replay header naming no subscribed plugin must not make the event vanish.
            headers.push((b"weft.replay.plugin".to_vec(), Some(b"nobody".to_vec())));
        }
        if n == 5 {
            // Read up to the NUL, this would pass for a second `ce_id`.
            headers.push((b"ce_id\0x".to_vec(), Some(b"other".to_vec())));
        }
        produce(&producer, &topic, format!("k-{n}").as_bytes(), &headers, b"{}").await;
    }
    let numeric_id = br#"{"specversion":"1.0","id":99,"source":"/hostile","type":"com.example.test"}"#;
    let structured = vec![(b"content-type".to_vec(), Some(b"application/cloudevents+json".to_vec()))];
    produce(&producer, &topic, b"k-7", &structured, numeric_id).await;

    let (host, group) = echo_host(&topic, &output).await;
    let outputs = read(&output, 5, Duration::from_secs(60)).await;
    let handled: HashSet<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    assert_eq!(handled, HashSet::from(["e-0", "e-2", "e-3", "e-4", "e-6"]));

    let letters = read(&dlq, 3, Duration::from_secs(30)).await;
    assert_eq!(letters.len(), 3);
    let bad_name = letters.iter().find(|l| l.key.as_deref() == Some("k-1")).expect("k-1 dead-lettered");
    assert_eq!(bad_name.header("weft.dlq.reason"), Some("invalid_cloudevent"));
    assert!(bad_name.header("weft.dlq.error").unwrap().contains("0xfffe"), "{:?}", bad_name.headers);
    let mut original = binary("e-1");
    original.push((b"\xff\xfe".to_vec(), Some(b"\x00bytes".to_vec())));
    assert_eq!(&bad_name.raw_headers[..original.len()], &original[..], "original headers byte for byte");
    assert_eq!(bad_name.value, b"{}");
    let nul = letters.iter().find(|l| l.key.as_deref() == Some("k-5")).expect("k-5 dead-lettered");
    assert_eq!(nul.header("weft.dlq.reason"), Some("invalid_cloudevent"));
    assert!(nul.header("weft.dlq.error").unwrap().contains("NUL"), "{:?}", nul.headers);
    let mut original = binary("e-5");
    original.push((b"ce_id\0x".to_vec(), Some(b"other".to_vec())));
    assert_eq!(&nul.raw_headers[..original.len()], &original[..], "the name byte for byte, NUL and all");
    let numeric = letters.iter().find(|l| l.key.as_deref() == Some("k-7")).expect("k-7 dead-lettered");
    assert_eq!(numeric.header("weft.dlq.reason"), Some("invalid_cloudevent"));
    assert!(numeric.header("weft.dlq.error").unwrap().contains("`id` must be a JSON string"));
    assert_eq!(numeric.value, numeric_id);

    host.shutdown().await.unwrap();
    assert_eq!(committed_and_end(&group, &topic, 1), [(8, 8)]);
}

/// Record headers, names and values as bytes.
type RawHeaders = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// A record of random bytes in every place a producer controls: key, headers, value.
fn hostile(rng: &mut StdRng) -> (Vec<u8>, RawHeaders, Vec<u8>) {
    let bytes = |rng: &mut StdRng, max: usize| -> Vec<u8> {
        let len = rng.random_range(0..max);
        (0..len).map(|_| rng.random()).collect()
    };
    let key = bytes(rng, 16);
    let mut headers = Vec::new();
    match rng.random_range(0..4) {
        // Binary mode, with one attribute mangled.
        0 => {
            headers = binary("h");
            let i = rng.random_range(0..headers.len());
            headers[i].1 = if rng.random() { None } else { Some(bytes(rng, 8)) };
        }
        // Structured mode, near-valid JSON.
        1 => headers.push((b"content-type".to_vec(), Some(b"application/cloudevents+json".to_vec()))),
        _ => {}
    }
    for _ in 0..rng.random_range(0..4) {
        let name =
            if rng.random() { bytes(rng, 12) } else { b"ce_".iter().copied().chain(bytes(rng, 6)).collect() };
        headers.push((name, if rng.random() { Some(bytes(rng, 24)) } else { None }));
    }
    let value = match rng.random_range(0..3) {
        0 => bytes(rng, 200),
        1 => {
            let id: String = (0..6).map(|_| rng.random_range('a'..='z')).collect();
            let value = ["\"x\"", "7", "null", "{}", "[1]", "\"\""][rng.random_range(0..6)];
            format!(
                r#"{{"specversion":"1.0","id":"{id}","source":"/s","type":"t","{}":{value}}}"#,
                ["data", "time", "subject", "data_base64", "ext"][rng.random_range(0..5)]
            )
            .into_bytes()
        }
        _ => {
            let mut json = br#"{"specversion":"1.0","id":"z","source":"/s","type":"t"}"#.to_vec();
            let cut = rng.random_range(0..json.len());
            json.truncate(cut);
            json
        }
    };
    (key, headers, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_corpus_is_handled_or_dead_lettered_record_by_record() {
    const RECORDS: usize = 300;
    let (topic, output) = topic_pair("corpus", 1).await;
    let dlq = format!("{topic}.dlq");
    create_topic(&dlq, 1).await;
    let producer = TestProducer::new();
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for n in 0..RECORDS {
        if n % 3 == 0 {
            produce(&producer, &topic, format!("k-{n}").as_bytes(), &binary(&format!("ok-{n}")), b"{}").await;
        } else {
            let (key, headers, value) = hostile(&mut rng);
            produce(&producer, &topic, &key, &headers, &value).await;
        }
    }

    let (host, group) = echo_host(&topic, &output).await;
    let metrics = host.metrics().clone();
    let finished = || {
        metrics.handled.with_label_values(&[&topic, "echo"]).get()
            + metrics.dead_lettered.with_label_values(&[&topic, "invalid_cloudevent"]).get()
            + metrics.dead_lettered.with_label_values(&[&topic, "permanent_error"]).get()
    };
    assert!(
        eventually(Duration::from_secs(60), || finished() == RECORDS as u64).await,
        "only {} of {RECORDS} records were handled or dead-lettered",
        finished()
    );
    host.shutdown().await.unwrap();
    assert_eq!(committed_and_end(&group, &topic, 1), [(RECORDS as i64, RECORDS as i64)]);

    // Every input offset appears exactly once: as an output (echo records `inoffset`) or a dead letter.
    let outputs = read_all(&output, Duration::from_secs(2)).await;
    let letters = read_all(&dlq, Duration::from_secs(2)).await;
    let mut seen: HashMap<i64, &str> = HashMap::new();
    for o in &outputs {
        let offset: i64 = o.header("ce_inoffset").expect("inoffset").parse().unwrap();
        assert!(seen.insert(offset, "handled").is_none(), "offset {offset} twice");
    }
    for l in &letters {
        let offset: i64 = l.header("weft.original.offset").expect("original offset").parse().unwrap();
        assert!(seen.insert(offset, "dead-lettered").is_none(), "offset {offset} twice");
    }
    assert_eq!(seen.len(), RECORDS, "every record handled or dead-lettered, none lost");
    for n in (0..RECORDS).step_by(3) {
        assert_eq!(seen[&(n as i64)], "handled", "valid event {n} between hostile records");
    }
}
