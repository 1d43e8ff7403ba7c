//! Where events that plugins emit go: the host's Kafka producer, in CloudEvents binary mode, or a
//! capture buffer when a handler runs without Kafka (`weft invoke`); and [`Emits`], what one call
//! emitted on its way to the broker, which an event waits for before it counts as handled.

use std::sync::{Arc, Mutex};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::event::CloudEvent;
use crate::failure::Failure;
use crate::kafka_out::outgoing::Outgoing;
use crate::schemas::subjects::LatestSchemas;

/// Why an emitted event was refused; mirrors the WIT `emit-error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The event or topic is not valid.
    #[error("invalid event: {0}")]
    InvalidEvent(String),
    /// The plugin may not write to the topic.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The producer could not take the event.
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// An event a plugin emitted, as captured without Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emitted {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// The event.
    pub event: CloudEvent,
}

/// What became of an emitted event that was taken.
pub enum Sent {
    /// On its way to the broker; resolves when the broker acknowledges it.
    OnItsWay(DeliveryFuture),
    /// Held with its event until the event's transaction.
    Held(Outgoing),
    /// Nothing to wait for (captured, or discarded).
    Taken,
}

/// Where emitted events go, and the topics whose emits are encoded to Avro on the way.
pub struct Emitter {
    /// Where they go.
    pub to: Destination,
    /// Emits to these topics are encoded to their subject's latest Avro schema.
    pub avro: Option<Arc<LatestSchemas>>,
}

/// The destination of emitted events.
pub enum Destination {
    /// Produce to Kafka; the returned delivery future resolves when the broker acknowledges.
    Kafka(FutureProducer),
    /// Hold each emitted record with its event: the transaction that commits the event writes
    /// them (exactly-once delivery), and a failed attempt's records are never written.
    Held,
    /// Keep them in memory.
    Capture(Mutex<Vec<Emitted>>),
    /// Validate and drop them (benchmarks).
    Discard,
}

impl From<Destination> for Emitter {
    fn from(to: Destination) -> Self {
        Self { to, avro: None }
    }
}

impl Emitter {
    /// Emits that are discarded (benchmarks, tests).
    pub fn discard() -> Self {
        Destination::Discard.into()
    }

    /// Emits kept in memory (`weft invoke`).
    pub fn capture() -> Self {
        Destination::Capture(Mutex::new(Vec::new())).into()
    }

    /// Validates `event` (and encodes its data to Avro where its topic's emits are Avro) and hands
    /// it to the destination. For Kafka, the caller must await the
    /// returned future before it counts the input event as handled; a held record must be kept
    /// with its event.
    pub fn send(&self, topic: &str, event: CloudEvent, key: Option<&[u8]>) -> Result<Sent, EmitError> {
        if topic.is_empty() {
            return Err(EmitError::InvalidEvent("topic is empty".into()));
        }
        event.validate().map_err(EmitError::InvalidEvent)?;
        let mut event = event;
        if let Some(encoded) = self.avro.as_ref().and_then(|avro| avro.encode(topic, event.data.as_deref())) {
            let (bytes, dataschema) = encoded.map_err(|refused| match refused {
                Ok(misfit) => EmitError::InvalidEvent(misfit),
                Err(no_schema) => EmitError::Unavailable(no_schema),
            })?;
            event.data = Some(bytes);
            event.datacontenttype = Some("application/avro".into());
            event.dataschema = Some(dataschema);
        }
        match &self.to {
            Destination::Kafka(producer) => {
                let headers = binary_headers(&event);
                let mut record = FutureRecord::<[u8], [u8]>::to(topic).headers(headers);
                if let Some(data) = event.data.as_deref() {
                    record = record.payload(data);
                }
                if let Some(key) = key {
                    record = record.key(key);
                }
                producer
                    .send_result(record)
                    .map(Sent::OnItsWay)
                    .map_err(|(e, _)| EmitError::Unavailable(e.to_string()))
            }
            Destination::Held => Ok(Sent::Held(Outgoing {
                topic: topic.to_string(),
                key: key.map(<[u8]>::to_vec),
                headers: binary_headers(&event),
                payload: event.data,
            })),
            Destination::Discard => Ok(Sent::Taken),
            Destination::Capture(events) => {
                let emitted = Emitted { topic: topic.to_string(), key: key.map(<[u8]>::to_vec), event };
                events.lock().expect("capture lock poisoned").push(emitted);
                Ok(Sent::Taken)
            }
        }
    }

    /// The events captured so far (empty for Kafka).
    pub fn captured(&self) -> Vec<Emitted> {
        match &self.to {
            Destination::Kafka(_) | Destination::Held | Destination::Discard => Vec::new(),
            Destination::Capture(events) => events.lock().expect("capture lock poisoned").clone(),
        }
    }
}

/// The CloudEvents Kafka binary-mode headers for `event`.
pub fn binary_headers(event: &CloudEvent) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new_with_capacity(6 + event.extensions.len());
    let mut add = |key: &str, value: &str| {
        headers = std::mem::take(&mut headers).insert(Header { key, value: Some(value) });
    };
    add("ce_specversion", &event.specversion);
    add("ce_id", &event.id);
    add("ce_source", &event.source);
    add("ce_type", &event.ty);
    if let Some(ct) = &event.datacontenttype {
        add("content-type", ct);
    }
    for (name, value) in
        [("ce_dataschema", &event.dataschema), ("ce_subject", &event.subject), ("ce_time", &event.time)]
    {
        if let Some(value) = value {
            add(name, value);
        }
    }
    for (name, value) in &event.extensions {
        add(&format!("ce_{name}"), value);
    }
    headers
}

/// What a shadow run compares of an emitted event: where it went, its type, its key and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmitSummary {
    /// Destination topic.
    pub topic: String,
    /// The event's `type`.
    pub ty: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// The event's data.
    pub data: Option<Vec<u8>>,
}

impl EmitSummary {
    /// The summary of `event` emitted to `topic` with `key`.
    pub fn of(topic: &str, event: &CloudEvent, key: Option<&[u8]>) -> Self {
        Self {
            topic: topic.to_string(),
            ty: event.ty.clone(),
            key: key.map(<[u8]>::to_vec),
            data: event.data.clone(),
        }
    }
}

impl std::fmt::Display for EmitSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = |bytes: &Option<Vec<u8>>| {
            bytes.as_deref().map_or("-".to_string(), |b| {
                let shown = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
                if b.len() > 120 { format!("{shown}…({} bytes)", b.len()) } else { shown }
            })
        };
        write!(f, "{} type={} key={} data={}", self.topic, self.ty, text(&self.key), text(&self.data))
    }
}

/// The events one successful call emitted, on their way to the broker or held for the event's
/// transaction.
#[must_use = "the event is handled only once its emitted events are acknowledged"]
pub struct Emits {
    pending: Vec<DeliveryFuture>,
    held: Vec<Outgoing>,
    count: usize,
    /// What was emitted, when the plugin summarises its emits (a shadow compares them).
    summaries: Vec<EmitSummary>,
}

impl Emits {
    /// `count` events emitted by one call, `pending` of them on their way to Kafka, `held` of them
    /// kept for the event's transaction.
    pub fn new(pending: Vec<DeliveryFuture>, held: Vec<Outgoing>, count: usize) -> Self {
        Self { pending, held, count, summaries: Vec::new() }
    }

    /// With the summaries of what the call emitted.
    pub fn with_summaries(mut self, summaries: Vec<EmitSummary>) -> Self {
        self.summaries = summaries;
        self
    }

    /// The summaries of what the call emitted (empty unless the plugin summarises its emits).
    pub fn summaries(&self) -> &[EmitSummary] {
        &self.summaries
    }

    /// A call that emitted nothing.
    pub fn none() -> Self {
        Self::new(Vec::new(), Vec::new(), 0)
    }

    /// The records held for the event's transaction, taken out.
    pub fn take_held(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.held)
    }

    /// Whether there is nothing to wait for (no events emitted, or none to Kafka).
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// How many events the call emitted.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Waits until the broker acknowledged every emitted event; returns how many there were. A
    /// refusal that retrying will not change is [`Failure::Emit`]; an unreachable cluster or a
    /// timeout is [`Failure::EmitUnavailable`].
    pub async fn acknowledged(self) -> Result<usize, Failure> {
        for delivery in self.pending {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((error, _))) if crate::kafka::client::refused_for_good(&error) => {
                    return Err(Failure::Emit(error.to_string()));
                }
                Ok(Err((error, _))) => return Err(Failure::EmitUnavailable(error.to_string())),
                Err(_) => return Err(Failure::EmitUnavailable("the producer shut down".into())),
            }
        }
        Ok(self.count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::schemas::subjects::SubjectSchema;

    const ORDER: &str = r#"{"type": "record", "name": "Order", "fields": [
        {"name": "id", "type": "string"}, {"name": "qty", "type": "int"}]}"#;

    fn event(data: &[u8]) -> CloudEvent {
        CloudEvent {
            id: "e1".into(),
            source: "/s".into(),
            ty: "t".into(),
            specversion: "1.0".into(),
            datacontenttype: Some("application/json".into()),
            dataschema: None,
            subject: None,
            time: None,
            extensions: Vec::new(),
            data: Some(data.to_vec()),
        }
    }

    fn emitter() -> (Emitter, Arc<LatestSchemas>) {
        let subjects = HashMap::from([("orders".to_string(), "orders-value".to_string())]);
        let out = Arc::new(LatestSchemas::new("emits are encoded to", subjects));
        (Emitter { avro: Some(out.clone()), ..Emitter::capture() }, out)
    }

    #[test]
    fn emits_to_an_avro_topic_are_encoded_to_its_subject_and_others_pass_unchanged() {
        let (emitter, out) = emitter();
        out.set(
            "orders",
            SubjectSchema::new(7, ORDER, "http://r/subjects/orders-value/versions/2".into()).unwrap(),
        );
        emitter.send("orders", event(br#"{"id": "o1", "qty": 3}"#), None).unwrap();
        emitter.send("audit", event(br#"{"id": "o1"}"#), None).unwrap();
        let captured = emitter.captured();
        let avro = &captured[0].event;
        assert_eq!(avro.data.as_deref(), Some(&[0, 0, 0, 0, 7, 4, b'o', b'1', 6][..]));
        assert_eq!(avro.datacontenttype.as_deref(), Some("application/avro"));
        assert_eq!(avro.dataschema.as_deref(), Some("http://r/subjects/orders-value/versions/2"));
        assert_eq!(captured[1].event.data.as_deref(), Some(&br#"{"id": "o1"}"#[..]), "not an Avro topic");
    }

    #[test]
    fn data_that_does_not_fit_is_refused_and_no_schema_yet_is_unavailable() {
        let (emitter, out) = emitter();
        let early = emitter.send("orders", event(br#"{"id": "o1", "qty": 3}"#), None).err();
        assert!(
            matches!(early, Some(EmitError::Unavailable(ref m)) if m.contains("not read yet")),
            "{early:?}"
        );
        out.set(
            "orders",
            SubjectSchema::new(7, ORDER, "http://r/subjects/orders-value/versions/2".into()).unwrap(),
        );
        let misfit = emitter.send("orders", event(br#"{"id": "o1", "qty": "three"}"#), None).err();
        assert!(
            matches!(misfit, Some(EmitError::InvalidEvent(ref m)) if m.contains("does not fit http://r/subjects/orders-value/versions/2")),
            "{misfit:?}"
        );
        assert!(emitter.captured().is_empty(), "nothing refused was emitted");
    }
}
