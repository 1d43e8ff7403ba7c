//! Platform resource events, written with the `weft-plugin` SDK.
//!
//! The platform's catalog (`source = "aikernel.catalog"`) publishes CloudEvents
//! `aikernel.catalog.resource.{registered,updated,deleted}` to `platform.resource.events`. This
//! plugin checks each resource against the definition of its kind and writes the resource's index
//! entry to `platform.resource.index` (override with the `output-topic` config key), keyed by
//! resource id so a compacted topic keeps the latest entry of each.
//!
//! Kind definitions are JSON files (`{"required": ["spec.framework", …]}`) in a directory granted
//! to the plugin read-only and seen as `/kinds` (`kinds-dir` config key): a platform team rolls a
//! new kind out by adding its file. An event of a kind whose definition is not there yet fails as
//! retryable, so Weft retries it with backoff until the file arrives (or dead-letters it once the
//! attempts run out); a resource that lacks a field its kind requires fails permanently.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p resource-catalog`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_plugin::{Delivery, Error, Event, Handler, Info, Result, Subscription};

const TYPE_PREFIX: &str = "aikernel.catalog.resource.";

#[derive(Deserialize)]
struct Resource {
    resource_id: String,
    kind: String,
    name: String,
    owner: String,
    #[serde(default)]
    version: Option<u64>,
}

#[derive(Deserialize)]
struct Kind {
    /// Dotted paths of fields every resource of the kind has.
    #[serde(default)]
    required: Vec<String>,
}

#[derive(Serialize)]
struct IndexEntry<'a> {
    resource_id: &'a str,
    kind: &'a str,
    name: &'a str,
    owner: &'a str,
    version: Option<u64>,
    state: &'a str,
    source_event: &'a str,
}

/// The definition of `kind`, or a retryable error while it is not deployed.
fn kind(name: &str) -> Result<Kind> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Error::permanent(format!("{name:?} is not a resource kind name")));
    }
    let dir = weft_plugin::config("kinds-dir").unwrap_or_else(|| "/kinds".into());
    let path = format!("{dir}/{name}.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::retryable(format!("kind {name} is not defined yet ({path}: {e})")))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::retryable(format!("kind {name}: {path} is not a definition ({e})")))
}

struct ResourceCatalog;

impl Handler for ResourceCatalog {
    fn describe() -> Info {
        Info::new("resource-catalog", env!("CARGO_PKG_VERSION"))
            .description("Indexes the platform catalog's resource events, checked against the kinds it knows")
            .subscribe(
                Subscription::topic("platform.resource.events")
                    .types([format!("{TYPE_PREFIX}*")])
                    .sources(["aikernel.catalog"]),
            )
    }

    fn handle(event: Event, _delivery: Delivery) -> Result {
        let action = event.ty.strip_prefix(TYPE_PREFIX).unwrap_or(&event.ty);
        let state = match action {
            "registered" | "updated" => "active",
            "deleted" => "deleted",
            other => return Err(Error::permanent(format!("unknown resource event {other:?}"))),
        };
        let data: Value = event.json_data()?;
        let resource: Resource = serde_json::from_value(data.clone())
            .map_err(|e| Error::permanent(format!("event {}: not a resource ({e})", event.id)))?;
        if state == "active" {
            for path in kind(&resource.kind)?.required {
                let found = path.split('.').try_fold(&data, |value, key| value.get(key));
                if found.is_none_or(Value::is_null) {
                    return Err(Error::permanent(format!(
                        "{} {}: a {} has {path}, this one does not",
                        resource.kind, resource.resource_id, resource.kind
                    )));
                }
            }
        }
        let entry = IndexEntry {
            resource_id: &resource.resource_id,
            kind: &resource.kind,
            name: &resource.name,
            owner: &resource.owner,
            version: resource.version,
            state,
            source_event: &event.id,
        };
        let output =
            Event::derived(&event, "index", "weft/resource-catalog", "aikernel.catalog.index.updated")
                .subject(format!("/resources/{}", resource.resource_id))
                .json(&entry)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "platform.resource.index".into());
        weft_plugin::emit(&topic, &output, Some(resource.resource_id.as_bytes()))?;
        weft_plugin::debug!("{} {} is {state}", resource.kind, resource.resource_id);
        Ok(())
    }
}

weft_plugin::export!(ResourceCatalog);
