//! Host bindings for the `weft:handler/handler` world in `wit/`, and conversions between the
//! generated types and the host's own [`CloudEvent`] and [`Record`].

mod generated {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        // Plugin calls run on the async runtime so a long call yields at every epoch tick.
        exports: { default: async },
    });
}

pub use generated::Handler;
pub use generated::HandlerPre;
pub use generated::weft::handler::types::{
    Cloudevent, Delivery, EmitError, HandleError, LogLevel, Subscription,
};
pub use generated::weft::handler::{host, types};

use crate::config::SubscriptionSpec;
use crate::event::{CloudEvent, Record};

impl From<Cloudevent> for CloudEvent {
    fn from(e: Cloudevent) -> Self {
        Self {
            id: e.id,
            source: e.source,
            ty: e.type_,
            specversion: e.specversion,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            subject: e.subject,
            time: e.time,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

impl From<CloudEvent> for Cloudevent {
    fn from(e: CloudEvent) -> Self {
        Self {
            id: e.id,
            source: e.source,
            type_: e.ty,
            specversion: e.specversion,
            datacontenttype: e.datacontenttype,
            dataschema: e.dataschema,
            subject: e.subject,
            time: e.time,
            extensions: e.extensions,
            data: e.data,
        }
    }
}

/// The `delivery` argument for `record` at `attempt`.
pub fn delivery(record: &Record, attempt: u32) -> Delivery {
    Delivery {
        topic: record.topic.clone(),
        partition: record.partition,
        offset: record.offset,
        key: record.key.clone(),
        timestamp_ms: record.timestamp_ms,
        attempt,
        headers: record.headers.clone(),
    }
}

impl From<Subscription> for SubscriptionSpec {
    fn from(s: Subscription) -> Self {
        Self { topic: s.topic, types: s.types, sources: s.sources }
    }
}

#[cfg(test)]
mod tests {
    /// docs/plugins.md carries the WIT verbatim, file by file.
    #[test]
    fn the_plugin_guide_quotes_the_wit_as_it_is() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let guide = std::fs::read_to_string(root.join("docs/plugins.md")).unwrap();
        for file in ["world.wit", "types.wit", "host.wit"] {
            let wit = std::fs::read_to_string(root.join("wit").join(file)).unwrap();
            let quoted = format!("### `{file}`\n\n```wit\n{wit}```");
            assert!(
                guide.contains(&quoted),
                "docs/plugins.md does not quote wit/{file} as it is: update its WIT reference"
            );
        }
    }

    /// The Rust SDK (`plugins/weft-plugin`) carries its own copy of the WIT so that it works
    /// outside this repository; it must be the world the host implements, file for file.
    #[test]
    fn the_sdk_carries_the_same_wit_as_the_host() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = |dir: &str| -> Vec<(String, String)> {
            let mut files: Vec<(String, String)> = std::fs::read_dir(root.join(dir))
                .unwrap_or_else(|e| panic!("{dir}: {e}"))
                .map(|entry| {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    (name, std::fs::read_to_string(&path).unwrap())
                })
                .collect();
            files.sort();
            files
        };
        let host = files("wit");
        let sdk = files("plugins/weft-plugin/wit");
        let names = |files: &[(String, String)]| files.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&host), names(&sdk), "copy wit/ to plugins/weft-plugin/wit/");
        for ((name, host), (_, sdk)) in host.iter().zip(&sdk) {
            assert!(host == sdk, "plugins/weft-plugin/wit/{name} differs from wit/{name}: copy wit/ over it");
        }
    }
}
