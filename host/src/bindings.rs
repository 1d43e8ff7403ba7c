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

use crate::event::{CloudEvent, Record};
use crate::route::SubscriptionSpec;

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
