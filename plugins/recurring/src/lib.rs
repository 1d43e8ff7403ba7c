//! Recurring tasks for the Todo app, written with the `weft-plugin` SDK.
//!
//! When a task whose `task_data.recurrence` is `daily`, `weekly` or `monthly` is completed, it
//! writes the `created` event of the next occurrence back to `task-events` (override with the
//! `output-topic` config key), in the Todo app's own plain-JSON shape, keyed by the user id: the
//! app, the audit trail and every other consumer see an ordinary new task. Tasks without a
//! recurrence are left alone; an unknown recurrence or a due date that is not `YYYY-MM-DD` can
//! never be scheduled and fails permanently (Weft dead-letters the event with the reason).
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p recurring`.

use chrono::{Days, Months, NaiveDate};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use weft_plugin::{Delivery, Error, Event, Handler, Info, Result, Subscription};

const COMPLETED: &str = "com.example.task.completed";
const CREATED: &str = "com.example.task.created";

/// A Todo `task-events` record as the app writes it.
#[derive(Deserialize, Serialize)]
struct TaskEvent {
    event_id: String,
    event_type: String,
    #[serde(default)]
    timestamp: Option<String>,
    user_id: String,
    task_data: Map<String, Value>,
}

/// The due date of the occurrence after one due on `due`.
fn next_due(recurrence: &str, due: NaiveDate) -> Option<NaiveDate> {
    match recurrence {
        "daily" => due.checked_add_days(Days::new(1)),
        "weekly" => due.checked_add_days(Days::new(7)),
        // The 31st of January recurs on the last day of February.
        "monthly" => due.checked_add_months(Months::new(1)),
        _ => None,
    }
}

struct Recurring;

impl Handler for Recurring {
    fn describe() -> Info {
        Info::new("recurring", env!("CARGO_PKG_VERSION"))
            .description("Creates the next occurrence of a recurring task when one is completed")
            .subscribe(Subscription::topic("task-events").types([COMPLETED]))
    }

    fn handle(event: Event, _delivery: Delivery) -> Result {
        let completed: TaskEvent = event.json_data()?;
        let text = |name: &str| completed.task_data.get(name).and_then(Value::as_str);
        let Some(recurrence) = text("recurrence").filter(|r| *r != "none") else {
            return Ok(());
        };
        let task_id = text("task_id").ok_or_else(|| Error::permanent("task_data has no task_id"))?;
        let due = text("due_date")
            .ok_or_else(|| Error::permanent(format!("recurring task {task_id} has no due_date")))?;
        let due = NaiveDate::parse_from_str(due, "%Y-%m-%d").map_err(|e| {
            Error::permanent(format!("task {task_id}: due_date {due:?} is not YYYY-MM-DD ({e})"))
        })?;
        let next = next_due(recurrence, due).ok_or_else(|| {
            Error::permanent(format!(
                "task {task_id}: unknown recurrence {recurrence:?} (daily, weekly, monthly or none)"
            ))
        })?;

        let mut task_data = completed.task_data.clone();
        task_data.insert("task_id".into(), format!("{task_id}@{next}").into());
        task_data.insert("due_date".into(), next.to_string().into());
        task_data.insert("previous_task_id".into(), task_id.into());
        task_data.insert("completed".into(), false.into());
        // `<input id>-recur`: a redelivered completion creates the same task, not a second one.
        let next_event = Event::derived(&event, "recur", "weft/recurring", CREATED);
        let created = TaskEvent {
            event_id: next_event.id.clone(),
            event_type: "created".into(),
            timestamp: event.time.clone().or(completed.timestamp),
            user_id: completed.user_id,
            task_data,
        };
        let next_event = next_event.subject(format!("/tasks/{task_id}@{next}")).json(&created)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "task-events".into());
        weft_plugin::emit(&topic, &next_event, Some(created.user_id.as_bytes()))?;
        weft_plugin::info!("task {task_id} recurs {recurrence}: next one due {next}");
        Ok(())
    }
}

weft_plugin::export!(Recurring);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn occurrences_follow_the_calendar() {
        let date = |s| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        assert_eq!(next_due("daily", date("2026-12-31")), Some(date("2027-01-01")));
        assert_eq!(next_due("weekly", date("2026-02-25")), Some(date("2026-03-04")));
        assert_eq!(next_due("monthly", date("2026-01-31")), Some(date("2026-02-28")));
        assert_eq!(next_due("fortnightly", date("2026-01-31")), None);
    }
}
