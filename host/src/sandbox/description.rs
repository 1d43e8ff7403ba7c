//! What a plugin says about itself in `describe()` (or a native handler's program says for it):
//! name, version, description and the subscriptions it asks for.

use anyhow::{anyhow, bail};

use crate::config::SubscriptionSpec;

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

impl Description {
    /// Refuses an empty name and invalid subscriptions; `origin` names what gave the description
    /// (`describe()`, `native handler audit`) in the error.
    pub fn validate(&self, origin: &str) -> anyhow::Result<()> {
        if self.name.is_empty() {
            bail!("{origin} returned an empty name");
        }
        for (i, sub) in self.subscriptions.iter().enumerate() {
            sub.validate().map_err(|e| anyhow!("{origin} subscription {i}: {e}"))?;
        }
        Ok(())
    }
}
