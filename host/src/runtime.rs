//! The WebAssembly runtime shared by every plugin: one `Engine`, one `Linker` with WASI and the
//! `weft:handler/host` imports, an epoch ticker for deadlines, and the per-store host state.
//!
//! The engine and linker are built once per process. Components and their `InstancePre` are built
//! once per plugin file (see `plugin.rs`); stores are cheap and live as long as the pooled instance
//! that owns them.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::DeliveryFuture;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, EmitError as WitEmitError, LogLevel};
use crate::emit::{EmitError, Emitter};
use crate::plugin_log::{PluginLog, Stdio};

/// How often the epoch advances. A running plugin yields to the async runtime at every tick and is
/// stopped at the first tick past its deadline, so this is the resolution of `timeout_ms`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The subdirectory of the cache directory that holds compiled plugins (and nothing else).
pub const CACHE_SUBDIR: &str = "compiled";

/// The error a store's epoch callback raises when a call runs past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the handler ran past its {0:?} deadline")]
pub struct DeadlineExceeded(pub Duration);

/// Engine-wide choices, fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Meter fuel (needed when any plugin has a fuel limit).
    pub fuel: bool,
    /// Keep compiled components in the [`CACHE_SUBDIR`] subdirectory of this directory (wasmtime's
    /// cache, keyed by the component's bytes and the engine's compilation settings). Nothing else
    /// in the directory is touched.
    pub cache_dir: Option<std::path::PathBuf>,
}

impl RuntimeOptions {
    /// The options `config` asks for.
    pub fn from_config(config: &crate::Config) -> Self {
        Self { fuel: config.meters_fuel(), cache_dir: config.cache_dir() }
    }
}

/// The engine, the linker and the epoch ticker.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    cache: Option<wasmtime::Cache>,
    fuel: bool,
}

impl Runtime {
    /// A runtime without fuel metering or compilation cache.
    pub fn new() -> anyhow::Result<Arc<Self>> {
        Self::with_options(&RuntimeOptions::default())
    }

    /// Builds the engine (epoch interruption on) and the linker, and starts the epoch ticker. A
    /// cache directory that cannot be used is reported and compilation goes uncached.
    pub fn with_options(options: &RuntimeOptions) -> anyhow::Result<Arc<Self>> {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        config.consume_fuel(options.fuel);
        let cache = options.cache_dir.as_ref().and_then(|dir| {
            // wasmtime's cache removes whatever it does not recognise in its directory: give it
            // one of its own, so nothing else kept in `dir` (a build, a tool) is ever deleted.
            let dir = dir.join(CACHE_SUBDIR);
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(&dir);
            match wasmtime::Cache::new(cache_config) {
                Ok(cache) => Some(cache),
                Err(error) => {
                    tracing::warn!(dir = %dir.display(), error = %error, "compiled-plugin cache unavailable; compiling every load");
                    None
                }
            }
        });
        config.cache(cache.clone());
        let engine =
            Engine::new(&config).map_err(anyhow::Error::from).context("creating the WebAssembly engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("adding WASI to the linker")?;
        bindings::Handler::add_to_linker::<_, HasSelf<HostState>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("adding the weft:handler host imports to the linker")?;
        let ticker = engine.weak();
        thread::Builder::new()
            .name("weft-epoch".into())
            .spawn(move || {
                while let Some(engine) = ticker.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    thread::sleep(EPOCH_TICK);
                }
            })
            .context("starting the epoch ticker")?;
        Ok(Arc::new(Self { engine, linker, cache, fuel: options.fuel }))
    }

    /// Loads served from the compilation cache so far (0 without a cache).
    pub fn cache_hits(&self) -> usize {
        self.cache.as_ref().map_or(0, wasmtime::Cache::cache_hits)
    }

    /// Whether the engine meters fuel.
    pub fn meters_fuel(&self) -> bool {
        self.fuel
    }

    /// The shared engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The shared linker.
    pub fn linker(&self) -> &Linker<HostState> {
        &self.linker
    }
}

/// What a plugin instance may reach: its configuration and where its emitted events go.
pub struct PluginEnv {
    /// The plugin's id (its file name without `.wasm`), for logs.
    pub id: String,
    /// `[plugin.<id>] config`, read by `config-get`.
    pub config: std::collections::BTreeMap<String, String>,
    /// Destination of `emit`.
    pub emitter: Arc<Emitter>,
    /// What the plugin may reach (`[plugin.<id>.grants]`).
    pub grants: crate::config::Grants,
    /// Values of the granted environment variables, read at load.
    pub env_values: Vec<(String, String)>,
    /// Where `log` calls and stdout/stderr go, within caps.
    pub log: Arc<PluginLog>,
}

/// The data of one plugin instance's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and instance caps, enforced by the store's resource limiter.
    pub(crate) limits: Limiter,
    env: Arc<PluginEnv>,
    /// Broker acknowledgements of the events emitted by the current call; awaited before the input
    /// counts as handled.
    pub(crate) pending: Vec<DeliveryFuture>,
    /// What the current call has emitted, against its quota.
    pub(crate) quota: EmitQuota,
    /// When the current call must stop.
    pub(crate) deadline: Instant,
    /// The limit that set `deadline`, reported when it passes.
    pub(crate) timeout: Duration,
    /// The event being handled, for log lines written by the plugin.
    pub(crate) current_event: String,
    /// The handler call's trace context, given to emitted events that carry none.
    pub(crate) traceparent: Option<String>,
}

impl HostState {
    /// A fresh state: no network, and only the granted directories (read-only) and environment
    /// variables; stdout and stderr go to the host's log, line by line, within the plugin's log
    /// caps (so a guest panic message is visible and formatted like every other line).
    pub fn new(env: Arc<PluginEnv>, limits: Limiter) -> anyhow::Result<Self> {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(Stdio::stdout(env.log.clone()))
            .stderr(Stdio::stderr(env.log.clone()))
            .allow_ip_name_lookup(false);
        for dir in &env.grants.dirs {
            builder
                .preopened_dir(&dir.host, &dir.guest, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting directory {} as {}", dir.host.display(), dir.guest))?;
        }
        for (name, value) in &env.env_values {
            builder.env(name, value);
        }
        let wasi = builder.build();
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            env,
            pending: Vec::new(),
            quota: EmitQuota::new(0, 0),
            deadline: Instant::now(),
            timeout: Duration::ZERO,
            current_event: String::new(),
            traceparent: None,
        })
    }
}

/// The events and bytes one call may emit (`plugins.max_emits`, `plugins.max_emit_mib`), and what
/// it has emitted so far. A call past either gets `forbidden` from `emit`, and may go on.
#[derive(Debug, Clone, Copy)]
pub struct EmitQuota {
    max_events: usize,
    max_bytes: usize,
    events: usize,
    bytes: usize,
    refused: bool,
}

impl EmitQuota {
    /// A quota with nothing emitted yet.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self { max_events, max_bytes, events: 0, bytes: 0, refused: false }
    }

    /// Events accepted so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether an event of `bytes` fits. `Err((why, first))`: `first` for the call's first refusal.
    fn check(&mut self, bytes: usize) -> Result<(), (String, bool)> {
        let why = if self.events >= self.max_events {
            format!("this call already emitted {} events, its limit (max_emits)", self.events)
        } else if self.bytes.saturating_add(bytes) > self.max_bytes {
            format!(
                "an event of {bytes} bytes after {} bytes would pass this call's limit of {} bytes (max_emit_mib)",
                self.bytes, self.max_bytes
            )
        } else {
            return Ok(());
        };
        Err((why, !std::mem::replace(&mut self.refused, true)))
    }

    /// Counts an event the destination took.
    fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes;
    }
}

/// Bytes an emitted event takes on the wire, near enough: topic, key, attributes and data.
fn emitted_size(topic: &str, event: &bindings::Cloudevent, key: Option<&[u8]>) -> usize {
    let optional = [&event.datacontenttype, &event.dataschema, &event.subject, &event.time];
    topic.len()
        + key.map_or(0, <[u8]>::len)
        + event.id.len()
        + event.source.len()
        + event.type_.len()
        + event.specversion.len()
        + optional.iter().map(|v| v.as_ref().map_or(0, String::len)).sum::<usize>()
        + event.extensions.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
        + event.data.as_ref().map_or(0, Vec::len)
}

/// Bytes one table element costs the host (a pointer), counted against the memory cap.
pub const TABLE_ELEMENT_BYTES: usize = 8;
/// Core instances one plugin instance may create (a component instantiates several).
pub const MAX_CORE_INSTANCES: usize = 256;
/// Linear memories one plugin instance may hold, across its core instances.
pub const MAX_MEMORIES: usize = 32;
/// Tables one plugin instance may hold, across its core instances.
pub const MAX_TABLES: usize = 256;

/// A store's growth went past the plugin's memory cap.
#[derive(Debug, thiserror::Error)]
#[error("the instance would hold {wanted} bytes of memories and tables, past its {cap}-byte limit")]
pub struct MemoryLimitExceeded {
    /// Bytes the growth asked for, in total.
    pub wanted: usize,
    /// The cap.
    pub cap: usize,
}

/// The store's resource limiter. The cap holds for the instance as a whole: every linear memory
/// and every table (at [`TABLE_ELEMENT_BYTES`] an element) of every core instance the component
/// creates counts against one budget, and the numbers of instances, memories and tables are
/// bounded. Growth past the cap traps (reason `memory_limit`) rather than failing softly, so a
/// plugin cannot keep running in a state it did not expect.
pub struct Limiter {
    cap: usize,
    /// Bytes of linear memory the instance holds, all memories together.
    pub memory_bytes: usize,
    /// Bytes the instance's tables cost, all tables together.
    pub table_bytes: usize,
}

impl Limiter {
    /// A limiter allowing `cap` bytes of memories and tables in all.
    pub fn new(cap: usize) -> Self {
        Self { cap, memory_bytes: 0, table_bytes: 0 }
    }

    /// Memories and tables together, in bytes.
    pub fn total_bytes(&self) -> usize {
        self.memory_bytes + self.table_bytes
    }

    fn grow(
        &mut self,
        what: fn(&mut Self) -> &mut usize,
        current: usize,
        desired: usize,
    ) -> wasmtime::Result<bool> {
        let wanted = self.total_bytes().saturating_sub(current).saturating_add(desired);
        if wanted > self.cap {
            return Err(MemoryLimitExceeded { wanted, cap: self.cap }.into());
        }
        let slot = what(self);
        *slot = slot.saturating_sub(current).saturating_add(desired);
        Ok(true)
    }
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        self.grow(|l| &mut l.memory_bytes, current, desired)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        let bytes = |elements: usize| elements.saturating_mul(TABLE_ELEMENT_BYTES);
        self.grow(|l| &mut l.table_bytes, bytes(current), bytes(desired))
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::types::Host for HostState {}

impl bindings::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let event = self.current_event.as_str();
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        self.env.log.line(level, event, &message);
    }

    fn emit(
        &mut self,
        topic: String,
        event: bindings::Cloudevent,
        key: Option<Vec<u8>>,
    ) -> Result<(), WitEmitError> {
        let allowed = &self.env.grants.emit_topics;
        if !allowed.is_empty() && !allowed.contains(&topic) {
            return Err(WitEmitError::Forbidden(format!(
                "plugin {} may emit to {} only (plugin.{}.grants.emit_topics)",
                self.env.id,
                allowed.join(", "),
                self.env.id
            )));
        }
        let size = emitted_size(&topic, &event, key.as_deref());
        if let Err((why, first)) = self.quota.check(size) {
            let id = &self.env.id;
            if first {
                let event = self.current_event.as_str();
                tracing::warn!(plugin = %id, ce.id = %event, topic, "emit refused: {why}");
            }
            return Err(WitEmitError::Forbidden(format!(
                "plugin {id}: {why} (plugins / plugin.{id}.limits)"
            )));
        }
        let mut event: crate::event::CloudEvent = event.into();
        if let Some(traceparent) = &self.traceparent
            && event.extension("traceparent").is_none()
        {
            event.extensions.push(("traceparent".into(), traceparent.clone()));
        }
        match self.env.emitter.send(&topic, event, key.as_deref()) {
            Ok(delivery) => {
                self.pending.extend(delivery);
                self.quota.add(size);
                Ok(())
            }
            Err(EmitError::InvalidEvent(m)) => Err(WitEmitError::InvalidEvent(m)),
            Err(EmitError::Forbidden(m)) => Err(WitEmitError::Forbidden(m)),
            Err(EmitError::Unavailable(m)) => Err(WitEmitError::Unavailable(m)),
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.env.config.get(&key).cloned()
    }
}

#[cfg(test)]
mod tests {
    use wasmtime::{Instance, Module, Store};

    use super::*;

    /// Whether a file whose name starts with `prefix` exists anywhere under `dir`.
    fn found(dir: &std::path::Path, prefix: &str) -> bool {
        std::fs::read_dir(dir).into_iter().flatten().flatten().any(|entry| {
            entry.file_name().to_string_lossy().starts_with(prefix)
                || (entry.path().is_dir() && found(&entry.path(), prefix))
        })
    }

    #[test]
    fn the_compiled_plugin_cache_leaves_everything_else_in_its_directory_alone() {
        let dir = std::env::temp_dir().join(format!("weft-cache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // What shares a cache directory: a build, a tool's environment, a user's files.
        let foreign = dir.join("target/debug/libweft.rlib");
        std::fs::create_dir_all(foreign.parent().unwrap()).unwrap();
        std::fs::write(&foreign, b"not a compiled plugin").unwrap();

        let runtime =
            Runtime::with_options(&RuntimeOptions { fuel: false, cache_dir: Some(dir.clone()) }).unwrap();
        let component = wat::parse_str("(component)").unwrap();
        wasmtime::component::Component::new(runtime.engine(), &component).unwrap();
        // wasmtime's cache worker cleans its directory after the first write, holding a
        // `.cleanup.wip-<pid>` lock it leaves behind.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while !found(&dir, ".cleanup") && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(found(&dir, ".cleanup"), "the cache worker did not run");
        std::thread::sleep(Duration::from_millis(200));
        assert!(foreign.exists(), "the cache's cleanup deleted a file that is not a compiled plugin");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A core module with two memories and a table, and exports that grow them.
    const GROWER: &str = r#"(module
        (memory 1) (memory $second 1)
        (table 1 funcref)
        (func (export "grow0") (param i32) (result i32) (memory.grow 0 (local.get 0)))
        (func (export "grow1") (param i32) (result i32) (memory.grow $second (local.get 0)))
        (func (export "grow_table") (param i32) (result i32) (table.grow 0 (ref.null func) (local.get 0))))"#;

    fn store(cap: usize) -> (Store<Limiter>, Instance) {
        let engine = Engine::default();
        let module = Module::new(&engine, wat::parse_str(GROWER).unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(cap));
        store.limiter(|limiter| limiter);
        let instance = Instance::new(&mut store, &module, &[]).unwrap();
        (store, instance)
    }

    fn grow(store: &mut Store<Limiter>, instance: &Instance, export: &str, by: i32) -> wasmtime::Result<i32> {
        instance.get_typed_func::<i32, i32>(&mut *store, export).unwrap().call(&mut *store, by)
    }

    const PAGE: usize = 64 << 10;

    #[test]
    fn the_cap_holds_for_all_memories_together() {
        let (mut store, instance) = store(64 << 20);
        assert_eq!(store.data().memory_bytes, 2 * PAGE);
        // 40 MiB in the first memory fits; 40 more in the second does not.
        grow(&mut store, &instance, "grow0", 640).unwrap();
        let error = grow(&mut store, &instance, "grow1", 640).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some(), "{error:?}");
        assert_eq!(store.data().memory_bytes, 641 * PAGE + PAGE, "the gauge counts every memory");
    }

    #[test]
    fn a_huge_table_grow_traps_instead_of_allocating() {
        let (mut store, instance) = store(64 << 20);
        let error = grow(&mut store, &instance, "grow_table", 1 << 28).unwrap_err();
        assert!(error.downcast_ref::<MemoryLimitExceeded>().is_some(), "{error:?}");
        // A modest table still grows, and counts.
        assert_eq!(grow(&mut store, &instance, "grow_table", 1_000).unwrap(), 1);
        assert_eq!(store.data().table_bytes, 1_001 * TABLE_ELEMENT_BYTES);
    }

    #[test]
    fn counts_of_memories_and_instances_are_bounded() {
        let engine = Engine::default();
        let memories: String = (0..=MAX_MEMORIES).map(|_| "(memory 0)").collect();
        let module = Module::new(&engine, wat::parse_str(format!("(module {memories})")).unwrap()).unwrap();
        let mut store = Store::new(&engine, Limiter::new(64 << 20));
        store.limiter(|limiter| limiter);
        let error = Instance::new(&mut store, &module, &[]).unwrap_err();
        assert!(format!("{error:#}").contains("memor"), "{error:#}");
    }
}
