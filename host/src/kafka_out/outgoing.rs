//! A record on its way out that is held, not sent: with exactly-once delivery, what a handler
//! emits and the dead letters an event needs wait with the event and are written inside the
//! transaction that commits its offset.

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::BaseRecord;

/// One record to write: its topic, key, value and headers, owned.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Destination topic.
    pub topic: String,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record value.
    pub payload: Option<Vec<u8>>,
    /// Record headers.
    pub headers: OwnedHeaders,
}

impl Outgoing {
    /// The record, borrowed for a producer's `send`.
    pub fn record(&self) -> BaseRecord<'_, [u8], [u8]> {
        let mut record = BaseRecord::to(&self.topic).headers(self.headers.clone());
        if let Some(key) = self.key.as_deref() {
            record = record.key(key);
        }
        if let Some(payload) = self.payload.as_deref() {
            record = record.payload(payload);
        }
        record
    }

    /// Its size as the producer counts it, roughly: key, value and headers.
    pub fn size(&self) -> usize {
        use rdkafka::message::Headers;
        let headers: usize = self.headers.iter().map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len)).sum();
        self.key.as_ref().map_or(0, Vec::len) + self.payload.as_ref().map_or(0, Vec::len) + headers
    }
}
