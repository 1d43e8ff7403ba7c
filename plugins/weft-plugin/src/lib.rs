//! Write [Weft](https://github.com/weft-rs/weft) event handlers in Rust.
//!
//! A handler is a type that implements [`Handler`], exported with [`export!`], built for
//! `wasm32-wasip2` as a `cdylib`:
//!
//! ```ignore
//! use weft_plugin::{Delivery, Event, Handler, Info, Result, Subscription};
//!
//! struct Audit;
//!
//! impl Handler for Audit {
//!     fn describe() -> Info {
//!         Info::new("audit", env!("CARGO_PKG_VERSION"))
//!             .description("Writes an audit record for every task event")
//!             .subscribe(Subscription::topic("task-events").types(["com.example.task.*"]))
//!     }
//!
//!     fn handle(event: Event, delivery: Delivery) -> Result {
//!         let task: serde_json::Value = event.json_data()?; // not JSON: a permanent error
//!         let audit = Event::derived(&event, "audit", "weft/audit", "com.example.audit.recorded")
//!             .json(&task)?;
//!         weft_plugin::emit("audit-log", &audit, delivery.key())?; // unavailable: retryable
//!         Ok(())
//!     }
//! }
//!
//! weft_plugin::export!(Audit);
//! ```
//!
//! What the host does with each outcome: `Ok` marks the event handled once every event it emitted
//! is acknowledged by the broker; [`Error::Retryable`] retries it later (after its delay hint, within
//! the host's retry policy); [`Error::Permanent`] sends it to the dead-letter topic at once. A panic
//! is a trap: retried like a retryable error, and the instance is thrown away.
//!
//! Tracing: leave `traceparent` off the events you emit; the host adds the handler call's own
//! context, so emitted events continue the input's trace through the handler's span.

use std::time::Duration;

// The generated bindings name their own crate by its public path, from inside it too.
extern crate self as weft_plugin;

#[doc(hidden)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "handler",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "weft_plugin::__bindings",
        runtime_path: "weft_plugin::__rt::wit_bindgen::rt",
    });
}

#[doc(hidden)]
pub mod __rt {
    pub use wit_bindgen;
}

use __bindings::weft::handler::host;
use __bindings::weft::handler::types as wit;

/// A handler: describes itself once when loaded, then handles one event per call.
pub trait Handler {
    /// The plugin's name, version, description and subscriptions.
    fn describe() -> Info;
    /// Handles one event.
    fn handle(event: Event, delivery: Delivery) -> Result;
}

/// Exports a [`Handler`] as the component's `weft:handler/handler` world.
#[macro_export]
macro_rules! export {
    ($handler:ty) => {
        #[doc(hidden)]
        struct __WeftExport;

        impl $crate::__bindings::Guest for __WeftExport {
            fn describe() -> $crate::__bindings::PluginInfo {
                $crate::__describe::<$handler>()
            }

            fn handle(
                event: $crate::__bindings::Cloudevent,
                delivery: $crate::__bindings::Delivery,
            ) -> ::core::result::Result<(), $crate::__bindings::HandleError> {
                $crate::__handle::<$handler>(event, delivery)
            }
        }

        $crate::__bindings::__export_handler!(__WeftExport with_types_in $crate::__bindings);
    };
}

#[doc(hidden)]
pub fn __describe<H: Handler>() -> __bindings::PluginInfo {
    H::describe().into()
}

#[doc(hidden)]
pub fn __handle<H: Handler>(
    event: wit::Cloudevent,
    delivery: wit::Delivery,
) -> std::result::Result<(), wit::HandleError> {
    H::handle(event.into(), delivery.into()).map_err(Into::into)
}

/// What [`Handler::handle`] returns.
pub type Result<T = (), E = Error> = std::result::Result<T, E>;

/// Why an event was not handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Try again later: a dependency is down, a rate limit was hit. `delay` asks the host to wait
    /// that long before the next attempt (within its retry policy's bounds).
    Retryable {
        /// Logged, and attached to the dead letter if the retries run out.
        reason: String,
        /// How long to wait before the next attempt; `None`: the policy's backoff.
        delay: Option<Duration>,
    },
    /// The event can never be handled (malformed data, an unknown version): dead-lettered at once.
    Permanent(String),
}

impl Error {
    /// A failure worth retrying.
    pub fn retryable(reason: impl Into<String>) -> Self {
        Self::Retryable { reason: reason.into(), delay: None }
    }

    /// A failure worth retrying after `delay`.
    pub fn retry_after(reason: impl Into<String>, delay: Duration) -> Self {
        Self::Retryable { reason: reason.into(), delay: Some(delay) }
    }

    /// A failure that no retry fixes.
    pub fn permanent(reason: impl Into<String>) -> Self {
        Self::Permanent(reason.into())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Retryable { reason, delay: Some(delay) } => {
                write!(f, "retryable (after {delay:?}): {reason}")
            }
            Error::Retryable { reason, delay: None } => write!(f, "retryable: {reason}"),
            Error::Permanent(reason) => write!(f, "permanent: {reason}"),
        }
    }
}

impl std::error::Error for Error {}

/// Data that is not the JSON the handler expects is a permanent failure: retrying the same bytes
/// cannot help.
impl From<serde_json::Error> for Error {
    fn from(error: serde_json::Error) -> Self {
        Error::Permanent(format!("data is not the expected JSON: {error}"))
    }
}

/// An [`emit`] the host could not take: [`EmitError::Unavailable`] is retryable (the producer is
/// backed up or the cluster unreachable), the others are permanent (retrying the same event to
/// the same topic gives the same answer).
impl From<EmitError> for Error {
    fn from(error: EmitError) -> Self {
        match error {
            EmitError::Unavailable(reason) => Error::retryable(format!("emit: {reason}")),
            other => Error::Permanent(format!("emit: {other}")),
        }
    }
}

impl From<Error> for wit::HandleError {
    fn from(error: Error) -> Self {
        match error {
            Error::Retryable { reason, delay } => wit::HandleError::Retryable(wit::RetryableError {
                reason,
                delay_ms: delay.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            }),
            Error::Permanent(reason) => wit::HandleError::Permanent(reason),
        }
    }
}

/// Why the host refused an emitted event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmitError {
    /// The event or topic is not valid (an empty `id`, `source`, `type` or topic).
    InvalidEvent(String),
    /// The plugin may not produce this: the topic is not granted, or the call reached its emit
    /// quota (`max_emits`, `max_emit_mib`).
    Forbidden(String),
    /// The host could not hand the event to its producer now.
    Unavailable(String),
}

impl std::fmt::Display for EmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EmitError::InvalidEvent(m) => write!(f, "invalid event: {m}"),
            EmitError::Forbidden(m) => write!(f, "forbidden: {m}"),
            EmitError::Unavailable(m) => write!(f, "unavailable: {m}"),
        }
    }
}

impl std::error::Error for EmitError {}

/// A CloudEvent 1.0: the one a handler receives, or one it builds to [`emit`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `id`: unique within `source`.
    pub id: String,
    /// `source`: where the event happened.
    pub source: String,
    /// `type` (`com.example.task.created`).
    pub ty: String,
    /// `specversion`, `1.0`.
    pub specversion: String,
    /// `datacontenttype` (`application/json`, `text/plain`…).
    pub datacontenttype: Option<String>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`, RFC 3339.
    pub time: Option<String>,
    /// Extension attributes, lowercase names, string values.
    pub extensions: Vec<(String, String)>,
    /// The payload as produced: the JSON text of `data` for structured events with JSON data, the
    /// decoded bytes of `data_base64`, the record value in binary mode.
    pub data: Option<Vec<u8>>,
}

impl Event {
    /// A new event with `id`, `source` and `type`; add data with [`Event::json`] or
    /// [`Event::data`].
    pub fn new(id: impl Into<String>, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            source: source.into(),
            ty: ty.into(),
            specversion: "1.0".into(),
            ..Self::default()
        }
    }

    /// A new event caused by `input`, with the id `<input id>-<suffix>`: handling the same input
    /// again (a retry, a redelivery) emits the same id, so consumers can drop the duplicate. The
    /// input's `time` and `subject` are kept.
    pub fn derived(input: &Event, suffix: &str, source: impl Into<String>, ty: impl Into<String>) -> Self {
        Self {
            time: input.time.clone(),
            subject: input.subject.clone(),
            ..Self::new(format!("{}-{suffix}", input.id), source, ty)
        }
    }

    /// Sets `data` to `value` as JSON and `datacontenttype` to `application/json`.
    pub fn json<T: serde::Serialize>(mut self, value: &T) -> Result<Self> {
        self.data = Some(serde_json::to_vec(value).map_err(|e| Error::permanent(format!("data: {e}")))?);
        self.datacontenttype = Some("application/json".into());
        Ok(self)
    }

    /// Sets `data` and `datacontenttype`.
    pub fn data(mut self, content_type: impl Into<String>, data: impl Into<Vec<u8>>) -> Self {
        self.datacontenttype = Some(content_type.into());
        self.data = Some(data.into());
        self
    }

    /// Sets `subject`.
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// Sets `time` (RFC 3339).
    pub fn time(mut self, time: impl Into<String>) -> Self {
        self.time = Some(time.into());
        self
    }

    /// Adds or replaces extension `name` (lowercase letters and digits).
    pub fn extension(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.extensions.retain(|(n, _)| *n != name);
        self.extensions.push((name, value.into()));
        self
    }

    /// The value of extension `name`.
    pub fn ext(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// The data as bytes (empty without data).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_deref().unwrap_or_default()
    }

    /// The data as text; a permanent error if it is not UTF-8.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(self.bytes())
            .map_err(|e| Error::permanent(format!("event {} data is not UTF-8: {e}", self.id)))
    }

    /// The data parsed as JSON into `T`; a permanent error if it does not parse.
    pub fn json_data<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_slice(self.bytes())
            .map_err(|e| Error::permanent(format!("event {} data is not the expected JSON: {e}", self.id)))
    }
}

impl From<wit::Cloudevent> for Event {
    fn from(e: wit::Cloudevent) -> Self {
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

impl From<&Event> for wit::Cloudevent {
    fn from(e: &Event) -> Self {
        Self {
            id: e.id.clone(),
            source: e.source.clone(),
            type_: e.ty.clone(),
            specversion: if e.specversion.is_empty() { "1.0".into() } else { e.specversion.clone() },
            datacontenttype: e.datacontenttype.clone(),
            dataschema: e.dataschema.clone(),
            subject: e.subject.clone(),
            time: e.time.clone(),
            extensions: e.extensions.clone(),
            data: e.data.clone(),
        }
    }
}

/// Where and how the event was delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset.
    pub offset: i64,
    /// The record key.
    pub key: Option<Vec<u8>>,
    /// The record timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// 1 for the first attempt, more on retries.
    pub attempt: u32,
    /// Headers that are not CloudEvent attributes, in order.
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Delivery {
    /// The key as bytes.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The key as text, if it is UTF-8.
    pub fn key_str(&self) -> Option<&str> {
        self.key.as_deref().and_then(|k| std::str::from_utf8(k).ok())
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_slice())
    }

    /// Whether this is a retry.
    pub fn is_retry(&self) -> bool {
        self.attempt > 1
    }
}

impl From<wit::Delivery> for Delivery {
    fn from(d: wit::Delivery) -> Self {
        Self {
            topic: d.topic,
            partition: d.partition,
            offset: d.offset,
            key: d.key,
            timestamp_ms: d.timestamp_ms,
            attempt: d.attempt,
            headers: d.headers,
        }
    }
}

/// What a plugin says about itself in [`Handler::describe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// A name for logs. The host identifies the plugin by its file name (`<id>.wasm`), which is
    /// also the key of its configuration (`[plugin.<id>]`).
    pub name: String,
    /// Its version.
    pub version: String,
    /// One line about what it does.
    pub description: String,
    /// What it receives.
    pub subscriptions: Vec<Subscription>,
}

impl Info {
    /// A plugin named `name` at `version`, subscribed to nothing yet.
    pub fn new(name: impl Into<String>, version: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            version: version.into(),
            description: String::new(),
            subscriptions: Vec::new(),
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = description.into();
        self
    }

    /// Adds a subscription.
    pub fn subscribe(mut self, subscription: Subscription) -> Self {
        self.subscriptions.push(subscription);
        self
    }
}

impl From<Info> for __bindings::PluginInfo {
    fn from(info: Info) -> Self {
        Self {
            name: info.name,
            version: info.version,
            description: info.description,
            subscriptions: info
                .subscriptions
                .into_iter()
                .map(|s| wit::Subscription { topic: s.topic, types: s.types, sources: s.sources })
                .collect(),
        }
    }
}

/// Events a plugin receives: those of `topic` whose `type` and `source` pass the filters (a value,
/// or a prefix ending in `*`; no filter lets everything through). `[plugin.<id>] subscriptions` in
/// the host's configuration replaces them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topic.
    pub topic: String,
    /// `type` filters.
    pub types: Vec<String>,
    /// `source` filters.
    pub sources: Vec<String>,
}

impl Subscription {
    /// Every event of `topic`.
    pub fn topic(topic: impl Into<String>) -> Self {
        Self { topic: topic.into(), types: Vec::new(), sources: Vec::new() }
    }

    /// Only these types.
    pub fn types<S: Into<String>>(mut self, types: impl IntoIterator<Item = S>) -> Self {
        self.types = types.into_iter().map(Into::into).collect();
        self
    }

    /// Only these sources.
    pub fn sources<S: Into<String>>(mut self, sources: impl IntoIterator<Item = S>) -> Self {
        self.sources = sources.into_iter().map(Into::into).collect();
        self
    }
}

/// Produces `event` to `topic` through the host, keyed by `key`. The input counts as handled only
/// once the broker acknowledged it; `?` turns a refusal into the right [`Error`].
pub fn emit(topic: &str, event: &Event, key: Option<&[u8]>) -> std::result::Result<(), EmitError> {
    host::emit(topic, &event.into(), key).map_err(|e| match e {
        wit::EmitError::InvalidEvent(m) => EmitError::InvalidEvent(m),
        wit::EmitError::Forbidden(m) => EmitError::Forbidden(m),
        wit::EmitError::Unavailable(m) => EmitError::Unavailable(m),
    })
}

/// A value from this plugin's `[plugin.<id>] config` table in the host's configuration.
pub fn config(key: &str) -> Option<String> {
    host::config_get(key)
}

/// Log lines, attributed by the host to the plugin and to the event being handled. `println!` and
/// `eprintln!` work too (stdout and stderr reach the host's log line by line).
pub mod log {
    use super::host;
    pub use super::wit::LogLevel as Level;

    /// Writes `message` at `level`.
    pub fn write(level: Level, message: &str) {
        host::log(level, message);
    }

    /// Writes at debug level, `format!`-style.
    #[macro_export]
    macro_rules! debug {
        ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Debug, &format!($($arg)*)) };
    }

    /// Writes at info level, `format!`-style.
    #[macro_export]
    macro_rules! info {
        ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Info, &format!($($arg)*)) };
    }

    /// Writes at warn level, `format!`-style.
    #[macro_export]
    macro_rules! warn {
        ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Warn, &format!($($arg)*)) };
    }

    /// Writes at error level, `format!`-style.
    #[macro_export]
    macro_rules! error {
        ($($arg:tt)*) => { $crate::log::write($crate::log::Level::Error, &format!($($arg)*)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_the_wit_and_emit_errors_to_the_right_kind() {
        let retry: wit::HandleError = Error::retry_after("db down", Duration::from_millis(1500)).into();
        assert!(matches!(retry, wit::HandleError::Retryable(e) if e.delay_ms == Some(1500)));
        assert_eq!(
            Error::from(EmitError::Unavailable("queue full".into())),
            Error::retryable("emit: queue full")
        );
        assert!(matches!(Error::from(EmitError::Forbidden("no".into())), Error::Permanent(_)));
        let bad: std::result::Result<serde_json::Value, _> = serde_json::from_slice(b"{");
        assert!(matches!(Error::from(bad.unwrap_err()), Error::Permanent(_)));
    }

    #[test]
    fn derived_events_keep_a_stable_id_and_json_data() {
        let input = Event::new("t-1", "/todo", "com.example.task.created").time("2026-11-23T09:30:00Z");
        let out = Event::derived(&input, "audit", "weft/audit", "com.example.audit.recorded")
            .json(&serde_json::json!({ "ok": true }))
            .unwrap()
            .extension("tenant", "acme");
        assert_eq!(out.id, "t-1-audit");
        assert_eq!(out.time.as_deref(), Some("2026-11-23T09:30:00Z"));
        assert_eq!(out.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(out.json_data::<serde_json::Value>().unwrap()["ok"], true);
        assert_eq!(out.ext("tenant"), Some("acme"));
        assert!(Event::new("x", "/s", "t").data("text/plain", vec![0xff]).text().is_err());
    }
}
