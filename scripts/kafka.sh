#!/usr/bin/env bash
# The test broker: tansu (a Kafka-protocol broker) with its in-memory store, on a free loopback port.
#
#   scripts/kafka.sh install   install tansu into ~/.cargo/bin if it is missing
#   scripts/kafka.sh start     start it (installing first), print the bootstrap address
#   scripts/kafka.sh stop      stop it
#   scripts/kafka.sh address   print the bootstrap address of the running broker
#
# State (pid, address, log) lives in $WEFT_KAFKA_STATE (default: $TMPDIR/weft-kafka).
set -euo pipefail

TANSU_VERSION=0.6.0
state=${WEFT_KAFKA_STATE:-${TMPDIR:-/tmp}/weft-kafka}
mkdir -p "$state"

install() {
    if command -v tansu >/dev/null 2>&1; then
        return
    fi
    echo "installing tansu $TANSU_VERSION (in-memory storage; takes a while the first time)" >&2
    cargo install --locked tansu --version "$TANSU_VERSION" --features dynostore >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

start() {
    if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
        cat "$state/address"
        return
    fi
    install
    local port
    port=$(free_port)
    nohup tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/" \
        >"$state/broker.log" 2>&1 &
    echo $! >"$state/pid"
    for _ in $(seq 1 150); do
        if answers "$port"; then
            echo "127.0.0.1:$port" >"$state/address"
            echo "127.0.0.1:$port"
            return
        fi
        if ! kill -0 "$(cat "$state/pid")" 2>/dev/null; then
            echo "tansu exited; its log:" >&2
            cat "$state/broker.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "tansu did not answer on 127.0.0.1:$port within 30 s; log: $state/broker.log" >&2
    exit 1
}

stop() {
    if [ -f "$state/pid" ]; then
        kill "$(cat "$state/pid")" 2>/dev/null || true
        rm -f "$state/pid" "$state/address"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    address) cat "$state/address" ;;
    *)
        echo "usage: $0 install|start|stop|address" >&2
        exit 2
        ;;
esac
