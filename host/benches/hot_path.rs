//! Per-event cost of Weft's hot path, measured in-process without Kafka:
//! decoding a 1 KiB CloudEvent in each binding mode, and one call into a plugin (the `echo`
//! component, which copies the event and emits it once; and the same component returning at once,
//! for the cost of the call itself) through a pooled instance, through a fresh
//! instance per event (`instances = "fresh"`), and with fuel metering on; and what a schema check
//! adds per event (JSON Schema; Avro decoding, with a registry).
//!
//! Run: `cargo bench -p weft --bench hot_path`. Prints each figure and its ratio to the baseline
//! in DESIGN terms (serde_json borrowed decode ≈ 1.2 µs; a record-typed call ≈ 1.2 µs).

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use weft::config::{Config, InstanceStrategy, PluginConfig};
use weft::event::Record;
use weft::kafka_in::decode::decode;
use weft::kafka_out::emit::Emitter;
use weft::sandbox::plugin::{Limits, Plugin};
use weft::sandbox::runtime::{Runtime, RuntimeOptions};
use weft::schemas::avro::Registry;
use weft::schemas::json::{self, JsonSchemas};

const ECHO: &str = concat!(env!("OUT_DIR"), "/echo.wasm");

fn measure(name: &str, baseline_us: f64, iterations: u32, mut f: impl FnMut()) {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let per = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!(
        "{name:<44} {per:>8.3} µs/event  baseline {baseline_us:>5.2} µs  ratio {:>5.2}",
        per / baseline_us
    );
}

/// The handler world bound for calls without async, to compare a bare synchronous call with a bare
/// asynchronous one (Weft's own path adds the instance pool, the deadline and the metrics).
mod bare {
    wasmtime::component::bindgen!({ path: "../wit", world: "handler", exports: { default: async } });
    pub mod sync {
        wasmtime::component::bindgen!({ path: "../wit", world: "handler" });
    }

    use wasmtime::component::ResourceTable;
    use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

    /// A store's data: WASI, and host imports that do nothing but say `noop`.
    pub struct State {
        wasi: WasiCtx,
        table: ResourceTable,
    }

    impl State {
        pub fn new() -> Self {
            Self { wasi: WasiCtx::builder().build(), table: ResourceTable::new() }
        }
    }

    impl WasiView for State {
        fn ctx(&mut self) -> WasiCtxView<'_> {
            WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
        }
    }

    macro_rules! host {
        ($module:path) => {
            use $module as m;
            impl m::types::Host for State {}
            impl m::host::Host for State {
                fn log(&mut self, _: m::types::LogLevel, _: String) {}
                fn emit(
                    &mut self,
                    _: String,
                    _: m::types::Cloudevent,
                    _: Option<Vec<u8>>,
                ) -> Result<(), m::types::EmitError> {
                    Ok(())
                }
                fn config_get(&mut self, key: String) -> Option<String> {
                    (key == "noop").then(|| "1".to_string())
                }
            }
        };
    }
    mod async_host {
        use super::*;
        host!(super::weft::handler);
    }
    mod sync_host {
        use super::*;
        host!(super::sync::weft::handler);
    }
}

/// The same record in another binding's type (field for field).
macro_rules! copy {
    (event $ty:path, $e:expr) => {{
        let e = $e;
        $ty {
            id: e.id.clone(),
            source: e.source.clone(),
            type_: e.type_.clone(),
            specversion: e.specversion.clone(),
            datacontenttype: e.datacontenttype.clone(),
            dataschema: e.dataschema.clone(),
            subject: e.subject.clone(),
            time: e.time.clone(),
            extensions: e.extensions.clone(),
            data: e.data.clone(),
        }
    }};
    (delivery $ty:path, $d:expr) => {{
        let d = $d;
        $ty {
            topic: d.topic.clone(),
            partition: d.partition,
            offset: d.offset,
            key: d.key.clone(),
            timestamp_ms: d.timestamp_ms,
            attempt: d.attempt,
            headers: d.headers.clone(),
        }
    }};
}

/// Per-call cost of echo's no-op `handle` called directly through wasmtime: synchronously, the same
/// with the smallest event (four short attributes, no data, no key: the call's floor), and
/// asynchronously as Weft does. Returns (sync µs, sync µs with the smallest event, async µs).
async fn raw_calls(
    event: &weft::sandbox::plugin::Cloudevent,
    delivery: &weft::sandbox::plugin::Delivery,
) -> (f64, f64, f64) {
    use wasmtime::component::{Component, HasSelf, Linker};
    use wasmtime::{Engine, Store};
    let mut config = wasmtime::Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).unwrap();
    let component = Component::from_file(&engine, ECHO).unwrap();
    const N: u32 = 100_000;

    let mut linker = Linker::<bare::State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
    bare::sync::Handler::add_to_linker::<_, HasSelf<bare::State>>(&mut linker, |s| s).unwrap();
    let mut store = Store::new(&engine, bare::State::new());
    store.set_epoch_deadline(u64::MAX / 2);
    let handler = bare::sync::Handler::instantiate(&mut store, &component, &linker).unwrap();
    let sync_event = copy!(event bare::sync::weft::handler::types::Cloudevent, event);
    let sync_delivery = copy!(delivery bare::sync::weft::handler::types::Delivery, delivery);
    let started = Instant::now();
    for _ in 0..N {
        handler.call_handle(&mut store, &sync_event, &sync_delivery).unwrap().unwrap();
    }
    let sync = started.elapsed().as_secs_f64() * 1e6 / f64::from(N);
    let smallest = bare::sync::weft::handler::types::Cloudevent {
        id: "1".into(),
        source: "/".into(),
        type_: "t".into(),
        specversion: "1.0".into(),
        datacontenttype: None,
        dataschema: None,
        subject: None,
        time: None,
        extensions: Vec::new(),
        data: None,
    };
    let bare_delivery = bare::sync::weft::handler::types::Delivery {
        topic: "t".into(),
        key: None,
        headers: Vec::new(),
        ..sync_delivery
    };
    let started = Instant::now();
    for _ in 0..N {
        handler.call_handle(&mut store, &smallest, &bare_delivery).unwrap().unwrap();
    }
    let floor = started.elapsed().as_secs_f64() * 1e6 / f64::from(N);

    let mut linker = Linker::<bare::State>::new(&engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).unwrap();
    bare::Handler::add_to_linker::<_, HasSelf<bare::State>>(&mut linker, |s| s).unwrap();
    let mut store = Store::new(&engine, bare::State::new());
    store.set_epoch_deadline(u64::MAX / 2);
    let handler = bare::Handler::instantiate_async(&mut store, &component, &linker).await.unwrap();
    let async_event = copy!(event bare::weft::handler::types::Cloudevent, event);
    let async_delivery = copy!(delivery bare::weft::handler::types::Delivery, delivery);
    let started = Instant::now();
    for _ in 0..N {
        handler.call_handle(&mut store, &async_event, &async_delivery).await.unwrap().unwrap();
    }
    (sync, floor, started.elapsed().as_secs_f64() * 1e6 / f64::from(N))
}

/// A record's headers and value, and its delivery.
type Input<'a> = (&'a [(&'a str, Option<&'a [u8]>)], &'a [u8], &'a weft::sandbox::plugin::Delivery);

/// Per-event µs of decoding `value` and handing the event to `plugin`, or to a native Rust
/// handler that returns at once or (`parse`) parses the data as JSON.
async fn dispatch(plugin: Option<&Plugin>, parse: bool, (headers, value, delivery): Input<'_>) -> f64 {
    let once = || async {
        let (event, _) = decode(headers, Some(value)).unwrap();
        match plugin {
            Some(plugin) => {
                plugin.handle(&event.into(), delivery).await.unwrap();
            }
            None if parse => {
                let data = event.data.as_deref().unwrap_or_default();
                std::hint::black_box(serde_json::from_slice::<serde_json::Value>(data).unwrap());
            }
            None => {
                std::hint::black_box(event);
            }
        }
    };
    for _ in 0..1_000 {
        once().await;
    }
    let started = Instant::now();
    for _ in 0..100_000 {
        once().await;
    }
    started.elapsed().as_secs_f64() * 1e6 / 100_000.0
}

fn main() {
    let data = format!(r#"{{"task_id":"task-42","user_id":"user-7","note":"{}"}}"#, "x".repeat(960));
    let structured = format!(
        r#"{{"specversion":"1.0","id":"7f3c1a52","source":"/todo/api","type":"com.example.task.created","time":"2026-11-23T09:30:00Z","datacontenttype":"application/json","traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01","data":{data}}}"#
    );
    let ct_structured: &[u8] = b"application/cloudevents+json";
    let structured_headers = [("content-type", Some(ct_structured))];
    let binary_headers: [(&str, Option<&[u8]>); 6] = [
        ("ce_specversion", Some(b"1.0")),
        ("ce_id", Some(b"7f3c1a52")),
        ("ce_source", Some(b"/todo/api")),
        ("ce_type", Some(b"com.example.task.created")),
        ("ce_traceparent", Some(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")),
        ("content-type", Some(b"application/json")),
    ];

    measure("decode structured (1 KiB, JSON data)", 1.2, 200_000, || {
        std::hint::black_box(decode(&structured_headers, Some(structured.as_bytes())).unwrap());
    });
    measure("decode binary (1 KiB)", 1.2, 200_000, || {
        std::hint::black_box(decode(&binary_headers, Some(data.as_bytes())).unwrap());
    });

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let wasm = Runtime::new().unwrap();
        let compile = Instant::now();
        let limits = Limits::from_config(&Config::with_brokers("unused:9092"));
        let load_with = |wasm, limits, settings: PluginConfig| async move {
            Plugin::load(&wasm, Path::new(ECHO), &settings, limits, Arc::new(Emitter::discard()))
                .await
                .unwrap()
        };
        let load = |wasm, limits| load_with(wasm, limits, PluginConfig::default());
        let plugin = load(wasm.clone(), limits).await;
        println!(
            "{:<44} {:>8.1} ms",
            "load echo.wasm (compile + describe)",
            compile.elapsed().as_secs_f64() * 1e3
        );
        // A reload as the catalog does it, with the compiled-plugin cache warm: what is left of a
        // swap besides compilation is instantiating the new version and calling its describe().
        let cache_dir = std::env::temp_dir().join(format!("weft-bench-cache-{}", std::process::id()));
        let cached =
            Runtime::with_options(&RuntimeOptions { fuel: false, cache_dir: Some(cache_dir.clone()) })
                .unwrap();
        load(cached.clone(), limits).await;
        let mut compile_ms = Vec::new();
        let mut rest_ms = Vec::new();
        for _ in 0..20 {
            let started = Instant::now();
            let reloaded = load(cached.clone(), limits).await;
            assert!(reloaded.from_cache);
            let total = started.elapsed();
            compile_ms.push(reloaded.compile_time.as_secs_f64() * 1e3);
            rest_ms.push((total - reloaded.compile_time).as_secs_f64() * 1e3);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        println!("{:<44} {:>8.2} ms", "reload: compiled form from the cache", median(&mut compile_ms));
        println!("{:<44} {:>8.2} ms", "reload: instantiate + describe (swap cost)", median(&mut rest_ms));
        let _ = std::fs::remove_dir_all(cache_dir);
        let (event, headers) = decode(&structured_headers, Some(structured.as_bytes())).unwrap();
        let record = Record {
            topic: "task-events".into(),
            partition: 0,
            offset: 0,
            key: Some(b"user-7".to_vec()),
            timestamp_ms: Some(0),
            headers,
        };
        let event = event.into();
        let delivery = weft::sandbox::plugin::delivery(&record, 1);
        let calls = |plugin: Plugin, iterations: u32| {
            let (event, delivery) = (&event, &delivery);
            async move {
                for _ in 0..iterations / 100 {
                    plugin.handle(event, delivery).await.unwrap();
                }
                let started = Instant::now();
                for _ in 0..iterations {
                    plugin.handle(event, delivery).await.unwrap();
                }
                started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
            }
        };
        let report = |name: &str, per: f64, baseline: f64, against: &str| {
            println!(
                "{name:<44} {per:>8.3} µs/event  {against} {baseline:>7.2} µs  ratio {:>5.2}",
                per / baseline
            );
        };
        let noop_settings = PluginConfig {
            config: [("noop".to_string(), "1".to_string())].into(),
            ..PluginConfig::default()
        };
        let noop = load_with(wasm.clone(), limits, noop_settings).await;
        let through_weft = calls(noop, 100_000).await;
        report("plugin call, handler returns at once", through_weft, 1.2, "baseline");
        let (sync, floor, direct_async) = raw_calls(&event, &delivery).await;
        report("  the same, bare async call (no pool, deadline)", direct_async, through_weft, "weft");
        report("  the same, bare sync call", sync, direct_async, "async");
        report("  bare sync call, smallest event (the floor)", floor, sync, "sync");
        let pooled = calls(plugin, 100_000).await;
        report("plugin call (1 KiB event, 1 emit, pooled)", pooled, 1.2, "baseline");
        let fresh = load(wasm.clone(), Limits { instances: InstanceStrategy::Fresh, ..limits }).await;
        report("plugin call, fresh instance per event", calls(fresh, 10_000).await, pooled, "pooled");
        let metered = Runtime::with_options(&RuntimeOptions { fuel: true, cache_dir: None }).unwrap();
        let fueled = load(metered, Limits { fuel: Some(100_000_000), ..limits }).await;
        report("plugin call, pooled, fuel metered", calls(fueled, 100_000).await, pooled, "pooled");

        // Dispatch only (no Kafka): decode a structured 1 KiB event and hand it to a handler that
        // returns at once or parses the data as JSON, in WebAssembly and as native Rust.
        let parse_settings = PluginConfig {
            config: [("parse".to_string(), "1".to_string())].into(),
            ..PluginConfig::default()
        };
        let noop_settings = PluginConfig {
            config: [("noop".to_string(), "1".to_string())].into(),
            ..PluginConfig::default()
        };
        let parse = load_with(wasm.clone(), limits, parse_settings).await;
        let noop = load_with(wasm.clone(), limits, noop_settings).await;
        let input = (&structured_headers[..], structured.as_bytes(), &delivery);
        let native_noop = dispatch(None, false, input).await;
        let native_parse = dispatch(None, true, input).await;
        let wasm_noop = dispatch(Some(&noop), false, input).await;
        let wasm_parse = dispatch(Some(&parse), true, input).await;
        report("dispatch: decode + native no-op", native_noop, native_noop, "native");
        report("dispatch: decode + WASM no-op", wasm_noop, native_noop, "native");
        report("dispatch: decode + native JSON parse", native_parse, native_parse, "native");
        report("dispatch: decode + WASM JSON parse", wasm_parse, native_parse, "native");

        schema_checks(&binary_headers, &data).await;
    });
}

/// What a schema check adds to an event, next to decoding it without one: a JSON Schema on the
/// 1 KiB data, and (with a registry in `WEFT_TEST_REGISTRY`, as `scripts/bench.sh` starts one)
/// decoding a 1 KiB Avro record to JSON with the writer's schema cached.
async fn schema_checks(headers: &[(&str, Option<&[u8]>)], data: &str) {
    let task = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["task_id", "user_id", "note"],
        "properties": {
            "task_id": {"type": "string", "pattern": "^task-[0-9]+$"},
            "user_id": {"type": "string", "minLength": 1},
            "note": {"type": "string", "maxLength": 4096}
        },
        "additionalProperties": false
    }"#;
    let path = std::env::temp_dir().join(format!("weft-bench-task-{}.json", std::process::id()));
    std::fs::write(&path, task).unwrap();
    let address = path.display().to_string();
    let schemas = JsonSchemas::new(std::time::Duration::from_secs(1));
    let validator = schemas.load(&address).unwrap();
    let _ = std::fs::remove_file(&path);
    let plain = per_event(200_000, || {
        std::hint::black_box(decode(headers, Some(data.as_bytes())).unwrap());
    });
    let checked = per_event(200_000, || {
        let (event, _) = decode(headers, Some(data.as_bytes())).unwrap();
        json::check(&validator, &address, event.data.as_deref()).unwrap();
    });
    println!("{:<44} {plain:>8.3} µs/event", "decode binary (1 KiB), no schema");
    println!(
        "{:<44} {checked:>8.3} µs/event  no schema {plain:>7.2} µs  ratio {:>5.2}",
        "decode binary + JSON Schema check",
        checked / plain
    );
    println!("{:<44} {:>8.3} µs/event", "  the check alone", checked - plain);

    let Ok(url) = std::env::var("WEFT_TEST_REGISTRY") else {
        println!("{:<44} (set WEFT_TEST_REGISTRY to a registry to measure)", "Avro decode to JSON");
        return;
    };
    let schema = r#"{"type": "record", "name": "Task", "fields": [
        {"name": "task_id", "type": "string"}, {"name": "user_id", "type": "string"}, {"name": "note", "type": "string"}]}"#;
    let subject = format!("weft-bench-{}-value", std::process::id());
    let body = serde_json::json!({ "schema": schema }).to_string();
    let registered: serde_json::Value = reqwest::Client::new()
        .post(format!("{url}/subjects/{subject}/versions"))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = registered["id"].as_u64().unwrap() as u32;
    let parsed = apache_avro::Schema::parse_str(schema).unwrap();
    let value: serde_json::Value = serde_json::from_str(data).unwrap();
    let value = apache_avro::types::Value::try_from(value).unwrap().resolve(&parsed).unwrap();
    let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&parsed).build().unwrap();
    let mut record = vec![0];
    record.extend_from_slice(&id.to_be_bytes());
    record.extend(writer.write_value_to_vec(value).unwrap());
    let config = weft::config::RegistryConfig {
        url,
        username: None,
        password: None,
        timeout_ms: 5_000,
        refresh_ms: 30_000,
    };
    let registry = Registry::new(&config).unwrap();
    registry.decode(Some(&record), true, None).await.unwrap();
    let iterations = 100_000;
    let started = Instant::now();
    for _ in 0..iterations {
        std::hint::black_box(registry.decode(Some(&record), true, None).await.unwrap());
    }
    let avro = started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations);
    println!(
        "{:<44} {avro:>8.3} µs/event  no schema {plain:>7.2} µs  ratio {:>5.2}",
        "Avro decode to JSON (1 KiB, cached schema)",
        avro / plain
    );
}

/// Microseconds per call of `f`, after a warm-up.
fn per_event(iterations: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iterations / 10 {
        f();
    }
    let started = Instant::now();
    for _ in 0..iterations {
        f();
    }
    started.elapsed().as_secs_f64() * 1e6 / f64::from(iterations)
}
