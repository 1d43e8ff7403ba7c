//! The deployment files cannot drift from the host: every metric the Grafana dashboard and the
//! alert rules query is one Weft exports (checked against a real scrape), and docker-compose.yml
//! parses, mounts files that exist, and wires ports and addresses consistently with Weft's config.
//! The broker script makes cluster ids Kafka accepts.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use weft::Host;
use weft_tests::*;

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Every `weft_*` identifier in `expr`.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("weft_") {
        let start = i + found;
        let preceded = start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start
            + expr[start..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(expr.len() - start);
        if !preceded {
            names.push(expr[start..end].to_string());
        }
        i = end;
    }
    names
}

fn dashboard_exprs() -> Vec<String> {
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/weft.json")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            exprs.push(target["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}

fn alert_exprs() -> Vec<String> {
    let rules: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("dashboards/alerts.yml")).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            assert!(rule["alert"].as_str().is_some(), "every rule is an alert");
            exprs.push(rule["expr"].as_str().expect("expr").to_string());
        }
    }
    exprs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_alerts_query_only_exported_metrics() {
    // librdkafka's mock cluster reports partition high watermarks in its statistics (tansu does
    // not), so every statistics-derived series shows up in this scrape.
    let mock = rdkafka::mocking::MockCluster::new(1).unwrap();
    mock.create_topic("drift", 1, 1).unwrap();
    mock.create_topic("drift.out", 1, 1).unwrap();
    let producer: rdkafka::producer::FutureProducer =
        rdkafka::ClientConfig::new().set("bootstrap.servers", mock.bootstrap_servers()).create().unwrap();
    let headers =
        [("ce_specversion", "1.0"), ("ce_id", "d-1"), ("ce_source", "/drift"), ("ce_type", "drift")]
            .iter()
            .fold(rdkafka::message::OwnedHeaders::new(), |h, (key, value)| {
                h.insert(rdkafka::message::Header { key, value: Some(*value) })
            });
    producer
        .send(
            rdkafka::producer::FutureRecord::to("drift").key("k").payload("{}").headers(headers),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    // An event that waits for its retry: the progress gauges have a series to show.
    let parked = [
        ("ce_specversion", "1.0"),
        ("ce_id", "d-2"),
        ("ce_source", "/drift"),
        ("ce_type", "drift"),
        ("ce_failmode", "retryable"),
        ("ce_faildelayms", "60000"),
    ]
    .iter()
    .fold(rdkafka::message::OwnedHeaders::new(), |h, (key, value)| {
        h.insert(rdkafka::message::Header { key, value: Some(*value) })
    });
    producer
        .send(
            rdkafka::producer::FutureRecord::to("drift").key("k2").payload("{}").headers(parked),
            std::time::Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let mut config = weft::Config::with_brokers(mock.bootstrap_servers());
    config.plugins.dir = dir;
    config.http.listen = "127.0.0.1:0".parse().unwrap();
    config.kafka.consumer.insert("statistics.interval.ms".into(), "500".into());
    config.dlq.create_topics = false;
    // Events checked against a schema: the schema panels and alert have series to show.
    let schema = std::env::temp_dir().join(unique("weft-drift-schema"));
    std::fs::write(&schema, r#"{"type": "object"}"#).unwrap();
    let checked =
        weft::config::TopicConfig { schema: Some(schema.display().to_string()), ..Default::default() };
    config.topics.insert("drift".into(), checked);
    plugin_config(&mut config, "echo", &[("topic", "drift")]);
    let host = Host::start(config).await.unwrap();
    let mut body = String::new();
    for _ in 0..100 {
        body = http_get(host.http_addr().unwrap(), "/metrics").await.1;
        if body.contains("weft_consumer_lag{")
            && body.contains("weft_kafka_broker_rtt_seconds{")
            && body.contains("weft_partition_oldest_unfinished_seconds{")
            && body.contains("weft_schema_checks_total{")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    host.shutdown().await.unwrap();
    let exported: BTreeSet<String> = parse_metrics(&body).into_iter().map(|(name, _, _)| name).collect();

    let dashboard = dashboard_exprs();
    let alerts = alert_exprs();
    assert!(dashboard.len() >= 15 && alerts.len() >= 8);
    let mut queried = BTreeSet::new();
    for expr in dashboard.iter().chain(&alerts) {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "`{expr}` queries {name}, which Weft does not export; it exports {exported:?}"
            );
            queried.insert(name);
        }
    }
    for family in [
        "weft_events_received_total",
        "weft_events_dead_lettered_total",
        "weft_handler_duration_seconds_bucket",
    ] {
        assert!(queried.contains(family), "the dashboard should chart {family}");
    }
}

#[test]
fn metric_names_are_found_in_promql() {
    assert_eq!(
        metric_names(
            "histogram_quantile(0.99, sum by (le) (rate(weft_handler_duration_seconds_bucket[5m]))) / x_weft_no"
        ),
        ["weft_handler_duration_seconds_bucket"]
    );
}

/// `docker-compose.yml` with merge keys applied and `${NAME:-default}` replaced by `env`'s value or
/// the default, as `docker compose --env-file` does.
fn compose_with(env: &std::collections::HashMap<String, String>) -> serde_norway::Value {
    let mut text = std::fs::read_to_string(repo("docker-compose.yml")).unwrap();
    while let Some(start) = text.find("${") {
        let end = start + text[start..].find('}').expect("closed ${");
        let (name, default) = text[start + 2..end].split_once(":-").expect("every variable has a default");
        let value = env.get(name).cloned().unwrap_or_else(|| default.to_string());
        text.replace_range(start..=end, &value);
    }
    let mut compose: serde_norway::Value = serde_norway::from_str(&text).unwrap();
    compose.apply_merge().unwrap();
    compose
}

fn env_file(path: &str) -> std::collections::HashMap<String, String> {
    std::fs::read_to_string(repo(path))
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("NAME=value");
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn compose_file_is_consistent_with_weft() {
    let compose = compose_with(&Default::default());
    let services = compose["services"].as_mapping().expect("services");
    for name in ["kafka", "weft", "schema-registry", "prometheus", "grafana", "kafka-ui"] {
        assert!(services.contains_key(name), "service {name} missing");
    }
    assert!(compose["services"]["kafka"]["image"].as_str().unwrap().starts_with("apache/kafka"));
    assert!(
        compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]
            .as_str()
            .unwrap()
            .contains("controller")
    );

    // Every bind mount names a file or directory in the repository; every named volume is declared.
    let named = compose["volumes"].as_mapping().expect("named volumes");
    for (name, service) in services {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with('.') {
                assert!(repo(source).exists(), "{name:?} mounts {source}, which does not exist");
            } else {
                assert!(named.contains_key(source), "{name:?} mounts undeclared volume {source}");
            }
        }
    }

    // Weft's own config: the broker is the compose Kafka, the listener is the published port.
    let weft = &compose["services"]["weft"];
    assert_eq!(weft["build"].as_str(), Some("."));
    assert!(repo("Dockerfile").exists());
    let config = weft::Config::parse(&std::fs::read_to_string(repo("deploy/weft.toml")).unwrap()).unwrap();
    config.validate().unwrap();
    let kafka_listeners =
        compose["services"]["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap();
    assert!(kafka_listeners.contains(&format!("//{}", config.kafka.brokers)), "{kafka_listeners}");
    assert_eq!(weft["environment"]["WEFT_KAFKA_BROKERS"].as_str(), Some(config.kafka.brokers.as_str()));
    assert!(services.iter().all(|(_, s)| s["profiles"].is_null() || s["profiles"][0] == "cluster"));
    // Weft and the Kafka UI reach the registry's Confluent-compatible API on its container port,
    // and Weft takes the address from the environment variable it reads.
    let registry = &compose["services"]["schema-registry"];
    let registry_image = registry["image"].as_str().unwrap();
    assert!(registry_image.starts_with("apicurio/apicurio-registry:3.3"), "{registry_image}");
    let registry_ports: Vec<&str> =
        registry["ports"].as_sequence().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    let container_port = registry_ports[0].rsplit(':').next().unwrap();
    let url = format!("http://schema-registry:{container_port}/apis/ccompat/v7");
    assert_eq!(weft["environment"][weft::config::ENV_SCHEMA_REGISTRY_URL].as_str(), Some(url.as_str()));
    let ui = &compose["services"]["kafka-ui"]["environment"]["KAFKA_CLUSTERS_0_SCHEMAREGISTRY"];
    assert_eq!(ui.as_str(), Some(url.as_str()));
    assert_eq!(
        compose["services"]["kafka"]["environment"]["KAFKA_CONTROLLER_QUORUM_VOTERS"].as_str(),
        Some("1@kafka:9093")
    );
    let port = config.http.listen.port();
    assert_eq!(
        port,
        weft::config::HttpConfig::default().listen.port(),
        "the default port is the documented one"
    );
    let published: Vec<&str> =
        weft["ports"].as_sequence().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    assert!(published.contains(&format!("{port}:{port}").as_str()));
    assert!(
        !config.http.listen.ip().is_loopback(),
        "inside a container the listener must not be loopback-only"
    );

    // The image ships the plugins directory the config names, and compose mounts a volume there.
    let dockerfile = std::fs::read_to_string(repo("Dockerfile")).unwrap();
    assert!(dockerfile.contains(config.plugins.dir.to_str().unwrap()));
    let plugins_mount = format!("weft-plugins:{}", config.plugins.dir.display());
    assert!(
        weft["volumes"].as_sequence().unwrap().iter().any(|v| v.as_str() == Some(plugins_mount.as_str()))
    );
    assert!(dockerfile.contains("cargo build --release --locked -p weft"));

    // Prometheus scrapes Weft at that port and loads the alert rules it mounts.
    let prometheus: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("dashboards/prometheus.yml")).unwrap()).unwrap();
    let target = prometheus["scrape_configs"][0]["static_configs"][0]["targets"][0].as_str().unwrap();
    assert_eq!(target, format!("weft:{port}"));
    let rule_file = prometheus["rule_files"][0].as_str().unwrap();
    let mounts: Vec<&str> = compose["services"]["prometheus"]["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(mounts.iter().any(|m| m.starts_with("./dashboards/alerts.yml:") && m.contains(rule_file)));

    // Grafana's datasource uid is the one the dashboard uses.
    let datasource: serde_norway::Value =
        serde_norway::from_str(&std::fs::read_to_string(repo("dashboards/grafana/datasource.yml")).unwrap())
            .unwrap();
    let uid = datasource["datasources"][0]["uid"].as_str().unwrap();
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(repo("dashboards/weft.json")).unwrap()).unwrap();
    assert!(dashboard["panels"].as_array().unwrap().iter().all(|p| p["datasource"]["uid"] == uid));
}

/// A scalar as compose passes it to the container: text.
fn text(value: &serde_norway::Value) -> String {
    match value {
        serde_norway::Value::String(s) => s.clone(),
        serde_norway::Value::Number(n) => n.to_string(),
        other => panic!("not a scalar: {other:?}"),
    }
}

#[test]
fn cluster_profile_runs_three_nodes_with_replication_three_and_min_isr_two() {
    let env = env_file("deploy/cluster.env");
    assert_eq!(env["COMPOSE_PROFILES"], "cluster");
    let compose = compose_with(&env);
    let nodes: Vec<(&str, &serde_norway::Value)> = compose["services"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, s)| s["image"].as_str().is_some_and(|i| i.starts_with("apache/kafka")))
        .map(|(name, s)| (name.as_str().unwrap(), &s["environment"]))
        .collect();
    assert_eq!(nodes.len(), 3, "three Kafka nodes");
    let voters = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(',').collect::<Vec<_>>();
    let brokers = env["WEFT_KAFKA_BROKERS"].split(',').collect::<Vec<_>>();
    let mut ids = std::collections::HashSet::new();
    for (name, e) in &nodes {
        let id = e["KAFKA_NODE_ID"].as_u64().unwrap();
        assert!(ids.insert(id), "node id {id} used twice");
        assert!(voters.contains(&format!("{id}@{name}:9093").as_str()), "{name} is not a voter: {voters:?}");
        assert!(brokers.contains(&format!("{name}:9092").as_str()), "Weft does not bootstrap from {name}");
        assert!(
            e["KAFKA_ADVERTISED_LISTENERS"].as_str().unwrap().contains(&format!("INTERNAL://{name}:9092"))
        );
        assert_eq!(
            e["KAFKA_CONTROLLER_QUORUM_VOTERS"].as_str(),
            Some(env["KAFKA_CONTROLLER_QUORUM_VOTERS"].as_str())
        );
        for key in ["KAFKA_DEFAULT_REPLICATION_FACTOR", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] {
            assert_eq!(text(&e[key]), "3", "{name} {key}");
        }
        assert_eq!(text(&e["KAFKA_MIN_INSYNC_REPLICAS"]), "2", "{name}");
        assert_eq!(e["CLUSTER_ID"], nodes[0].1["CLUSTER_ID"], "one cluster id");
    }
    assert_eq!(
        compose["services"]["weft"]["environment"]["WEFT_KAFKA_BROKERS"].as_str(),
        Some(env["WEFT_KAFKA_BROKERS"].as_str())
    );
    // Weft's dead-letter topics take the broker default (3) unless configured.
    let config = weft::Config::parse(&std::fs::read_to_string(repo("deploy/weft.toml")).unwrap()).unwrap();
    assert_eq!(config.dlq.replication_factor, -1);
}

/// The broker script formats every fresh cluster with an id of its own making. An id starting
/// with '-' made `kafka-storage format --cluster-id` read it as an option and the start fail,
/// about one start in 64.
#[test]
fn broker_cluster_ids_are_valid_kafka_ids() {
    let out = std::process::Command::new(repo("scripts/kafka.sh"))
        .args(["cluster-id", "1000"])
        .output()
        .expect("run scripts/kafka.sh cluster-id");
    assert!(out.status.success(), "kafka.sh cluster-id failed: {}", String::from_utf8_lossy(&out.stderr));
    let ids: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 1000);
    for id in &ids {
        let url_safe = id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        assert!(id.len() == 22 && url_safe, "{id:?} is not 16 bytes in URL-safe base64");
        assert!(!id.starts_with('-'), "{id:?} starts with '-', which kafka-storage takes for an option");
    }
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), ids.len(), "cluster ids repeat");
}
