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
use wasmtime::component::{HasSelf, Linker, ResourceTable};
use wasmtime::{Engine, StoreLimits};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::bindings::{self, EmitError as WitEmitError, LogLevel};
use crate::emit::{EmitError, Emitter};

/// How often the epoch advances. A running plugin yields to the async runtime at every tick and is
/// stopped at the first tick past its deadline, so this is the resolution of `timeout_ms`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The error a store's epoch callback raises when a call runs past its deadline.
#[derive(Debug, thiserror::Error)]
#[error("the handler ran past its {0:?} deadline")]
pub struct DeadlineExceeded(pub Duration);

/// Engine-wide choices, fixed for the life of the process.
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Meter fuel (needed when any plugin has a fuel limit).
    pub fuel: bool,
    /// Keep compiled components in this directory (wasmtime's cache, keyed by the component's
    /// bytes and the engine's compilation settings).
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
            let mut cache_config = wasmtime::CacheConfig::new();
            cache_config.with_directory(dir);
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
    /// Events accepted from the current call.
    pub(crate) emitted: usize,
    /// When the current call must stop.
    pub(crate) deadline: Instant,
    /// The limit that set `deadline`, reported when it passes.
    pub(crate) timeout: Duration,
    /// The event being handled, for log lines written by the plugin.
    pub(crate) current_event: Option<String>,
    /// The handler call's trace context, given to emitted events that carry none.
    pub(crate) traceparent: Option<String>,
}

impl HostState {
    /// A fresh state: no network, and only the granted directories (read-only) and environment
    /// variables; stderr goes to the host's stderr so a guest panic message is visible.
    pub fn new(env: Arc<PluginEnv>, limits: StoreLimits) -> anyhow::Result<Self> {
        let mut builder = WasiCtx::builder();
        builder.inherit_stderr().allow_ip_name_lookup(false);
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
            limits: Limiter { limits, memory_bytes: 0 },
            env,
            pending: Vec::new(),
            emitted: 0,
            deadline: Instant::now(),
            timeout: Duration::ZERO,
            current_event: None,
            traceparent: None,
        })
    }
}

/// The store's resource limiter: wasmtime's `StoreLimits`, plus the size of linear memory the
/// instance has grown to (reported as `weft_plugin_memory_bytes`).
pub struct Limiter {
    limits: StoreLimits,
    /// Bytes of linear memory the instance holds.
    pub memory_bytes: usize,
}

impl wasmtime::ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if allowed {
            self.memory_bytes = desired;
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
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
        let plugin = self.env.id.as_str();
        let event = self.current_event.as_deref().unwrap_or("");
        match level {
            LogLevel::Trace => tracing::trace!(plugin, ce.id = event, "{message}"),
            LogLevel::Debug => tracing::debug!(plugin, ce.id = event, "{message}"),
            LogLevel::Info => tracing::info!(plugin, ce.id = event, "{message}"),
            LogLevel::Warn => tracing::warn!(plugin, ce.id = event, "{message}"),
            LogLevel::Error => tracing::error!(plugin, ce.id = event, "{message}"),
        }
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
        let mut event: crate::event::CloudEvent = event.into();
        if let Some(traceparent) = &self.traceparent
            && event.extension("traceparent").is_none()
        {
            event.extensions.push(("traceparent".into(), traceparent.clone()));
        }
        match self.env.emitter.send(&topic, event, key.as_deref()) {
            Ok(delivery) => {
                self.pending.extend(delivery);
                self.emitted += 1;
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
