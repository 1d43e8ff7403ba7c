//! A running Weft host: plugins loaded, consumer in the group, lanes working. `start` brings it up,
//! `shutdown` stops fetching, lets in-flight events finish, commits and leaves the group.
//!
//! # Layout
//! - this file: assembling the stages (Kafka clients, catalog, pipeline, lanes, fetch loop,
//!   listener, watcher) and taking them down in order.
//! - [`status`]: what `/metrics`, `/readyz` and `/plugins` show of the running host.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::sync::watch;

use crate::config::{Config, TopicFormat};
use crate::kafka::client as kafka;
use crate::kafka_in::commit::{commit, store_positions};
use crate::kafka_in::fetch::fetch_loop;
use crate::kafka_in::group::{GroupContext, Membership, WeftConsumer};
use crate::kafka_in::intake::Intake;
use crate::kafka_in::transactions::{Committer, TransactionalProducer};
use crate::kafka_out::dead_letters::{self, DeadLetters};
use crate::kafka_out::emit::{Destination, Emitter};
use crate::ops::health::Health;
use crate::ops::http;
use crate::ops::metrics::Metrics;
use crate::ops::tasks::Tasks;
use crate::pipeline::catalog::{Catalog, Refusal};
use crate::pipeline::context::PipelineContext;
use crate::pipeline::handoff::Transactions;
use crate::pipeline::in_flight::InFlight;
use crate::pipeline::lanes::Lanes;
use crate::pipeline::offsets::OffsetTracker;
use crate::sandbox::plugin::Plugin;
use crate::sandbox::runtime::{Runtime, RuntimeOptions};
use crate::schemas::Schemas;

pub mod status;

/// A running host.
pub struct Host {
    /// What the fetch loop works with; kept for the commit at shutdown.
    intake: Arc<Intake>,
    /// The emit producer and the dead-letter producer, flushed at shutdown.
    producers: [FutureProducer; 2],
    catalog: Arc<Catalog>,
    stop: watch::Sender<bool>,
    /// Every long-lived task: one that ends before shutdown is a failure.
    tasks: Tasks,
    http_addr: Option<std::net::SocketAddr>,
    health: Arc<Health>,
    /// Exactly-once delivery: the way to the transaction committer, and its thread.
    transactions: Option<Transactions>,
    committer: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Host {
    /// Loads the plugins, joins the consumer group and starts handling events.
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        Self::start_with(config, Vec::new()).await
    }

    /// [`Host::start`] with native handlers (see [`crate::sandbox::plugin::NativeHandler`], built with
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
        let exactly_once = config.delivery.exactly_once();
        // Exactly-once: what handlers emit is held with its event and written by its transaction.
        let schemas = Schemas::open(&config, metrics.clone()).await?;
        let to = if exactly_once { Destination::Held } else { Destination::Kafka(producer.clone()) };
        let emitter = Arc::new(Emitter { to, avro: schemas.avro_out.clone() });
        let (transactions, requests) = match exactly_once {
            true => {
                let (transactions, requests) = Transactions::channel();
                (Some(transactions), Some(requests))
            }
            false => (None, None),
        };
        let catalog = Catalog::open(config.clone(), runtime, emitter, metrics.clone(), natives).await?;
        let live = catalog.in_service();
        let topics = &live.topics;

        dead_letters::ensure_topics(&config.kafka, &config.dlq, topics).await;
        let tracker = Arc::new(OffsetTracker::new());
        let stopping = Arc::new(AtomicBool::new(false));
        let membership = Arc::new(Membership::default());
        let context = GroupContext::new(
            tracker.clone(),
            stopping.clone(),
            Duration::from_millis(config.pipeline.drain_timeout_ms),
            metrics.clone(),
            membership.clone(),
            transactions.clone(),
        );
        let consumer_config = match exactly_once {
            true => kafka::transactional_consumer_config(&config.kafka),
            false => kafka::consumer_config(&config.kafka),
        };
        let consumer: WeftConsumer =
            consumer_config.create_with_context(context).context("creating the Kafka consumer")?;
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
        let dead_letters =
            DeadLetters::new(dlq_producer.clone(), config.dlq.clone(), metrics.clone(), health.clone());
        let in_flight_gauge = metrics.in_flight.clone();
        let pipeline = Arc::new(PipelineContext {
            tracker,
            metrics,
            stopping,
            dead_letters,
            catalog: catalog.clone(),
            health: health.clone(),
            transactions: transactions.clone(),
            schemas: schemas.clone(),
        });
        let intake = Arc::new(Intake {
            config: config.clone(),
            consumer: Arc::new(consumer),
            pipeline: pipeline.clone(),
            in_flight: InFlight::new(
                in_flight_gauge,
                config.pipeline.max_in_flight_bytes().expect("validated: fits in memory addresses"),
            ),
            plain_topics: config
                .topics
                .iter()
                .filter(|(_, t)| t.format != TopicFormat::Cloudevents)
                .map(|(name, t)| (name.clone(), t.clone()))
                .collect(),
        });
        let mut tasks = Tasks::new();
        let (stop, stop_rx) = watch::channel(false);
        let settings = &config.pipeline;
        let lanes = Lanes::start(
            settings.lanes,
            settings.lane_capacity,
            settings.max_parked,
            pipeline.clone(),
            &stop_rx,
            &mut tasks,
        );
        let http_addr = if config.http.enabled {
            let status = Arc::new(status::HostStatus {
                metrics: pipeline.metrics.clone(),
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
        // Runs until shutdown (a supervised task that ends is a failure): only with subjects to read.
        if let Some(registry) = config.schema_registry.as_ref().filter(|_| schemas.reads_subjects()) {
            let (schemas, stop) = (schemas.clone(), stop_rx.clone());
            let refresh = Duration::from_millis(registry.refresh_ms);
            tasks.spawn("the registry subjects' refresh", async move {
                schemas.refresh_subjects(refresh, stop).await
            });
        }
        if config.plugins.watch {
            let watcher = catalog.watch(stop_rx.clone())?;
            tasks.spawn("the plugins-directory watcher", async move {
                if let Err(error) = watcher.await {
                    std::panic::resume_unwind(error.into_panic());
                }
            });
        }
        let committer = match requests {
            Some(requests) => Some(start_committer(&config, &intake, requests).await?),
            None => None,
        };
        tasks.spawn("the fetch loop", fetch_loop(intake.clone(), catalog.clone(), lanes, stop_rx));
        let producers = [producer, dlq_producer];
        Ok(Self { intake, producers, catalog, stop, tasks, http_addr, health, transactions, committer })
    }

    /// Resolves when a pipeline task ends or panics before shutdown: the host cannot make progress
    /// any more. `/readyz` turns 503 with the cause; the caller should shut down and exit non-zero,
    /// so an orchestrator restarts the process. Pending forever while every task runs.
    pub async fn failed(&mut self) -> anyhow::Error {
        let Self { tasks, committer, health, .. } = self;
        let committer_ended = async {
            match committer.as_mut() {
                Some(handle) => {
                    let error = match handle.await {
                        Ok(Ok(())) => anyhow::anyhow!("the transaction committer stopped unexpectedly"),
                        Ok(Err(error)) => anyhow::Error::new(TransactionAborted(format!("{error:#}"))),
                        Err(error) => anyhow::anyhow!("the transaction committer failed: {error}"),
                    };
                    tracing::error!(
                        error = format!("{error:#}"),
                        "the host cannot make progress; shutting down"
                    );
                    health.fatal(format!("{error:#}"));
                    error
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            reason = tasks.failed(health) => anyhow::anyhow!(reason),
            error = committer_ended => {
                *committer = None;
                error
            }
        }
    }

    /// Where the HTTP listener is bound, if enabled.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http_addr
    }

    /// The host's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.intake.pipeline.metrics
    }

    /// The plugins in service now.
    pub fn plugins(&self) -> Vec<Arc<Plugin>> {
        self.catalog.in_service().plugins.clone()
    }

    /// The plugin files refused and not changed since, with reasons.
    pub fn refused(&self) -> Vec<Refusal> {
        self.catalog.refused()
    }

    /// The topics the plugins in service subscribe to.
    pub fn topics(&self) -> Vec<String> {
        self.catalog.in_service().topics.clone()
    }

    /// The plugins directory and what is in service.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// Stops fetching, finishes the events already being handled, commits and leaves the group.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        tracing::info!("shutting down: finishing in-flight events");
        self.intake.pipeline.stopping.store(true, Ordering::SeqCst);
        let _ = self.stop.send(true);
        self.tasks.join_all().await;
        // Exactly-once: the lanes are done; the last transaction commits what they finished.
        if let (Some(transactions), Some(committer)) = (self.transactions.take(), self.committer.take()) {
            let stopped =
                tokio::task::spawn_blocking(move || transactions.stop(Duration::from_secs(60))).await;
            if let Ok(Err(error)) = stopped {
                tracing::error!(%error, "the last transaction did not commit; its events will be handled again");
            }
            let _ = committer.await;
        }
        let exactly_once = self.intake.pipeline.exactly_once();
        let Host { intake, producers, .. } = self;
        let consumer = intake.consumer.clone();
        let tracker = intake.pipeline.tracker.clone();
        drop(intake);
        tokio::task::spawn_blocking(move || {
            if !exactly_once {
                store_positions(&tracker, consumer.as_ref());
                commit(&tracker, consumer.as_ref());
            }
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
/// or panics first, shuts down and returns the cause as an error (the process should exit
/// non-zero). A transaction that could not commit (exactly-once delivery: a rebalance moved the
/// group on, or the member was fenced) instead restarts the host in the process: it rejoins its
/// group and handles the aborted transaction's events again from the last committed one.
pub async fn run(config: Config, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let mut host = Host::start(config.clone()).await?;
        let failure = tokio::select! {
            () = &mut shutdown => None,
            failure = host.failed() => Some(failure),
        };
        host.shutdown().await?;
        match failure {
            None => return Ok(()),
            Some(failure) if failure.is::<TransactionAborted>() => {
                tracing::warn!(
                    reason = format!("{failure:#}"),
                    "restarting the pipeline: it rejoins its group and handles the aborted transaction's events again"
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Some(failure) => return Err(failure),
        }
    }
}

/// Exactly-once delivery: a transaction could not commit and was aborted, so its events must be
/// handled again from the last committed transaction ([`run`] restarts the host).
#[derive(Debug, thiserror::Error)]
#[error("a transaction was aborted: {0}")]
pub struct TransactionAborted(pub String);

/// Exactly-once delivery: creates the member's transactional producer, registers its id with the
/// cluster (fencing an earlier producer with the same id) and starts the committer's thread.
async fn start_committer(
    config: &Config,
    intake: &Arc<Intake>,
    requests: std::sync::mpsc::Receiver<crate::pipeline::handoff::Request>,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let delivery = &config.delivery;
    let id = delivery
        .transactional_id
        .clone()
        .unwrap_or_else(|| format!("weft-{}-{:016x}", config.kafka.group_id, rand::random::<u64>()));
    let producer: TransactionalProducer =
        kafka::transactional_producer_config(&config.kafka, &id, delivery.transaction_timeout_ms)
            .set("client.id", "weft-transactions")
            .create()
            .context("creating the transactional producer")?;
    let committer = Committer::new(
        producer,
        intake.consumer.clone(),
        intake.pipeline.tracker.clone(),
        Duration::from_millis(delivery.transaction_interval_ms),
        delivery.transaction_max_events,
    );
    let committer = tokio::task::spawn_blocking(move || committer.init().map(|()| committer))
        .await
        .context("starting the transaction committer")??;
    tracing::info!(transactional_id = %id, "exactly-once delivery: transactions ready");
    Ok(tokio::task::spawn_blocking(move || committer.run(requests)))
}
