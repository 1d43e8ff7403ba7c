//! Test plugin: emits exactly one output event per input event.
//!
//! Subscribes to the topic named by the `topic` config key (default `weft-echo-in`) and emits, for every
//! input, an event with the same `id` and `data` to the `output-topic` config key (default
//! `<input topic>.out`), keyed like the input. Extensions on the output record which version handled
//! the input (`echoversion`, from the `version` config key) and where the input came from
//! (`inpartition`, `inoffset`, `attempt`), so tests can check ordering and delivery. The version
//! is `v1`, or `v2` when built with the `v2` feature; the `version` config key overrides it.
//!
//! The config key `describe=trap` makes `describe()` panic (a plugin that cannot be loaded). For
//! benchmarks: with the config key `noop` set, `handle` returns at once (after failure injection);
//! with `parse` set, it parses the event's data as JSON and returns (an error if it is not JSON).
//!
//! Failure injection: the config key `fail-all=permanent` rejects every event, `fail-half` rejects
//! (permanently) the events whose id's bytes add up to an odd number, and `alter-some` makes the
//! output's data `"altered"` for the events whose id's bytes add up to a multiple of five (a
//! shadow that differs on a known subset); otherwise failure injection is
//! driven by extensions on the input event:
//! - `failmode=permanent`: returns a permanent error.
//! - `failmode=retryable`: returns a retryable error while `attempt < failuntil` (never succeeds
//!   without `failuntil`), with `faildelayms` as the delay hint if present, and a reason
//!   `failreasonbytes` bytes longer than usual if present.
//! - `failmode=emitthenfail`: emits its usual output, then returns a retryable error while
//!   `attempt < failuntil` (what a failed attempt emitted must not be delivered with exactly-once).
//! - `failmode=trap`: panics. `failmode=loop`: never returns. `failmode=alloc`: allocates until it
//!   is stopped.
//! - The config key `startms` makes every instance's start-up code (run when it is instantiated)
//!   sleep that many milliseconds.
//! - `failmode=sleep`: sleeps `sleepms` milliseconds (default 20 s) in a WASI call, then succeeds.
//! - `failmode=flood`: writes `floodlines` (default 10,000) log lines of `floodbytes` bytes
//!   (default 64 KiB) through `host.log` and as many to stdout and stderr, then succeeds.
//! - `failmode=emitflood`: emits `floodemits` (default 100,000) events of `floodbytes` bytes of
//!   data (default 1 KiB) to the output topic; the first refusal becomes a permanent error that
//!   says how many were taken and why; then it emits its usual output.

wit_bindgen::generate!({ path: "../../wit", world: "handler" });

use weft::handler::host;
use weft::handler::types::{RetryableError, Subscription};

struct Echo;

impl Guest for Echo {
    fn describe() -> PluginInfo {
        if host::config_get("describe").as_deref() == Some("trap") {
            panic!("describe() is configured to trap");
        }
        PluginInfo {
            name: host::config_get("name").unwrap_or_else(|| "echo".into()),
            version: if cfg!(feature = "v2") { "2.0.0".into() } else { env!("CARGO_PKG_VERSION").into() },
            description: "Emits one output event per input event".into(),
            subscriptions: vec![Subscription {
                topic: host::config_get("topic").unwrap_or_else(|| "weft-echo-in".into()),
                types: vec![],
                sources: vec![],
            }],
        }
    }

    fn handle(event: Cloudevent, delivery: Delivery) -> Result<(), HandleError> {
        inject_failure(&event, &delivery)?;
        let settings = settings();
        if settings.noop {
            // Measures the cost of a call itself (bench).
            return Ok(());
        }
        if settings.parse {
            let data = event.data.as_deref().unwrap_or_default();
            return serde_json::from_slice::<serde_json::Value>(data)
                .map(|value| drop(std::hint::black_box(value)))
                .map_err(|e| HandleError::Permanent(format!("data is not JSON: {e}")));
        }
        let fail_after_emit = (extension(&event, "failmode") == Some("emitthenfail")
            && delivery.attempt < extension(&event, "failuntil").and_then(|n| n.parse().ok()).unwrap_or(u32::MAX))
        .then(|| extension(&event, "faildelayms").and_then(|n| n.parse().ok()));
        let topic = host::config_get("output-topic").unwrap_or_else(|| format!("{}.out", delivery.topic));
        let version = host::config_get("version")
            .unwrap_or_else(|| if cfg!(feature = "v2") { "v2" } else { "v1" }.into());
        let extensions = vec![
            ("echoversion".to_string(), version),
            ("inpartition".to_string(), delivery.partition.to_string()),
            ("inoffset".to_string(), delivery.offset.to_string()),
            ("attempt".to_string(), delivery.attempt.to_string()),
        ];
        let output = Cloudevent {
            id: event.id.clone(),
            source: "weft-test/echo".into(),
            type_: "weft.test.echoed".into(),
            specversion: "1.0".into(),
            datacontenttype: event.datacontenttype.clone(),
            dataschema: event.dataschema.clone(),
            subject: Some(event.type_.clone()),
            time: None,
            extensions,
            data: if settings.alter_some && altered(&event.id) { Some(b"\"altered\"".to_vec()) } else { event.data },
        };
        host::emit(&topic, &output, delivery.key.as_deref()).map_err(|e| {
            HandleError::Retryable(RetryableError { reason: format!("emit failed: {e:?}"), delay_ms: None })
        })?;
        match fail_after_emit {
            Some(delay_ms) => Err(HandleError::Retryable(RetryableError {
                reason: format!("attempt {} failed after emitting", delivery.attempt),
                delay_ms,
            })),
            None => Ok(()),
        }
    }
}

/// Config keys read once per instance (a host call per event would be part of what benchmarks measure).
struct Settings {
    noop: bool,
    parse: bool,
    fail_all: bool,
    fail_half: bool,
    alter_some: bool,
}

/// Start-up code: the component runs `_initialize` once per instance, when it is instantiated
/// (the `startms` config key).
#[unsafe(no_mangle)]
pub extern "C" fn _initialize() {
    if let Some(ms) = host::config_get("startms").and_then(|n| n.parse().ok()) {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

fn settings() -> &'static Settings {
    static SETTINGS: std::sync::OnceLock<Settings> = std::sync::OnceLock::new();
    SETTINGS.get_or_init(|| Settings {
        noop: host::config_get("noop").is_some(),
        parse: host::config_get("parse").is_some(),
        fail_all: host::config_get("fail-all").as_deref() == Some("permanent"),
        fail_half: host::config_get("fail-half").is_some(),
        alter_some: host::config_get("alter-some").is_some(),
    })
}

/// The events `alter-some` changes: those whose id's bytes add up to a multiple of five.
fn altered(id: &str) -> bool {
    id.bytes().map(u32::from).sum::<u32>().is_multiple_of(5)
}

fn extension<'a>(event: &'a Cloudevent, name: &str) -> Option<&'a str> {
    event.extensions.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
}

fn inject_failure(event: &Cloudevent, delivery: &Delivery) -> Result<(), HandleError> {
    if settings().fail_all {
        return Err(HandleError::Permanent(format!("this build rejects every event ({})", event.id)));
    }
    if settings().fail_half && event.id.bytes().map(u32::from).sum::<u32>() % 2 == 1 {
        return Err(HandleError::Permanent(format!("this build rejects half the events ({})", event.id)));
    }
    match extension(event, "failmode") {
        Some("permanent") => Err(HandleError::Permanent(format!("event {} is marked permanent", event.id))),
        Some("retryable") => {
            let until = extension(event, "failuntil").and_then(|n| n.parse::<u32>().ok()).unwrap_or(u32::MAX);
            if delivery.attempt < until {
                let delay_ms = extension(event, "faildelayms").and_then(|n| n.parse().ok());
                // `failreasonbytes`: a reason that long (the host must not log it whole).
                let padding = extension(event, "failreasonbytes").and_then(|n| n.parse().ok()).unwrap_or(0);
                return Err(HandleError::Retryable(RetryableError {
                    reason: format!("attempt {} of {} is marked retryable{}", delivery.attempt, event.id, "x".repeat(padding)),
                    delay_ms,
                }));
            }
            Ok(())
        }
        Some("trap") => panic!("event {} is marked to trap", event.id),
        Some("loop") => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        Some("alloc") => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        Some("sleep") => {
            let ms = extension(event, "sleepms").and_then(|n| n.parse().ok()).unwrap_or(20_000);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            Ok(())
        }
        Some("flood") => {
            let lines = extension(event, "floodlines").and_then(|n| n.parse().ok()).unwrap_or(10_000);
            let bytes = extension(event, "floodbytes").and_then(|n| n.parse().ok()).unwrap_or(64 << 10);
            let line = "x".repeat(bytes);
            for _ in 0..lines {
                host::log(weft::handler::types::LogLevel::Error, &line);
                println!("{line}");
                eprintln!("{line}");
            }
            Ok(())
        }
        Some("emitflood") => {
            let count: u32 = extension(event, "floodemits").and_then(|n| n.parse().ok()).unwrap_or(100_000);
            let bytes = extension(event, "floodbytes").and_then(|n| n.parse().ok()).unwrap_or(1 << 10);
            let mut output = event.clone();
            output.data = Some(vec![b'x'; bytes]);
            let topic = format!("{}.out", delivery.topic);
            for n in 0..count {
                host::emit(&topic, &output, delivery.key.as_deref())
                    .map_err(|e| HandleError::Permanent(format!("emit refused after {n} events: {e:?}")))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

export!(Echo);
