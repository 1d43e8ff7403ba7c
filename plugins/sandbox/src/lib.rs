//! Test plugin: tries to reach what a sandboxed plugin should not have unless granted. The event
//! `type` says what to try:
//! - `read-file`: read `/data/secret.txt`;
//! - `read-env`: read the environment variable named by the event's `subject`;
//! - `connect`: open a TCP connection to 127.0.0.1, port from the event's `subject`;
//! - `emit`: emit to the topic named by the event's `subject`.
//!
//! On success it emits what it read to `sandbox-out` (or the `subject` topic); on failure it
//! returns a permanent error carrying the sandbox's refusal.

wit_bindgen::generate!({ path: "../../wit", world: "handler" });

use weft::handler::host;
use weft::handler::types::Subscription;

struct Sandbox;

impl Guest for Sandbox {
    fn describe() -> PluginInfo {
        PluginInfo {
            name: "sandbox".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: "Tries to reach files, environment variables and the network".into(),
            subscriptions: vec![Subscription { topic: "sandbox-in".into(), types: vec![], sources: vec![] }],
        }
    }

    fn handle(event: Cloudevent, _delivery: Delivery) -> Result<(), HandleError> {
        let (topic, result) = match event.type_.as_str() {
            "read-file" => (
                "sandbox-out".to_string(),
                std::fs::read_to_string("/data/secret.txt").map_err(|e| e.to_string()),
            ),
            "read-env" => {
                let name = event.subject.clone().unwrap_or_default();
                ("sandbox-out".to_string(), std::env::var(&name).map_err(|e| format!("{name}: {e}")))
            }
            "connect" => (
                "sandbox-out".to_string(),
                std::net::TcpStream::connect(format!(
                    "127.0.0.1:{}",
                    event.subject.as_deref().unwrap_or("9")
                ))
                .map(|_| "connected".to_string())
                .map_err(|e| e.to_string()),
            ),
            "emit" => (event.subject.clone().unwrap_or_default(), Ok("emitted".to_string())),
            other => return Err(HandleError::Permanent(format!("unknown action {other}"))),
        };
        let content = result.map_err(|e| HandleError::Permanent(format!("{}: {e}", event.type_)))?;
        let out = Cloudevent {
            id: event.id.clone(),
            source: "weft-test/sandbox".into(),
            type_: format!("{}.done", event.type_),
            specversion: "1.0".into(),
            datacontenttype: Some("text/plain".into()),
            dataschema: None,
            subject: None,
            time: None,
            extensions: vec![],
            data: Some(content.into_bytes()),
        };
        host::emit(&topic, &out, None).map_err(|e| HandleError::Permanent(format!("emit: {e:?}")))
    }
}

export!(Sandbox);
