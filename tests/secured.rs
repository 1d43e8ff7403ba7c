//! A secured cluster: `weft run` against the test broker that takes only SASL_SSL with
//! SCRAM-SHA-256 (scripts/kafka.sh start-secure), with the user name, password and CA file taken
//! from environment variables through `${NAME}` in the configuration. The consumer, the producer
//! of emitted events, the dead-letter producer, the admin client that creates the dead-letter
//! topic, `weft produce` and `weft dlq inspect|replay` all connect; the password never appears in
//! what the processes write (the commands at debug level); a wrong password leaves the host not
//! ready, saying why.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use weft_tests::*;

const WAIT: Duration = Duration::from_secs(60);

/// The secured broker's environment, set by scripts/test.sh.
fn secure(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests with scripts/test.sh, or start the secured broker with \
             scripts/kafka.sh start-secure and export WEFT_TEST_SECURE_BROKERS, WEFT_TEST_SECURE_CA, \
             WEFT_TEST_SECURE_USER and WEFT_TEST_SECURE_PASSWORD"
        )
    })
}

/// librdkafka settings of a client of the secured broker, with `password`.
fn client(password: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", secure("WEFT_TEST_SECURE_BROKERS"))
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", secure("WEFT_TEST_SECURE_USER"))
        .set("sasl.password", password)
        .set("ssl.ca.location", secure("WEFT_TEST_SECURE_CA"));
    config
}

async fn create(topic: &str) {
    let admin: AdminClient<DefaultClientContext> =
        client(&secure("WEFT_TEST_SECURE_PASSWORD")).create().expect("admin client");
    let created = admin
        .create_topics(&[NewTopic::new(topic, 1, TopicReplication::Fixed(1))], &AdminOptions::new())
        .await
        .expect("create_topics over SASL_SSL");
    for result in created {
        result.unwrap_or_else(|(t, e)| panic!("creating {t}: {e}"));
    }
}

/// A `weft run` configuration for echo from `topic` to `output` on the secured broker; the
/// credentials are the environment's, named, never written into the file. `password` replaces
/// the password variable's name when given.
fn run_config(dir: &Path, topic: &str, output: &str, http: &str, password: Option<&str>) -> PathBuf {
    let path = dir.join(format!("{}.toml", unique("secured")));
    let password = password.map_or("${WEFT_TEST_SECURE_PASSWORD}".to_string(), str::to_string);
    std::fs::write(
        &path,
        format!(
            r#"[kafka]
brokers = "{brokers}"
group_id = "{group}"
[kafka.properties]
"security.protocol" = "SASL_SSL"
"sasl.mechanism" = "SCRAM-SHA-256"
"sasl.username" = "${{WEFT_TEST_SECURE_USER}}"
"sasl.password" = "{password}"
"ssl.ca.location" = "${{WEFT_TEST_SECURE_CA}}"
[kafka.consumer]
"fetch.wait.max.ms" = "10"
[http]
listen = "{http}"
[plugins]
dir = "{dir}"
[plugin.echo.config]
topic = "{topic}"
output-topic = "{output}"
"#,
            brokers = secure("WEFT_TEST_SECURE_BROKERS"),
            group = unique("secured"),
            dir = dir.display(),
        ),
    )
    .unwrap();
    path
}

fn free_address() -> String {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()
}

fn weft(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .expect("running weft")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_scram_over_tls_for_every_client_with_credentials_from_the_environment() {
    init_logging();
    let password = secure("WEFT_TEST_SECURE_PASSWORD");
    let (topic, output, replayed) = (unique("sasl-in"), unique("sasl-out"), unique("sasl-replayed"));
    for t in [&topic, &output, &replayed] {
        create(t).await;
    }
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let http = free_address();
    let config = run_config(&dir, &topic, &output, &http, None);
    let log = dir.join("weft.log");
    let mut process = WeftProcess::spawn(env!("CARGO_BIN_EXE_weft"), &config, &log);

    // Two events for echo and one it refuses, written with `weft produce` over SASL_SSL.
    let records = dir.join("records.jsonl");
    let event = |id: &str, failmode: &str| {
        serde_json::json!({
            "topic": topic, "key": "user-1", "headers": {"content-type": "application/cloudevents+json"},
            "value": {"specversion": "1.0", "id": id, "source": "/secured", "type": "com.example.test",
                      "failmode": failmode, "data": {"id": id}},
        })
        .to_string()
    };
    std::fs::write(
        &records,
        [event("s-1", "none"), event("s-2", "permanent"), event("s-3", "none")].join("\n"),
    )
    .unwrap();
    let produced = weft(&["produce", "--config", config.to_str().unwrap(), records.to_str().unwrap()]);
    assert!(produced.status.success(), "{}", String::from_utf8_lossy(&produced.stderr));

    let mut reader = client(&password);
    reader.set("group.id", unique("reader")).set("auto.offset.reset", "earliest");
    let outputs = read_with(reader.clone(), &output, 2, WAIT).await;
    let ids: Vec<&str> = outputs.iter().map(|o| o.header("ce_id").unwrap()).collect();
    assert_eq!(ids, ["s-1", "s-3"], "consumed and emitted over SASL_SSL");
    let dlq = format!("{topic}.dlq");
    let dead = read_with(reader.clone(), &dlq, 1, WAIT).await;
    assert_eq!(
        dead[0].header("weft.dlq.reason"),
        Some("permanent_error"),
        "the dead-letter topic Weft created"
    );

    // The dead-letter tools connect the same way.
    let inspect = weft(&["dlq", "inspect", &dlq, "--config", config.to_str().unwrap(), "--json"]);
    assert!(inspect.status.success(), "{}", String::from_utf8_lossy(&inspect.stderr));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("permanent_error"));
    let replay = weft(&["dlq", "replay", &dlq, "--config", config.to_str().unwrap(), "--to", &replayed]);
    assert!(replay.status.success(), "{}", String::from_utf8_lossy(&replay.stderr));
    let back = read_with(reader, &replayed, 1, WAIT).await;
    assert!(String::from_utf8_lossy(&back[0].value).contains("\"s-2\""), "the replayed record");

    assert!(process.stop().success(), "weft run exits 0 on SIGTERM");
    let written = std::fs::read_to_string(&log).unwrap();
    for output in [&produced, &inspect, &replay] {
        let text =
            format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!text.contains(&password), "a command wrote the password");
    }
    assert!(!written.contains(&password), "weft run wrote the password in its log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_leaves_the_host_not_ready_and_says_why() {
    init_logging();
    let topic = unique("sasl-wrong");
    create(&topic).await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let http = free_address();
    let wrong = format!("not-{}", unique("the-password"));
    let config = run_config(&dir, &topic, &topic, &http, Some(&wrong));
    let log = dir.join("weft.log");
    let _process = WeftProcess::spawn(env!("CARGO_BIN_EXE_weft"), &config, &log);

    let address: std::net::SocketAddr = http.parse().unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    let body = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if tokio::net::TcpStream::connect(address).await.is_err() {
            assert!(std::time::Instant::now() < deadline, "the HTTP listener never came up");
            continue;
        }
        let (status, body) = http_get(address, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        if body.to_lowercase().contains("authentication") || std::time::Instant::now() > deadline {
            break body;
        }
    };
    assert!(body.to_lowercase().contains("sasl authentication error"), "readyz: {body}");
    assert!(body.contains("not joined its group"), "{body}");
    let written = std::fs::read_to_string(&log).unwrap();
    assert!(written.to_lowercase().contains("sasl authentication error"), "the log says why too: {written}");
    assert!(!written.contains(&wrong) && !body.contains(&wrong), "the password is never written");
}
