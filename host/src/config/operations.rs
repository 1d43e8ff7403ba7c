//! `[http]` and `[telemetry]`: the operations listener and trace export.

use anyhow::bail;
use serde::Deserialize;

use super::defaults;

/// `[telemetry]`: exporting the handler spans over OTLP (logs always go to stderr).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// OTLP/HTTP collector to send spans to, e.g. `http://otel-collector:4318` (`/v1/traces` is
    /// added). Unset: no export.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans. Default `weft`.
    pub service_name: Option<String>,
}

/// `[http]`: the metrics and health listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Serve the endpoints at all.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Address to listen on. Localhost by default: expose it deliberately (`0.0.0.0:9464`).
    #[serde(default = "defaults::http_listen")]
    pub listen: std::net::SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self { enabled: true, listen: defaults::http_listen() }
    }
}

impl TelemetryConfig {
    /// Refuses an OTLP endpoint that is not an HTTP URL.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            bail!("telemetry.otlp_endpoint {endpoint:?} must be an http:// or https:// URL (OTLP over HTTP)");
        }
        Ok(())
    }
}
