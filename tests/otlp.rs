//! Span export: `weft run` with `telemetry.otlp_endpoint` set sends the handler spans to an
//! OTLP/HTTP collector (here a small in-test one), and the exported span continues the input
//! event's trace: same trace id, the input's span as parent, and its own span id is the one the
//! emitted event carries in `traceparent`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use weft_tests::*;

/// Starts a collector that keeps every body POSTed to `/v1/traces`.
async fn collector() -> (std::net::SocketAddr, Arc<Mutex<Vec<serde_json::Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post({
            let received = received.clone();
            move |body: axum::body::Bytes| async move {
                let json: serde_json::Value = serde_json::from_slice(&body).expect("OTLP/HTTP JSON");
                received.lock().unwrap().push(json);
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, received)
}

/// Every exported span, flattened out of resourceSpans/scopeSpans.
fn spans(bodies: &[serde_json::Value]) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for body in bodies {
        for resource in body["resourceSpans"].as_array().into_iter().flatten() {
            for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
                out.extend(scope["spans"].as_array().into_iter().flatten().cloned());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_spans_are_exported_over_otlp_continuing_the_input_trace() {
    let (topic, output) = topic_pair("otlp", 1).await;
    let (addr, received) = collector().await;
    let dir = plugins_dir(&[("echo", ECHO_WASM)]);
    let config = dir.join("weft.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup_id = \"{}\"\n\
             [http]\nlisten = \"127.0.0.1:0\"\n[plugins]\ndir = \"{}\"\n\
             [plugin.echo.config]\ntopic = \"{topic}\"\noutput-topic = \"{output}\"\n\
             [telemetry]\notlp_endpoint = \"http://{addr}\"\nservice_name = \"weft-under-test\"\n",
            brokers(),
            unique("otlp-group"),
            dir.display()
        ),
    )
    .unwrap();
    let mut weft = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "info,librdkafka=warn,rdkafka=warn")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting weft");

    let input = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    TestProducer::new()
        .event_with(&topic, Some(0), "k", "traced", Mode::Binary, &[("traceparent", input)])
        .await;
    let outputs = read(&output, 1, Duration::from_secs(60)).await;
    let emitted = outputs.first().and_then(|o| o.header("ce_traceparent")).expect("output with traceparent");
    let emitted = weft::ops::trace::TraceParent::parse(emitted).expect("valid traceparent");
    assert_eq!(emitted.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");

    let handler_span = || {
        spans(&received.lock().unwrap())
            .into_iter()
            .find(|s| s["name"] == "event" && s["traceId"] == "4bf92f3577b34da6a3ce929d0e0e4736")
    };
    assert!(
        eventually(Duration::from_secs(20), || handler_span().is_some()).await,
        "no handler span exported"
    );
    let _ = Command::new("kill").arg("-TERM").arg(weft.id().to_string()).status();
    let _ = weft.wait();

    let span = handler_span().unwrap();
    assert_eq!(span["parentSpanId"], "00f067aa0ba902b7", "the input's span is the parent");
    assert_eq!(span["spanId"], emitted.span_id.as_str(), "the emitted event names the exported span");
    let attributes: Vec<(String, serde_json::Value)> = span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["key"].as_str().unwrap().to_string(), a["value"].clone()))
        .collect();
    let attribute = |key: &str| attributes.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(attribute("topic").unwrap()["stringValue"], topic.as_str());
    assert_eq!(attribute("ce.id").unwrap()["stringValue"], "traced");
    assert_eq!(attribute("plugin").unwrap()["stringValue"], "echo");
    let bodies = received.lock().unwrap();
    let service = bodies
        .iter()
        .flat_map(|b| b["resourceSpans"].as_array().cloned().unwrap_or_default())
        .find_map(|r| {
            r["resource"]["attributes"]
                .as_array()?
                .iter()
                .find(|a| a["key"] == "service.name")
                .map(|a| a["value"]["stringValue"].clone())
        });
    assert_eq!(service, Some(serde_json::json!("weft-under-test")));
}
