//! A loaded plugin: one compiled component checked against the `handler` world, what it said about
//! itself in `describe()`, and a pool of ready instances that handle events.
//!
//! # Instances
//! Each instance owns its `Store`. After a call that returned normally (handled, or a failure the
//! plugin reported) the instance goes back to the pool and serves the next event, so the per-event
//! cost is a call, not an instantiation. An instance whose call trapped or timed out is dropped with
//! its store: its memory may be corrupt. State a plugin keeps in globals is therefore per instance
//! and can vanish at any time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Store, UpdateDeadline};

use crate::bindings::{Handler, HandlerPre};
use crate::config::{Config, InstanceStrategy, PluginConfig};
use crate::emit::Emitter;
use crate::retry::RetryPolicy;
use crate::route::SubscriptionSpec;
use crate::runtime::{DeadlineExceeded, EPOCH_TICK, HostState, PluginEnv, Runtime};

/// The event and delivery types handlers receive, as the WIT defines them.
pub use crate::bindings::types::RetryableError;
pub use crate::bindings::{Cloudevent, Delivery, HandleError, delivery};

/// The world every plugin must implement.
pub const WORLD: &str = "weft:handler/handler@0.1.0";

/// Why one call into a plugin did not handle the event. The consumer maps these to its delivery
/// policy; the `reason` codes are the bounded values used in logs and metrics.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Failure {
    /// The plugin returned `retryable`.
    #[error("retryable error: {reason}")]
    Retryable {
        /// The plugin's message.
        reason: String,
        /// The plugin's delay hint.
        delay: Option<Duration>,
    },
    /// The plugin returned `permanent`.
    #[error("permanent error: {0}")]
    Permanent(String),
    /// The call trapped (panic, unreachable, out-of-bounds access, memory limit).
    #[error("trap: {0}")]
    Trap(String),
    /// The call ran past the plugin's deadline.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The instance tried to grow its memory past the plugin's limit.
    #[error("memory limit: {0}")]
    MemoryLimit(String),
    /// The call burned all the fuel it was given.
    #[error("fuel exhausted after {0} units")]
    FuelExhausted(u64),
    /// An event the plugin emitted was refused by the broker for a reason that retrying will not
    /// change soon (too large, not authorized, invalid).
    #[error("emitted event not delivered: {0}")]
    Emit(String),
    /// An event the plugin emitted was not acknowledged because the cluster is unreachable or
    /// unhealthy (timeouts, no leader, not enough replicas).
    #[error("emitted event not delivered, cluster unavailable: {0}")]
    EmitUnavailable(String),
}

impl Failure {
    /// A bounded code for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Failure::Retryable { .. } => "retryable_error",
            Failure::Permanent(_) => "permanent_error",
            Failure::Trap(_) => "trap",
            Failure::Timeout(_) => "timeout",
            Failure::MemoryLimit(_) => "memory_limit",
            Failure::FuelExhausted(_) => "fuel_exhausted",
            Failure::Emit(_) => "emit_failed",
            Failure::EmitUnavailable(_) => "emit_unavailable",
        }
    }

    fn from_call(error: wasmtime::Error, fuel: Option<u64>) -> Self {
        if let Some(DeadlineExceeded(after)) = error.downcast_ref::<DeadlineExceeded>() {
            return Failure::Timeout(*after);
        }
        if let Some(wasmtime::Trap::OutOfFuel) = error.downcast_ref::<wasmtime::Trap>() {
            return Failure::FuelExhausted(fuel.unwrap_or(0));
        }
        let message = format!("{error:#}").replace('\n', " ");
        // The store limiter traps on growth past the cap (`MemoryLimitExceeded`); an instance whose
        // initial memories already exceed it fails to instantiate.
        if error.downcast_ref::<crate::runtime::MemoryLimitExceeded>().is_some()
            || message.contains("memory minimum size")
        {
            return Failure::MemoryLimit(message);
        }
        Failure::Trap(message)
    }
}

impl From<HandleError> for Failure {
    /// What a handler returned.
    fn from(error: HandleError) -> Self {
        match error {
            HandleError::Retryable(e) => {
                Failure::Retryable { reason: e.reason, delay: e.delay_ms.map(Duration::from_millis) }
            }
            HandleError::Permanent(reason) => Failure::Permanent(reason),
        }
    }
}

/// What the plugin said about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Description {
    /// `plugin-info.name`.
    pub name: String,
    /// `plugin-info.version`.
    pub version: String,
    /// `plugin-info.description`.
    pub description: String,
    /// The subscriptions the plugin asked for.
    pub subscriptions: Vec<SubscriptionSpec>,
}

/// Per-plugin sandbox limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Limits {
    /// Wall-clock deadline of one call.
    #[serde(serialize_with = "as_millis", rename = "timeout_ms")]
    pub timeout: Duration,
    /// Memory one instance may hold, in bytes: all its linear memories and tables together.
    pub memory_bytes: usize,
    /// Fuel one call may burn; `None`: unmetered.
    pub fuel: Option<u64>,
    /// Instances that may exist at once.
    pub max_instances: usize,
    /// Events one call may emit.
    pub max_emits: usize,
    /// Bytes one call may emit (data, attributes and keys).
    pub max_emit_bytes: usize,
    /// Whether instances serve many events or one.
    pub instances: InstanceStrategy,
}

fn as_millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Limits {
    /// The limits `config` sets for every plugin.
    pub fn from_config(config: &Config) -> Self {
        let p = &config.plugins;
        Self {
            timeout: Duration::from_millis(p.timeout_ms),
            memory_bytes: mib(p.memory_limit_mib),
            fuel: p.fuel,
            max_instances: p.max_instances,
            max_emits: p.max_emits,
            max_emit_bytes: mib(p.max_emit_mib),
            instances: p.instances,
        }
    }

    /// The limits of plugin `id`: `[plugins]`, then `[plugin.<id>.limits]`.
    pub fn for_plugin(config: &Config, id: &str) -> Self {
        let global = Self::from_config(config);
        let Some(o) = config.plugin.get(id).map(|p| &p.limits) else { return global };
        Self {
            timeout: o.timeout_ms.map_or(global.timeout, Duration::from_millis),
            memory_bytes: o.memory_limit_mib.map_or(global.memory_bytes, mib),
            fuel: o.fuel.or(global.fuel),
            max_instances: o.max_instances.unwrap_or(global.max_instances),
            max_emits: o.max_emits.unwrap_or(global.max_emits),
            max_emit_bytes: o.max_emit_mib.map_or(global.max_emit_bytes, mib),
            instances: o.instances.unwrap_or(global.instances),
        }
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1 << 20)).unwrap_or(usize::MAX)
}

struct Instance {
    store: Store<HostState>,
    handler: Handler,
}

/// A loaded, checked plugin.
pub struct Plugin {
    /// The plugin's id: its file name without `.wasm`. Configuration (`[plugin.<id>]`), logs and
    /// metrics use it.
    pub id: String,
    /// The file it was loaded from.
    pub path: PathBuf,
    /// SHA-256 of the file, hex.
    pub digest: String,
    /// What `describe()` returned.
    pub description: Description,
    /// The subscriptions in effect: the configured override, or the described ones.
    pub subscriptions: Vec<SubscriptionSpec>,
    /// The retry policy in effect for this plugin.
    pub retry: RetryPolicy,
    /// Time spent compiling the component and checking it against the world (near zero when the
    /// compiled form came from the cache).
    pub compile_time: Duration,
    /// Whether the compiled form came from the cache.
    pub from_cache: bool,
    /// When the file this version came from was seen stable, for a version that replaced or joined
    /// the running set: the swap latency is measured from there to this version's first event.
    pub stable_at: Option<Instant>,
    first_event: std::sync::atomic::AtomicBool,
    limits: Limits,
    /// What handles the events.
    body: Body,
    /// Linear memory of the largest instance seen after a call, in bytes.
    memory_bytes: std::sync::atomic::AtomicUsize,
    /// The plugin's metric series, looked up once.
    series: std::sync::OnceLock<crate::metrics::PluginSeries>,
}

/// What handles a plugin's events: a sandboxed component, or native code.
enum Body {
    Component(Sandbox),
    Native(Arc<dyn NativeHandler>),
}

/// A component and its instances.
struct Sandbox {
    pre: HandlerPre<HostState>,
    env: Arc<PluginEnv>,
    runtime: Arc<Runtime>,
    pool: Mutex<Vec<Instance>>,
    /// One permit per instance that may exist (`max_instances`).
    permits: tokio::sync::Semaphore,
}

/// An event handler compiled into the program that embeds Weft (see
/// [`crate::Host::start_with`]), called on the same path as a component: same routing, lanes,
/// ordering, retries, dead letters, offsets and metrics, but no sandbox (no deadline, memory
/// limit or fuel; a panic fails the attempt as a trap does) and no host imports. It is how the benchmarks show what
/// the WebAssembly call itself costs, and how a program adds a handler of its own next to the
/// plugins directory.
pub trait NativeHandler: Send + Sync + 'static {
    /// Handles one event, as a component's `handle` export does.
    fn handle(&self, event: &Cloudevent, delivery: &Delivery) -> Result<(), HandleError>;
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin").field("id", &self.id).field("digest", &self.short_digest()).finish()
    }
}

impl Plugin {
    /// Loads the component at `path`: compiles it (off the async runtime), checks it implements the
    /// world, calls `describe()` and validates the answer. Errors are one-line reasons.
    pub async fn load(
        runtime: &Arc<Runtime>,
        path: &Path,
        settings: &PluginConfig,
        limits: Limits,
        emitter: Arc<Emitter>,
    ) -> anyhow::Result<Self> {
        let bytes = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
        Self::from_bytes(runtime, path, bytes, settings, limits, emitter).await
    }

    /// [`Plugin::load`] of the contents `bytes` read from `path`.
    pub async fn from_bytes(
        runtime: &Arc<Runtime>,
        path: &Path,
        bytes: Vec<u8>,
        settings: &PluginConfig,
        limits: Limits,
        emitter: Arc<Emitter>,
    ) -> anyhow::Result<Self> {
        let id = plugin_id(path)?;
        let digest = digest(&bytes);
        check_header(&bytes)?;
        let engine = runtime.engine().clone();
        let started = Instant::now();
        let hits = runtime.cache_hits();
        let component = tokio::task::spawn_blocking(move || Component::new(&engine, &bytes))
            .await
            .context("compiler task failed")?
            .map_err(|e| anyhow!("not a valid WebAssembly component: {}", one_line(&e)))?;
        let pre = runtime
            .linker()
            .instantiate_pre(&component)
            .map_err(|e| anyhow!("does not implement {WORLD}: {}", one_line(&e)))?;
        let pre =
            HandlerPre::new(pre).map_err(|e| anyhow!("does not implement {WORLD}: {}", one_line(&e)))?;
        let compile_time = started.elapsed();
        let from_cache = runtime.cache_hits() > hits;
        let env_values = settings
            .grants
            .env
            .iter()
            .filter_map(|name| std::env::var(name).ok().map(|value| (name.clone(), value)))
            .collect();
        let env = Arc::new(PluginEnv {
            id: id.clone(),
            config: settings.config.clone(),
            emitter,
            grants: settings.grants.clone(),
            env_values,
            log: Arc::new(crate::plugin_log::PluginLog::new(&id)),
        });
        let mut plugin = Plugin {
            id,
            path: path.to_path_buf(),
            digest,
            description: Description {
                name: String::new(),
                version: String::new(),
                description: String::new(),
                subscriptions: Vec::new(),
            },
            subscriptions: Vec::new(),
            retry: RetryPolicy::default(),
            compile_time,
            from_cache,
            stable_at: None,
            first_event: std::sync::atomic::AtomicBool::new(false),
            series: std::sync::OnceLock::new(),
            limits,
            body: Body::Component(Sandbox {
                pre,
                env,
                runtime: runtime.clone(),
                pool: Mutex::new(Vec::new()),
                permits: tokio::sync::Semaphore::new(limits.max_instances),
            }),
            memory_bytes: std::sync::atomic::AtomicUsize::new(0),
        };
        plugin.description = match &plugin.body {
            Body::Component(sandbox) => plugin.describe(sandbox).await?,
            Body::Native(_) => unreachable!("a component was just built"),
        };
        plugin.subscriptions = match &settings.subscriptions {
            Some(overridden) => overridden.clone(),
            None => plugin.description.subscriptions.clone(),
        };
        Ok(plugin)
    }

    /// Linear memory of the largest instance after a call, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Log lines this plugin wrote past its rate cap since the last call (see `plugin_log.rs`).
    pub fn log_lines_dropped(&self) -> u64 {
        match &self.body {
            Body::Component(sandbox) => sandbox.env.log.take_dropped(),
            Body::Native(_) => 0,
        }
    }

    /// Whether this is a [`NativeHandler`], not a component.
    pub fn is_native(&self) -> bool {
        matches!(self.body, Body::Native(_))
    }

    /// A [`NativeHandler`] as a plugin with id `id` (the rules of a plugin file's name), described by
    /// `description` (its subscriptions are the ones in effect). Its digest is the SHA-256 of
    /// `native:<id>`; its retry policy is the default until the host applies the configuration.
    pub fn native(
        id: &str,
        description: Description,
        handler: Arc<dyn NativeHandler>,
    ) -> anyhow::Result<Self> {
        let id = plugin_id(Path::new(&format!("{id}.wasm")))?;
        if description.name.is_empty() {
            bail!("native handler {id}: the description has an empty name");
        }
        for (i, sub) in description.subscriptions.iter().enumerate() {
            sub.validate().map_err(|e| anyhow!("native handler {id}: subscription {i}: {e}"))?;
        }
        Ok(Plugin {
            digest: digest(format!("native:{id}").as_bytes()),
            path: PathBuf::new(),
            subscriptions: description.subscriptions.clone(),
            description,
            retry: RetryPolicy::default(),
            compile_time: Duration::ZERO,
            from_cache: false,
            stable_at: None,
            first_event: std::sync::atomic::AtomicBool::new(false),
            series: std::sync::OnceLock::new(),
            limits: Limits {
                timeout: Duration::MAX,
                memory_bytes: usize::MAX,
                fuel: None,
                max_instances: usize::MAX,
                max_emits: 0,
                max_emit_bytes: 0,
                instances: InstanceStrategy::Reuse,
            },
            body: Body::Native(handler),
            memory_bytes: std::sync::atomic::AtomicUsize::new(0),
            id,
        })
    }

    /// The sandbox limits in effect.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The first 12 hex digits of the digest, for logs.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12]
    }

    /// This plugin's series in `metrics`, resolved at the first call (a label lookup hashes and
    /// locks; this is once per plugin version, not once per event).
    pub fn series(&self, metrics: &crate::metrics::Metrics) -> &crate::metrics::PluginSeries {
        self.series.get_or_init(|| metrics.plugin_series(&self.id))
    }

    /// For a version that went live while running: the time from its file being stable to its
    /// first event, less the compilation — once, at the first event; `None` afterwards.
    pub fn first_event_latency(&self) -> Option<Duration> {
        let stable_at = self.stable_at?;
        let first = &self.first_event;
        if first.load(std::sync::atomic::Ordering::Relaxed)
            || first.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return None;
        }
        Some(stable_at.elapsed().saturating_sub(self.compile_time))
    }

    async fn describe(&self, sandbox: &Sandbox) -> anyhow::Result<Description> {
        let mut instance =
            self.instantiate(sandbox).await.map_err(|e| anyhow!("instantiation failed: {}", one_line(&e)))?;
        let deadline = instance.arm(&self.limits, sandbox.runtime.meters_fuel(), None);
        let info =
            within_deadline(&self.limits, deadline, instance.handler.call_describe(&mut instance.store))
                .await
                .map_err(|e| anyhow!("describe() failed: {}", Failure::from_call(e, self.limits.fuel)))?;
        let description = Description {
            name: info.name,
            version: info.version,
            description: info.description,
            subscriptions: info.subscriptions.into_iter().map(Into::into).collect(),
        };
        if description.name.is_empty() {
            bail!("describe() returned an empty name");
        }
        for (i, sub) in description.subscriptions.iter().enumerate() {
            sub.validate().map_err(|e| anyhow!("describe() subscription {i}: {e}"))?;
        }
        if self.limits.instances == InstanceStrategy::Reuse {
            sandbox.pool.lock().expect("pool lock poisoned").push(instance);
        }
        Ok(description)
    }

    async fn instantiate(&self, sandbox: &Sandbox) -> wasmtime::Result<Instance> {
        let limits = crate::runtime::Limiter::new(self.limits.memory_bytes);
        let state = HostState::new(sandbox.env.clone(), limits).map_err(wasmtime::Error::from_anyhow)?;
        let mut store = Store::new(sandbox.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        if sandbox.runtime.meters_fuel() {
            store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX))?;
        }
        // Instantiation runs the component's start code, which is bounded like a call.
        let state = store.data_mut();
        let deadline = Instant::now() + self.limits.timeout;
        state.timeout = self.limits.timeout;
        state.deadline = deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if Instant::now() >= state.deadline {
                Err(DeadlineExceeded(state.timeout).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let handler =
            within_deadline(&self.limits, deadline, sandbox.pre.instantiate_async(&mut store)).await?;
        Ok(Instance { store, handler })
    }

    /// Calls `handle` for one event and waits until every event it emitted is acknowledged.
    /// Returns how many events it emitted.
    pub async fn handle(&self, event: &Cloudevent, delivery: &Delivery) -> Result<usize, Failure> {
        self.handle_traced(event, delivery, None).await
    }

    /// [`Plugin::handle`] within a trace: events the plugin emits without a `traceparent` get
    /// `traceparent` (the handler call's context).
    pub async fn handle_traced(
        &self,
        event: &Cloudevent,
        delivery: &Delivery,
        traceparent: Option<&str>,
    ) -> Result<usize, Failure> {
        self.call(event, delivery, traceparent).await?.acknowledged().await
    }

    /// Calls `handle` for one event; the events it emitted are on their way to the broker. The
    /// event counts as handled once [`Emits::acknowledged`] says so.
    pub async fn call(
        &self,
        event: &Cloudevent,
        delivery: &Delivery,
        traceparent: Option<&str>,
    ) -> Result<Emits, Failure> {
        let sandbox = match &self.body {
            Body::Component(sandbox) => sandbox,
            Body::Native(handler) => {
                // A panic fails the attempt, as a trap does; the lane goes on.
                let returned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler.handle(event, delivery)
                }))
                .map_err(|panic| Failure::Trap(format!("panic: {}", panic_message(panic.as_ref()))))?;
                return returned.map(|()| Emits { pending: Vec::new(), count: 0 }).map_err(Failure::from);
            }
        };
        // Held until the instance is back in the pool or dropped: at most `max_instances` exist.
        let permit = sandbox.permits.acquire().await.expect("the semaphore is never closed");
        let pooled = sandbox.pool.lock().expect("pool lock poisoned").pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate(sandbox).await.map_err(|e| Failure::from_call(e, self.limits.fuel))?,
        };
        let deadline = instance.arm(&self.limits, sandbox.runtime.meters_fuel(), Some(&event.id));
        instance.store.data_mut().traceparent = traceparent.map(str::to_string);
        let call = instance.handler.call_handle(&mut instance.store, event, delivery);
        let result = within_deadline(&self.limits, deadline, call).await;
        let pending = std::mem::take(&mut instance.store.data_mut().pending);
        let count = instance.store.data().quota.events();
        let returned = match result {
            // The instance trapped: drop it, its state cannot be trusted.
            Err(error) => return Err(Failure::from_call(error, self.limits.fuel)),
            Ok(returned) => returned,
        };
        let memory = instance.store.data().limits.total_bytes();
        self.memory_bytes.fetch_max(memory, std::sync::atomic::Ordering::Relaxed);
        if self.limits.instances == InstanceStrategy::Reuse {
            sandbox.pool.lock().expect("pool lock poisoned").push(instance);
        }
        drop(permit);
        returned.map(|()| Emits { pending, count }).map_err(Failure::from)
    }
}

/// The events one successful call emitted, on their way to the broker.
#[must_use = "the event is handled only once its emitted events are acknowledged"]
pub struct Emits {
    pending: Vec<rdkafka::producer::DeliveryFuture>,
    count: usize,
}

impl Emits {
    /// Whether there is nothing to wait for (no events emitted, or none to Kafka).
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many events the call emitted.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Waits until the broker acknowledged every emitted event; returns how many there were. A
    /// refusal that retrying will not change is [`Failure::Emit`]; an unreachable cluster or a
    /// timeout is [`Failure::EmitUnavailable`].
    pub async fn acknowledged(self) -> Result<usize, Failure> {
        for delivery in self.pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) if crate::kafka::refused_for_good(&error) => {
                    return Err(Failure::Emit(error.to_string()));
                }
                Ok(Err((error, _))) => return Err(Failure::EmitUnavailable(error.to_string())),
                Err(_) => return Err(Failure::EmitUnavailable("the producer shut down".into())),
            }
        }
        Ok(self.count)
    }
}

/// Runs a call into an instance under its wall-clock deadline. The epoch callback stops WebAssembly
/// code that runs past the deadline; this also stops a call that waits in a host function (a WASI
/// sleep, a poll, a blocked read), where no WebAssembly runs and no epoch check happens. It fires
/// one epoch tick after `deadline` (the call's, set by [`Instance::arm`]), so running code is
/// stopped by the epoch check first. A call
/// stopped here is abandoned mid-way: the caller must drop the instance, never pool it.
///
/// Most calls finish at their first poll (the handler never waits): those set no timer at all, and
/// only a call that is still pending after it gets one, due at the same instant.
async fn within_deadline<T>(
    limits: &Limits,
    deadline: Instant,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let mut call = std::pin::pin!(call);
    if let std::task::Poll::Ready(result) = futures::poll!(call.as_mut()) {
        return result;
    }
    match tokio::time::timeout_at((deadline + EPOCH_TICK).into(), call).await {
        Ok(result) => result,
        Err(_) => Err(DeadlineExceeded(limits.timeout).into()),
    }
}

impl Instance {
    /// Prepares the store for one call: a fresh deadline (returned), a full tank of fuel when
    /// metered, and the event id for log attribution.
    fn arm(&mut self, limits: &Limits, metered: bool, event_id: Option<&str>) -> Instant {
        let state = self.store.data_mut();
        let deadline = Instant::now() + limits.timeout;
        state.deadline = deadline;
        state.timeout = limits.timeout;
        // The instance's buffer is reused: no allocation per event.
        state.current_event.clear();
        state.current_event.push_str(event_id.unwrap_or_default());
        state.quota = crate::runtime::EmitQuota::new(limits.max_emits, limits.max_emit_bytes);
        self.store.set_epoch_deadline(1);
        if metered {
            // Plugins without a fuel limit run unmetered in effect.
            let _ = self.store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
        deadline
    }
}

/// SHA-256 of a plugin file, hex: the version's identity in logs, metrics and `/plugins`.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Refuses what is not a WebAssembly component before the compiler sees it, with advice.
fn check_header(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(b"\0asm") {
        bail!("not a WebAssembly file (it does not start with the \\0asm magic bytes)");
    }
    // Bytes 4..8 are the version and layer: layer 0 is a core module, layer 1 a component.
    if bytes.get(6..8) == Some(&[0, 0]) {
        bail!(
            "a core WebAssembly module, not a component: build for wasm32-wasip2 or wrap it with \
             `wasm-tools component new`"
        );
    }
    Ok(())
}

/// The plugin id for `path`: the file name without `.wasm`.
pub fn plugin_id(path: &Path) -> anyhow::Result<String> {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow!("{} has no UTF-8 file name", path.display()))?;
    if stem.is_empty()
        || !stem.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!(
            "plugin file name {stem:?} must be lowercase letters, digits, '-' or '_' (it becomes the plugin id)"
        );
    }
    Ok(stem.to_string())
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a panic without a message")
}

fn one_line(error: &impl std::fmt::Display) -> String {
    format!("{error:#}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_id_is_the_file_stem() {
        assert_eq!(plugin_id(Path::new("/p/audit.wasm")).unwrap(), "audit");
        assert_eq!(plugin_id(Path::new("order-saga_v2.wasm")).unwrap(), "order-saga_v2");
        assert!(plugin_id(Path::new("Audit.wasm")).is_err());
        assert!(plugin_id(Path::new("my plugin.wasm")).is_err());
    }

    #[test]
    fn header_check_explains_what_the_file_is() {
        assert!(check_header(b"hello").unwrap_err().to_string().contains("not a WebAssembly file"));
        let core = wat::parse_str("(module)").unwrap();
        assert!(check_header(&core).unwrap_err().to_string().contains("core WebAssembly module"));
        let component = wat::parse_str("(component)").unwrap();
        assert!(check_header(&component).is_ok());
    }

    #[test]
    fn failure_reasons_are_bounded_codes() {
        assert_eq!(Failure::Permanent("x".into()).reason(), "permanent_error");
        assert_eq!(Failure::Timeout(Duration::from_secs(1)).reason(), "timeout");
        let deadline: wasmtime::Error = DeadlineExceeded(Duration::from_millis(5)).into();
        assert_eq!(Failure::from_call(deadline, None), Failure::Timeout(Duration::from_millis(5)));
        let fuel: wasmtime::Error = wasmtime::Trap::OutOfFuel.into();
        assert_eq!(Failure::from_call(fuel, Some(10)), Failure::FuelExhausted(10));
    }
}
