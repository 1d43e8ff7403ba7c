//! The CloudEvents Kafka protocol binding, read side: turns a record's headers and value into a
//! [`CloudEvent`], in binary mode (`ce_*` headers, `content-type` = `datacontenttype`, value = data) or
//! structured mode (`content-type: application/cloudevents+json`, the value is the whole event).
//!
//! Structured events are read with a streaming visitor rather than a JSON DOM: attributes become
//! strings, `data` is kept as the raw JSON bytes, and nothing else is allocated.

use std::borrow::Cow;
use std::fmt;

use base64::Engine as _;
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::event::{CloudEvent, is_valid_extension_name};

/// Why a record is not a valid CloudEvent. The message is meant for logs and dead-letter headers.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

impl From<String> for DecodeError {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl DecodeError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// A decoded event and the record's headers that are not CloudEvent attributes.
pub type Decoded = (CloudEvent, Vec<(String, Vec<u8>)>);

const CE_PREFIX: &str = "ce_";
const STRUCTURED_JSON: &str = "application/cloudevents+json";
const BATCH_JSON: &str = "application/cloudevents-batch+json";

/// Decodes a record. `headers` are the record's headers in order (a `None` value is a null header).
/// Returns the event and the headers that are not CloudEvent attributes.
pub fn decode(headers: &[(&str, Option<&[u8]>)], value: Option<&[u8]>) -> Result<Decoded, DecodeError> {
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, v)| header_str("content-type", *v))
        .transpose()?;
    let media_type = content_type.map(|ct| ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase());

    match media_type.as_deref() {
        Some(STRUCTURED_JSON) => {
            check_charset(content_type.unwrap_or_default())?;
            let event = decode_structured(value)?;
            Ok((event, other_headers(headers, |name| name.eq_ignore_ascii_case("content-type"))))
        }
        Some(BATCH_JSON) => Err(DecodeError::new(
            "batched CloudEvents (application/cloudevents-batch+json) are not supported on Kafka; \
             produce one event per record",
        )),
        Some(other) if other.starts_with("application/cloudevents") => Err(DecodeError::new(format!(
            "structured event format {other} is not supported (only application/cloudevents+json)"
        ))),
        _ if headers.iter().any(|(name, _)| *name == "ce_specversion") => {
            decode_binary(headers, content_type, value)
        }
        // Many producers write structured JSON without setting content-type; accept those when the
        // value is a JSON object and no header says otherwise.
        None if value.is_some_and(looks_like_json_object) => {
            let event = decode_structured(value).map_err(|e| {
                DecodeError::new(format!("not a CloudEvent (no ce_specversion header, no content-type; {e})"))
            })?;
            Ok((event, other_headers(headers, |_| false)))
        }
        _ => Err(DecodeError::new(format!(
            "not a CloudEvent: no ce_specversion header (binary mode) and content-type is {} \
             (structured mode needs {STRUCTURED_JSON})",
            content_type.map_or_else(|| "absent".to_string(), |ct| format!("{ct:?}"))
        ))),
    }
}

fn looks_like_json_object(value: &[u8]) -> bool {
    value.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{')
}

fn check_charset(content_type: &str) -> Result<(), DecodeError> {
    for param in content_type.split(';').skip(1) {
        if let Some((name, value)) = param.split_once('=')
            && name.trim().eq_ignore_ascii_case("charset")
        {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") && !charset.eq_ignore_ascii_case("utf8") {
                return Err(DecodeError::new(format!("unsupported charset {charset:?} (only UTF-8)")));
            }
        }
    }
    Ok(())
}

fn header_str<'a>(name: &str, value: Option<&'a [u8]>) -> Result<&'a str, DecodeError> {
    let value = value.ok_or_else(|| DecodeError::new(format!("header {name} has no value")))?;
    std::str::from_utf8(value).map_err(|_| DecodeError::new(format!("header {name} is not UTF-8")))
}

fn other_headers(headers: &[(&str, Option<&[u8]>)], skip: impl Fn(&str) -> bool) -> Vec<(String, Vec<u8>)> {
    headers
        .iter()
        .filter(|(name, _)| !skip(name))
        .map(|(name, value)| (name.to_string(), value.unwrap_or_default().to_vec()))
        .collect()
}

/// Attribute values collected before the required ones are checked.
#[derive(Default)]
struct Attributes {
    specversion: Option<String>,
    id: Option<String>,
    source: Option<String>,
    ty: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    subject: Option<String>,
    time: Option<String>,
    extensions: Vec<(String, String)>,
}

impl Attributes {
    /// Stores a named attribute; anything that is not a context attribute is an extension.
    fn set(&mut self, name: &str, value: String) -> Result<(), DecodeError> {
        let slot = match name {
            "specversion" => &mut self.specversion,
            "id" => &mut self.id,
            "source" => &mut self.source,
            "type" => &mut self.ty,
            "datacontenttype" => &mut self.datacontenttype,
            "dataschema" => &mut self.dataschema,
            "subject" => &mut self.subject,
            "time" => &mut self.time,
            _ => {
                if !is_valid_extension_name(name) {
                    return Err(DecodeError::new(format!(
                        "extension attribute name {name:?} is not lowercase letters and digits"
                    )));
                }
                self.extensions.push((name.to_string(), value));
                return Ok(());
            }
        };
        *slot = Some(value);
        Ok(())
    }

    fn finish(self, data: Option<Vec<u8>>) -> Result<CloudEvent, DecodeError> {
        let specversion = self.specversion.ok_or_else(|| missing("specversion"))?;
        if specversion != "1.0" {
            return Err(DecodeError::new(format!(
                "specversion {specversion:?} is not supported (Weft reads CloudEvents 1.0)"
            )));
        }
        let required = |value: Option<String>, name: &str| match value {
            Some(v) if !v.is_empty() => Ok(v),
            Some(_) => Err(DecodeError::new(format!("required attribute `{name}` is empty"))),
            None => Err(missing(name)),
        };
        let id = required(self.id, "id")?;
        let source = required(self.source, "source")?;
        let ty = required(self.ty, "type")?;
        if let Some(time) = &self.time
            && chrono::DateTime::parse_from_rfc3339(time).is_err()
        {
            return Err(DecodeError::new(format!("attribute `time` {time:?} is not an RFC 3339 timestamp")));
        }
        Ok(CloudEvent {
            id,
            source,
            ty,
            specversion,
            datacontenttype: self.datacontenttype,
            dataschema: self.dataschema,
            subject: self.subject,
            time: self.time,
            extensions: self.extensions,
            data,
        })
    }
}

fn missing(name: &str) -> DecodeError {
    DecodeError::new(format!("required attribute `{name}` is missing"))
}

fn decode_binary(
    headers: &[(&str, Option<&[u8]>)],
    content_type: Option<&str>,
    value: Option<&[u8]>,
) -> Result<Decoded, DecodeError> {
    let mut attributes = Attributes::default();
    let mut rest = Vec::new();
    for (name, raw) in headers {
        if let Some(attribute) = name.strip_prefix(CE_PREFIX) {
            let value = header_str(name, *raw)?;
            attributes.set(&attribute.to_ascii_lowercase(), value.to_string())?;
        } else if !name.eq_ignore_ascii_case("content-type") {
            rest.push((name.to_string(), raw.unwrap_or_default().to_vec()));
        }
    }
    if let Some(ct) = content_type {
        attributes.datacontenttype = Some(ct.to_string());
    }
    Ok((attributes.finish(value.map(<[u8]>::to_vec))?, rest))
}

fn decode_structured(value: Option<&[u8]>) -> Result<CloudEvent, DecodeError> {
    let value = value.ok_or_else(|| DecodeError::new("structured event has an empty (null) value"))?;
    let structured: Structured<'_> = serde_json::from_slice(value)
        .map_err(|e| DecodeError::new(format!("structured event is not valid JSON for a CloudEvent: {e}")))?;
    let data = match (structured.data, structured.data_base64) {
        (Some(_), Some(_)) => {
            return Err(DecodeError::new("event has both `data` and `data_base64`"));
        }
        (Some(raw), None) => structured_data(raw, structured.attributes.datacontenttype.as_deref())?,
        (None, Some(b64)) => Some(
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|e| DecodeError::new(format!("`data_base64` is not valid base64: {e}")))?,
        ),
        (None, None) => None,
    };
    structured.attributes.finish(data)
}

/// `data` as bytes: JSON media types keep the JSON text; a JSON string with another media type is
/// the string's own contents (the JSON event format's rule for non-JSON data).
fn structured_data(raw: &RawValue, content_type: Option<&str>) -> Result<Option<Vec<u8>>, DecodeError> {
    let text = raw.get();
    if text == "null" {
        return Ok(None);
    }
    if text.starts_with('"') && !content_type.is_none_or(is_json_media_type) {
        let s: String = serde_json::from_str(text)
            .map_err(|e| DecodeError::new(format!("`data` is not a valid JSON string: {e}")))?;
        return Ok(Some(s.into_bytes()));
    }
    Ok(Some(text.as_bytes().to_vec()))
}

fn is_json_media_type(content_type: &str) -> bool {
    let media = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media == "application/json" || media == "text/json" || media.ends_with("+json")
}

/// The attributes the CloudEvents spec defines (as opposed to extensions).
fn is_context_attribute(name: &str) -> bool {
    matches!(
        name,
        "specversion" | "id" | "source" | "type" | "datacontenttype" | "dataschema" | "subject" | "time"
    )
}

/// A structured-mode event as read from JSON: attributes, and `data` left as raw JSON.
struct Structured<'a> {
    attributes: Attributes,
    data: Option<&'a RawValue>,
    data_base64: Option<String>,
}

/// A JSON object key, borrowed from the input unless it contains escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// An attribute value: CloudEvents allows strings, numbers and booleans; `null` means absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum AttributeValue {
    Str(String),
    Bool(bool),
    Number(serde_json::Number),
    Other(serde::de::IgnoredAny),
}

impl<'de: 'a, 'a> Deserialize<'de> for Structured<'a> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(StructuredVisitor(std::marker::PhantomData))
    }
}

struct StructuredVisitor<'a>(std::marker::PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for StructuredVisitor<'a> {
    type Value = Structured<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object holding a CloudEvent")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut event = Structured { attributes: Attributes::default(), data: None, data_base64: None };
        while let Some(Key(key)) = map.next_key()? {
            match key.as_ref() {
                "data" => event.data = Some(map.next_value()?),
                "data_base64" => event.data_base64 = map.next_value()?,
                name => {
                    let value = match map.next_value::<Option<AttributeValue>>()? {
                        None => continue,
                        Some(AttributeValue::Str(s)) => s,
                        // The JSON event format types every context attribute as a JSON string;
                        // only extensions may be numbers or booleans.
                        Some(_) if is_context_attribute(name) => {
                            return Err(de::Error::custom(format!(
                                "attribute `{name}` must be a JSON string"
                            )));
                        }
                        Some(AttributeValue::Bool(b)) => b.to_string(),
                        Some(AttributeValue::Number(n)) => n.to_string(),
                        Some(AttributeValue::Other(_)) => {
                            return Err(de::Error::custom(format!(
                                "attribute `{name}` must be a string, number or boolean"
                            )));
                        }
                    };
                    event.attributes.set(name, value).map_err(de::Error::custom)?;
                }
            }
        }
        Ok(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRUCTURED: &str = r#"{"specversion":"1.0","id":"e-1","source":"/todo","type":"com.example.task.created",
        "time":"2026-11-23T10:00:00Z","datacontenttype":"application/json","traceparent":"00-abc-def-01",
        "priority":3,"data":{"task_id":"t1","user_id":"u1"}}"#;

    fn ct(value: &str) -> Vec<(&'static str, Option<&[u8]>)> {
        vec![("content-type", Some(value.as_bytes()))]
    }

    fn binary_headers() -> Vec<(&'static str, Option<&'static [u8]>)> {
        vec![
            ("ce_specversion", Some(b"1.0".as_slice())),
            ("ce_id", Some(b"b-1".as_slice())),
            ("ce_source", Some(b"/todo".as_slice())),
            ("ce_type", Some(b"com.example.task.updated".as_slice())),
            ("ce_traceparent", Some(b"00-abc-def-01".as_slice())),
            ("content-type", Some(b"application/json".as_slice())),
            ("x-tenant", Some(b"acme".as_slice())),
        ]
    }

    #[test]
    fn structured_event_keeps_data_as_raw_json() {
        let (event, rest) = decode(&ct(STRUCTURED_JSON), Some(STRUCTURED.as_bytes())).unwrap();
        assert_eq!(event.id, "e-1");
        assert_eq!(event.ty, "com.example.task.created");
        assert_eq!(event.data.as_deref(), Some(br#"{"task_id":"t1","user_id":"u1"}"#.as_slice()));
        assert_eq!(event.extension("traceparent"), Some("00-abc-def-01"));
        assert_eq!(event.extension("priority"), Some("3"));
        assert!(rest.is_empty());
    }

    #[test]
    fn structured_with_charset_parameter_is_accepted() {
        let headers = ct("application/cloudevents+json; charset=UTF-8");
        assert!(decode(&headers, Some(STRUCTURED.as_bytes())).is_ok());
        let latin1 = ct("application/cloudevents+json; charset=iso-8859-1");
        let err = decode(&latin1, Some(STRUCTURED.as_bytes())).unwrap_err();
        assert!(err.to_string().contains("charset"), "{err}");
    }

    #[test]
    fn structured_without_content_type_is_accepted_when_it_is_a_cloudevent() {
        let (event, _) = decode(&[], Some(STRUCTURED.as_bytes())).unwrap();
        assert_eq!(event.id, "e-1");
    }

    #[test]
    fn structured_data_base64_and_text_data() {
        let b64 = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","data_base64":"aGVsbG8="}"#;
        let (event, _) = decode(&ct(STRUCTURED_JSON), Some(b64.as_bytes())).unwrap();
        assert_eq!(event.data.as_deref(), Some(b"hello".as_slice()));
        let text = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","datacontenttype":"text/plain","data":"a\"b"}"#;
        let (event, _) = decode(&ct(STRUCTURED_JSON), Some(text.as_bytes())).unwrap();
        assert_eq!(event.data.as_deref(), Some(b"a\"b".as_slice()));
    }

    #[test]
    fn binary_event_reads_ce_headers_and_keeps_the_rest() {
        let (event, rest) = decode(&binary_headers(), Some(b"{\"x\":1}")).unwrap();
        assert_eq!(event.id, "b-1");
        assert_eq!(event.source, "/todo");
        assert_eq!(event.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(event.extension("traceparent"), Some("00-abc-def-01"));
        assert_eq!(event.data.as_deref(), Some(b"{\"x\":1}".as_slice()));
        assert_eq!(rest, vec![("x-tenant".to_string(), b"acme".to_vec())]);
    }

    #[test]
    fn binary_with_null_value_has_no_data() {
        let (event, _) = decode(&binary_headers(), None).unwrap();
        assert_eq!(event.data, None);
    }

    fn reason(headers: &[(&str, Option<&[u8]>)], value: &[u8]) -> String {
        decode(headers, Some(value)).unwrap_err().to_string()
    }

    #[test]
    fn malformed_records_say_why() {
        let s = ct(STRUCTURED_JSON);
        assert!(reason(&s, b"not json").contains("not valid JSON"));
        assert!(reason(&s, b"[1,2]").contains("not valid JSON"));
        assert!(reason(&s, br#"{"hello":"world"}"#).contains("`specversion` is missing"));
        let no_id = r#"{"specversion":"1.0","source":"s","type":"t"}"#;
        assert!(reason(&s, no_id.as_bytes()).contains("`id` is missing"));
        let no_source = r#"{"specversion":"1.0","id":"1","type":"t"}"#;
        assert!(reason(&s, no_source.as_bytes()).contains("`source` is missing"));
        let no_type = r#"{"specversion":"1.0","id":"1","source":"s"}"#;
        assert!(reason(&s, no_type.as_bytes()).contains("`type` is missing"));
        let old = r#"{"specversion":"0.3","id":"1","source":"s","type":"t"}"#;
        assert!(reason(&s, old.as_bytes()).contains("0.3"));
        let bad_time = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","time":"yesterday"}"#;
        assert!(reason(&s, bad_time.as_bytes()).contains("RFC 3339"));
        let numeric_id = r#"{"specversion":"1.0","id":99,"source":"s","type":"t"}"#;
        assert!(reason(&s, numeric_id.as_bytes()).contains("`id` must be a JSON string"));
        let bool_type = r#"{"specversion":"1.0","id":"1","source":"s","type":true}"#;
        assert!(reason(&s, bool_type.as_bytes()).contains("`type` must be a JSON string"));
        let numeric_version = r#"{"specversion":1.0,"id":"1","source":"s","type":"t"}"#;
        assert!(reason(&s, numeric_version.as_bytes()).contains("`specversion` must be a JSON string"));
        let nested = r#"{"specversion":"1.0","id":"1","source":"s","type":"t","ext":{"a":1}}"#;
        assert!(reason(&s, nested.as_bytes()).contains("string, number or boolean"));
    }

    #[test]
    fn binary_without_specversion_is_not_a_cloudevent() {
        let headers: Vec<_> = binary_headers().into_iter().filter(|(n, _)| *n != "ce_specversion").collect();
        assert!(reason(&headers, b"{}").contains("no ce_specversion header"));
        let plain = vec![("content-type", Some(b"application/json".as_slice()))];
        assert!(reason(&plain, b"{}").contains("\"application/json\""));
        assert!(reason(&[], b"plain text").contains("not a CloudEvent"));
    }

    #[test]
    fn binary_with_empty_id_or_bad_header_is_refused() {
        let mut headers = binary_headers();
        headers[1] = ("ce_id", Some(b"".as_slice()));
        assert!(reason(&headers, b"").contains("`id` is empty"));
        let mut headers = binary_headers();
        headers[2] = ("ce_source", Some(b"\xff\xfe".as_slice()));
        assert!(reason(&headers, b"").contains("not UTF-8"));
        let mut headers = binary_headers();
        headers[3] = ("ce_type", None);
        assert!(reason(&headers, b"").contains("has no value"));
    }

    #[test]
    fn batch_mode_is_refused_with_advice() {
        assert!(reason(&ct(BATCH_JSON), b"[]").contains("one event per record"));
    }
}

/// Decoding arbitrary bytes: whatever a producer writes, decoding ends in an event or a reason,
/// never a panic; and an event it accepts has the attributes the spec requires.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    fn header_name() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("content-type".to_string()),
            Just("ce_specversion".to_string()),
            Just("ce_id".to_string()),
            Just("ce_source".to_string()),
            Just("ce_type".to_string()),
            Just("ce_time".to_string()),
            "ce_[a-zA-Z0-9_]{0,12}",
            "[ -~]{0,16}",
        ]
    }

    fn header_value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop_oneof![
            Just(Some(b"1.0".to_vec())),
            Just(Some(b"application/cloudevents+json".to_vec())),
            Just(Some(b"application/json; charset=utf-8".to_vec())),
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..24).prop_map(Some),
        ]
    }

    fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
        let json = r#"\{"(specversion|id|source|type|data|data_base64|time|[a-z]{1,8})":("1\.0"|"[a-z]{0,4}"|99|true|null|\{\}|\[\]),"id":"x"\}"#;
        prop_oneof![
            Just(None),
            proptest::collection::vec(any::<u8>(), 0..256).prop_map(Some),
            json.prop_map(|s| Some(s.into_bytes())),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 4_000, ..ProptestConfig::default() })]

        #[test]
        fn any_record_decodes_or_says_why(
            headers in proptest::collection::vec((header_name(), header_value()), 0..8),
            value in value(),
        ) {
            let headers: Vec<(&str, Option<&[u8]>)> =
                headers.iter().map(|(n, v)| (n.as_str(), v.as_deref())).collect();
            match decode(&headers, value.as_deref()) {
                Ok((event, _)) => {
                    prop_assert_eq!(event.specversion.as_str(), "1.0");
                    prop_assert!(!event.id.is_empty() && !event.source.is_empty() && !event.ty.is_empty());
                }
                Err(reason) => prop_assert!(!reason.to_string().is_empty()),
            }
        }
    }
}
