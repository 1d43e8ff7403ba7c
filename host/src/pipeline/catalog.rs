//! The plugins directory and the set of plugins in service.
//!
//! Every `*.wasm` in the directory is a plugin; its id is the file name without `.wasm`. The set
//! in service ([`InService`]: plugins, routing table, topics) is immutable and replaced as a whole, so
//! the fetch loop routes every record with one consistent set: a record fetched before a swap goes
//! to the old version, every record after it to the new one. Jobs hold the version they were routed
//! to, so events already dispatched finish on it, and since a key's events are handled in fetch
//! order, per key no event is handled by an older version than the one before it.
//!
//! While running, a watcher rescans the directory after it has been quiet for
//! `plugins.reload_debounce_ms`: a new file is loaded, a changed one replaces its plugin, a deleted
//! one removes it. A file that cannot be loaded is refused with a one-line reason and whatever was
//! serving keeps serving. Temp files (hidden, `~`, anything not ending in `.wasm`) are ignored, and
//! a file modified within the debounce window is left for the next look.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use arc_swap::ArcSwap;
use notify_debouncer_mini::notify::RecursiveMode;
use tokio::sync::watch;

use crate::config::Config;
use crate::kafka_out::emit::{Destination, Emitter};
use crate::ops::metrics::Metrics;
use crate::pipeline::canary::{self, Rollout};
pub use crate::pipeline::in_service::InService;
use crate::pipeline::shadow::{self, Shadow};
use crate::sandbox::plugin::{Limits, Plugin};
use crate::sandbox::runtime::Runtime;

/// A file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Refusal {
    /// The file.
    #[serde(rename = "file")]
    pub path: PathBuf,
    /// Why, in one line.
    pub reason: String,
}

/// What one change of the directory did, for `/plugins` and the logs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Reload {
    /// The plugin id (file name without `.wasm`).
    pub plugin: String,
    /// `loaded`, `replaced`, `removed` or `refused`.
    pub result: &'static str,
    /// Digest of the version now serving (none after a removal or a refusal of a new file).
    pub digest: Option<String>,
    /// Why a file was refused.
    pub reason: Option<String>,
    /// When, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// How many reloads `/plugins` remembers.
const RELOAD_HISTORY: usize = 20;

/// Size and modification time: a file whose stamp did not change is not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    len: u64,
    modified: Option<SystemTime>,
}

/// What the reloader remembers between looks at the directory.
#[derive(Default)]
struct SeenFiles {
    /// FileStamp of every file last looked at (loaded or refused).
    stamps: HashMap<PathBuf, FileStamp>,
    refused: BTreeMap<PathBuf, Refusal>,
    reloads: VecDeque<Reload>,
}

/// The plugins directory, what is in service, and what was refused.
pub struct Catalog {
    dir: PathBuf,
    config: Arc<Config>,
    runtime: Arc<Runtime>,
    emitter: Arc<Emitter>,
    metrics: Metrics,
    live: ArcSwap<InService>,
    files: Mutex<SeenFiles>,
    /// Serialises looks at the directory.
    reloading: tokio::sync::Mutex<()>,
    /// Bumped at every swap; the fetch loop follows it to change its subscription.
    swaps: watch::Sender<u64>,
    /// The rollout of every canary in service, by its digest: kept across swaps.
    rollouts: Mutex<HashMap<String, Arc<Rollout>>>,
    /// Every shadow in service, by its digest: kept across swaps.
    shadows: Mutex<HashMap<String, Arc<Shadow>>>,
    /// Where shadows' emitted events go: held, compared, never produced.
    held: Arc<Emitter>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog").field("dir", &self.dir).field("live", &self.live.load()).finish()
    }
}

/// Whether `path` is a plugin file: `*.wasm`, not hidden, not an editor or copy temp file.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    path.extension().is_some_and(|ext| ext == "wasm") && !name.starts_with('.') && !name.starts_with('~')
}

impl Catalog {
    /// Loads every plugin file in `config.plugins.dir`, logging each result, and serves `natives`
    /// (native handlers, see [`crate::sandbox::plugin::NativeHandler`]) beside them for as long as it runs.
    pub async fn open(
        config: Arc<Config>,
        runtime: Arc<Runtime>,
        emitter: Arc<Emitter>,
        metrics: Metrics,
        natives: Vec<Arc<Plugin>>,
    ) -> anyhow::Result<Arc<Self>> {
        let dir = config.plugins.dir.clone();
        let catalog = Arc::new(Self {
            dir,
            config,
            runtime,
            emitter,
            metrics,
            live: ArcSwap::from_pointee(InService::new(
                natives,
                &mut |_| Arc::new(Rollout::new(crate::config::CanaryConfig::default())),
                // The first set is published again once the directory is read, shadows running.
                &mut |_| None,
            )),
            shadows: Mutex::default(),
            held: Arc::new(Destination::Held.into()),
            files: Mutex::new(SeenFiles::default()),
            reloading: tokio::sync::Mutex::new(()),
            swaps: watch::channel(0).0,
            rollouts: Mutex::default(),
        });
        catalog.rescan(None).await?;
        if *catalog.swaps.borrow() == 0 && !catalog.in_service().plugins.is_empty() {
            // Only native handlers: no file changed the set, publish it as it is.
            catalog.publish(catalog.in_service().plugins.clone());
        }
        Ok(catalog)
    }

    /// The set in service now.
    pub fn in_service(&self) -> Arc<InService> {
        self.live.load_full()
    }

    /// Follows swaps of the set in service.
    pub fn swaps(&self) -> watch::Receiver<u64> {
        self.swaps.subscribe()
    }

    /// SeenFiles refused and not changed since.
    pub fn refused(&self) -> Vec<Refusal> {
        self.files.lock().expect("catalog lock poisoned").refused.values().cloned().collect()
    }

    /// The latest reloads, newest first.
    pub fn reloads(&self) -> Vec<Reload> {
        self.files.lock().expect("catalog lock poisoned").reloads.iter().rev().cloned().collect()
    }

    /// The directory being served.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Looks at the directory and brings the set in service in line with it. `stable_at` is when
    /// the directory was last seen settling (for the swap-latency measure); `None` at start-up.
    /// Returns false if some file was still being written and must be looked at again.
    pub async fn rescan(&self, stable_at: Option<Instant>) -> anyhow::Result<bool> {
        let _one_at_a_time = self.reloading.lock().await;
        let files = self.list().await?;
        let live = self.in_service();
        let mut next: BTreeMap<String, Arc<Plugin>> =
            live.plugins.iter().map(|p| (p.id.clone(), p.clone())).collect();
        let mut changed = false;
        let mut settled = true;

        for plugin in &live.plugins {
            if !plugin.is_native() && !files.iter().any(|(path, _)| *path == plugin.path) {
                next.remove(&plugin.id);
                changed = true;
                tracing::info!(plugin = %plugin.id, digest = %plugin.short_digest(), "plugin removed");
                self.record(&plugin.id, "removed", None, None);
            }
        }
        {
            let mut state = self.files.lock().expect("catalog lock poisoned");
            state.stamps.retain(|path, _| files.iter().any(|(p, _)| p == path));
            state.refused.retain(|path, _| files.iter().any(|(p, _)| p == path));
        }

        let quiet = Duration::from_millis(self.config.plugins.reload_debounce_ms);
        for (path, stamp) in files {
            if self.files.lock().expect("catalog lock poisoned").stamps.get(&path) == Some(&stamp) {
                continue;
            }
            // Still being written (the watcher reported a pause, not the end): look again later.
            if stable_at.is_some()
                && stamp.modified.and_then(|m| m.elapsed().ok()).is_some_and(|age| age < quiet)
            {
                settled = false;
                continue;
            }
            let bytes = match tokio::fs::read(&path).await {
                Ok(bytes) => bytes,
                // Gone between the listing and the read: the next look sees it gone.
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => {
                    self.refuse(&path, stamp, &format!("cannot read it: {error}"), &next);
                    continue;
                }
            };
            let id = match crate::sandbox::plugin::plugin_id(&path) {
                Ok(id) => id,
                Err(error) => {
                    self.refuse(&path, stamp, &format!("{error:#}"), &next);
                    continue;
                }
            };
            let current = next.get(&id).cloned();
            if current.as_ref().is_some_and(|p| p.is_native()) {
                self.refuse(
                    &path,
                    stamp,
                    &format!("a native handler has the id {id:?}: rename the file"),
                    &next,
                );
                continue;
            }
            if current.as_ref().is_some_and(|p| p.digest == crate::sandbox::plugin::digest(&bytes)) {
                // Touched, same content.
                self.files.lock().expect("catalog lock poisoned").stamps.insert(path, stamp);
                continue;
            }
            match self.load(&path, bytes).await {
                Ok(mut plugin) => {
                    plugin.stable_at = stable_at;
                    let result = if current.is_some() { "replaced" } else { "loaded" };
                    self.log_loaded(&plugin, current.as_deref());
                    self.record(&id, result, Some(&plugin.digest), None);
                    let mut state = self.files.lock().expect("catalog lock poisoned");
                    state.stamps.insert(path.clone(), stamp);
                    state.refused.remove(&path);
                    drop(state);
                    next.insert(id, Arc::new(plugin));
                    changed = true;
                }
                Err(error) => self.refuse(&path, stamp, &format!("{error:#}"), &next),
            }
        }
        if changed {
            self.publish(next.into_values().collect());
        }
        Ok(settled)
    }

    /// The plugin files in the directory with their stamps, sorted.
    async fn list(&self) -> anyhow::Result<Vec<(PathBuf, FileStamp)>> {
        let mut files = Vec::new();
        let mut entries = tokio::fs::read_dir(&self.dir)
            .await
            .with_context(|| format!("reading the plugins directory {}", self.dir.display()))?;
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            if !is_plugin_file(&path) {
                continue;
            }
            // Follows symlinks, so a link swapped to a new target counts as a change.
            let Ok(meta) = tokio::fs::metadata(&path).await else { continue };
            if meta.is_file() {
                files.push((path, FileStamp { len: meta.len(), modified: meta.modified().ok() }));
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(files)
    }

    async fn load(&self, path: &Path, bytes: Vec<u8>) -> anyhow::Result<Plugin> {
        let id = crate::sandbox::plugin::plugin_id(path)?;
        // A canary or shadow runs with its stable plugin's settings and its own `config` values
        // over them; what a shadow emits is held for the comparison, never produced.
        let (base, emitter, overrides) = match (canary::base_of(&id), shadow::base_of(&id)) {
            (Some(base), _) => (base, &self.emitter, self.config.plugin.get(base).map(|p| &p.canary.config)),
            (_, Some(base)) => (base, &self.held, self.config.plugin.get(base).map(|p| &p.shadow.config)),
            _ => (id.as_str(), &self.emitter, None),
        };
        let mut settings = self.config.plugin.get(base).cloned().unwrap_or_default();
        settings.config.extend(overrides.cloned().unwrap_or_default());
        let limits = Limits::for_plugin(&self.config, base);
        let mut plugin =
            Plugin::from_bytes(&self.runtime, path, bytes, &settings, limits, emitter.clone()).await?;
        plugin.retry = self.config.retry_policy(base);
        let cache = if plugin.from_cache { "hit" } else { "miss" };
        self.metrics.plugin_compile.with_label_values(&[cache]).observe(plugin.compile_time.as_secs_f64());
        Ok(plugin)
    }

    fn log_loaded(&self, plugin: &Plugin, replaces: Option<&Plugin>) {
        tracing::info!(
            plugin = %plugin.id,
            name = %plugin.description.name,
            version = %plugin.description.version,
            digest = %plugin.short_digest(),
            replaces = replaces.map(Plugin::short_digest),
            compile_ms = plugin.compile_time.as_millis() as u64,
            cached = plugin.from_cache,
            subscriptions = %serde_json::to_string(&plugin.subscriptions).unwrap_or_default(),
            "plugin {}",
            if replaces.is_some() { "replaced" } else { "loaded" }
        );
    }

    fn refuse(&self, path: &Path, stamp: FileStamp, reason: &str, serving: &BTreeMap<String, Arc<Plugin>>) {
        let reason = reason.replace('\n', " ");
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        match serving.get(&id) {
            Some(current) => tracing::error!(
                file = %path.display(), %reason, serving = %current.short_digest(),
                "plugin refused; the version already running keeps serving"
            ),
            None => tracing::error!(file = %path.display(), %reason, "plugin refused"),
        }
        self.record(&id, "refused", None, Some(&reason));
        let mut state = self.files.lock().expect("catalog lock poisoned");
        state.stamps.insert(path.to_path_buf(), stamp);
        state.refused.insert(path.to_path_buf(), Refusal { path: path.to_path_buf(), reason });
    }

    fn record(&self, plugin: &str, result: &'static str, digest: Option<&str>, reason: Option<&str>) {
        self.metrics.plugin_reloads.with_label_values(&[result]).inc();
        let at_ms =
            SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        let mut state = self.files.lock().expect("catalog lock poisoned");
        if state.reloads.len() == RELOAD_HISTORY {
            state.reloads.pop_front();
        }
        state.reloads.push_back(Reload {
            plugin: plugin.to_string(),
            result,
            digest: digest.map(str::to_string),
            reason: reason.map(str::to_string),
            at_ms,
        });
    }

    /// Puts `plugins` in service and tells the fetch loop.
    fn publish(&self, plugins: Vec<Arc<Plugin>>) {
        let old = self.in_service();
        let live = {
            let mut rollouts = self.rollouts.lock().expect("catalog lock poisoned");
            rollouts.retain(|digest, _| plugins.iter().any(|p| p.digest == *digest));
            let mut shadows = self.shadows.lock().expect("catalog lock poisoned");
            shadows.retain(|digest, _| plugins.iter().any(|p| p.digest == *digest));
            InService::new(
                plugins,
                &mut |canary| {
                    let base = canary::base_of(&canary.id).unwrap_or_default();
                    let config = self.config.plugin.get(base).map(|p| p.canary.clone()).unwrap_or_default();
                    rollouts
                        .entry(canary.digest.clone())
                        .or_insert_with(|| Arc::new(Rollout::new(config)))
                        .clone()
                },
                &mut |plugin| {
                    let base = shadow::base_of(&plugin.id).unwrap_or_default();
                    let config = self.config.plugin.get(base).map(|p| p.shadow.clone()).unwrap_or_default();
                    let running = shadows
                        .entry(plugin.digest.clone())
                        .or_insert_with(|| Shadow::start(plugin.clone(), &config, &self.metrics));
                    Some(running.clone())
                },
            )
        };
        for p in &old.plugins {
            let d = &p.description;
            let _ = self.metrics.plugin_info.remove_label_values(&[&p.id, &d.name, &d.version, &p.digest]);
            if !live.plugins.iter().any(|n| n.id == p.id) {
                let _ = self.metrics.plugin_memory.remove_label_values(&[&p.id]);
            }
        }
        for p in &live.plugins {
            let d = &p.description;
            self.metrics.plugin_info.with_label_values(&[&p.id, &d.name, &d.version, &p.digest]).set(1);
        }
        self.metrics.initialise(
            live.plugins
                .iter()
                .flat_map(|p| p.subscriptions.iter().map(|s| (s.topic.as_str(), p.id.as_str()))),
        );
        let added: Vec<String> = live.topics.iter().filter(|t| !old.subscribes(t)).cloned().collect();
        if !added.is_empty() && *self.swaps.borrow() > 0 {
            // Topics that appear while running get their dead-letter topics too.
            let config = self.config.clone();
            tokio::spawn(async move {
                crate::kafka_out::dead_letters::ensure_topics(&config.kafka, &config.dlq, &added).await
            });
        }
        self.live.store(Arc::new(live));
        self.swaps.send_modify(|n| *n += 1);
    }

    /// Watches the directory until `stop` turns true, applying changes as they settle.
    /// Takes canary `<base>.canary` out: its file is set aside (`….rolled-back`), so a restart
    /// does not bring it back, and the plugins in service are updated at once.
    pub async fn roll_back(&self, base: &str, why: &str) {
        let path = self.dir.join(format!("{base}{}.wasm", canary::SUFFIX));
        let aside = self.dir.join(format!("{base}{}.wasm{}", canary::SUFFIX, canary::ROLLED_BACK));
        tracing::error!(plugin = %base, reason = %why, set_aside = %aside.display(), "canary rolled back; its keys go back to the stable version");
        self.metrics.canary_decisions.with_label_values(&[base, "rolled_back"]).inc();
        if let Err(error) = tokio::fs::rename(&path, &aside).await {
            tracing::error!(%error, file = %path.display(), "the rolled-back canary's file could not be set aside; a restart would serve it again");
        }
        if let Err(error) = self.rescan(None).await {
            tracing::error!(
                error = format!("{error:#}"),
                "rescanning the plugins directory after a rollback"
            );
        }
    }

    /// Makes canary `<base>.canary` the stable version: its file replaces `<base>.wasm` and the
    /// plugins in service are updated at once (a hot swap).
    pub async fn promote(&self, base: &str, why: &str) {
        let path = self.dir.join(format!("{base}{}.wasm", canary::SUFFIX));
        let stable = self.dir.join(format!("{base}.wasm"));
        tracing::info!(plugin = %base, reason = %why, "canary promoted; it becomes the stable version");
        self.metrics.canary_decisions.with_label_values(&[base, "promoted"]).inc();
        if let Err(error) = tokio::fs::rename(&path, &stable).await {
            return tracing::error!(%error, file = %path.display(), "the canary could not be promoted");
        }
        if let Err(error) = self.rescan(None).await {
            tracing::error!(
                error = format!("{error:#}"),
                "rescanning the plugins directory after a promotion"
            );
        }
    }

    pub fn watch(
        self: &Arc<Self>,
        mut stop: watch::Receiver<bool>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let quiet = Duration::from_millis(self.config.plugins.reload_debounce_ms);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut debouncer = notify_debouncer_mini::new_debouncer(quiet, move |batch| {
            let _ = tx.send(batch);
        })
        .context("starting the plugins directory watcher")?;
        debouncer
            .watcher()
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching the plugins directory {}", self.dir.display()))?;
        tracing::info!(dir = %self.dir.display(), debounce_ms = quiet.as_millis() as u64, "watching for plugin changes");
        let catalog = self.clone();
        Ok(tokio::spawn(async move {
            // Dropping the debouncer stops the watcher thread.
            let _debouncer = debouncer;
            let mut again: Option<tokio::time::Instant> = None;
            loop {
                tokio::select! {
                    _ = stop.wait_for(|stop| *stop) => break,
                    _ = tokio::time::sleep_until(again.unwrap_or_else(tokio::time::Instant::now)), if again.is_some() => {}
                    batch = rx.recv() => match batch {
                        Some(Ok(_)) => {}
                        Some(Err(error)) => tracing::warn!(%error, "plugins directory watcher error; rescanning"),
                        None => break,
                    },
                }
                again = match catalog.rescan(Some(Instant::now())).await {
                    Ok(true) => None,
                    Ok(false) => Some(tokio::time::Instant::now() + quiet),
                    Err(error) => {
                        tracing::error!(error = %format!("{error:#}"), "cannot rescan the plugins directory");
                        Some(tokio::time::Instant::now() + quiet.max(Duration::from_secs(1)))
                    }
                };
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert!(is_plugin_file(Path::new("plugins/audit.wasm")));
        assert!(!is_plugin_file(Path::new("plugins/audit.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("plugins/.audit.wasm")));
        assert!(!is_plugin_file(Path::new("plugins/~audit.wasm")));
        assert!(!is_plugin_file(Path::new("plugins/audit.wasm~")));
        assert!(!is_plugin_file(Path::new("plugins/README.md")));
    }
}
