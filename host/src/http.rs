//! The small HTTP listener: `/metrics` (Prometheus text), `/healthz` (the process is alive),
//! `/readyz` (plugins loaded, the consumer joined its group — or idle by design: no plugin
//! subscribes to anything — and the pipeline making progress, see `health.rs`), `/plugins` (JSON: what is in service, with digests, subscriptions and
//! limits, what was refused, and the latest reloads). Bound to localhost by default.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::metrics::Metrics;

/// What the endpoints read.
pub struct Status {
    /// The host's metrics.
    pub metrics: Metrics,
    /// The plugins in service, refusals and reloads.
    pub catalog: Arc<Catalog>,
    /// Whether the consumer has joined its group, and if not, the client's latest errors.
    pub membership: Arc<crate::consumer::Membership>,
    /// Whether the pipeline makes progress.
    pub health: Arc<crate::health::Health>,
}

/// Binds `addr` (port 0 picks a free port) and serves until `stop` turns true. Returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
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

async fn metrics(State(status): State<Arc<Status>>) -> Response {
    // Progress gauges are computed when asked for.
    status.health.problems();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], status.metrics.render()).into_response()
}

async fn ready(State(status): State<Arc<Status>>) -> Response {
    let problems = status.health.problems();
    if !problems.is_empty() {
        let mut body = String::from("not ready:\n");
        for problem in problems {
            body.push_str(&format!("- {problem}\n"));
        }
        return (StatusCode::SERVICE_UNAVAILABLE, body).into_response();
    }
    if status.catalog.live().topics.is_empty() {
        return (StatusCode::OK, "ready: no plugin subscribes to a topic (idle)\n").into_response();
    }
    if status.membership.joined.load(Ordering::SeqCst) {
        return (StatusCode::OK, "ready\n").into_response();
    }
    let mut body = String::from("not ready: the consumer has not joined its group yet\n");
    for error in status.membership.errors.lock().expect("membership lock poisoned").values() {
        body.push_str(&format!("- the Kafka client reports: {error}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
}

async fn plugins(State(status): State<Arc<Status>>) -> Response {
    let live = status.catalog.live();
    let loaded: Vec<_> = live
        .plugins
        .iter()
        .map(|p| {
            json!({
                "id": p.id,
                "name": p.description.name,
                "version": p.description.version,
                "description": p.description.description,
                "digest": p.digest,
                // Native handlers are compiled into the program: no file, no sandbox limits.
                "native": p.is_native(),
                "file": (!p.is_native()).then_some(&p.path),
                "subscriptions": p.subscriptions,
                "limits": (!p.is_native()).then(|| p.limits()),
                "retry": {
                    "max_attempts": p.retry.max_attempts,
                    "initial_backoff_ms": p.retry.initial_backoff.as_millis() as u64,
                    "multiplier": p.retry.multiplier,
                    "max_backoff_ms": p.retry.max_backoff.as_millis() as u64,
                    "jitter": p.retry.jitter,
                },
            })
        })
        .collect();
    axum::Json(json!({
        "plugins": loaded,
        "refused": status.catalog.refused(),
        "reloads": status.catalog.reloads(),
    }))
    .into_response()
}
