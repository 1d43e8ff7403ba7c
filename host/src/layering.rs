//! The layout's rules, checked on the source itself: imports run one way through the stages, no
//! module imports another that imports it back, and no file grows past one concept.
//!
//! Every `crate::…` path outside comments counts as an import of the file (or folder) it names,
//! whether in a `use` line or written inline, tests included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The stages from top to bottom: a module may import its own stage and the stages below it.
/// ARCHITECTURE.md ("Layout") says what each one is.
const LAYERS: &[&[&str]] = &[
    &["cli"],
    &["host"],
    &["kafka_in"],
    &["pipeline"],
    &["sandbox"],
    &["kafka_out"],
    &["schemas"],
    &["kafka"],
    &["ops"],
    &["config"],
    &["event", "failure"],
];

/// Lines a file may have before its tests.
const MAX_LINES: usize = 500;

fn layer(stage: &str) -> Option<usize> {
    LAYERS.iter().position(|stages| stages.contains(&stage))
}

/// Every source file but the crate roots and this check, by module name (`pipeline/lane`,
/// `config` for `config/mod.rs`).
fn modules(src: &Path) -> BTreeMap<String, PathBuf> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap().with_extension("");
            let name = relative.to_str().unwrap().trim_end_matches("/mod").to_string();
            if !["lib", "main", "layering"].contains(&name.as_str()) {
                found.insert(name, path);
            }
        }
    }
    found
}

/// The modules `text` imports, resolved to the names [`modules`] gives.
fn imports(text: &str, known: &BTreeMap<String, PathBuf>) -> BTreeSet<String> {
    let mut imported = BTreeSet::new();
    for line in text.lines().filter(|line| !line.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            let path: Vec<&str> = line[at + "crate::".len()..]
                .split("::")
                .map_while(|segment| {
                    let name: String =
                        segment.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    (!name.is_empty() && name.len() == segment.len()).then_some(segment)
                })
                .collect();
            // `crate::Config` and the like: the crate root's re-exports, no stage.
            let Some(stage) = path.first() else { continue };
            let nested = path.get(1).map(|file| format!("{stage}/{file}"));
            match nested.filter(|name| known.contains_key(name)) {
                Some(name) => imported.insert(name),
                None if known.contains_key(*stage) => imported.insert(stage.to_string()),
                None => continue,
            };
        }
    }
    imported
}

fn stage(module: &str) -> &str {
    module.split('/').next().unwrap()
}

/// A cycle through `from`, if the graph has one: the modules on it, in import order.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|n| n == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(&source_dir());
    known
        .iter()
        .map(|(name, path)| {
            let mut imported = imports(&std::fs::read_to_string(path).unwrap(), &known);
            imported.remove(name);
            (name.clone(), imported)
        })
        .collect()
}

#[test]
fn every_module_belongs_to_a_stage() {
    let strays: Vec<String> = graph().into_keys().filter(|m| layer(stage(m)).is_none()).collect();
    assert!(
        strays.is_empty(),
        "modules in no stage of LAYERS (add the folder there and to ARCHITECTURE.md): {strays:?}"
    );
}

#[test]
fn imports_run_down_the_stages() {
    let mut upward = Vec::new();
    for (module, imported) in graph() {
        for target in imported {
            if let (Some(from), Some(to)) = (layer(stage(&module)), layer(stage(&target)))
                && to < from
            {
                upward.push(format!("{module} imports {target}"));
            }
        }
    }
    assert!(upward.is_empty(), "imports that go up the stages:\n{}", upward.join("\n"));
}

#[test]
fn no_module_imports_itself_back() {
    let graph = graph();
    if let Some(found) = cycle(&graph) {
        panic!("import cycle: {}", found.join(" -> "));
    }
    // The check finds what it is meant to find.
    let mut looped = graph;
    looped.entry("ops/metrics".into()).or_default().insert("ops/health".into());
    looped.entry("ops/health".into()).or_default().insert("ops/metrics".into());
    assert!(cycle(&looped).is_some());
}

#[test]
fn no_file_holds_more_than_one_concept() {
    let mut files = modules(&source_dir()).into_values().collect::<Vec<_>>();
    files.push(source_dir().join("main.rs"));
    let long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let lines = text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")).count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_LINES} lines before their tests: split them by concern: {long:?}"
    );
}

#[test]
fn paths_resolve_to_files_and_folders() {
    let known: BTreeMap<String, PathBuf> = ["config", "pipeline/lane", "pipeline/job", "event"]
        .into_iter()
        .map(|name| (name.to_string(), PathBuf::new()))
        .collect();
    let text = "use crate::pipeline::lane::{Ack, Lane};\nuse crate::config::KafkaConfig;\n\
                // crate::event::CloudEvent in a comment is no import\n\
                let job: crate::pipeline::job::Job = crate::Config::with_brokers(\"b\");\n";
    let found: Vec<String> = imports(text, &known).into_iter().collect();
    assert_eq!(found, ["config", "pipeline/job", "pipeline/lane"]);
}
