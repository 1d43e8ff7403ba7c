//! `weft dlq replay` round trip against a real broker: dead-letter 100 events, fix the plugin,
//! replay, all handled; records that keep failing are refused by the loop guard.

use std::time::Duration;

use weft::Host;
use weft::cli::dlq::{self as replay, Filter};
use weft_tests::*;

async fn host(topic: &str, output: &str, group: &str, broken: bool) -> Host {
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = config(&dir);
    config.kafka.group_id = group.to_string();
    plugin_config(&mut config, "echo", &[("topic", topic), ("output-topic", output)]);
    if broken {
        plugin_config(&mut config, "echo", &[("fail-all", "permanent")]);
    }
    Host::start(config).await.expect("host starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_fix_handles_every_dead_letter_and_the_loop_guard_refuses_repeats() {
    init_logging();
    let (topic, output, group) = (unique("rp-in"), unique("rp-out"), unique("rp-group"));
    let dlq = format!("{topic}.dlq");
    create_topic(&topic, 1).await;
    create_topic(&output, 1).await;
    let kafka = weft::Config::with_brokers(brokers()).kafka;

    let broken = host(&topic, &output, &group, true).await;
    let producer = TestProducer::new();
    for n in 0..100 {
        producer.event(&topic, Some(0), &format!("k{}", n % 7), &format!("r-{n}"), Mode::Binary).await;
    }
    let dead = read(&dlq, 100, Duration::from_secs(60)).await;
    assert_eq!(dead.len(), 100);
    broken.shutdown().await.unwrap();

    let letters = replay::read(&kafka, &dlq, Duration::from_secs(2)).await.unwrap();
    assert_eq!(letters.len(), 100);
    assert!(letters.iter().all(|l| l.reason == "permanent_error" && l.plugin.as_deref() == Some("echo")));
    let dry = replay::plan(&letters, &Filter::default(), None, 1);
    assert_eq!((dry.replay.len(), dry.twins, dry.refused.len()), (100, 0, 0));

    // The fixed plugin handles every replayed record.
    let fixed = host(&topic, &output, &group, false).await;
    assert_eq!(replay::execute(&kafka, &dry).await.unwrap(), 100);
    let outputs = read(&output, 100, Duration::from_secs(60)).await;
    let mut ids: Vec<&str> = outputs.iter().filter_map(|o| o.header("ce_id")).collect();
    ids.sort_by_key(|id| id[2..].parse::<u32>().unwrap());
    assert_eq!(ids, (0..100).map(|n| format!("r-{n}")).collect::<Vec<_>>());
    fixed.shutdown().await.unwrap();

    // Replayed again into a plugin that still fails: they come back with their replay count, and the
    // loop guard refuses them.
    let broken = host(&topic, &output, &group, true).await;
    replay::execute(&kafka, &replay::plan(&letters, &Filter::default(), None, 1)).await.unwrap();
    assert_eq!(read(&dlq, 200, Duration::from_secs(60)).await.len(), 200);
    broken.shutdown().await.unwrap();
    let letters = replay::read(&kafka, &dlq, Duration::from_secs(2)).await.unwrap();
    let again = Filter { from_offset: Some(100), ..Filter::default() };
    let refused = replay::plan(&letters, &again, None, 1);
    assert_eq!(refused.replay.len(), 0);
    assert_eq!(refused.refused.len(), 100);
    assert!(refused.refused.iter().all(|l| l.replays == 1));
}
