//! One attempt of an event: every plugin still pending on it is called once, in turn, and each
//! failure is turned into a delivery decision (retry, wait, dead letter) by the plugin's retry
//! policy. The attempt claims the event from the offset tracker first, so an event of a revoked
//! partition is never tried.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{Instrument, Level};

use crate::failure::Failure;
use crate::kafka_out::dead_letters::{DlqReason, Letter};
use crate::kafka_out::emit::Emits;
use crate::ops::trace::TraceParent;
use crate::pipeline::canary::Verdict;
use crate::pipeline::catalog::InService;
use crate::pipeline::job::Job;
use crate::pipeline::lane::{Ack, Lane, Progress};
use crate::pipeline::retry::{Decision, decide};
use crate::sandbox::bindings::Cloudevent;
use crate::sandbox::plugin::Plugin;
use crate::sandbox::plugin_log::bounded;
use crate::schemas::{EventData, Refusal};

/// The span of one attempt of one plugin on one event: at `info` when spans are exported, else at
/// `debug` (no cost unless `RUST_LOG` enables it; failure logs carry the same fields themselves).
fn event_span(job: &Job, event: &Cloudevent, plugin: &Plugin, attempt: u32) -> tracing::Span {
    macro_rules! span {
        ($level:expr) => {
            tracing::span!(
                $level,
                "event",
                messaging.system = "kafka",
                topic = %job.record.topic,
                partition = job.record.partition,
                offset = job.record.offset,
                ce.id = %event.id,
                ce.r#type = %event.type_,
                plugin = %plugin.id,
                digest = %plugin.short_digest(),
                attempt,
                trace_id = tracing::field::Empty,
                span_id = tracing::field::Empty,
                parent_span_id = tracing::field::Empty,
            )
        };
    }
    if crate::ops::telemetry::exporting() {
        span!(tracing::Level::INFO)
    } else {
        span!(tracing::Level::DEBUG)
    }
}

impl Lane {
    /// Runs every plugin still pending on the event once, applying the retry policy to failures —
    /// unless the event's partition was revoked meanwhile.
    ///
    /// The attempt claims the event (a revocation waits for the claims on its partition) and
    /// returns with the claim held: [`Lane::settle`] lets go of it once the event is finished or
    /// parked, and with [`Progress::Acking`] only after the acknowledgements of what it emitted are
    /// in. So a revocation never commits without an event that is about to finish, nor lets the
    /// next owner handle again an event whose emitted events are on their way.
    pub(super) async fn attempt(&self, job: &mut Job) -> Progress {
        if !self.pipeline.tracker.start(&job.ticket) {
            return Progress::Revoked;
        }
        self.attempt_claimed(job).await
    }

    async fn attempt_claimed(&self, job: &mut Job) -> Progress {
        // Dead letters an earlier attempt could not write go first (a refused record has only that).
        if let Some(waiting) = self.write_letters(job).await {
            return waiting;
        }
        if job.unchecked
            && let Some(progress) = self.check_schema(job).await
        {
            return progress;
        }
        let event = match &job.event {
            Ok(event) => event,
            Err(_) => return Progress::Done,
        };
        let mut outcome = Outcome::default();
        let mut acks = Vec::new();
        let live = self.pipeline.catalog.in_service();
        let mut removed = false;
        for (routed, attempt) in std::mem::take(&mut job.pending) {
            // A canary rolled back, promoted or gone: its stable version handles the event.
            let (plugin, attempt) = live.version_now(&routed, attempt);
            if plugin.digest != routed.digest {
                tracing::info!(plugin = %routed.id, topic = %job.record.topic, offset = job.record.offset, "the canary is out of service; its stable version handles this event");
            }
            // A plugin deleted from the directory handles nothing more, retries included (a
            // replaced one is still served: its dispatched events finish on the old version).
            if !live.plugins.iter().any(|p| p.id == plugin.id) {
                tracing::info!(plugin = %plugin.id, topic = %job.record.topic, offset = job.record.offset, "plugin removed; not handling this event");
                removed = true;
                continue;
            }
            job.record.attempt = attempt;
            let span = event_span(job, event, &plugin, attempt);
            // The handler call continues the input's trace as a child span.
            let trace = event
                .extensions
                .iter()
                .find(|(name, _)| name == "traceparent")
                .and_then(|(_, value)| TraceParent::parse(value))
                .map(|parent| {
                    let child = crate::ops::trace::continue_in(&span, &parent);
                    span.record("trace_id", child.trace_id.as_str());
                    span.record("span_id", child.span_id.as_str());
                    span.record("parent_span_id", parent.span_id.as_str());
                    child.to_string()
                });
            let result = self.call(job, event, &plugin, trace.as_deref()).instrument(span.clone()).await;
            self.tally(&live, &plugin, result.as_ref().map(|_| ()));
            if let (Ok(emits), Some(shadow)) = (&result, live.shadow_of(&plugin)) {
                shadow.offer(event, &job.record, emits.summaries());
            }
            match result {
                Ok(mut emits) if emits.settled() => {
                    job.held.extend(emits.take_held());
                    self.handled(job, &plugin, emits.count());
                }
                Ok(emits) => acks.push(Ack { plugin, attempt, emits }),
                Err(failure) => {
                    let _entered = span.enter();
                    if let Some(letter) = self.failed(job, plugin, attempt, failure, &mut outcome) {
                        job.letters.push(letter);
                    }
                }
            }
        }
        let retry_in = match self.conclude(job, outcome).await {
            Ok(retry_in) => retry_in,
            Err(left) => return left,
        };
        if !acks.is_empty() {
            return Progress::Acking { acks, retry_in };
        }
        match retry_in {
            Some(delay) => Progress::Retry(delay),
            // Its topic is no longer consumed: left uncommitted, for the plugin's return.
            None if removed && !live.subscribes(&job.record.topic) => Progress::Abandoned,
            None => Progress::Done,
        }
    }

    /// The acknowledgements of an attempt's emitted events came back: a failed one fails that
    /// plugin's attempt like any other failure.
    pub(super) async fn after_acks(
        &self,
        job: &mut Job,
        outcomes: Vec<(Arc<Plugin>, u32, Result<usize, Failure>)>,
        retry_in: Option<Duration>,
    ) -> Progress {
        let mut outcome = Outcome { still: std::mem::take(&mut job.pending), retry_in };
        for (plugin, attempt, result) in outcomes {
            match result {
                Ok(emitted) => {
                    self.pipeline.health.emits_acknowledged();
                    self.handled(job, &plugin, emitted);
                }
                Err(failure) => {
                    self.pipeline.health.emits_failed(failure.to_string());
                    self.pipeline
                        .metrics
                        .failed
                        .with_label_values(&[&job.record.topic, &plugin.id, failure.reason()])
                        .inc();
                    if let Some(letter) = self.failed(job, plugin, attempt, failure, &mut outcome) {
                        job.letters.push(letter);
                    }
                }
            }
        }
        match self.conclude(job, outcome).await {
            Ok(Some(delay)) => Progress::Retry(delay),
            Ok(None) => Progress::Done,
            Err(left) => left,
        }
    }

    /// Counts an attempt of a plugin taking part in a canary rollout, and acts on the canary's
    /// verdict (once).
    fn tally(&self, live: &InService, plugin: &Plugin, result: Result<(), &Failure>) {
        let Some((rollout, is_canary)) = live.rollout_of(plugin) else { return };
        rollout.record(is_canary, result);
        if !is_canary {
            return;
        }
        let base = crate::pipeline::canary::base_of(&plugin.id).unwrap_or_default().to_string();
        let catalog = self.pipeline.catalog.clone();
        let verdict = rollout.verdict();
        if verdict == Verdict::Continue || !rollout.decide(&verdict) {
            return;
        }
        match verdict {
            Verdict::RollBack(why) => tokio::spawn(async move { catalog.roll_back(&base, &why).await }),
            Verdict::Promote(why) => tokio::spawn(async move { catalog.promote(&base, &why).await }),
            Verdict::Continue => unreachable!("returned above"),
        };
    }

    /// Applies the retry policy to a failed attempt of `plugin`: again later (added to
    /// `outcome`), or the dead letter to write for it.
    fn failed(
        &self,
        job: &Job,
        plugin: Arc<Plugin>,
        attempt: u32,
        failure: Failure,
        outcome: &mut Outcome,
    ) -> Option<Letter> {
        let metrics = &self.pipeline.metrics;
        let record = &job.record;
        let ce_id = job.event.as_ref().map_or("", |event| event.id.as_str());
        match decide(&plugin.retry, &failure, attempt) {
            Decision::Wait(delay) => {
                metrics.retried.with_label_values(&[&record.topic, &plugin.id]).inc();
                if plugin.admits_log(Level::WARN) {
                    let error = failure.to_string();
                    tracing::warn!(topic = %record.topic, partition = record.partition, offset = record.offset, ce.id = %ce_id, plugin = %plugin.id, attempt, reason = failure.reason(), error = %bounded(&error), retry_in = ?delay, "attempt failed outside the plugin; will retry without counting it");
                }
                outcome.again(plugin, attempt, delay);
            }
            Decision::Retry(delay) => {
                metrics.retried.with_label_values(&[&record.topic, &plugin.id]).inc();
                // The reason is the plugin's text: cut, and charged to its log budget.
                if plugin.admits_log(Level::INFO) {
                    let error = failure.to_string();
                    tracing::info!(topic = %record.topic, partition = record.partition, offset = record.offset, ce.id = %ce_id, plugin = %plugin.id, attempt, reason = failure.reason(), error = %bounded(&error), retry_in = ?delay, "attempt failed; will retry");
                }
                outcome.again(plugin, attempt + 1, delay);
            }
            Decision::DeadLetter(reason) => {
                // A canary never dead-letters: its stable version handles the event instead.
                if let Some(base) = crate::pipeline::canary::base_of(&plugin.id)
                    && let Some(stable) =
                        self.pipeline.catalog.in_service().plugins.iter().find(|p| p.id == base).cloned()
                {
                    tracing::info!(topic = %record.topic, partition = record.partition, offset = record.offset, ce.id = %ce_id, plugin = %plugin.id, reason = failure.reason(), "the canary gave up on the event; its stable version handles it");
                    outcome.again(stable, 1, Duration::ZERO);
                    return None;
                }
                return Some(Letter {
                    reason,
                    error: failure.to_string(),
                    plugin: Some((plugin.id.clone(), plugin.digest.clone())),
                    attempts: attempt,
                });
            }
        }
        None
    }

    /// Ends an attempt: the plugins of `outcome` that must try again stay pending and the dead
    /// letters decided are written. `Ok`: the wait before the next attempt, if one is due; `Err`:
    /// a dead letter could not be written at shutdown, the event is left for the next owner.
    async fn conclude(&self, job: &mut Job, outcome: Outcome) -> Result<Option<Duration>, Progress> {
        job.pending = outcome.still;
        match self.write_letters(job).await {
            Some(Progress::Retry(wait)) => Ok(Some(outcome.retry_in.map_or(wait, |delay| delay.max(wait)))),
            Some(left) => Err(left),
            None => Ok(outcome.retry_in),
        }
    }

    /// Writes the dead letters `job` waits for, in order. `None` once all are written; else what
    /// becomes of the event: it waits aside for the next try, like a parked retry (its partition
    /// commits nothing past it, other keys and lanes go on), or, at shutdown, it is left
    /// uncommitted for the next owner of its partition.
    async fn write_letters(&self, job: &mut Job) -> Option<Progress> {
        if self.pipeline.exactly_once() {
            // Written by the event's transaction, with what its handlers emitted.
            for letter in std::mem::take(&mut job.letters) {
                job.held.push(self.pipeline.dead_letters.held(&job.raw, &letter));
            }
            return None;
        }
        while let Some(letter) = job.letters.first() {
            if self.pipeline.dead_letters.write(&job.raw, letter).await.is_err() {
                if self.pipeline.stopping() {
                    return Some(Progress::Abandoned);
                }
                return Some(Progress::Retry(job.next_wait()));
            }
            job.letters.remove(0);
        }
        None
    }

    /// Checks the event's data against its topic's schema before any plugin sees it (an Avro
    /// topic's data is decoded here). A refused event goes to the dead-letter topic as
    /// `schema_invalid`, with the errors; one whose schema cannot be read now (the registry does
    /// not answer) waits aside like a retry, and its key's events wait behind it.
    async fn check_schema(&self, job: &mut Job) -> Option<Progress> {
        let Ok(event) = &mut job.event else { return None };
        let data = EventData {
            ty: &event.type_,
            datacontenttype: &mut event.datacontenttype,
            dataschema: &mut event.dataschema,
            data: &mut event.data,
        };
        let reason = match self.pipeline.schemas.check(&job.record.topic, data).await {
            Ok(()) => {
                job.unchecked = false;
                // A dead-letter write that fails later starts from the first wait again.
                job.wait = crate::pipeline::job::FIRST_WAIT;
                return None;
            }
            Err(Refusal::Unavailable(why)) => {
                let id = event.id.clone();
                let wait = job.next_wait();
                tracing::warn!(topic = %job.record.topic, partition = job.record.partition, offset = job.record.offset, ce.id = %id, error = %why, "cannot check the event's schema now; it waits {wait:?}");
                return Some(Progress::Retry(wait));
            }
            Err(Refusal::Invalid { reason, .. }) => reason,
        };
        tracing::warn!(topic = %job.record.topic, partition = job.record.partition, offset = job.record.offset, ce.id = %event.id, %reason, "event does not match its schema; dead-lettering");
        job.unchecked = false;
        job.pending.clear();
        job.letters.push(Letter {
            reason: DlqReason::SchemaInvalid,
            error: reason.clone(),
            plugin: None,
            attempts: 0,
        });
        job.event = Err((DlqReason::SchemaInvalid, reason));
        Some(self.write_letters(job).await.unwrap_or(Progress::Done))
    }

    pub(super) fn handled(&self, job: &Job, plugin: &Plugin, emitted: usize) {
        job.series.handled(&plugin.id);
        if emitted > 0 {
            plugin.series(&self.pipeline.metrics).emitted.inc_by(emitted as u64);
        }
    }

    /// One call into `plugin`, with its metrics. Failures are counted here; successes once their
    /// emitted events are acknowledged ([`Lane::handled`]).
    async fn call(
        &self,
        job: &Job,
        event: &Cloudevent,
        plugin: &Plugin,
        traceparent: Option<&str>,
    ) -> Result<Emits, Failure> {
        let started = Instant::now();
        let result = plugin.call(event, &job.record, traceparent).await;
        let metrics = &self.pipeline.metrics;
        let series = plugin.series(metrics);
        series.handler_duration.observe(started.elapsed().as_secs_f64());
        if let Some(latency) = plugin.first_event_latency() {
            metrics.plugin_swap.observe(latency.as_secs_f64());
            tracing::info!(
                plugin = %plugin.id,
                digest = %plugin.short_digest(),
                swap_ms = latency.as_secs_f64() * 1e3,
                "first event on this version"
            );
        }
        series.memory.set(plugin.memory_bytes() as i64);
        let dropped = plugin.log_lines_dropped();
        if dropped > 0 {
            series.log_dropped.inc_by(dropped);
        }
        if let Err(failure) = &result {
            metrics.failed.with_label_values(&[&job.record.topic, &plugin.id, failure.reason()]).inc();
        }
        result
    }
}

/// The plugins of an attempt that must try again, and after how long.
#[derive(Default)]
struct Outcome {
    still: Vec<(Arc<Plugin>, u32)>,
    retry_in: Option<Duration>,
}

impl Outcome {
    fn again(&mut self, plugin: Arc<Plugin>, attempt: u32, delay: Duration) {
        self.retry_in = Some(self.retry_in.map_or(delay, |d| d.max(delay)));
        self.still.push((plugin, attempt));
    }
}
