//! The host's long-lived tasks (fetch loop, lanes, HTTP listener, plugins watcher), supervised:
//! none of them is meant to end before shutdown, so one that ends or panics is a failure the host
//! reports (`/readyz` 503 with the cause) and acts on (`weft run` shuts down and exits non-zero,
//! so the orchestrator restarts the process), rather than running on without it.

use std::future::Future;

use tokio::task::{JoinError, JoinSet};

use crate::ops::health::Health;

/// Every long-lived task, each resolving to its name.
#[derive(Default)]
pub struct Tasks {
    set: JoinSet<&'static str>,
}

impl Tasks {
    /// No tasks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `task`, known as `name` in reports ("the fetch loop").
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = ()> + Send + 'static) {
        self.set.spawn(async move {
            task.await;
            name
        });
    }

    /// Resolves when a task ends or panics: reports it to `health` and returns the cause. Pending
    /// forever while every task runs (or there are none).
    pub async fn failed(&mut self, health: &Health) -> String {
        let Some(result) = self.set.join_next().await else {
            return std::future::pending().await;
        };
        let reason = cause(result);
        tracing::error!(%reason, "the host cannot make progress; shutting down");
        health.fatal(reason.clone());
        reason
    }

    /// Waits for every task (after shutdown was signalled); failures are logged.
    pub async fn join_all(&mut self) {
        while let Some(result) = self.set.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a pipeline task failed during shutdown");
            }
        }
    }
}

/// What a task's end says about it.
fn cause(result: Result<&'static str, JoinError>) -> String {
    match result {
        Ok(task) => format!("{task} stopped unexpectedly"),
        Err(error) if error.is_panic() => {
            let panic = error.into_panic();
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            format!("a pipeline task panicked: {message}")
        }
        Err(error) => format!("a pipeline task failed: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::ops::health::Progress;
    use crate::ops::metrics::Metrics;

    /// A pipeline with nothing in flight.
    struct Idle;

    impl Progress for Idle {
        fn oldest_unfinished(&self) -> Vec<(String, i32, i64, Duration)> {
            Vec::new()
        }
    }

    fn health() -> Health {
        Health::new(Arc::new(Idle), Metrics::new(), Duration::from_secs(60))
    }

    #[tokio::test]
    async fn a_panicking_task_makes_the_host_unready_with_the_cause() {
        let (health, mut tasks) = (health(), Tasks::new());
        tasks.spawn("the fetch loop", std::future::pending());
        tasks.spawn("a lane", async { panic!("lane exploded") });
        let reason = tasks.failed(&health).await;
        assert_eq!(reason, "a pipeline task panicked: lane exploded");
        assert_eq!(health.problems(), [reason]);
    }

    #[tokio::test]
    async fn a_task_that_returns_is_a_failure_too() {
        let (health, mut tasks) = (health(), Tasks::new());
        tasks.spawn("the fetch loop", async {});
        assert_eq!(tasks.failed(&health).await, "the fetch loop stopped unexpectedly");
        assert!(!health.problems().is_empty());
    }

    #[tokio::test]
    async fn while_every_task_runs_nothing_is_reported() {
        let (health, mut tasks) = (health(), Tasks::new());
        tasks.spawn("the fetch loop", std::future::pending());
        let waited = tokio::time::timeout(Duration::from_millis(50), tasks.failed(&health)).await;
        assert!(waited.is_err(), "no failure while the task runs");
        assert!(health.problems().is_empty());
    }
}
