//! The conformance handler in Rust (see `plugins/conformance/README.md`).

use std::time::Duration;

use weft_plugin::{Delivery, Error, Event, Handler, Info, Result, Subscription};

struct Conformance;

impl Handler for Conformance {
    fn describe() -> Info {
        let topic = weft_plugin::config("topic").unwrap_or_else(|| "conformance-in".into());
        Info::new("conformance-rust", "1.0.0")
            .description("Weft's plugin conformance cases")
            .subscribe(Subscription::topic(topic))
    }

    fn handle(event: Event, delivery: Delivery) -> Result {
        match event.ext("conformance").unwrap_or("ok") {
            "retry" => Err(Error::retry_after(
                format!("{} asked for a retry", event.id),
                Duration::from_millis(1234),
            )),
            "permanent" => Err(Error::permanent(format!("{} is permanent", event.id))),
            "trap" => panic!("{} asked for a trap", event.id),
            _ => {
                let topic =
                    weft_plugin::config("output-topic").unwrap_or_else(|| format!("{}.out", delivery.topic));
                let mut out =
                    Event::new(format!("{}-out", event.id), "weft/conformance", "weft.conformance.echoed")
                        .subject(event.ty.clone())
                        .extension("lang", "rust")
                        .extension("attempt", delivery.attempt.to_string());
                out.datacontenttype = event.datacontenttype.clone();
                out.data = event.data.clone();
                weft_plugin::emit(&topic, &out, delivery.key())?;
                weft_plugin::info!("handled {}", event.id);
                Ok(())
            }
        }
    }
}

weft_plugin::export!(Conformance);
