//! Builds the example `audit` plugin (so that `weft dev` runs with no setup) and the `echo` plugin
//! the benchmark calls.

include!("build_plugins.rs");

fn main() {
    // `audit` is bundled for `weft dev`; `echo` is what the benchmark calls.
    build_plugins(&["audit", "echo"]);
}
