//! `weft plugin new` from a clean directory, for every language: the project it writes builds
//! with its own printed command (through the project's `test.sh`), passes `weft check`, and handles
//! its sample event under `weft invoke`. Needs cargo with the wasm32-wasip2 target, Node.js with npm,
//! Python 3, for C clang 19 with wasi-libc and wit-bindgen, and for Go Go 1.24 or newer (the project
//! installs wit-bindgen and wasm-tools itself when missing). scripts/test.sh has them all: its
//! scripts/polyglot-plugins.sh installs the C toolchain and the Go tools.

use std::process::Command;

use weft_tests::unique;

fn weft() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_weft"));
    command.env("RUST_LOG", "off");
    command
}

fn scaffold_builds_and_handles_its_sample(lang: &str) {
    let parent = std::env::temp_dir().join(unique("weft-scaffold"));
    std::fs::create_dir_all(&parent).unwrap();
    let name = format!("saga-{lang}");
    let created =
        weft().args(["plugin", "new", &name, "--lang", lang, "--dir"]).arg(&parent).output().unwrap();
    let printed = String::from_utf8_lossy(&created.stdout);
    assert!(created.status.success(), "{printed}{}", String::from_utf8_lossy(&created.stderr));
    let build = printed.lines().find_map(|l| l.strip_prefix("build:  ")).expect("a build command is printed");
    assert!(build.starts_with(&format!("cd {}", parent.join(&name).display())), "{build}");

    // The project's test runs the printed build command, `weft check` and `weft invoke`.
    let project = parent.join(&name);
    let test = std::fs::read_to_string(project.join("test.sh")).unwrap();
    assert!(test.contains(build.split_once(" && ").unwrap().1), "test.sh builds as printed:\n{test}");
    let run = Command::new(project.join("test.sh"))
        .env("WEFT", env!("CARGO_BIN_EXE_weft"))
        .env("RUST_LOG", "off")
        // The project builds in a target directory of its own (never this build's, which cargo
        // holds locked), kept between runs.
        .env("CARGO_TARGET_DIR", std::env::temp_dir().join("weft-scaffold-target"))
        // Flags meant for this build must not leak into the project's.
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{lang}: test.sh failed\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains(&format!("\"id\": \"{name}\"")), "weft check shows the plugin's id:\n{stdout}");
    assert!(stdout.contains(&format!("id               sample-1-{name}")), "the emitted event:\n{stdout}");
    assert!(stdout.contains("handled (exit 0)"), "{stdout}");
    std::fs::remove_dir_all(parent).unwrap();
}

#[test]
fn a_rust_project_builds_and_handles_its_sample() {
    scaffold_builds_and_handles_its_sample("rust");
}

#[test]
fn a_javascript_project_builds_and_handles_its_sample() {
    scaffold_builds_and_handles_its_sample("js");
}

#[test]
fn a_python_project_builds_and_handles_its_sample() {
    scaffold_builds_and_handles_its_sample("python");
}

#[test]
fn a_c_project_builds_and_handles_its_sample() {
    scaffold_builds_and_handles_its_sample("c");
}

#[test]
fn a_go_project_builds_and_handles_its_sample() {
    scaffold_builds_and_handles_its_sample("go");
}
