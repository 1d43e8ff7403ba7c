//! Order status for an order-management system's sagas, written with the `weft-plugin` SDK.
//!
//! The saga orchestrator publishes each step of an order's saga to `oms.saga.events` as plain JSON
//! keyed by `order_id` (`{"event_id", "event_type", "order_id", "saga_id", "step", "occurred_at",
//! "payload"}`). For every step this plugin emits the order's new status to `oms.order.events`
//! (override with the `output-topic` config key), keyed by the same `order_id`: Weft hands it one
//! order's steps strictly in order, so the status events come out in the order the saga took them.
//! A step that is not part of the saga, or a status change that skips its predecessor, fails
//! permanently and is dead-lettered; the trace context of the saga's record (its `traceparent`
//! header) carries on to the status event.
//!
//! Build: `cargo build --release --target wasm32-wasip2 -p order-saga`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_plugin::{Delivery, Error, Event, Handler, Info, Result, Subscription};

const TYPE_PREFIX: &str = "com.example.oms.saga.";

/// One step of an order's saga, as the orchestrator writes it.
#[derive(Deserialize)]
struct SagaStep {
    order_id: String,
    saga_id: String,
    /// The order status the orchestrator believed the order had before this step.
    from_status: Option<String>,
    #[serde(default)]
    payload: Value,
}

#[derive(Serialize)]
struct StatusChanged<'a> {
    order_id: &'a str,
    saga_id: &'a str,
    status: &'static str,
    previous_status: Option<&'static str>,
    reason: Option<&'a str>,
    saga_event: &'a str,
}

/// The status a saga step moves an order to, and the status it must come from (`None`: the step
/// starts the saga).
fn transition(step: &str) -> Option<(&'static str, Option<&'static str>)> {
    Some(match step {
        "OrderPlaced" => ("PENDING", None),
        "PaymentAuthorized" => ("PAID", Some("PENDING")),
        "PaymentDeclined" => ("CANCELLED", Some("PENDING")),
        "InventoryReserved" => ("CONFIRMED", Some("PAID")),
        // Compensation: the payment is refunded by the saga, the order is cancelled.
        "InventoryUnavailable" => ("CANCELLED", Some("PAID")),
        "OrderShipped" => ("SHIPPED", Some("CONFIRMED")),
        "OrderDelivered" => ("DELIVERED", Some("SHIPPED")),
        _ => return None,
    })
}

struct OrderSaga;

impl Handler for OrderSaga {
    fn describe() -> Info {
        Info::new("order-saga", env!("CARGO_PKG_VERSION"))
            .description("Turns order-saga steps into order status changes")
            .subscribe(Subscription::topic("oms.saga.events").types([format!("{TYPE_PREFIX}*")]))
    }

    fn handle(event: Event, _delivery: Delivery) -> Result {
        let name = event.ty.strip_prefix(TYPE_PREFIX).unwrap_or(&event.ty);
        let step: SagaStep = event.json_data()?;
        let (status, from) = transition(name).ok_or_else(|| {
            Error::permanent(format!("order {}: {name} is not a step of the order saga", step.order_id))
        })?;
        if step.from_status.as_deref() != from {
            return Err(Error::permanent(format!(
                "order {}: {name} moves an order from {}, but the saga says it was {}",
                step.order_id,
                from.unwrap_or("nothing"),
                step.from_status.as_deref().unwrap_or("nothing"),
            )));
        }
        let changed = StatusChanged {
            order_id: &step.order_id,
            saga_id: &step.saga_id,
            status,
            previous_status: from,
            reason: step.payload.get("reason").and_then(Value::as_str),
            saga_event: &event.id,
        };
        let output =
            Event::derived(&event, "status", "weft/order-saga", "com.example.oms.order.status_changed")
                .subject(format!("/orders/{}", step.order_id))
                .json(&changed)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "oms.order.events".into());
        weft_plugin::emit(&topic, &output, Some(step.order_id.as_bytes()))?;
        weft_plugin::debug!("order {}: {} -> {status}", step.order_id, from.unwrap_or("new"));
        Ok(())
    }
}

weft_plugin::export!(OrderSaga);
