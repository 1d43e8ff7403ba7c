//! The WebAssembly runtime shared by every plugin: one `Engine`, one `Linker` with WASI and the
//! `weft:handler/host` imports, and an epoch ticker for deadlines.
//!
//! The engine and linker are built once per process. Components and their `InstancePre` are built
//! once per plugin file (see `plugin.rs`); stores are cheap and live as long as the pooled instance
//! that owns them.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::{HasSelf, Linker};

use crate::sandbox::bindings;
use crate::sandbox::host_state::HostState;

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

#[cfg(test)]
mod tests {
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
}
