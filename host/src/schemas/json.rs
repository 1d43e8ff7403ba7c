//! JSON Schemas: read once from a file or an HTTP(S) address, compiled, cached by address; and an
//! event's data checked against one, with the first errors and the JSON paths they are at.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonschema::Validator;
use serde_json::Value;

use super::Refusal;

/// The errors a refusal names at most.
const MAX_ERRORS: usize = 5;

/// How long a schema that could not be used is not asked for again: events naming it are refused
/// with the same reason meanwhile, instead of each fetching it.
const REFUSED_FOR: Duration = Duration::from_secs(30);

/// Compiled schemas by the address they were read from, and those recently found unusable.
pub struct JsonSchemas {
    compiled: RwLock<HashMap<String, Arc<Validator>>>,
    refused: RwLock<HashMap<String, (Instant, Refusal)>>,
    fetch: Fetch,
}

impl JsonSchemas {
    /// No schema read yet; HTTP requests take at most `timeout`.
    pub fn new(timeout: Duration) -> Self {
        Self {
            compiled: RwLock::new(HashMap::new()),
            refused: RwLock::new(HashMap::new()),
            fetch: Fetch { timeout },
        }
    }

    /// The schema at `address`, compiled, if it was read before.
    pub fn cached(&self, address: &str) -> Option<Arc<Validator>> {
        self.compiled.read().expect("schema cache poisoned").get(address).cloned()
    }

    /// Reads and compiles the schema at `address` (and what its `$ref`s name) unless cached.
    /// Blocks: call it off the async workers.
    pub fn load(&self, address: &str) -> Result<Arc<Validator>, Refusal> {
        if let Some(compiled) = self.cached(address) {
            return Ok(compiled);
        }
        if let Some((at, refusal)) = self.refused.read().expect("schema cache poisoned").get(address)
            && at.elapsed() < REFUSED_FOR
        {
            return Err(refusal.clone());
        }
        let validator = self.compile(address).inspect_err(|refusal| {
            if matches!(refusal, Refusal::Invalid { .. }) {
                let refused = (Instant::now(), refusal.clone());
                self.refused.write().expect("schema cache poisoned").insert(address.to_string(), refused);
            }
        })?;
        let validator = Arc::new(validator);
        self.compiled.write().expect("schema cache poisoned").insert(address.to_string(), validator.clone());
        Ok(validator)
    }

    fn compile(&self, address: &str) -> Result<Validator, Refusal> {
        let document = self.fetch.json(address)?;
        // `format` is checked, not only noted: a producer writing `"time": "yesterday"` against
        // `"format": "date-time"` is caught like any other mismatch.
        jsonschema::options()
            .should_validate_formats(true)
            .with_base_uri(self.fetch.base_uri(address))
            .with_retriever(self.fetch.clone())
            .build(&document)
            .map_err(|error| {
                Refusal::invalid(address, format!("{address} is not a usable JSON Schema: {error}"))
            })
    }
}

/// Checks `data` (JSON text, or none: `null`) against `validator`; a refusal names the first
/// errors with their JSON paths.
pub fn check(validator: &Validator, address: &str, data: Option<&[u8]>) -> Result<(), Refusal> {
    let instance = match data {
        None => Value::Null,
        Some(bytes) => serde_json::from_slice(bytes)
            .map_err(|error| Refusal::invalid(address, format!("data is not JSON ({error})")))?,
    };
    if validator.is_valid(&instance) {
        return Ok(());
    }
    let mut errors = validator.iter_errors(&instance);
    let mut lines: Vec<String> = errors
        .by_ref()
        .take(MAX_ERRORS)
        .map(|error| {
            let path = error.instance_path().as_str();
            format!("at {}: {error}", if path.is_empty() { "/" } else { path })
        })
        .collect();
    if errors.next().is_some() {
        lines.push("…".into());
    }
    Err(Refusal::invalid(address, format!("data does not match {address}: {}", lines.join("; "))))
}

/// Reads schema documents: files, `file://` and `http(s)://` addresses.
#[derive(Clone)]
struct Fetch {
    timeout: Duration,
}

impl Fetch {
    /// The document at `address`, parsed. A file that cannot be read, an HTTP 4xx or a body that
    /// is not JSON makes the schema unusable; no answer or a 5xx makes it unavailable for now.
    fn json(&self, address: &str) -> Result<Value, Refusal> {
        let text = if address.starts_with("http://") || address.starts_with("https://") {
            self.http(address)?
        } else {
            let path = address.strip_prefix("file://").unwrap_or(address);
            std::fs::read_to_string(path)
                .map_err(|error| Refusal::invalid(address, format!("reading schema {address}: {error}")))?
        };
        serde_json::from_str(&text)
            .map_err(|error| Refusal::invalid(address, format!("schema {address} is not JSON: {error}")))
    }

    fn http(&self, address: &str) -> Result<String, Refusal> {
        let unavailable = |error: &dyn std::fmt::Display| {
            Refusal::Unavailable(format!("fetching schema {address}: {error}"))
        };
        let client = reqwest::blocking::Client::builder()
            .timeout(self.timeout)
            .build()
            .map_err(|e| unavailable(&e))?;
        let response = client.get(address).send().map_err(|e| unavailable(&e))?;
        let status = response.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(unavailable(&status));
        }
        if !status.is_success() {
            return Err(Refusal::invalid(address, format!("fetching schema {address}: {status}")));
        }
        response.text().map_err(|e| unavailable(&e))
    }

    /// The base `$ref`s of the schema at `address` resolve against.
    fn base_uri(&self, address: &str) -> String {
        if address.contains("://") {
            return address.to_string();
        }
        let path = Path::new(address);
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        format!("file://{}", absolute.display())
    }
}

impl jsonschema::Retrieve for Fetch {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        self.json(uri.as_str()).map_err(|refusal| refusal.to_string().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> String {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("weft-json-schema-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const ORDER: &str = r#"{
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["id", "items"],
        "properties": {
            "id": {"type": "string"},
            "items": {"type": "array", "items": {"$ref": "item.json"}}
        }
    }"#;
    const ITEM: &str = r#"{"type": "object", "properties": {"price": {"type": "number", "minimum": 0}}}"#;

    #[test]
    fn errors_name_their_json_paths_and_refs_to_other_files_resolve() {
        let dir = temp_dir("paths");
        let order = write(&dir, "order.json", ORDER);
        write(&dir, "item.json", ITEM);
        let schemas = JsonSchemas::new(Duration::from_secs(1));
        let validator = schemas.load(&order).unwrap();
        check(&validator, &order, Some(br#"{"id": "o1", "items": [{"price": 3}]}"#)).unwrap();
        let refusal =
            check(&validator, &order, Some(br#"{"items": [{"price": 3}, {"price": -1}]}"#)).unwrap_err();
        let text = refusal.to_string();
        assert!(text.contains("at /items/1/price: -1 is less than the minimum of 0"), "{text}");
        assert!(text.contains("at /: \"id\" is a required property"), "{text}");
        assert!(matches!(refusal, Refusal::Invalid { .. }));
    }

    #[test]
    fn formats_are_checked() {
        let dir = temp_dir("formats");
        let schema =
            write(&dir, "when.json", r#"{"properties": {"at": {"type": "string", "format": "date-time"}}}"#);
        let schemas = JsonSchemas::new(Duration::from_secs(1));
        let validator = schemas.load(&schema).unwrap();
        check(&validator, &schema, Some(br#"{"at": "2026-11-30T09:30:00Z"}"#)).unwrap();
        let text = check(&validator, &schema, Some(br#"{"at": "yesterday"}"#)).unwrap_err().to_string();
        assert!(text.contains("at /at: \"yesterday\" is not a \"date-time\""), "{text}");
    }

    #[test]
    fn data_that_is_not_json_and_missing_data_are_refused() {
        let dir = temp_dir("nojson");
        let order = write(&dir, "order.json", ORDER);
        write(&dir, "item.json", ITEM);
        let schemas = JsonSchemas::new(Duration::from_secs(1));
        let validator = schemas.load(&order).unwrap();
        let text = check(&validator, &order, Some(b"<order/>")).unwrap_err().to_string();
        assert!(text.contains("data is not JSON"), "{text}");
        let text = check(&validator, &order, None).unwrap_err().to_string();
        assert!(text.contains("null is not of type \"object\""), "{text}");
    }

    #[test]
    fn unusable_schemas_are_refused_with_the_reason() {
        let dir = temp_dir("bad");
        let schemas = JsonSchemas::new(Duration::from_secs(1));
        let missing = dir.join("missing.json").display().to_string();
        assert!(schemas.load(&missing).unwrap_err().to_string().contains("reading schema"));
        let not_json = write(&dir, "text.json", "not json");
        assert!(schemas.load(&not_json).unwrap_err().to_string().contains("is not JSON"));
        let bad = write(&dir, "bad.json", r#"{"type": 12}"#);
        assert!(schemas.load(&bad).unwrap_err().to_string().contains("not a usable JSON Schema"));
        // Fixed at once, it is still refused for a while: events naming it do not each read it.
        write(&dir, "bad.json", ITEM);
        assert!(schemas.load(&bad).unwrap_err().to_string().contains("not a usable JSON Schema"));
    }

    #[test]
    fn an_address_nobody_answers_is_unavailable_not_invalid() {
        let schemas = JsonSchemas::new(Duration::from_millis(500));
        // Port 9 (discard) is closed on a test machine: the connection is refused.
        let refusal = schemas.load("http://127.0.0.1:9/schema.json").unwrap_err();
        assert!(matches!(refusal, Refusal::Unavailable(_)), "{refusal}");
    }
}
