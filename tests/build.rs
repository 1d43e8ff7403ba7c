//! Builds the guest components the integration tests load and exposes their paths as constants in
//! `$OUT_DIR/plugins.rs`, so a missing plugin is a build error, not a skipped test.

include!("../host/build_plugins.rs");

fn main() {
    let packages = [
        "echo",
        "wrong-world",
        "audit",
        "sandbox",
        "conformance-rust",
        "recurring",
        "order-saga",
        "resource-catalog",
        "detection",
    ];
    let paths = build_plugins(&packages);
    let mut constants = String::new();
    for (package, path) in packages.iter().zip(paths) {
        let name = package.replace('-', "_").to_uppercase();
        constants.push_str(&format!(
            "/// The `{package}` component.\npub const {name}_WASM: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    // A second version of echo that tags its outputs `v2`, for the hot-swap tests.
    for path in build_plugins_with(&["echo"], Some("v2")) {
        constants.push_str(&format!(
            "/// The `echo` component built as version 2.\npub const ECHO_V2_WASM: &str = {:?};\n",
            path.display().to_string()
        ));
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo")).join("plugins.rs");
    std::fs::write(out, constants).expect("writing plugins.rs");
}
