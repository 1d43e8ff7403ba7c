//! The plugins in service: the set the fetch loop routes with, replaced as a whole at every swap
//! (see [`crate::pipeline::catalog`]), with the canaries in service and their share of the keys.

use std::collections::HashMap;
use std::sync::Arc;

use crate::pipeline::canary::{self, Rollout};
use crate::pipeline::route::Router;
use crate::pipeline::shadow::{self, Shadow};
use crate::sandbox::plugin::Plugin;

/// The plugins in service, with their routing table. Replaced as a whole.
#[derive(Debug)]
pub struct InService {
    /// Plugins sorted by id, canaries (`<id>.canary`) included.
    pub plugins: Vec<Arc<Plugin>>,
    /// Which stable plugins want which events (a canary takes its share from its stable plugin's).
    pub router: Router<Arc<Plugin>>,
    /// Topics the consumer must subscribe to, sorted.
    pub topics: Vec<String>,
    /// Canaries in service, by their stable plugin's id, with their rollouts.
    pub canaries: HashMap<String, (Arc<Plugin>, Arc<Rollout>)>,
    /// Shadows in service, by their stable plugin's id.
    pub shadows: HashMap<String, Arc<Shadow>>,
}

impl InService {
    /// The set of `plugins`; `rollout` gives each canary its rollout, `shadow` each shadow its
    /// running shadow (`None`: the shadow does not run in this set).
    pub(super) fn new(
        plugins: Vec<Arc<Plugin>>,
        rollout: &mut dyn FnMut(&Plugin) -> Arc<Rollout>,
        shadow: &mut dyn FnMut(&Arc<Plugin>) -> Option<Arc<Shadow>>,
    ) -> Self {
        let stable =
            plugins.iter().filter(|p| canary::base_of(&p.id).is_none() && shadow::base_of(&p.id).is_none());
        let router = Router::new(stable.map(|p| (p.clone(), p.subscriptions.clone())));
        let topics = router.topics();
        let mut canaries = HashMap::new();
        for plugin in &plugins {
            let Some(base) = canary::base_of(&plugin.id) else { continue };
            if plugins.iter().any(|p| p.id == base) {
                canaries.insert(base.to_string(), (plugin.clone(), rollout(plugin)));
            } else {
                tracing::warn!(plugin = %plugin.id, "a canary without {base}.wasm beside it handles nothing");
            }
        }
        let mut shadows = HashMap::new();
        for plugin in &plugins {
            let Some(base) = shadow::base_of(&plugin.id) else { continue };
            if plugins.iter().any(|p| p.id == base) {
                if let Some(running) = shadow(plugin) {
                    shadows.insert(base.to_string(), running);
                }
            } else {
                tracing::warn!(plugin = %plugin.id, "a shadow without {base}.wasm beside it runs nothing");
            }
        }
        // A stable version with a shadow keeps what it emits, for the comparison.
        for plugin in
            plugins.iter().filter(|p| canary::base_of(&p.id).is_none() && shadow::base_of(&p.id).is_none())
        {
            plugin.summarize_emits(shadows.contains_key(&plugin.id));
        }
        Self { plugins, router, topics, canaries, shadows }
    }

    /// The shadow of `plugin`, if it has one in service (never of a canary or shadow).
    pub fn shadow_of(&self, plugin: &Plugin) -> Option<&Arc<Shadow>> {
        if self.shadows.is_empty() {
            return None;
        }
        self.shadows.get(&plugin.id)
    }

    /// Hands the canaries their share of the routed stable plugins: by the event's key (or,
    /// keyless, its partition).
    pub fn choose_versions(&self, plugins: &mut [Arc<Plugin>], key: Option<&[u8]>, partition: i32) {
        if self.canaries.is_empty() {
            return;
        }
        for plugin in plugins {
            if let Some((canary, rollout)) = self.canaries.get(&plugin.id)
                && rollout.takes(key, partition)
            {
                *plugin = canary.clone();
            }
        }
    }

    /// The version that handles an attempt of `plugin` now: itself, or, for a canary rolled back,
    /// promoted or gone, its stable plugin (from its first attempt).
    pub fn version_now(&self, plugin: &Arc<Plugin>, attempt: u32) -> (Arc<Plugin>, u32) {
        let Some(base) = canary::base_of(&plugin.id) else { return (plugin.clone(), attempt) };
        match self.canaries.get(base) {
            Some((canary, rollout)) if canary.digest == plugin.digest && !rollout.rolled_back() => {
                (plugin.clone(), attempt)
            }
            _ => match self.plugins.iter().find(|p| p.id == base) {
                Some(stable) => (stable.clone(), 1),
                None => (plugin.clone(), attempt),
            },
        }
    }

    /// The rollout `plugin` takes part in, and whether as the canary.
    pub fn rollout_of(&self, plugin: &Plugin) -> Option<(&Arc<Rollout>, bool)> {
        if self.canaries.is_empty() {
            return None;
        }
        match canary::base_of(&plugin.id) {
            Some(base) => {
                self.canaries.get(base).filter(|(c, _)| c.digest == plugin.digest).map(|(_, r)| (r, true))
            }
            None => self.canaries.get(&plugin.id).map(|(_, r)| (r, false)),
        }
    }

    /// Whether some plugin in service subscribes to `topic`.
    pub fn subscribes(&self, topic: &str) -> bool {
        self.topics.binary_search_by(|t| t.as_str().cmp(topic)).is_ok()
    }
}
