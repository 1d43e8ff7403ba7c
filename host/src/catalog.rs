//! The plugins directory: every `*.wasm` in it is loaded; a file that cannot be loaded is refused with
//! a one-line reason and the others are served anyway.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::emit::Emitter;
use crate::plugin::{Limits, Plugin};
use crate::runtime::Runtime;

/// A file that was not loaded, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The file.
    pub path: PathBuf,
    /// Why, in one line.
    pub reason: String,
}

/// The outcome of loading a directory.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Loaded plugins, sorted by id.
    pub plugins: Vec<Arc<Plugin>>,
    /// Files that were refused.
    pub refused: Vec<Refusal>,
}

/// Whether `path` is a plugin file: `*.wasm`, not hidden, not an editor or copy temp file.
pub fn is_plugin_file(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    path.extension().is_some_and(|ext| ext == "wasm") && !name.starts_with('.') && !name.starts_with('~')
}

/// Loads every plugin file in `dir`, logging each result.
pub async fn load_dir(
    runtime: &Arc<Runtime>,
    dir: &Path,
    config: &Config,
    emitter: &Arc<Emitter>,
) -> anyhow::Result<Catalog> {
    let mut files = Vec::new();
    let mut entries = tokio::fs::read_dir(dir)
        .await
        .with_context(|| format!("reading the plugins directory {}", dir.display()))?;
    while let Some(entry) = entries.next_entry().await? {
        let path = entry.path();
        if is_plugin_file(&path) && entry.file_type().await.is_ok_and(|t| !t.is_dir()) {
            files.push(path);
        }
    }
    files.sort();
    let mut catalog = Catalog::default();
    for path in files {
        match load_file(runtime, &path, config, emitter).await {
            Ok(plugin) => catalog.plugins.push(Arc::new(plugin)),
            Err(error) => {
                let reason = format!("{error:#}").replace('\n', " ");
                tracing::error!(file = %path.display(), %reason, "plugin refused");
                catalog.refused.push(Refusal { path, reason });
            }
        }
    }
    Ok(catalog)
}

/// Loads one file with the settings `config` has for it.
pub async fn load_file(
    runtime: &Arc<Runtime>,
    path: &Path,
    config: &Config,
    emitter: &Arc<Emitter>,
) -> anyhow::Result<Plugin> {
    let id = crate::plugin::plugin_id(path)?;
    let settings = config.plugin.get(&id).cloned().unwrap_or_default();
    let mut plugin =
        Plugin::load(runtime, path, &settings, Limits::from_config(config), emitter.clone()).await?;
    plugin.retry = config.retry_policy(&id);
    tracing::info!(
        plugin = %plugin.id,
        name = %plugin.description.name,
        version = %plugin.description.version,
        digest = %plugin.short_digest(),
        subscriptions = %serde_json::to_string(&plugin.subscriptions).unwrap_or_default(),
        overridden = settings.subscriptions.is_some(),
        "plugin loaded"
    );
    Ok(plugin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_visible_wasm_files_are_plugins() {
        assert!(is_plugin_file(Path::new("plugins/audit.wasm")));
        assert!(!is_plugin_file(Path::new("plugins/audit.wasm.tmp")));
        assert!(!is_plugin_file(Path::new("plugins/.audit.wasm")));
        assert!(!is_plugin_file(Path::new("plugins/README.md")));
    }
}
