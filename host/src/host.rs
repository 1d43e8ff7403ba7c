//! A running Weft host: plugins loaded, consumer in the group, lanes working. `start` brings it up,
//! `shutdown` stops fetching, lets in-flight events finish, commits and leaves the group.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;

use crate::catalog::{Catalog, Refusal};
use crate::config::Config;
use crate::consumer::{self, GroupContext, Shared, WeftConsumer};
use crate::dlq::DeadLetters;
use crate::emit::Emitter;
use crate::health::Health;
use crate::http;
use crate::in_flight::InFlight;
use crate::kafka;
use crate::lanes::Lanes;
use crate::metrics::Metrics;
use crate::offsets::OffsetTracker;
use crate::plugin::Plugin;
use crate::runtime::{Runtime, RuntimeOptions};
use crate::tasks::Tasks;

/// A running host.
pub struct Host {
    shared: Arc<Shared>,
    /// The emit producer and the dead-letter producer, flushed at shutdown.
    producers: [FutureProducer; 2],
    catalog: Arc<Catalog>,
    stop: watch::Sender<bool>,
    /// Every long-lived task: one that ends before shutdown is a failure.
    tasks: Tasks,
    http_addr: Option<std::net::SocketAddr>,
    health: Arc<Health>,
}

impl Host {
    /// Loads the plugins, joins the consumer group and starts handling events.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, Vec::new()).await
    }

    /// [`Host::start`] with native handlers (see [`crate::plugin::NativeHandler`], built with
    /// [`Plugin::native`]) served beside the plugins directory's components, on the same path.
    /// `[plugin.<id>]` applies to them as to a component: `subscriptions` overrides theirs and
    /// `retry` sets their retry policy (`config` and `limits` do not apply: there is no sandbox).
    pub async fn start_with(config: Config, natives: Vec<Plugin>) -> anyhow::Result<Self> {
        config.validate()?;
        let natives = natives
            .into_iter()
            .map(|mut plugin| {
                if let Some(subscriptions) =
                    config.plugin.get(&plugin.id).and_then(|p| p.subscriptions.clone())
                {
                    plugin.subscriptions = subscriptions;
                }
                plugin.retry = config.retry_policy(&plugin.id);
                Arc::new(plugin)
            })
            .collect();
        let config = Arc::new(config);
        let metrics = Metrics::new();
        metrics.initialise([]);
        let runtime = Runtime::with_options(&RuntimeOptions::from_config(&config))?;
        let producer: FutureProducer =
            kafka::producer_config(&config.kafka).create().context("creating the Kafka producer")?;
        let emitter = Arc::new(Emitter::Kafka(producer.clone()));
        let catalog = Catalog::open(config.clone(), runtime, emitter, metrics.clone(), natives).await?;
        let live = catalog.live();
        let topics = &live.topics;

        crate::dlq::ensure_topics(&config.kafka, &config.dlq, topics).await;
        let tracker = Arc::new(OffsetTracker::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let membership = Arc::new(crate::consumer::Membership::default());
        let context = GroupContext::new(
            tracker.clone(),
            stopping.clone(),
            Duration::from_millis(config.pipeline.drain_timeout_ms),
            metrics.clone(),
            membership.clone(),
        );
        let consumer: WeftConsumer = kafka::consumer_config(&config.kafka)
            .create_with_context(context)
            .context("creating the Kafka consumer")?;
        tracing::info!(
            group = %config.kafka.group_id,
            topics = %topics.join(","),
            plugins = live.plugins.len(),
            refused = catalog.refused().len(),
            "weft started"
        );

        let health = Arc::new(Health::new(
            tracker.clone(),
            metrics.clone(),
            Duration::from_millis(config.pipeline.stall_timeout_ms),
        ));
        // Dead letters get their own producer: a plugin that emits a lot cannot fill its queue.
        let dlq_producer: FutureProducer = kafka::producer_config(&config.kafka)
            .set("client.id", "weft-dlq")
            .create()
            .context("creating the dead-letter producer")?;
        let dead_letters = DeadLetters::new(
            dlq_producer.clone(),
            config.dlq.clone(),
            metrics.clone(),
            stopping.clone(),
            health.clone(),
        );
        let in_flight_gauge = metrics.in_flight.clone();
        let shared = Arc::new(Shared {
            consumer: Arc::new(consumer),
            tracker,
            metrics,
            stopping,
            dead_letters,
            dead_letter_unrouted: config.dlq.unrouted,
            catalog: catalog.clone(),
            in_flight: InFlight::new(
                in_flight_gauge,
                usize::try_from(config.pipeline.max_in_flight_mib << 20).unwrap_or(usize::MAX),
            ),
            max_uncommitted: config.pipeline.max_uncommitted,
            replay_routing: config.dlq.replay_routing,
            plain_topics: config
                .topics
                .iter()
                .filter(|(_, t)| t.format != crate::plain::TopicFormat::Cloudevents)
                .map(|(name, t)| (name.clone(), t.clone()))
                .collect(),
        });
        let mut tasks = Tasks::new();
        let pipeline = &config.pipeline;
        let lanes = Lanes::start(
            pipeline.lanes,
            pipeline.lane_capacity,
            pipeline.max_parked,
            shared.clone(),
            &mut tasks,
        );
        let (stop, stop_rx) = watch::channel(false);
        let http_addr = if config.http.enabled {
            let status = Arc::new(http::Status {
                metrics: shared.metrics.clone(),
                catalog: catalog.clone(),
                membership,
                health: health.clone(),
            });
            let (addr, task) = http::serve(config.http.listen, status, stop_rx.clone()).await?;
            tasks.spawn("the HTTP listener", async move {
                if let Err(error) = task.await {
                    std::panic::resume_unwind(error.into_panic());
                }
            });
            Some(addr)
        } else {
            None
        };
        if config.plugins.watch {
            let watcher = catalog.watch(stop_rx.clone())?;
            tasks.spawn("the plugins-directory watcher", async move {
                if let Err(error) = watcher.await {
                    std::panic::resume_unwind(error.into_panic());
                }
            });
        }
        tasks.spawn("the fetch loop", consumer::fetch_loop(shared.clone(), catalog.clone(), lanes, stop_rx));
        let producers = [producer, dlq_producer];
        Ok(Self { shared, producers, catalog, stop, tasks, http_addr, health })
    }

    /// Resolves when a pipeline task ends or panics before shutdown: the host cannot make progress
    /// any more. `/readyz` turns 503 with the cause; the caller should shut down and exit non-zero,
    /// so an orchestrator restarts the process. Pending forever while every task runs.
    pub async fn failed(&mut self) -> anyhow::Error {
        anyhow::anyhow!(self.tasks.failed(&self.health).await)
    }

    /// Where the HTTP listener is bound, if enabled.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The plugins in service now.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.catalog.live().plugins.clone()
    }

    /// The plugin files refused and not changed since, with reasons.
    pub fn refused(&self) -> Vec<Refusal> {
        self.catalog.refused()
    }

    /// The topics the plugins in service subscribe to.
    pub fn topics(&self) -> Vec<String> {
        self.catalog.live().topics.clone()
    }

    /// The plugins directory and what is in service.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Stops fetching, finishes the events already being handled, commits and leaves the group.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down: finishing in-flight events");
        self.shared.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        self.tasks.join_all().await;
        let Host { shared, producers, .. } = self;
        let consumer = shared.consumer.clone();
        let tracker = shared.tracker.clone();
        drop(shared);
        tokio::task::spawn_blocking(move || {
            consumer::store_positions(&tracker, consumer.as_ref());
            consumer::commit(consumer.as_ref());
            consumer.unsubscribe();
            // Dropping the last handle closes the consumer: it leaves the group cleanly.
            drop(consumer);
            for producer in producers {
                if let Err(error) = producer.flush(Duration::from_secs(10)) {
                    tracing::warn!(%error, "producer flush at shutdown");
                }
            }
        })
        .await
        .context("closing the Kafka clients")?;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Runs a host until `shutdown` resolves, then shuts it down gracefully. If a pipeline task ends
/// or panics first, shuts down and returns the cause as an error (the process should exit non-zero).
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let mut host = Host::start(config).await?;
    let failure = tokio::select! {
        () = shutdown => None,
        failure = host.failed() => Some(failure),
    };
    host.shutdown().await?;
    match failure {
        Some(failure) => Err(failure),
        None => Ok(()),
    }
}
