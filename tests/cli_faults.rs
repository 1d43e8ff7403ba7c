//! Faults seen from the command line, with the real `weft` binary: a plugin that sleeps in a WASI
//! call is stopped at the default deadline (`weft invoke`), and with `--log-format json` every line
//! the process writes to stderr is JSON, a guest panic message included.

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
    assert!(!output.status.success());
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
