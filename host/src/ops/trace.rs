//! W3C trace context for CloudEvents (the distributed-tracing extension): a handler call continues
//! the trace of its input's `traceparent`, and events the plugin emits without a `traceparent` of
//! their own carry the handler's, so a trace follows an event through a pipeline of plugins.

/// A parsed `traceparent`: `00-<trace-id:32 hex>-<parent-id:16 hex>-<flags:2 hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// The span id of the parent, 16 lowercase hex digits.
    pub span_id: String,
    /// Trace flags, 2 hex digits (`01`: sampled).
    pub flags: String,
}

impl TraceParent {
    /// Parses a version-00 `traceparent`; `None` if it is malformed or all-zero.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let valid = version == "00"
            && parts.next().is_none()
            && hex(trace_id, 32)
            && hex(span_id, 16)
            && hex(flags, 2)
            && trace_id.bytes().any(|b| b != b'0')
            && span_id.bytes().any(|b| b != b'0');
        valid.then(|| Self { trace_id: trace_id.into(), span_id: span_id.into(), flags: flags.into() })
    }

    /// A child of this context: same trace and flags, a new random span id.
    pub fn child(&self) -> Self {
        let span_id = loop {
            let id = format!("{:016x}", rand::random::<u64>());
            if id != "0000000000000000" {
                break id;
            }
        };
        Self { trace_id: self.trace_id.clone(), span_id, flags: self.flags.clone() }
    }
}

/// Makes `span` the child of `parent` and returns the context to hand on (to emitted events).
/// When spans are exported (OTLP), the exported span joins the parent's trace and its id is the one
/// returned; otherwise the child gets a fresh span id.
pub fn continue_in(span: &tracing::Span, parent: &TraceParent) -> TraceParent {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    use tracing_opentelemetry::OpenTelemetrySpanExt;
    let (Ok(trace_id), Ok(span_id), Ok(flags)) = (
        TraceId::from_hex(&parent.trace_id),
        SpanId::from_hex(&parent.span_id),
        u8::from_str_radix(&parent.flags, 16),
    ) else {
        return parent.child();
    };
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::default());
    if span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote)).is_err() {
        return parent.child();
    }
    let context = span.context();
    let own = context.span().span_context().clone();
    if own.is_valid() && own.trace_id() == trace_id {
        TraceParent {
            trace_id: parent.trace_id.clone(),
            span_id: format!("{:016x}", own.span_id()),
            flags: parent.flags.clone(),
        }
    } else {
        parent.child()
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "00-{}-{}-{}", self.trace_id, self.span_id, self.flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INPUT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_prints_a_traceparent() {
        let tp = TraceParent::parse(INPUT).unwrap();
        assert_eq!(tp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(tp.span_id, "00f067aa0ba902b7");
        assert_eq!(tp.to_string(), INPUT);
    }

    #[test]
    fn child_keeps_trace_and_flags_with_a_new_span() {
        let parent = TraceParent::parse(INPUT).unwrap();
        let child = parent.child();
        assert_eq!((child.trace_id.as_str(), child.flags.as_str()), (parent.trace_id.as_str(), "01"));
        assert_ne!(child.span_id, parent.span_id);
        assert!(TraceParent::parse(&child.to_string()).is_some());
    }

    #[test]
    fn malformed_values_are_ignored() {
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
