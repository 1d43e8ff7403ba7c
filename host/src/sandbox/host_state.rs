//! The data of one plugin instance's `Store`: its WASI context (only what the plugin was granted),
//! its memory limiter, its emit quota and the events the current call emitted, and the
//! `weft:handler/host` imports (`log`, `emit`, `config-get`) it serves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rdkafka::producer::DeliveryFuture;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::kafka_out::emit::{EmitError, Emitter, Sent};
use crate::kafka_out::outgoing::Outgoing;
use crate::sandbox::bindings::{self, EmitError as WitEmitError, LogLevel};
use crate::sandbox::limiter::Limiter;
use crate::sandbox::plugin_log::{PluginLog, Stdio};

/// What a plugin instance may reach: its configuration and where its emitted events go.
pub struct PluginEnv {
    /// The plugin's id (its file name without `.wasm`), for logs.
    pub id: String,
    /// `[plugin.<id>] config`, read by `config-get`.
    pub config: std::collections::BTreeMap<String, String>,
    /// Destination of `emit`.
    pub emitter: Arc<Emitter>,
    /// What the plugin may reach (`[plugin.<id>.grants]`).
    pub grants: crate::config::Grants,
    /// Values of the granted environment variables, read at load.
    pub env_values: Vec<(String, String)>,
    /// Where `log` calls and stdout/stderr go, within caps.
    pub log: Arc<PluginLog>,
    /// Keep a summary of every emitted event (a shadow version compares them).
    pub summarize: std::sync::atomic::AtomicBool,
}

/// The data of one plugin instance's `Store`.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    /// Memory and instance caps, enforced by the store's resource limiter.
    pub(crate) limits: Limiter,
    env: Arc<PluginEnv>,
    /// Broker acknowledgements of the events emitted by the current call; awaited before the input
    /// counts as handled.
    pub(crate) pending: Vec<DeliveryFuture>,
    /// The events the current call emitted, held for the event's transaction (exactly-once).
    pub(crate) held: Vec<Outgoing>,
    /// Summaries of the events the current call emitted, when the plugin summarises them.
    pub(crate) summaries: Vec<crate::kafka_out::emit::EmitSummary>,
    /// What the current call has emitted, against its quota.
    pub(crate) quota: EmitQuota,
    /// When the current call must stop.
    pub(crate) deadline: Instant,
    /// The limit that set `deadline`, reported when it passes.
    pub(crate) timeout: Duration,
    /// The event being handled, for log lines written by the plugin.
    pub(crate) current_event: String,
    /// The handler call's trace context, given to emitted events that carry none.
    pub(crate) traceparent: Option<String>,
    /// Why an `emit` of the current call found the host's producer unable to take the event (its
    /// queue full while the cluster is slow): a handler that gives up over it waits for the
    /// cluster without using up an attempt.
    pub(crate) emit_unavailable: Option<String>,
}

impl HostState {
    /// A fresh state: no network, and only the granted directories (read-only) and environment
    /// variables; stdout and stderr go to the host's log, line by line, within the plugin's log
    /// caps (so a guest panic message is visible and formatted like every other line).
    pub fn new(env: Arc<PluginEnv>, limits: Limiter) -> anyhow::Result<Self> {
        let mut builder = WasiCtx::builder();
        builder
            .stdout(Stdio::stdout(env.log.clone()))
            .stderr(Stdio::stderr(env.log.clone()))
            .allow_ip_name_lookup(false);
        for dir in &env.grants.dirs {
            builder
                .preopened_dir(&dir.host, &dir.guest, wasmtime_wasi::FsPerms::ReadOnly)
                .map_err(anyhow::Error::from)
                .with_context(|| format!("granting directory {} as {}", dir.host.display(), dir.guest))?;
        }
        for (name, value) in &env.env_values {
            builder.env(name, value);
        }
        let wasi = builder.build();
        Ok(Self {
            wasi,
            table: ResourceTable::new(),
            limits,
            env,
            pending: Vec::new(),
            held: Vec::new(),
            summaries: Vec::new(),
            quota: EmitQuota::new(0, 0),
            deadline: Instant::now(),
            timeout: Duration::ZERO,
            current_event: String::new(),
            traceparent: None,
            emit_unavailable: None,
        })
    }
}

/// The events and bytes one call may emit (`plugins.max_emits`, `plugins.max_emit_mib`), and what
/// it has emitted so far. A call past either gets `forbidden` from `emit`, and may go on.
#[derive(Debug, Clone, Copy)]
pub struct EmitQuota {
    max_events: usize,
    max_bytes: usize,
    events: usize,
    bytes: usize,
    refused: bool,
}

impl EmitQuota {
    /// A quota with nothing emitted yet.
    pub fn new(max_events: usize, max_bytes: usize) -> Self {
        Self { max_events, max_bytes, events: 0, bytes: 0, refused: false }
    }

    /// Events accepted so far.
    pub fn events(&self) -> usize {
        self.events
    }

    /// Whether an event of `bytes` fits. `Err((why, first))`: `first` for the call's first refusal.
    fn check(&mut self, bytes: usize) -> Result<(), (String, bool)> {
        let why = if self.events >= self.max_events {
            format!("this call already emitted {} events, its limit (max_emits)", self.events)
        } else if self.bytes.saturating_add(bytes) > self.max_bytes {
            format!(
                "an event of {bytes} bytes after {} bytes would pass this call's limit of {} bytes (max_emit_mib)",
                self.bytes, self.max_bytes
            )
        } else {
            return Ok(());
        };
        Err((why, !std::mem::replace(&mut self.refused, true)))
    }

    /// Counts an event the destination took.
    fn add(&mut self, bytes: usize) {
        self.events += 1;
        self.bytes += bytes;
    }
}

/// Bytes an emitted event takes on the wire, near enough: topic, key, attributes and data.
fn emitted_size(topic: &str, event: &bindings::Cloudevent, key: Option<&[u8]>) -> usize {
    let optional = [&event.datacontenttype, &event.dataschema, &event.subject, &event.time];
    topic.len()
        + key.map_or(0, <[u8]>::len)
        + event.id.len()
        + event.source.len()
        + event.type_.len()
        + event.specversion.len()
        + optional.iter().map(|v| v.as_ref().map_or(0, String::len)).sum::<usize>()
        + event.extensions.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
        + event.data.as_ref().map_or(0, Vec::len)
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl bindings::types::Host for HostState {}

impl bindings::host::Host for HostState {
    fn log(&mut self, level: LogLevel, message: String) {
        let event = self.current_event.as_str();
        let level = match level {
            LogLevel::Trace => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error => tracing::Level::ERROR,
        };
        self.env.log.line(level, event, &message);
    }

    fn emit(
        &mut self,
        topic: String,
        event: bindings::Cloudevent,
        key: Option<Vec<u8>>,
    ) -> Result<(), WitEmitError> {
        let allowed = &self.env.grants.emit_topics;
        if !allowed.is_empty() && !allowed.contains(&topic) {
            return Err(WitEmitError::Forbidden(format!(
                "plugin {} may emit to {} only (plugin.{}.grants.emit_topics)",
                self.env.id,
                allowed.join(", "),
                self.env.id
            )));
        }
        let size = emitted_size(&topic, &event, key.as_deref());
        if let Err((why, first)) = self.quota.check(size) {
            let id = &self.env.id;
            // The topic is the plugin's text: cut, and the line charged to its log budget.
            if first && self.env.log.admit(tracing::Level::WARN) {
                let event = self.current_event.as_str();
                tracing::warn!(plugin = %id, ce.id = %event, topic = %crate::sandbox::plugin_log::bounded(&topic), "emit refused: {why}");
            }
            return Err(WitEmitError::Forbidden(format!(
                "plugin {id}: {why} (plugins / plugin.{id}.limits)"
            )));
        }
        let mut event: crate::event::CloudEvent = event.into();
        if let Some(traceparent) = &self.traceparent
            && event.extension("traceparent").is_none()
        {
            event.extensions.push(("traceparent".into(), traceparent.clone()));
        }
        if self.env.summarize.load(std::sync::atomic::Ordering::Relaxed) {
            self.summaries.push(crate::kafka_out::emit::EmitSummary::of(&topic, &event, key.as_deref()));
        }
        match self.env.emitter.send(&topic, event, key.as_deref()) {
            Ok(sent) => {
                match sent {
                    Sent::OnItsWay(delivery) => self.pending.push(delivery),
                    Sent::Held(record) => self.held.push(record),
                    Sent::Taken => {}
                }
                self.quota.add(size);
                Ok(())
            }
            Err(EmitError::InvalidEvent(m)) => Err(WitEmitError::InvalidEvent(m)),
            Err(EmitError::Forbidden(m)) => Err(WitEmitError::Forbidden(m)),
            Err(EmitError::Unavailable(m)) => {
                self.emit_unavailable.get_or_insert_with(|| m.clone());
                Err(WitEmitError::Unavailable(m))
            }
        }
    }

    fn config_get(&mut self, key: String) -> Option<String> {
        self.env.config.get(&key).cloned()
    }
}
