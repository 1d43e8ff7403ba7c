//! A component's instances, and one call into one of them.
//!
//! Each instance owns its `Store`. After a call that returned normally (handled, or a failure the
//! plugin reported) the instance goes back to the pool and serves the next event, so the per-event
//! cost is a call, not an instantiation. An instance whose call trapped or timed out is dropped with
//! its store: its memory may be corrupt. State a plugin keeps in globals is therefore per instance
//! and can vanish at any time.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::anyhow;
use wasmtime::{Store, UpdateDeadline};

use crate::config::InstanceStrategy;
use crate::failure::Failure;
use crate::kafka_out::emit::Emits;
use crate::sandbox::bindings::{Cloudevent, Delivery, HandleError, Handler, HandlerPre};
use crate::sandbox::description::Description;
use crate::sandbox::host_state::{EmitQuota, HostState, PluginEnv};
use crate::sandbox::limiter::{Limiter, MemoryLimitExceeded};
use crate::sandbox::limits::Limits;
use crate::sandbox::runtime::{DeadlineExceeded, EPOCH_TICK, Runtime};

/// A component's instances: the component linked and checked against the world, the pool of
/// ready instances, and the permits that cap how many exist.
pub(super) struct Instances {
    pre: HandlerPre<HostState>,
    env: Arc<PluginEnv>,
    runtime: Arc<Runtime>,
    pool: Mutex<Vec<Instance>>,
    /// One permit per instance that may exist (`max_instances`).
    permits: tokio::sync::Semaphore,
    /// The limits every call runs under.
    limits: Limits,
    /// Memory of the largest instance seen after a call, in bytes.
    memory_bytes: AtomicUsize,
}

impl Instances {
    /// The instances of the checked component `pre`, run with `env` under `limits`.
    pub(super) fn new(
        pre: HandlerPre<HostState>,
        env: Arc<PluginEnv>,
        runtime: Arc<Runtime>,
        limits: Limits,
    ) -> Self {
        Self {
            pre,
            env,
            runtime,
            pool: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(limits.max_instances),
            limits,
            memory_bytes: AtomicUsize::new(0),
        }
    }

    /// Memory of the largest instance after a call, in bytes.
    pub(super) fn memory_bytes(&self) -> usize {
        self.memory_bytes.load(Ordering::Relaxed)
    }

    /// The plugin's log and its budget.
    pub(super) fn log(&self) -> &crate::sandbox::plugin_log::PluginLog {
        &self.env.log
    }

    /// Keep (or stop keeping) a summary of every event the plugin emits.
    pub(super) fn summarize(&self, on: bool) {
        self.env.summarize.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    /// Log lines the plugin wrote past its rate cap since the last call.
    pub(super) fn log_lines_dropped(&self) -> u64 {
        self.env.log.take_dropped()
    }

    /// Instantiates the component once and asks it to describe itself; the instance then seeds the
    /// pool. Errors are one-line reasons.
    pub(super) async fn describe(&self) -> anyhow::Result<Description> {
        let deadline = Instant::now() + self.limits.timeout;
        let mut instance = self
            .instantiate(deadline)
            .await
            .map_err(|e| anyhow!("instantiation failed: {}", one_line(&e)))?;
        instance.arm(&self.limits, self.runtime.meters_fuel(), deadline, None);
        let info =
            within_deadline(&self.limits, deadline, instance.handler.call_describe(&mut instance.store))
                .await
                .map_err(|e| anyhow!("describe() failed: {}", failure_of_call(e, self.limits.fuel)))?;
        let description = Description {
            name: info.name,
            version: info.version,
            description: info.description,
            subscriptions: info.subscriptions.into_iter().map(Into::into).collect(),
        };
        description.validate("describe()")?;
        if self.limits.instances == InstanceStrategy::Reuse {
            self.pool.lock().expect("pool lock poisoned").push(instance);
        }
        Ok(description)
    }

    /// A new instance, its start-up code run under the `deadline` of the attempt that needs it.
    /// Its tank of fuel (when metered) serves start-up and the first call alike.
    async fn instantiate(&self, deadline: Instant) -> wasmtime::Result<Instance> {
        let limits = Limiter::new(self.limits.memory_bytes);
        let state = HostState::new(self.env.clone(), limits).map_err(wasmtime::Error::from_anyhow)?;
        let mut store = Store::new(self.runtime.engine(), state);
        store.limiter(|state| &mut state.limits);
        if self.runtime.meters_fuel() {
            store.set_fuel(self.limits.fuel.unwrap_or(u64::MAX))?;
        }
        let state = store.data_mut();
        state.timeout = self.limits.timeout;
        state.deadline = deadline;
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            if Instant::now() >= state.deadline {
                Err(DeadlineExceeded(state.timeout).into())
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let handler = within_deadline(&self.limits, deadline, self.pre.instantiate_async(&mut store)).await?;
        Ok(Instance { store, handler, fresh: true })
    }

    /// Calls `handle` for one event in a pooled (or new) instance; the events it emitted are on
    /// their way to the broker.
    pub(super) async fn call(
        &self,
        event: &Cloudevent,
        delivery: &Delivery,
        traceparent: Option<&str>,
    ) -> Result<Emits, Failure> {
        // Held until the instance is back in the pool or dropped: at most `max_instances` exist.
        let permit = self.permits.acquire().await.expect("the semaphore is never closed");
        // One deadline for the attempt: a new instance's start-up code runs inside it.
        let deadline = Instant::now() + self.limits.timeout;
        let pooled = self.pool.lock().expect("pool lock poisoned").pop();
        let mut instance = match pooled {
            Some(instance) => instance,
            None => self.instantiate(deadline).await.map_err(|e| failure_of_call(e, self.limits.fuel))?,
        };
        instance.arm(&self.limits, self.runtime.meters_fuel(), deadline, Some(&event.id));
        instance.store.data_mut().traceparent = traceparent.map(str::to_string);
        let call = instance.handler.call_handle(&mut instance.store, event, delivery);
        let result = within_deadline(&self.limits, deadline, call).await;
        let pending = std::mem::take(&mut instance.store.data_mut().pending);
        let held = std::mem::take(&mut instance.store.data_mut().held);
        let summaries = std::mem::take(&mut instance.store.data_mut().summaries);
        let unavailable = instance.store.data_mut().emit_unavailable.take();
        let count = instance.store.data().quota.events();
        let returned = match result {
            // The instance trapped: drop it, its state cannot be trusted.
            Err(error) => return Err(failure_of_call(error, self.limits.fuel)),
            Ok(returned) => returned,
        };
        let memory = instance.store.data().limits.total_bytes();
        self.memory_bytes.fetch_max(memory, Ordering::Relaxed);
        if self.limits.instances == InstanceStrategy::Reuse {
            self.pool.lock().expect("pool lock poisoned").push(instance);
        }
        drop(permit);
        returned.map(|()| Emits::new(pending, held, count).with_summaries(summaries)).map_err(|error| {
            match (Failure::from(error), unavailable) {
                // The plugin gave up because the host could not take what it emitted (a full producer
                // queue): backpressure from the cluster, not a failure of the event.
                (Failure::Retryable { .. }, Some(reason)) => Failure::EmitUnavailable(format!(
                    "the host's producer could not take an emitted event: {reason}"
                )),
                (failure, _) => failure,
            }
        })
    }
}

struct Instance {
    store: Store<HostState>,
    handler: Handler,
    /// Not called yet: its tank of fuel is the one its start-up code drew from.
    fresh: bool,
}

/// Runs a call into an instance under its wall-clock deadline. The epoch callback stops WebAssembly
/// code that runs past the deadline; this also stops a call that waits in a host function (a WASI
/// sleep, a poll, a blocked read), where no WebAssembly runs and no epoch check happens. It fires
/// one epoch tick after `deadline` (the call's, set by [`Instance::arm`]), so running code is
/// stopped by the epoch check first. A call
/// stopped here is abandoned mid-way: the caller must drop the instance, never pool it.
///
/// Most calls finish at their first poll (the handler never waits): those set no timer at all, and
/// only a call that is still pending after it gets one, due at the same instant.
async fn within_deadline<T>(
    limits: &Limits,
    deadline: Instant,
    call: impl std::future::Future<Output = wasmtime::Result<T>>,
) -> wasmtime::Result<T> {
    let mut call = std::pin::pin!(call);
    if let std::task::Poll::Ready(result) = futures::poll!(call.as_mut()) {
        return result;
    }
    match tokio::time::timeout_at((deadline + EPOCH_TICK).into(), call).await {
        Ok(result) => result,
        Err(_) => Err(DeadlineExceeded(limits.timeout).into()),
    }
}

impl Instance {
    /// Prepares the store for one call: the attempt's `deadline`, a full tank of fuel for a pooled
    /// instance when metered (a new one goes on with what its start-up code left), and the event
    /// id for log attribution.
    fn arm(&mut self, limits: &Limits, metered: bool, deadline: Instant, event_id: Option<&str>) {
        let state = self.store.data_mut();
        state.deadline = deadline;
        state.timeout = limits.timeout;
        // The instance's buffer is reused: no allocation per event.
        state.current_event.clear();
        state.current_event.push_str(event_id.unwrap_or_default());
        state.quota = EmitQuota::new(limits.max_emits, limits.max_emit_bytes);
        state.emit_unavailable = None;
        self.store.set_epoch_deadline(1);
        // Plugins without a fuel limit run unmetered in effect. (Asked of the engine, not of the
        // store: `get_fuel` builds an error on every call when fuel is off.)
        if !std::mem::take(&mut self.fresh) && metered {
            let _ = self.store.set_fuel(limits.fuel.unwrap_or(u64::MAX));
        }
    }
}

impl From<HandleError> for Failure {
    /// What a handler returned.
    fn from(error: HandleError) -> Self {
        match error {
            HandleError::Retryable(e) => {
                Failure::Retryable { reason: e.reason, delay: e.delay_ms.map(Duration::from_millis) }
            }
            HandleError::Permanent(reason) => Failure::Permanent(reason),
        }
    }
}

/// What a call into an instance that ended in an error (a trap, the deadline, the fuel or memory
/// limit) means for the event.
pub(crate) fn failure_of_call(error: wasmtime::Error, fuel: Option<u64>) -> Failure {
    if let Some(DeadlineExceeded(after)) = error.downcast_ref::<DeadlineExceeded>() {
        return Failure::Timeout(*after);
    }
    if let Some(wasmtime::Trap::OutOfFuel) = error.downcast_ref::<wasmtime::Trap>() {
        return Failure::FuelExhausted(fuel.unwrap_or(0));
    }
    let message = format!("{error:#}").replace('\n', " ");
    // The store limiter traps on growth past the cap (`MemoryLimitExceeded`); an instance whose
    // initial memories already exceed it fails to instantiate.
    if error.downcast_ref::<MemoryLimitExceeded>().is_some() || message.contains("memory minimum size") {
        return Failure::MemoryLimit(message);
    }
    Failure::Trap(message)
}

/// An error on one line, for refusal reasons and logs.
pub(super) fn one_line(error: &impl std::fmt::Display) -> String {
    format!("{error:#}").replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_are_bounded_codes() {
        assert_eq!(Failure::Permanent("x".into()).reason(), "permanent_error");
        assert_eq!(Failure::Timeout(Duration::from_secs(1)).reason(), "timeout");
        let deadline: wasmtime::Error = DeadlineExceeded(Duration::from_millis(5)).into();
        assert_eq!(failure_of_call(deadline, None), Failure::Timeout(Duration::from_millis(5)));
        let fuel: wasmtime::Error = wasmtime::Trap::OutOfFuel.into();
        assert_eq!(failure_of_call(fuel, Some(10)), Failure::FuelExhausted(10));
    }
}
