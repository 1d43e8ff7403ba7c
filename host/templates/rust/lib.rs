//! {{name}}: a Weft event handler.
//!
//! Receives the events of `{{name}}-in` (config key `topic`), and for each emits one event to
//! `{{name}}-out` (config key `output-topic`) with the same JSON data, keyed like the input. Data
//! that is not JSON is a permanent error: Weft dead-letters the event at once.

use weft_plugin::{Delivery, Event, Handler, Info, Result, Subscription};

struct Plugin;

impl Handler for Plugin {
    fn describe() -> Info {
        let topic = weft_plugin::config("topic").unwrap_or_else(|| "{{name}}-in".into());
        Info::new("{{name}}", env!("CARGO_PKG_VERSION"))
            .description("Emits one event per input event")
            .subscribe(Subscription::topic(topic))
    }

    fn handle(event: Event, delivery: Delivery) -> Result {
        let data: serde_json::Value = event.json_data()?;
        // `<input id>-{{name}}`: a retried or redelivered input emits the same id.
        let output = Event::derived(&event, "{{name}}", "weft/{{name}}", format!("{}.handled", event.ty)).json(&data)?;
        let topic = weft_plugin::config("output-topic").unwrap_or_else(|| "{{name}}-out".into());
        // `?`: a producer that cannot take the event now makes a retryable error.
        weft_plugin::emit(&topic, &output, delivery.key())?;
        weft_plugin::info!("handled {} from {}/{}@{}", event.id, delivery.topic, delivery.partition, delivery.offset);
        Ok(())
    }
}

weft_plugin::export!(Plugin);
