//! `weft plugin new`: a handler project in Rust, JavaScript, Python, C or Go, ready to build, with the
//! WIT, a sample event and a test that runs it through `weft invoke`. Everything it writes is in
//! this binary, so it works offline and outside this repository.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// A language `weft plugin new` writes a project in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// Rust with the `weft-plugin` SDK (copied into the project), built with cargo.
    Rust,
    /// JavaScript, built with componentize-js from npm.
    Js,
    /// Python, built with componentize-py from PyPI.
    Python,
    /// C, with wit-bindgen's C generator, clang and wasi-libc, linked by wasm-component-ld.
    C,
    /// Go (mainline, 1.24 or newer), with wit-bindgen's Go generator and wasm-tools.
    Go,
}

const WIT: [(&str, &str); 3] = [
    ("world.wit", include_str!("../../../wit/world.wit")),
    ("types.wit", include_str!("../../../wit/types.wit")),
    ("host.wit", include_str!("../../../wit/host.wit")),
];

/// The versions the repository's own plugins are built with; the projects pin the same.
pub const COMPONENTIZE_JS: &str = "0.23.0";
/// See [`COMPONENTIZE_JS`].
pub const PREVIEW2_SHIM: &str = "0.25.0";
/// See [`COMPONENTIZE_JS`].
pub const COMPONENTIZE_PY: &str = "0.25.1";
/// See [`COMPONENTIZE_JS`].
pub const WIT_BINDGEN: &str = "0.61";
/// The `wit-bindgen` command line tool C and Go projects generate their bindings with.
pub const WIT_BINDGEN_CLI: &str = "0.61.1";

/// A Go project's build: the repository's own recipe for Go components, its pinned crates.io
/// artefacts, and the GC guard every Go handler calls.
const GO_COMPONENT: [(&str, &str); 5] = [
    ("go-component.sh", include_str!("../../../scripts/go-component.sh")),
    ("go-component/Cargo.toml", include_str!("../../../scripts/go-component/Cargo.toml")),
    ("go-component/Cargo.lock", include_str!("../../../scripts/go-component/Cargo.lock")),
    ("go-component/lib.rs", include_str!("../../../scripts/go-component/lib.rs")),
    ("gcguard/gcguard.go", include_str!("../../../plugins/conformance/go/gcguard/gcguard.go")),
];

/// What was written, and how to build it.
#[derive(Debug)]
pub struct Project {
    /// The project directory.
    pub dir: PathBuf,
    /// The shell command, run in `dir`, that writes `<name>.wasm` there.
    pub build: String,
}

/// Writes a `lang` handler named `name` into `parent/name`.
pub fn create(name: &str, lang: Lang, parent: &Path) -> anyhow::Result<Project> {
    check_name(name)?;
    let dir = parent.join(name);
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let lib = name.replace('-', "_");
    let (build, requirements, source) = match lang {
        Lang::Rust => (
            format!(
                "cargo build --release --target wasm32-wasip2 && cp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{lib}.wasm\" {name}.wasm"
            ),
            "Rust with the wasm32-wasip2 target: rustup target add wasm32-wasip2",
            "src/lib.rs",
        ),
        Lang::Js => (
            "npm install --no-audit --no-fund && npm run build".to_string(),
            "Node.js 18 or newer",
            "handler.js",
        ),
        Lang::Python => (
            format!(
                "python3 -m venv .venv && .venv/bin/pip install --quiet -r requirements.txt && .venv/bin/componentize-py -d wit -w handler componentize app -o {name}.wasm"
            ),
            "Python 3.10 or newer",
            "app.py",
        ),
        Lang::C => (
            "./build.sh".to_string(),
            "clang 16 or newer with wasi-libc, wit-bindgen and Rust's wasm-component-ld: see build.sh",
            "handler.c",
        ),
        Lang::Go => (
            "./build.sh".to_string(),
            "Go 1.24 or newer, and cargo, which installs the pinned wit-bindgen and wasm-tools once: see build.sh",
            "export_wit_world/handler.go",
        ),
    };
    let lang_name = match lang {
        Lang::Rust => "Rust",
        Lang::Js => "JavaScript",
        Lang::Python => "Python",
        Lang::C => "C",
        Lang::Go => "Go",
    };
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{lib}}", &lib)
            .replace("{{lang}}", lang_name)
            .replace("{{build}}", &build)
            .replace("{{requirements}}", requirements)
            .replace("{{source}}", source)
            .replace("{{version}}", env!("CARGO_PKG_VERSION"))
            .replace("{{wit_bindgen}}", WIT_BINDGEN)
            .replace("{{componentize_js}}", COMPONENTIZE_JS)
            .replace("{{preview2_shim}}", PREVIEW2_SHIM)
            .replace("{{componentize_py}}", COMPONENTIZE_PY)
            .replace("{{wit_bindgen_cli}}", WIT_BINDGEN_CLI)
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        ("README.md".into(), fill(include_str!("../../templates/common/README.md"))),
        ("test.sh".into(), fill(include_str!("../../templates/common/test.sh"))),
        ("events/sample.json".into(), fill(include_str!("../../templates/common/sample.json"))),
        (".gitignore".into(), "*.wasm\ntarget/\nnode_modules/\n.venv/\n__pycache__/\nbindings/\n".into()),
    ];
    let wit_dir = match lang {
        Lang::Rust => "weft-plugin/wit",
        Lang::Js | Lang::Python | Lang::C | Lang::Go => "wit",
    };
    files.extend(WIT.iter().map(|(file, text)| (Path::new(wit_dir).join(file), text.to_string())));
    match lang {
        Lang::Rust => files.extend([
            ("Cargo.toml".into(), fill(include_str!("../../templates/rust/Cargo.toml"))),
            ("src/lib.rs".into(), fill(include_str!("../../templates/rust/lib.rs"))),
            ("weft-plugin/Cargo.toml".into(), fill(include_str!("../../templates/rust/sdk-Cargo.toml"))),
            (
                "weft-plugin/src/lib.rs".into(),
                include_str!("../../../plugins/weft-plugin/src/lib.rs").to_string(),
            ),
        ]),
        Lang::Js => files.extend([
            ("package.json".into(), fill(include_str!("../../templates/js/package.json"))),
            ("build.mjs".into(), fill(include_str!("../../templates/js/build.mjs"))),
            ("handler.js".into(), fill(include_str!("../../templates/js/handler.js"))),
        ]),
        Lang::Python => files.extend([
            ("requirements.txt".into(), fill(include_str!("../../templates/python/requirements.txt"))),
            ("app.py".into(), fill(include_str!("../../templates/python/app.py"))),
        ]),
        Lang::C => files.extend([
            ("handler.c".into(), fill(include_str!("../../templates/c/handler.c"))),
            ("build.sh".into(), fill(include_str!("../../templates/c/build.sh"))),
        ]),
        Lang::Go => {
            files.extend([
                ("go.mod".into(), fill(include_str!("../../templates/go/go.mod"))),
                ("main.go".into(), fill(include_str!("../../templates/go/main.go"))),
                ("export_wit_world/handler.go".into(), fill(include_str!("../../templates/go/handler.go"))),
                ("build.sh".into(), fill(include_str!("../../templates/go/build.sh"))),
            ]);
            files.extend(GO_COMPONENT.iter().map(|(file, text)| (PathBuf::from(file), text.to_string())));
        }
    }
    for (path, text) in files {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    make_executable(&dir.join("test.sh"))?;
    if matches!(lang, Lang::C | Lang::Go) {
        make_executable(&dir.join("build.sh"))?;
    }
    if lang == Lang::Go {
        make_executable(&dir.join("go-component.sh"))?;
    }
    Ok(Project { dir, build })
}

/// Plugin ids are file names: lowercase letters, digits, `-` and `_`, starting with a letter or digit.
fn check_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if !first_ok
        || !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        bail!(
            "{name:?} cannot be a plugin id: use lowercase letters, digits, `-` and `_`, starting with a letter or digit"
        );
    }
    Ok(())
}

#[cfg(unix)]
fn make_executable(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("making {} executable", path.display()))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_pin_the_versions_the_repository_builds_with() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let read = |path: &str| std::fs::read_to_string(root.join(path)).unwrap();
        let js = read("plugins/task-updates-js/package.json");
        assert!(
            js.contains(&format!("\"@bytecodealliance/componentize-js\": \"{COMPONENTIZE_JS}\"")),
            "{js}"
        );
        assert!(js.contains(&format!("\"@bytecodealliance/preview2-shim\": \"{PREVIEW2_SHIM}\"")), "{js}");
        let py = read("plugins/notifications-py/requirements.txt");
        assert_eq!(py.trim(), format!("componentize-py=={COMPONENTIZE_PY}"));
        let rust = read("plugins/Cargo.toml");
        assert!(rust.contains(&format!("wit-bindgen = \"{WIT_BINDGEN}\"")), "{rust}");
        let c = read("scripts/polyglot-plugins.sh");
        assert!(c.contains(&format!("wit_bindgen_version={WIT_BINDGEN_CLI}")), "{c}");
        let go = read("scripts/go-component.sh");
        assert!(go.contains(&format!("WIT_BINDGEN={WIT_BINDGEN_CLI}")), "one wit-bindgen for C and Go");
        let assets = read("scripts/go-component/Cargo.toml");
        assert!(
            assets.contains(&format!("wit-bindgen-go = {{ version = \"={WIT_BINDGEN_CLI}\"")),
            "{assets}"
        );
    }

    #[test]
    fn names_that_would_surprise_as_ids_are_refused() {
        for bad in ["", "Order", "order saga", "-x", "order.saga", "ünï"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["order-saga", "audit", "v2_sink", "9lives"] {
            check_name(good).unwrap();
        }
    }

    #[test]
    fn a_project_has_its_files_and_no_placeholders_left() {
        let parent = std::env::temp_dir().join(format!("weft-scaffold-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&parent);
        for lang in [Lang::Rust, Lang::Js, Lang::Python, Lang::C, Lang::Go] {
            let name = format!("order-saga-{lang:?}").to_lowercase();
            let project = create(&name, lang, &parent).unwrap();
            let mut stack = vec![project.dir.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(dir).unwrap() {
                    let path = entry.unwrap().path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        let text = std::fs::read_to_string(&path).unwrap();
                        assert!(!text.contains("{{"), "{} has a placeholder left", path.display());
                    }
                }
            }
            let readme = std::fs::read_to_string(project.dir.join("README.md")).unwrap();
            assert!(readme.contains(&project.build) && readme.contains(&format!("{name}.wasm")), "{readme}");
            assert!(create(&name, lang, &parent).is_err(), "an existing directory is not overwritten");
        }
        std::fs::remove_dir_all(parent).unwrap();
    }
}
