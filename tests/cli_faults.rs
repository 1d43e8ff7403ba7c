//! `weft invoke` with the real `weft` binary: exit codes per outcome, records given as key,
//! partition, attempt and binary-mode headers, the full dump of emitted events, the subscription
//! note; a plugin that sleeps in a WASI call is stopped at the default deadline, and with
//! `--log-format json` every line the process writes to stderr is JSON, a guest panic included.
//! `weft produce` writes a file of records to the broker as written, and names the record and the
//! field of a bad one. `weft plugin promote` and `roll-back` move a canary's file. `weft invoke
//! --config` checks the event against its topic's schema first.

use std::process::Command;
use std::time::{Duration, Instant};

use weft_tests::{ECHO_WASM, unique};

/// Writes a structured event for echo with `extensions` and returns its path.
fn event_file(extensions: &[(&str, &str)]) -> std::path::PathBuf {
    let mut event = serde_json::json!({ "specversion": "1.0", "id": "cli-1", "source": "/cli", "type": "t" });
    for (name, value) in extensions {
        event[*name] = (*value).into();
    }
    let path = std::env::temp_dir().join(format!("{}.json", unique("weft-event")));
    std::fs::write(&path, serde_json::to_vec(&event).unwrap()).unwrap();
    path
}

fn invoke(args: &[&str], event: &std::path::Path) -> (std::process::Output, Duration) {
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(args)
        .arg("invoke")
        .arg(ECHO_WASM)
        .arg("--event")
        .arg(event)
        .env_remove("RUST_LOG")
        .output()
        .expect("running weft");
    (output, started.elapsed())
}

#[test]
fn a_sleeping_plugin_is_stopped_at_the_default_deadline() {
    let event = event_file(&[("failmode", "sleep"), ("sleepms", "20000")]);
    let (output, took) = invoke(&[], &event);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "stopped by the sandbox\nstdout: {stdout}\nstderr: {stderr}");
    assert!(format!("{stdout}{stderr}").contains("timeout"), "stdout: {stdout}\nstderr: {stderr}");
    // The default deadline is 5 s; one epoch tick and process start-up on top, never the 20 s sleep.
    assert!(took < Duration::from_secs(8), "weft invoke took {took:?}");
}

#[test]
fn with_json_logs_every_stderr_line_is_json_even_a_guest_panic() {
    let event = event_file(&[("failmode", "trap")]);
    let (output, _) = invoke(&["--log-format", "json"], &event);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let mut panic_lines = 0;
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line}\nall of stderr:\n{stderr}"));
        if line.contains("marked to trap") {
            panic_lines += 1;
            assert_eq!(json["plugin"], "echo", "{line}");
        }
    }
    assert!(panic_lines >= 1, "the guest's panic message is missing from the log:\n{stderr}");
}

/// Runs `weft invoke` on echo with `args` after the plugin and the event; returns the exit code and
/// the JSON report.
fn invoke_json(event: &std::path::Path, args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .arg("invoke")
        .arg(ECHO_WASM)
        .arg("--event")
        .arg(event)
        .args(args)
        .arg("--json")
        .env("RUST_LOG", "off")
        .output()
        .expect("running weft");
    let report = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&output.stdout)));
    (output.status.code(), report)
}

#[test]
fn invoke_exit_codes_tell_handled_retryable_permanent_and_stopped_apart() {
    let cases = [
        (vec![], 0, "handled"),
        (vec![("failmode", "retryable"), ("faildelayms", "2500")], 3, "retryable"),
        (vec![("failmode", "permanent")], 4, "permanent"),
        (vec![("failmode", "trap")], 5, "stopped"),
        (vec![("failmode", "alloc")], 5, "stopped"),
    ];
    for (extensions, code, outcome) in cases {
        let (exit, report) = invoke_json(&event_file(&extensions), &["--topic", "weft-echo-in"]);
        assert_eq!(exit, Some(code), "{extensions:?}: {report}");
        assert_eq!(report["outcome"], outcome, "{report}");
        assert_eq!(report["exit_code"], code, "{report}");
    }
    let (_, retryable) =
        invoke_json(&event_file(&[("failmode", "retryable"), ("faildelayms", "2500")]), &["--attempt", "2"]);
    assert_eq!(retryable["delay_hint_ms"], 2500, "{retryable}");
    assert_eq!(retryable["decision"]["retry"]["attempt"], 3, "{retryable}");
    let (_, permanent) = invoke_json(&event_file(&[("failmode", "permanent")]), &[]);
    assert_eq!(permanent["decision"]["dead_letter"]["reason"], "permanent_error", "{permanent}");
}

#[test]
fn invoke_takes_a_binary_mode_record_with_key_partition_and_attempt_and_dumps_what_was_emitted() {
    let data = std::env::temp_dir().join(format!("{}.json", unique("weft-data")));
    std::fs::write(&data, br#"{"title":"write docs"}"#).unwrap();
    let headers = [
        "ce_specversion=1.0",
        "ce_id=b-7",
        "ce_source=/todo",
        "ce_type=com.example.task.created",
        "ce_subject=task-7",
        "content-type=application/json",
        "x-tenant=acme",
    ];
    let mut args: Vec<&str> = headers.iter().flat_map(|h| ["--header", h]).collect();
    args.extend([
        "--topic",
        "weft-echo-in",
        "--key",
        "user-7",
        "--partition",
        "4",
        "--offset",
        "99",
        "--attempt",
        "2",
    ]);
    let (exit, report) = invoke_json(&data, &args);
    assert_eq!(exit, Some(0), "{report}");
    assert_eq!(report["matches_subscriptions"], true, "{report}");
    let emitted = &report["emitted"][0];
    assert_eq!(emitted["topic"], "weft-echo-in.out");
    assert_eq!(emitted["key"], "user-7", "the key reached the plugin and came back");
    let event = &emitted["event"];
    for (name, value) in [
        ("id", "b-7"),
        ("source", "weft-test/echo"),
        ("type", "weft.test.echoed"),
        ("subject", "com.example.task.created"),
        ("datacontenttype", "application/json"),
        ("inpartition", "4"),
        ("inoffset", "99"),
        ("attempt", "2"),
        ("data", r#"{"title":"write docs"}"#),
    ] {
        assert_eq!(event[name], value, "{name} in {event}");
    }
}

#[test]
fn invoke_says_when_the_plugin_would_not_receive_the_event() {
    let event = event_file(&[]);
    let (exit, report) = invoke_json(&event, &["--topic", "somewhere-else"]);
    assert_eq!(exit, Some(0), "the plugin is still called: {report}");
    assert_eq!(report["matches_subscriptions"], false, "{report}");
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["invoke", ECHO_WASM, "--topic", "somewhere-else", "--event"])
        .arg(&event)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("would not deliver it: topic weft-echo-in"), "{text}");
}

/// With `--config`, the event is checked against its topic's schema first, as the host does: one
/// that does not match never reaches the plugin, and the report says the host would dead-letter it.
#[test]
fn invoke_with_a_config_checks_the_event_against_its_topic_schema_first() {
    let dir = std::env::temp_dir().join(unique("weft-invoke-schema"));
    std::fs::create_dir_all(&dir).unwrap();
    let schema = dir.join("order.json");
    std::fs::write(
        &schema,
        r#"{"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer"}}}"#,
    )
    .unwrap();
    let config = dir.join("weft.toml");
    let text = format!(
        "[kafka]\nbrokers = \"unused:9092\"\n[topics.\"orders\"]\nschema = \"{}\"\n",
        schema.display()
    );
    std::fs::write(&config, text).unwrap();
    let event = |data: serde_json::Value| {
        let event = serde_json::json!({ "specversion": "1.0", "id": "cli-s", "source": "/cli", "type": "t", "data": data });
        let path = dir.join(format!("{}.json", unique("event")));
        std::fs::write(&path, serde_json::to_vec(&event).unwrap()).unwrap();
        path
    };
    let run = |event: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["invoke", ECHO_WASM, "--topic", "orders", "--config"])
            .arg(&config)
            .arg("--event")
            .arg(event)
            .env("RUST_LOG", "off")
            .output()
            .unwrap()
    };
    let refused = run(&event(serde_json::json!({ "qty": "three" })));
    let text = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(4), "{text}");
    assert!(
        text.contains("refused by its schema")
            && text.contains("at /qty: \"three\" is not of type \"integer\""),
        "{text}"
    );
    assert!(
        text.contains("dead-letter it (reason schema_invalid)") && text.contains("emitted 0 event(s)"),
        "{text}"
    );
    let fits = run(&event(serde_json::json!({ "qty": 3 })));
    assert_eq!(fits.status.code(), Some(0), "{}", String::from_utf8_lossy(&fits.stdout));
}

/// The conformance handler of every language logs `handled <id>` through the host: the line
/// reaches `weft invoke`'s log with the plugin and the event named. JavaScript, Python, C and Go
/// come from scripts/polyglot-plugins.sh (WEFT_TEST_POLYGLOT_PLUGINS).
#[test]
fn conformance_handlers_log_through_the_host_in_every_language() {
    let event = event_file(&[]);
    for lang in ["rust", "js", "python", "c", "go"] {
        let component = match lang {
            "rust" => std::path::PathBuf::from(weft_tests::CONFORMANCE_RUST_WASM),
            _ => weft_tests::polyglot_plugin(&format!("conformance-{lang}.wasm")),
        };
        let output = Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(["--log-format", "json", "invoke"])
            .arg(&component)
            .args(["--topic", "conformance-in", "--event"])
            .arg(&event)
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        assert!(output.status.success(), "{lang}: {}", String::from_utf8_lossy(&output.stderr));
        let stderr = String::from_utf8_lossy(&output.stderr);
        let line = stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find(|l| l["message"] == "handled cli-1")
            .unwrap_or_else(|| panic!("{lang}: no `handled cli-1` line in\n{stderr}"));
        assert_eq!(line["level"], "INFO", "{lang}: {line}");
        assert_eq!(line["ce.id"], "cli-1", "{lang}: {line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_writes_records_as_written_and_names_a_bad_one() {
    let topic = unique("produce");
    weft_tests::create_topic(&topic, 1).await;
    let file = std::env::temp_dir().join(format!("{}.jsonl", unique("weft-records")));
    let records = format!(
        r#"{{"topic": "{topic}", "key": "user-7", "headers": {{"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}}, "value": {{"b": 1,  "a": "x"}}}}
{{"topic": "{topic}", "value": "plain text"}}
"#
    );
    std::fs::write(&file, records).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["produce", "--brokers", &weft_tests::brokers()])
        .arg(&file)
        .output()
        .expect("running weft");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), format!("produced 2 records ({topic} 2)"));
    let written = weft_tests::read(&topic, 2, Duration::from_secs(60)).await;
    assert_eq!(written[0].value, br#"{"b": 1,  "a": "x"}"#, "the value's bytes as in the file");
    assert_eq!(written[0].key.as_deref(), Some("user-7"));
    assert!(written[0].header("traceparent").is_some_and(|t| t.starts_with("00-4bf92f35")));
    assert_eq!(written[1].value, b"plain text");

    std::fs::write(&file, format!("{{\"topic\": \"{topic}\", \"vaule\": 1}}\n")).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["produce", "--brokers", &weft_tests::brokers()])
        .arg(&file)
        .output()
        .expect("running weft");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("record 1") && stderr.contains("unknown field `vaule`"), "{stderr}");

    // A topic the cluster does not have (and does not create: the test broker creates topics on
    // first use, which the configuration turns off for this client) is named at once, not after
    // every record timed out; and `--brokers` wins over the brokers of a `--config` file.
    let missing = unique("produce-missing");
    std::fs::write(&file, format!("{{\"topic\": \"{missing}\", \"value\": 1}}\n")).unwrap();
    let config = std::env::temp_dir().join(format!("{}.toml", unique("weft-produce")));
    std::fs::write(
        &config,
        "[kafka]\nbrokers = \"127.0.0.1:1\"\n[kafka.producer]\n\"allow.auto.create.topics\" = \"false\"\n",
    )
    .unwrap();
    let started = Instant::now();
    let output = Command::new(env!("CARGO_BIN_EXE_weft"))
        .args(["produce", "--config", config.to_str().unwrap(), "--brokers", &weft_tests::brokers()])
        .arg(&file)
        .output()
        .expect("running weft");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("topic {missing}: UnknownTopicOrPartition")), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20), "not after the 30 s send timeout");
}

/// `weft plugin roll-back` sets a canary aside, `weft plugin promote` moves it over the stable
/// version; with no canary, each says which file is missing.
#[test]
fn plugin_promote_and_roll_back_move_the_canary_file() {
    let dir = std::env::temp_dir().join(unique("weft-canary-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let weft = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_weft")).args(args).arg("--dir").arg(&dir).output().unwrap()
    };
    std::fs::write(dir.join("echo.wasm"), b"stable").unwrap();
    std::fs::write(dir.join("echo.canary.wasm"), b"canary").unwrap();
    let rolled = weft(&["plugin", "roll-back", "echo"]);
    assert!(rolled.status.success(), "{}", String::from_utf8_lossy(&rolled.stderr));
    assert!(!dir.join("echo.canary.wasm").exists());
    assert_eq!(std::fs::read(dir.join("echo.canary.wasm.rolled-back")).unwrap(), b"canary");
    let missing = weft(&["plugin", "promote", "echo"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("echo.canary.wasm"), "names the missing file");
    std::fs::write(dir.join("echo.canary.wasm"), b"canary 2").unwrap();
    let promoted = weft(&["plugin", "promote", "echo"]);
    assert!(promoted.status.success(), "{}", String::from_utf8_lossy(&promoted.stderr));
    assert_eq!(std::fs::read(dir.join("echo.wasm")).unwrap(), b"canary 2");
    assert!(!dir.join("echo.canary.wasm").exists());
}
