// Shared by the build scripts of `weft` and `weft-tests` (pulled in with `include!`): builds guest
// crates of the `plugins/` workspace for wasm32-wasip2 and copies the components into OUT_DIR.

/// Builds `packages` of `plugins/` (relative to this crate's manifest) and copies each
/// `<name>.wasm` (dashes become underscores) to OUT_DIR. Returns the copied paths.
fn build_plugins(packages: &[&str]) -> Vec<std::path::PathBuf> {
    build_plugins_with(packages, None)
}

/// Builds `packages` with the cargo `feature` of each turned on; the copies are named
/// `<name>_<feature>.wasm`.
fn build_plugins_with(packages: &[&str], feature: Option<&str>) -> Vec<std::path::PathBuf> {
    use std::path::PathBuf;
    use std::process::Command;

    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("set by cargo"));
    let plugins = manifest_dir.join("../plugins");
    for path in ["Cargo.toml", "Cargo.lock", "audit", "conformance", "echo", "sandbox", "weft-plugin", "wrong-world"] {
        println!("cargo:rerun-if-changed={}", plugins.join(path).display());
    }
    println!("cargo:rerun-if-changed={}", manifest_dir.join("../wit").display());

    // One guest target directory for every build script: OUT_DIR is <target>/<profile>/build/<crate>/out.
    let target_dir = out_dir.ancestors().nth(4).map_or_else(|| out_dir.join("wasm"), |t| t.join("wasm-plugins"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--release", "--locked", "--target", "wasm32-wasip2"]);
    for package in packages {
        command.args(["-p", package]);
        if let Some(feature) = feature {
            command.args(["--features", &format!("{package}/{feature}")]);
        }
    }
    let status = command
        .arg("--manifest-path")
        .arg(plugins.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Flags meant for the host build must not leak into the guest build.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO_TARGET_DIR")
        .status()
        .expect("running cargo for the plugins");
    assert!(
        status.success(),
        "building plugins/ for wasm32-wasip2 failed; is the target installed? (rustup target add wasm32-wasip2)"
    );
    packages
        .iter()
        .map(|package| {
            let file = format!("{}.wasm", package.replace('-', "_"));
            let copied = match feature {
                Some(feature) => out_dir.join(format!("{}_{feature}.wasm", package.replace('-', "_"))),
                None => out_dir.join(&file),
            };
            std::fs::copy(target_dir.join("wasm32-wasip2/release").join(&file), &copied)
                .unwrap_or_else(|e| panic!("copying {file}: {e}"));
            copied
        })
        .collect()
}
