//! Builds the example `audit` plugin so that `weft dev` runs with no setup.

include!("build_plugins.rs");

fn main() {
    build_plugins(&["audit"]);
}
