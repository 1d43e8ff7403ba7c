//! The sandbox: WebAssembly components that implement the `weft:handler` world, and the limits
//! they run under.
//!
//! # Layout
//! - [`runtime`]: the one `Engine` and `Linker` of the process, the epoch ticker, the compiled
//!   plugin cache; `bindings`: the generated WIT bindings (one `bindgen!`).
//! - [`plugin`]: one loaded plugin (component or native handler): its id, digest and settings;
//!   [`description`]: what it says about itself; [`instances`]: its pool of instances and one call into one of them, under its
//!   deadline; [`limits`]: its sandbox limits.
//! - [`host_state`]: each store's data and the host imports (`log`, `emit`, `config-get`);
//!   [`limiter`]: the memory budget of an instance; [`plugin_log`]: plugins' log lines, capped.
//!
//! Imports: Kafka out (where emitted events go) and the layers below. Nothing here knows about
//! offsets, lanes or retries: a call returns `Ok` or a [`Failure`](crate::failure::Failure).

pub(crate) mod bindings;
pub mod description;
pub mod host_state;
pub mod instances;
pub mod limiter;
pub mod limits;
pub mod plugin;
pub mod plugin_log;
pub mod runtime;
