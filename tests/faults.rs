//! Broker faults under load, against a three-broker Apache Kafka cluster (`scripts/kafka.sh
//! start-cluster`: replication factor 3, `min.insync.replicas` 2). `weft run` echoes every event of
//! a 6-partition topic to an output topic while events arrive at 2,500 per second over 2,000 keys,
//! and every event of one key in ten fails its first attempt and is retried. Then:
//! (a) the broker leading the input and output partitions is SIGKILLed and restarted 20 s later;
//! (b) the three brokers are restarted one after another;
//! (c) two brokers are stopped for 30 s (below `min.insync.replicas`: no write can succeed).
//!
//! Each ends with every input handled, every output present (duplicates counted, never a loss),
//! no dead letter, and a commit at the end; `/readyz` says 503 with a cause while no progress is
//! possible and 200 again once it is. Each prints events/s during the fault, the time Weft took
//! to catch up after it, and the duplicates.
//!
//! With exactly-once delivery, all at once: ten SIGKILLs of `weft run`, a second member joining
//! and leaving, the output topic's leader killed and restarted; every output is read exactly once,
//! in key order.
//!
//! The cluster is started and stopped by each test, under its own state directory, so a test that
//! breaks its cluster leaves nothing to the next; the tests take turns.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use weft_tests::*;

/// Input and output partitions.
const PARTITIONS: i32 = 6;
/// Events per second the producer offers, and for how long.
const RATE: u64 = 2_500;
const LOAD: Duration = Duration::from_secs(50);
/// Keys; events of every tenth key fail their first attempt. A key's events are handled one at a
/// time, each after the previous one's emit is acknowledged (and a retried one after its backoff),
/// so a key can take a few events per second: the load is spread over enough keys for that.
const KEYS: u64 = 2_000;
/// When the fault starts, after the load started.
const FAULT_AT: Duration = Duration::from_secs(10);

/// The tests take turns: each runs its own cluster on 2 cores.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A three-broker cluster of this test, stopped (and its files removed) when dropped.
struct Cluster {
    state: std::path::PathBuf,
    bootstrap: String,
}

impl Cluster {
    fn start() -> Self {
        let state = std::env::temp_dir().join(unique("weft-faults"));
        let bootstrap = Self::script(&state, &["start-cluster"]);
        eprintln!("cluster: {bootstrap}");
        Self { state, bootstrap: bootstrap.trim().to_string() }
    }

    /// Runs `scripts/kafka.sh ARGS` on this cluster; returns what it printed.
    fn script(state: &Path, args: &[&str]) -> String {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
        let output = std::process::Command::new(script)
            .args(args)
            .env("WEFT_KAFKA_STATE", state)
            .stderr(std::process::Stdio::inherit())
            .output()
            .expect("running scripts/kafka.sh");
        assert!(output.status.success(), "scripts/kafka.sh {args:?} failed");
        String::from_utf8(output.stdout).unwrap()
    }

    fn run(&self, args: &[&str]) {
        eprintln!("kafka.sh {}", args.join(" "));
        Self::script(&self.state, args);
    }

    /// The broker (1, 2 or 3: its node id) leading partition 0 of `topic`.
    fn leader(&self, topic: &str) -> i32 {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.bootstrap).create().expect("client");
        let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
        metadata.topics()[0].partitions()[0].leader()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        Self::script(&self.state, &["stop"]);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// What one scenario saw.
struct Run {
    /// When each event id was produced (ms since the Unix epoch), by number.
    produced: Vec<u64>,
    /// `/readyz` answers during the run: (ms since the epoch, status, body).
    readiness: Vec<(u64, u16, String)>,
    /// The fault's start and end (ms since the epoch).
    fault: (u64, u64),
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// Produces `RATE` events per second for `LOAD` in batches (ids `f-<n>`, keys `user-<n % KEYS>`;
/// every event of a key divisible by ten asks echo to fail its first attempt); returns when each
/// was produced.
fn produce(topic: &str) -> tokio::task::JoinHandle<Vec<u64>> {
    produce_failing(topic, 10, "retryable")
}

/// [`produce`], the events of every `failing_keys`-th key failing their first attempt with echo's
/// `failmode`.
fn produce_failing(
    topic: &str,
    failing_keys: u64,
    failmode: &'static str,
) -> tokio::task::JoinHandle<Vec<u64>> {
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let producer = TestProducer::batching();
        let mut produced = Vec::new();
        let started = Instant::now();
        let per_tick = RATE / 10;
        let mut tick = 0u64;
        while started.elapsed() < LOAD {
            let at = now_ms();
            for n in tick * per_tick..(tick + 1) * per_tick {
                let key = n % KEYS;
                let mut headers = vec![
                    ("ce_specversion".to_string(), b"1.0".to_vec()),
                    ("ce_id".to_string(), format!("f-{n}").into_bytes()),
                    ("ce_source".to_string(), b"/weft/faults".to_vec()),
                    ("ce_type".to_string(), b"com.example.test".to_vec()),
                ];
                if key.is_multiple_of(failing_keys) {
                    headers.push(("ce_failmode".to_string(), failmode.as_bytes().to_vec()));
                    headers.push(("ce_failuntil".to_string(), b"2".to_vec()));
                    headers.push(("ce_faildelayms".to_string(), b"100".to_vec()));
                }
                producer.enqueue(&topic, &format!("user-{key}"), &headers, b"{}");
                produced.push(at);
            }
            tick += 1;
            let next = started + Duration::from_millis(100 * tick);
            std::thread::sleep(next.saturating_duration_since(Instant::now()));
        }
        producer.flush();
        produced
    })
}

/// Polls `/readyz` every 500 ms until `stop`.
fn watch_readiness(
    addr: std::net::SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<Vec<(u64, u16, String)>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while !*stop.borrow() {
            let answer = tokio::time::timeout(Duration::from_secs(2), try_http_get(addr, "/readyz")).await;
            if let Ok(Some((status, body))) = answer {
                seen.push((now_ms(), status, body));
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = stop.changed() => {}
            }
        }
        seen
    })
}

/// Runs a scenario: a cluster, `weft run`, the load, `fault` after [`FAULT_AT`] (it returns
/// once the cluster is whole again), then checks what must hold and prints the figures.
async fn scenario(name: &str, fault: impl AsyncFnOnce(&Cluster, &str, &str)) -> Run {
    let _turn = TURN.lock().await;
    let cluster = Cluster::start();
    use_brokers(&cluster.bootstrap);
    let (topic, output) = topic_pair(name, PARTITIONS).await;
    let dlq = format!("{topic}.dlq");
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("faults");
    let port = free_port();
    let config = echo_run_config(&dir, &group, &topic, &output);
    let mut text = std::fs::read_to_string(&config).unwrap();
    text = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{port}\""));
    // A partition whose oldest event waits this long is reported stalled by /readyz.
    text.push_str("[pipeline]\nstall_timeout_ms = 5000\n");
    std::fs::write(&config, text).unwrap();
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let log = dir.join("weft.log");
    let mut weft = WeftProcess::spawn(env!("CARGO_BIN_EXE_weft"), &config, &log);
    assert!(
        wait_ready(addr, Duration::from_secs(60)).await,
        "weft never became ready; log: {}",
        log.display()
    );

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let readiness = watch_readiness(addr, stopped);
    let producing = produce(&topic);
    tokio::time::sleep(FAULT_AT).await;
    let fault_start = now_ms();
    fault(&cluster, &topic, &output).await;
    let fault_end = now_ms();
    let produced = producing.await.unwrap();
    let total = produced.len();

    let outputs = read_until(&output, Duration::from_secs(240), distinct_ids(total)).await;
    assert!(wait_ready(addr, Duration::from_secs(60)).await, "/readyz did not recover by itself");
    let _ = stop.send(true);
    let run = Run { produced, readiness: readiness.await.unwrap(), fault: (fault_start, fault_end) };
    let letters = read_all(&dlq, Duration::from_secs(2)).await;
    let status = weft.stop();
    assert!(status.success(), "weft run exited with {status}; log: {}", log.display());
    report(name, &run, &outputs);

    let mut first_output: HashMap<&str, u64> = HashMap::new();
    for o in &outputs {
        first_output.entry(o.header("ce_id").unwrap()).or_insert(o.timestamp_ms);
    }
    let missing: Vec<usize> =
        (0..total).filter(|n| !first_output.contains_key(format!("f-{n}").as_str())).take(10).collect();
    assert!(missing.is_empty(), "{name}: never handled: f-{missing:?}; log: {}", log.display());
    assert!(
        letters.is_empty(),
        "{name}: {} events dead-lettered by the fault: {:?}",
        letters.len(),
        letters[0].headers
    );
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).into_iter().enumerate() {
        assert_eq!(committed, end, "{name}: partition {p} not committed to its end");
    }
    drop(cluster);
    run
}

/// `/readyz` answers 200 within `timeout`.
async fn wait_ready(addr: std::net::SocketAddr, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some((200, _))) =
            tokio::time::timeout(Duration::from_secs(2), try_http_get(addr, "/readyz")).await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Prints events/s during the fault, the time to catch up after it, duplicates and what /readyz said.
fn report(name: &str, run: &Run, outputs: &[Output]) {
    let (start, end) = run.fault;
    let mut first: HashMap<&str, u64> = HashMap::new();
    for o in outputs {
        first.entry(o.header("ce_id").unwrap()).or_insert(o.timestamp_ms);
    }
    let during = first.values().filter(|&&at| at >= start && at < end).count();
    let rate = during as f64 / ((end - start).max(1) as f64 / 1e3);
    // Caught up: every event produced before the fault ended has its output.
    let caught_up = run
        .produced
        .iter()
        .enumerate()
        .filter(|(_, at)| **at < end)
        .filter_map(|(n, _)| first.get(format!("f-{n}").as_str()))
        .max()
        .copied()
        .unwrap_or(end);
    let duplicates = outputs.len() - first.len();
    let not_ready: Vec<&(u64, u16, String)> = run.readiness.iter().filter(|(_, s, _)| *s != 200).collect();
    eprintln!(
        "{name}: {} events, fault {:.1} s, {rate:.0} events/s handled during it, caught up {:.1} s after it, \
         {duplicates} duplicate outputs, /readyz 503 for {} of {} polls",
        run.produced.len(),
        (end - start) as f64 / 1e3,
        caught_up.saturating_sub(end) as f64 / 1e3,
        not_ready.len(),
        run.readiness.len(),
    );
    if let Some((_, _, body)) = not_ready.first() {
        eprintln!("{name}: first 503: {}", body.trim().replace('\n', " | "));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_killed_and_back_20_s_later_loses_nothing() {
    scenario("leader-killed", async |cluster: &Cluster, topic: &str, output: &str| {
        let leader = cluster.leader(topic);
        eprintln!("leader of {topic}/0: broker {leader}; of {output}/0: broker {}", cluster.leader(output));
        cluster.run(&["kill-broker", &leader.to_string()]);
        tokio::time::sleep(Duration::from_secs(20)).await;
        cluster.run(&["restart-broker", &leader.to_string()]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_every_broker_loses_nothing() {
    scenario("rolling-restart", async |cluster: &Cluster, _: &str, _: &str| {
        for broker in ["1", "2", "3"] {
            cluster.run(&["restart-broker", broker]);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_brokers_down_for_30_s_stop_progress_honestly_and_lose_nothing() {
    let run = scenario("two-down", async |cluster: &Cluster, _: &str, _: &str| {
        cluster.run(&["kill-broker", "2", "3"]);
        tokio::time::sleep(Duration::from_secs(30)).await;
        cluster.run(&["restart-broker", "2", "3"]);
    })
    .await;
    let (start, end) = run.fault;
    let during: Vec<&(u64, u16, String)> =
        run.readiness.iter().filter(|(at, _, _)| *at >= start + 10_000 && *at < end).collect();
    assert!(!during.is_empty(), "/readyz was not answered during the outage");
    let honest = during.iter().filter(|(_, status, body)| *status == 503 && body.contains("- ")).count();
    assert!(
        honest * 2 >= during.len(),
        "no write can succeed, yet /readyz said ready for {} of {} polls: {:?}",
        during.len() - honest,
        during.len(),
        during.iter().map(|(_, s, b)| format!("{s} {}", b.trim())).collect::<Vec<_>>()
    );
}

fn random_ms(low: u64, high: u64) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    low + RandomState::new().hash_one(Instant::now()) % (high - low)
}

/// Exactly-once delivery through everything at once: `weft run` is SIGKILLed ten times at random
/// moments and restarted, a second member joins and later leaves, and the broker leading the
/// output topic's first partition is killed and brought back, while events arrive (one key in a
/// hundred emits, then fails its first attempt). Read with `read_committed`, the output holds
/// every event's output exactly once, in key order; nothing is dead-lettered; the group commits
/// to the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exactly_once_survives_kills_a_member_coming_and_going_and_a_leader_failover() {
    let _turn = TURN.lock().await;
    let cluster = Cluster::start();
    use_brokers(&cluster.bootstrap);
    let (topic, output) = topic_pair("eos-faults", PARTITIONS).await;
    let dlq = format!("{topic}.dlq");
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let group = unique("eos-faults");
    let config_a = echo_run_config_exactly_once(&dir, &group, &topic, &output, "a");
    let config_b = echo_run_config_exactly_once(&dir, &group, &topic, &output, "b");
    let (log_a, log_b) = (dir.join("a.log"), dir.join("b.log"));
    let bin = env!("CARGO_BIN_EXE_weft");
    let mut a = WeftProcess::spawn(bin, &config_a, &log_a);
    let producing = produce_failing(&topic, 100, "emitthenfail");
    let mut b = None;
    let mut leader = None;
    for kill in 1..=10 {
        tokio::time::sleep(Duration::from_millis(random_ms(2_000, 4_500))).await;
        a.kill();
        // The same transactional id: the new process aborts what the killed one left open.
        a = WeftProcess::spawn(bin, &config_a, &log_a);
        eprintln!("kill {kill}: member a killed and restarted");
        match kill {
            3 => b = Some(WeftProcess::spawn(bin, &config_b, &log_b)),
            5 => {
                let broker = cluster.leader(&output);
                cluster.run(&["kill-broker", &broker.to_string()]);
                leader = Some(broker);
            }
            7 => cluster.run(&["restart-broker", &leader.take().expect("killed").to_string()]),
            8 => {
                let status = b.take().expect("started").stop();
                assert!(status.success(), "member b exited with {status}; log: {}", log_b.display());
            }
            _ => {}
        }
    }
    let total = producing.await.unwrap().len();
    let outputs = read_until(&output, Duration::from_secs(300), distinct_ids(total)).await;
    // A duplicate written late would show up by now.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let outputs =
        if outputs.len() == total { read_all(&output, Duration::from_secs(3)).await } else { outputs };
    assert_exactly_once_in_key_order(&outputs, "f", total);
    let letters = read_all(&dlq, Duration::from_secs(2)).await;
    assert!(letters.is_empty(), "{} events dead-lettered", letters.len());
    let status = a.stop();
    assert!(status.success(), "member a exited with {status}; log: {}", log_a.display());
    for (p, (committed, end)) in committed_and_end(&group, &topic, PARTITIONS).into_iter().enumerate() {
        assert_eq!(committed, end, "partition {p} not committed to its end");
    }
    eprintln!(
        "exactly-once under faults: {total} events, 10 SIGKILLs, a member joining and leaving, a leader failover: each output once"
    );
}
