#!/usr/bin/env bash
# Runs Weft's benchmarks against a fresh test broker: the end-to-end run next to a plain rdkafka
# consumer (`pipeline`), then the in-process per-event costs (`hot_path`). Environment:
# WEFT_BENCH_EVENTS (default 100000) sets the size of the end-to-end topic.
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/toolchain.sh
# Build first, so the broker is fresh when the measurement starts.
cargo bench -p weft --bench pipeline --bench hot_path --locked --no-run

export WEFT_KAFKA_STATE="${TMPDIR:-/tmp}/weft-kafka-bench-$$"
export WEFT_REGISTRY_STATE="${TMPDIR:-/tmp}/weft-registry-bench-$$"
trap 'scripts/kafka.sh stop; scripts/registry.sh stop' EXIT
WEFT_TEST_BROKERS=$(scripts/kafka.sh start)
# The schema registry hot_path decodes Avro with.
WEFT_TEST_REGISTRY=$(scripts/registry.sh start)
export WEFT_TEST_BROKERS WEFT_TEST_REGISTRY
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

cargo bench -p weft --bench pipeline --locked
cargo bench -p weft --bench hot_path --locked
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
