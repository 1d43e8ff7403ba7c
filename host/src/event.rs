//! The host's view of an event: a CloudEvent 1.0 and the Kafka record it arrived in.
//!
//! Both are plain owned data so they can move from the consumer task to a lane and into a plugin call
//! without borrowing from librdkafka's buffers.

/// A decoded, validated CloudEvent 1.0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudEvent {
    /// `id`, never empty.
    pub id: String,
    /// `source`, never empty.
    pub source: String,
    /// `type`, never empty.
    pub ty: String,
    /// `specversion`, `1.0`.
    pub specversion: String,
    /// `datacontenttype`.
    pub datacontenttype: Option<String>,
    /// `dataschema`.
    pub dataschema: Option<String>,
    /// `subject`.
    pub subject: Option<String>,
    /// `time`, RFC 3339.
    pub time: Option<String>,
    /// Extension attributes, lowercase names, string values, in arrival order.
    pub extensions: Vec<(String, String)>,
    /// The payload bytes.
    pub data: Option<Vec<u8>>,
}

impl CloudEvent {
    /// The value of extension `name`, if present.
    pub fn extension(&self, name: &str) -> Option<&str> {
        self.extensions.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Checks what every CloudEvent must have; used on events plugins emit.
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [("id", &self.id), ("source", &self.source), ("type", &self.ty)] {
            if value.is_empty() {
                return Err(format!("attribute `{name}` is empty"));
            }
        }
        if self.specversion != "1.0" {
            return Err(format!("specversion is {:?}, Weft emits CloudEvents 1.0", self.specversion));
        }
        if let Some((name, _)) = self.extensions.iter().find(|(n, _)| !is_valid_extension_name(n)) {
            return Err(format!("extension name {name:?} is not lowercase letters and digits"));
        }
        Ok(())
    }
}

/// The Kafka record an event came from, as handlers see it in `delivery`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Topic it was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// Record key.
    pub key: Option<Vec<u8>>,
    /// Record timestamp, milliseconds since the Unix epoch.
    pub timestamp_ms: Option<i64>,
    /// Headers that are not CloudEvent attributes, in their original order.
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Whether `name` is a valid CloudEvents attribute name: lowercase ASCII letters and digits.
pub fn is_valid_extension_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> CloudEvent {
        CloudEvent {
            id: "1".into(),
            source: "/s".into(),
            ty: "t".into(),
            specversion: "1.0".into(),
            datacontenttype: None,
            dataschema: None,
            subject: None,
            time: None,
            extensions: vec![("traceparent".into(), "00-ab-cd-01".into())],
            data: None,
        }
    }

    #[test]
    fn valid_event_passes_and_extension_is_found() {
        let e = event();
        assert_eq!(e.validate(), Ok(()));
        assert_eq!(e.extension("traceparent"), Some("00-ab-cd-01"));
        assert_eq!(e.extension("tracestate"), None);
    }

    #[test]
    fn empty_required_attribute_is_named() {
        let mut e = event();
        e.source.clear();
        assert_eq!(e.validate(), Err("attribute `source` is empty".into()));
    }

    #[test]
    fn extension_names_must_be_lowercase_alphanumeric() {
        assert!(is_valid_extension_name("partitionkey2"));
        assert!(!is_valid_extension_name("Trace"));
        assert!(!is_valid_extension_name("trace_id"));
        assert!(!is_valid_extension_name(""));
    }
}
