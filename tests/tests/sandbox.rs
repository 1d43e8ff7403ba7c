//! No ambient authority: without grants a plugin cannot read files or environment variables or open
//! sockets; with `[plugin.<id>.grants]` it reads exactly what was granted; `emit_topics` limits where
//! it may emit.

use std::path::{Path, PathBuf};

use weft::config::{DirGrant, Grants, PluginConfig};
use weft_tests::{SANDBOX_WASM, unique};

fn event(action: &str, subject: Option<&str>) -> Vec<u8> {
    let mut event =
        serde_json::json!({ "specversion": "1.0", "id": "s-1", "source": "/test", "type": action });
    if let Some(subject) = subject {
        event["subject"] = subject.into();
    }
    serde_json::to_vec(&event).unwrap()
}

async fn run(
    action: &str,
    subject: Option<&str>,
    grants: Grants,
) -> Result<Vec<weft::kafka_out::emit::Emitted>, String> {
    let settings = PluginConfig { grants, ..PluginConfig::default() };
    let run =
        weft::cli::invoke::invoke(Path::new(SANDBOX_WASM), &event(action, subject), "sandbox-in", &settings)
            .await
            .unwrap();
    run.outcome.map(|_| run.emitted).map_err(|failure| failure.to_string())
}

fn data_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("weft-grant"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret.txt"), "granted file").unwrap();
    dir
}

#[tokio::test]
async fn files_need_a_directory_grant_and_are_read_only_what_was_granted() {
    let denied = run("read-file", None, Grants::default()).await.unwrap_err();
    assert!(denied.contains("read-file"), "{denied}");
    let grants =
        Grants { dirs: vec![DirGrant { host: data_dir(), guest: "/data".into() }], ..Grants::default() };
    let emitted = run("read-file", None, grants).await.unwrap();
    assert_eq!(emitted[0].event.data.as_deref(), Some(b"granted file".as_slice()));
}

#[tokio::test]
async fn environment_variables_need_a_grant() {
    let path = std::env::var("PATH").expect("PATH is set");
    let denied = run("read-env", Some("PATH"), Grants::default()).await.unwrap_err();
    assert!(denied.contains("read-env: PATH"), "{denied}");
    let grants = Grants { env: vec!["PATH".into()], ..Grants::default() };
    let emitted = run("read-env", Some("PATH"), grants).await.unwrap();
    assert_eq!(emitted[0].event.data.as_deref(), Some(path.as_bytes()));
}

#[tokio::test]
async fn sockets_are_never_granted() {
    // A listener that would accept the connection if the sandbox let it through.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let denied = run("connect", Some(&port), Grants::default()).await.unwrap_err();
    assert!(denied.contains("connect"), "{denied}");
}

#[tokio::test]
async fn emit_is_limited_to_the_allowed_topics() {
    let grants = Grants { emit_topics: vec!["allowed".into()], ..Grants::default() };
    assert!(run("emit", Some("allowed"), grants.clone()).await.is_ok());
    let denied = run("emit", Some("elsewhere"), grants).await.unwrap_err();
    assert!(denied.contains("Forbidden") && denied.contains("emit_topics"), "{denied}");
}
