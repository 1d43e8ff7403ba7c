//! A loaded plugin: one compiled component checked against the `handler` world (or a native
//! handler), what it said about itself in `describe()`, the settings in effect for it, and what
//! calls it (its instances: `instances.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use crate::config::{InstanceStrategy, PluginConfig, RetryPolicy, SubscriptionSpec};
use crate::failure::Failure;
use crate::kafka_out::emit::{Emits, Emitter};
use crate::sandbox::bindings::HandlerPre;
pub use crate::sandbox::description::Description;
use crate::sandbox::host_state::PluginEnv;
use crate::sandbox::instances::{Instances, one_line};
pub use crate::sandbox::limits::Limits;
use crate::sandbox::runtime::Runtime;

/// The event and delivery types handlers receive, as the WIT defines them.
pub use crate::sandbox::bindings::types::RetryableError;
pub use crate::sandbox::bindings::{Cloudevent, Delivery, HandleError, delivery};

/// The world every plugin must implement.
pub const WORLD: &str = "weft:handler/handler@0.1.0";

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
    /// The plugin's metric series, looked up once.
    series: std::sync::OnceLock<crate::ops::metrics::PluginSeries>,
}

/// What handles a plugin's events: a sandboxed component, or native code.
enum Body {
    /// Boxed: the instances are large, and a native handler is an `Arc`.
    Component(Box<Instances>),
    Native(Arc<dyn NativeHandler>),
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
            log: Arc::new(crate::sandbox::plugin_log::PluginLog::new(&id)),
            summarize: std::sync::atomic::AtomicBool::new(false),
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
            body: Body::Component(Box::new(Instances::new(pre, env, runtime.clone(), limits))),
        };
        plugin.description = match &plugin.body {
            Body::Component(instances) => instances.describe().await?,
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
        match &self.body {
            Body::Component(instances) => instances.memory_bytes(),
            Body::Native(_) => 0,
        }
    }

    /// Keep (or stop keeping) a summary of every event the plugin emits, returned with its calls'
    /// [`Emits`] (a shadow version compares them). Native handlers keep none.
    pub fn summarize_emits(&self, on: bool) {
        if let Body::Component(instances) = &self.body {
            instances.summarize(on);
        }
    }

    /// Log lines this plugin wrote past its rate cap since the last call (see `plugin_log.rs`).
    pub fn log_lines_dropped(&self) -> u64 {
        match &self.body {
            Body::Component(instances) => instances.log_lines_dropped(),
            Body::Native(_) => 0,
        }
    }

    /// Whether a host log line carrying this plugin's text may be written now at `level`, charged
    /// to the plugin's log budget (see `plugin_log.rs`; cut the text with
    /// [`bounded`](crate::sandbox::plugin_log::bounded)). Always for a native handler.
    pub fn admits_log(&self, level: tracing::Level) -> bool {
        match &self.body {
            Body::Component(instances) => instances.log().admit(level),
            Body::Native(_) => true,
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
        description.validate(&format!("native handler {id}"))?;
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
    pub fn series(&self, metrics: &crate::ops::metrics::Metrics) -> &crate::ops::metrics::PluginSeries {
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
        match &self.body {
            Body::Component(instances) => instances.call(event, delivery, traceparent).await,
            Body::Native(handler) => {
                // A panic fails the attempt, as a trap does; the lane goes on.
                let returned = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    handler.handle(event, delivery)
                }))
                .map_err(|panic| Failure::Trap(format!("panic: {}", panic_message(panic.as_ref()))))?;
                returned.map(|()| Emits::none()).map_err(Failure::from)
            }
        }
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
    // `<id>.canary.wasm` is a canary version of plugin `<id>` (see `pipeline/canary.rs`),
    // `<id>.shadow.wasm` a shadow version (see `pipeline/shadow.rs`).
    let base = stem.strip_suffix(".canary").or_else(|| stem.strip_suffix(".shadow")).unwrap_or(stem);
    if base.is_empty()
        || !base.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        bail!(
            "plugin file name {stem:?} must be lowercase letters, digits, '-' or '_' (it becomes the plugin id), \
             optionally followed by .canary or .shadow"
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
}
