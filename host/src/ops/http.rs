//! The small HTTP listener: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (plugins loaded, the consumer joined its group — or idle by design: no plugin
//! subscribes to anything — and the pipeline making progress, see `health.rs`), `/plugins`
//! (JSON: what is in service, with digests, subscriptions and limits, what was refused, and the
//! latest reloads). Bound to localhost by default. What each endpoint says comes from [`Status`].

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::sync::watch;

/// What the listener shows. The host implements it over its metrics, health, consumer membership
/// and plugins in service, so this file knows only HTTP.
pub trait Status: Send + Sync + 'static {
    /// `/metrics`: every metric in Prometheus text format.
    fn metrics(&self) -> String;
    /// `/readyz`: `Ok(body)` when ready, `Err(body)` with every reason when not.
    fn readiness(&self) -> Result<String, String>;
    /// `/plugins`: what is in service, what was refused, the latest reloads.
    fn plugins(&self) -> serde_json::Value;
}

/// Binds `addr` (port 0 picks a free port) and serves until `stop` turns true. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    status: Arc<dyn Status>,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("http.listen: cannot listen on {addr}"))?;
    let bound = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/plugins", get(plugins))
        .with_state(status);
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%error, "http listener failed");
        }
    });
    tracing::info!(address = %bound, "http listener: /metrics /healthz /readyz /plugins");
    Ok((bound, task))
}

async fn metrics(State(status): State<Arc<dyn Status>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], status.metrics()).into_response()
}

async fn ready(State(status): State<Arc<dyn Status>>) -> Response {
    match status.readiness() {
        Ok(body) => (StatusCode::OK, body).into_response(),
        Err(body) => (StatusCode::SERVICE_UNAVAILABLE, body).into_response(),
    }
}

async fn plugins(State(status): State<Arc<dyn Status>>) -> Response {
    axum::Json(status.plugins()).into_response()
}
