#!/usr/bin/env bash
# The test brokers: tansu (a Kafka-protocol broker) on free loopback ports.
#
#   scripts/kafka.sh install        install tansu into ~/.cargo/bin if it is missing
#   scripts/kafka.sh start          start the plain broker (in-memory store), print its address
#   scripts/kafka.sh start-secure   start the secured broker, print its address (see below)
#   scripts/kafka.sh stop           stop both
#   scripts/kafka.sh address        print the plain broker's address
#
# The secured broker takes SASL_SSL with SCRAM-SHA-256 only. tansu keeps SCRAM users in its store
# and creates them only for a client that is already authenticated, so the user is created first
# on a broker without authentication over a SQLite store, and the authenticating broker is then
# started on the same store. tansu 0.6 does not terminate TLS itself: socat (Debian's package,
# installed when missing) does, with a certificate for 127.0.0.1 made by openssl. Its files, in
# $WEFT_KAFKA_STATE/secure: ca.pem (the certificate to trust), user, password.
#
# State (pids, addresses, logs) lives in $WEFT_KAFKA_STATE (default: $TMPDIR/weft-kafka).
set -euo pipefail

TANSU_VERSION=0.6.0
TANSU_FEATURES=dynostore,libsql
state=${WEFT_KAFKA_STATE:-${TMPDIR:-/tmp}/weft-kafka}
mkdir -p "$state"

install() {
    # cargo records the features a binary was built with; an older build without SQLite is redone.
    if command -v tansu >/dev/null 2>&1 \
        && grep -q "\"tansu $TANSU_VERSION[^\"]*\":{[^}]*\"features\":\[\"dynostore\",\"libsql\"\]" \
            "${CARGO_HOME:-$HOME/.cargo}/.crates2.json" 2>/dev/null; then
        return
    fi
    echo "installing tansu $TANSU_VERSION (in-memory and SQLite stores; takes a while the first time)" >&2
    cargo install --locked tansu --version "$TANSU_VERSION" --features "$TANSU_FEATURES" >&2
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

answers() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# launch NAME PORT COMMAND...: runs COMMAND in the background (pid in $state/NAME.pid, output in
# $state/NAME.log) and waits until PORT answers.
launch() {
    local name=$1 port=$2
    shift 2
    nohup "$@" >"$state/$name.log" 2>&1 &
    echo $! >"$state/$name.pid"
    for _ in $(seq 1 150); do
        if answers "$port"; then
            return
        fi
        if ! kill -0 "$(cat "$state/$name.pid")" 2>/dev/null; then
            echo "$name exited; its log:" >&2
            cat "$state/$name.log" >&2
            exit 1
        fi
        sleep 0.2
    done
    echo "$name did not answer on 127.0.0.1:$port within 30 s; log: $state/$name.log" >&2
    exit 1
}

running() {
    [ -f "$state/$1.pid" ] && kill -0 "$(cat "$state/$1.pid")" 2>/dev/null
}

halt() {
    if [ -f "$state/$1.pid" ]; then
        kill "$(cat "$state/$1.pid")" 2>/dev/null || true
        rm -f "$state/$1.pid"
    fi
}

start() {
    if running broker; then
        cat "$state/address"
        return
    fi
    install
    local port
    port=$(free_port)
    launch broker "$port" tansu broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "memory://tansu/"
    echo "127.0.0.1:$port" | tee "$state/address"
}

start_secure() {
    local secure="$state/secure"
    if running secure-tls; then
        cat "$secure/address"
        return
    fi
    install
    if ! command -v socat >/dev/null; then
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat; } >&2
    fi
    rm -rf "$secure"
    mkdir -p "$secure"
    local inner tls
    inner=$(free_port)
    tls=$(free_port)
    echo weft >"$secure/user"
    python3 -c 'import secrets; print(secrets.token_urlsafe(24))' >"$secure/password"

    # The user, on a broker that asks for no authentication, over the store the secured one uses.
    (cd "$secure" && launch secure-setup "$inner" tansu broker \
        --listener-url "tcp://127.0.0.1:$inner" --advertised-listener-url "tcp://127.0.0.1:$inner" \
        --storage-engine "sqlite://tansu.db")
    tansu user create --broker "tcp://127.0.0.1:$inner" --mechanism scram256 \
        "$(cat "$secure/user")" "$(cat "$secure/password")" >&2
    halt secure-setup
    for _ in $(seq 1 50); do answers "$inner" || break; sleep 0.1; done

    openssl req -x509 -newkey rsa:2048 -nodes -days 7 -subj "/CN=weft test broker" \
        -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
        -keyout "$secure/key.pem" -out "$secure/ca.pem" 2>/dev/null
    (cd "$secure" && launch secure-broker "$inner" tansu broker --authentication \
        --listener-url "tcp://127.0.0.1:$inner" --advertised-listener-url "tcp://127.0.0.1:$tls" \
        --storage-engine "sqlite://tansu.db")
    launch secure-tls "$tls" socat \
        "OPENSSL-LISTEN:$tls,bind=127.0.0.1,reuseaddr,fork,cert=$secure/ca.pem,key=$secure/key.pem,verify=0" \
        "TCP:127.0.0.1:$inner"
    echo "127.0.0.1:$tls" | tee "$secure/address"
}

stop() {
    for name in broker secure-tls secure-broker secure-setup; do halt "$name"; done
    rm -f "$state/address"
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    start-secure) start_secure ;;
    stop) stop ;;
    address) cat "$state/address" ;;
    *)
        echo "usage: $0 install|start|start-secure|stop|address" >&2
        exit 2
        ;;
esac
