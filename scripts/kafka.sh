#!/usr/bin/env bash
# kafka.sh - throwaway Apache Kafka brokers (KRaft, no ZooKeeper) for Weft's tests.
#
# No Docker and no download of the Kafka tarball: the broker's jars come from
# Maven Central through `mvn` into Maven's own local repository, and the
# resulting classpath is cached outside the work tree, so nothing big ever
# lands in the repository and a warm `install` costs milliseconds.
#
# Usage: kafka.sh COMMAND [ARGS]
#   install            resolve the jars (and apt-get java/maven/openssl if missing)
#   start              one plaintext broker; prints 127.0.0.1:PORT
#   start-secure       one broker whose client listener is SASL_SSL + SCRAM-SHA-256;
#                      prints 127.0.0.1:PORT; CA, user and password are written to
#                      $WEFT_KAFKA_STATE/secure/{ca.pem,user,password}
#   start-cluster      three brokers (3-voter quorum, replication factor 3);
#                      prints 127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3
#   stop-broker N...   SIGTERM cluster broker(s) N (1..3) and wait for them to exit
#   kill-broker N...   SIGKILL cluster broker(s) N
#   restart-broker N...  start cluster broker(s) N again (same config and data)
#                      and wait until they serve; a running one is stopped first
#   address [MODE]     print the address of a running MODE (single, secure, cluster)
#   status             list every broker this script knows of and whether it runs
#   stop               stop every broker this script started
#   tool CLASS ARGS    run a Java main class from the Kafka classpath, e.g.
#                      org.apache.kafka.tools.ConsoleProducer (client tools)
#   cluster-id [N]     print N (default 1) new cluster ids of the kind the start
#                      commands format brokers with, one a line
#
# Contract for callers: machine-readable output goes to stdout only; progress and
# errors go to stderr. Every start command gives a fresh, empty cluster.
#
# Environment:
#   WEFT_KAFKA_STATE          state dir (pids, logs, data); default ${TMPDIR:-/tmp}/weft-kafka
#   WEFT_KAFKA_HEAP           max heap per broker; default 512m
#   WEFT_KAFKA_START_TIMEOUT  seconds to wait for a broker to serve; default 90
#   WEFT_KAFKA_JAVA_OPTS      extra JVM options for the brokers
#   JAVA_HOME                 used when set, else `java` on PATH (Java 17+ needed)

set -euo pipefail

# --- pinned versions ---------------------------------------------------------
# One pinned Kafka: the tests must not change behaviour when a new release
# appears. kafka_2.13 holds kafka.Kafka (the broker main class) and pulls in
# the KRaft modules (server, metadata, raft, storage, coordinators) at runtime
# scope. Kafka 4 logs through slf4j 1.x into log4j2, so the matching log4j2
# binding is added. kafka-tools brings the Java console clients for `tool`;
# its connect-runtime dependency (Jetty, Jersey: half the download) is excluded
# because none of the client tools need it.
KAFKA_VERSION=4.4.0
SCALA_BINARY=2.13
LOG4J_VERSION=2.25.5             # the log4j2 version kafka-server 4.4.0 depends on
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1

STATE=${WEFT_KAFKA_STATE:-${TMPDIR:-/tmp}/weft-kafka}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/weft-kafka/$KAFKA_VERSION
CP_FILE=$CACHE/classpath
HEAP=${WEFT_KAFKA_HEAP:-512m}
START_TIMEOUT=${WEFT_KAFKA_START_TIMEOUT:-90}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java

# Test brokers are short-lived and the machines are small, so the JVM is tuned
# for fast start and a small footprint rather than peak throughput: serial GC
# (no GC threads competing for 2 cores), the C1 JIT only (C2 burns CPU for
# seconds at start-up and buys nothing for test-sized traffic), a small heap.
BROKER_JAVA_OPTS=(-Xms64m "-Xmx$HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)
# One-shot tools (storage format, console clients) run even leaner.
TOOL_JAVA_OPTS=(-Xms32m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -Djava.awt.headless=true)

log() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- installation ------------------------------------------------------------

# apt-get the given Debian packages (only called for tools that are missing).
apt_install() {
  [ $# -gt 0 ] || return 0
  command -v apt-get >/dev/null || die "missing: $*; no apt-get here, install them by hand"
  local sudo=()
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null || die "missing: $*; need root (or sudo) to apt-get them"
    sudo=(sudo -n)
  fi
  log "installing $* with apt-get"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2
}

ensure_java() {
  command -v "$JAVA" >/dev/null && return 0
  apt_install default-jre-headless
}

# The classpath cache is valid while every jar it names is still in Maven's
# local repository (someone may have wiped ~/.m2).
classpath_ok() {
  [ -s "$CP_FILE" ] || return 1
  local jars jar
  IFS=: read -r -a jars < "$CP_FILE"
  for jar in "${jars[@]}"; do [ -f "$jar" ] || return 1; done
}

write_pom() {
  cat > "$CACHE/pom.xml" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by Weft's kafka.sh: the runtime classpath of a Kafka broker. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>weft.test</groupId>
  <artifactId>kafka-broker-runtime</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_$SCALA_BINARY</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka-tools</artifactId>
      <version>$KAFKA_VERSION</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
</project>
EOF
}

# Resolve the jars once; later calls only check the cache.
ensure_classpath() {
  ensure_java
  classpath_ok && return 0
  mkdir -p "$CACHE"
  # Several test processes may call install at once: let one resolve.
  exec 9>"$CACHE/.lock"
  command -v flock >/dev/null && flock 9
  if ! classpath_ok; then
    command -v mvn >/dev/null || apt_install maven
    write_pom
    log "resolving Kafka $KAFKA_VERSION with Maven (first run only)"
    # Maven's output is kept in mvn.log and shown only when it fails.
    if ! mvn -B -ntp -Dstyle.color=never -f "$CACHE/pom.xml" "$DEPENDENCY_PLUGIN:build-classpath" \
      -Dmdep.includeScope=runtime -Dmdep.outputFile="$CP_FILE.tmp" > "$CACHE/mvn.log" 2>&1; then
      tail -n 40 "$CACHE/mvn.log" >&2
      die "maven could not resolve org.apache.kafka:kafka_$SCALA_BINARY:$KAFKA_VERSION"
    fi
    mv "$CP_FILE.tmp" "$CP_FILE"
  fi
  exec 9>&-
}

classpath() { cat "$CP_FILE"; }

# --- small helpers -----------------------------------------------------------

# Ports already handed out by this invocation (the broker binds them later).
TAKEN_PORTS=" "

# free_port VAR: store an unused loopback port in VAR. Ports come from below
# Linux's ephemeral range (32768+) so outgoing connections can't grab them
# between the check and the broker's bind; a collision anyway is retried by
# the start commands.
free_port() {
  local p
  for _ in $(seq 1 500); do
    p=$((20000 + RANDOM % 12000))
    case "$TAKEN_PORTS" in *" $p "*) continue ;; esac
    if command -v ss >/dev/null; then
      [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] || continue
    elif (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      continue
    fi
    TAKEN_PORTS+="$p "
    printf -v "$1" '%s' "$p"
    return 0
  done
  die "found no free loopback port"
}

# A KRaft cluster id: 16 random bytes in URL-safe base64 without padding (what
# `kafka-storage random-uuid` prints), made here to spare a JVM start. Like
# Kafka's own, it never starts with '-': kafka-storage would read it as an option.
new_cluster_id() {
  local id
  while :; do
    id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
    [ "${id#-}" = "$id" ] && break
  done
  printf '%s' "$id"
}

random_secret() {
  head -c 48 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Mutating commands hold a lock so parallel test processes calling `start`
# see one broker come up, not two half-started ones.
lock_state() {
  mkdir -p "$STATE"
  exec 8>"$STATE/.lock"
  command -v flock >/dev/null && flock 8
  return 0
}

# log4j2 configs: brokers log INFO to their kafka.log (the readiness check
# reads it); tools only report warnings, on stderr, so stdout stays clean.
write_log_configs() {
  cat > "$STATE/log4j2-broker.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
# Per-request and state-change chatter would swamp the test logs.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.statechange.name = state.change.logger
logger.statechange.level = WARN
EOF
  cat > "$STATE/log4j2-tool.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF
}

run_tool() {
  [ -f "$STATE/log4j2-tool.properties" ] || { mkdir -p "$STATE"; write_log_configs; }
  "$JAVA" "${TOOL_JAVA_OPTS[@]}" -Dlog4j2.configurationFile="$STATE/log4j2-tool.properties" \
    -cp "$(classpath)" "$@"
}

# --- broker nodes ------------------------------------------------------------
# A node is a directory: server.properties, data/, kafka.log, pid, port (the
# client port), and optional format.args (extra StorageTool arguments).

node_pid() { cat "$1/pid" 2>/dev/null || true; }

# Running = the pid is alive AND is the java started on this node's config
# (guards against a recycled pid after a reboot or a crash).
node_running() {
  local pid
  pid=$(node_pid "$1")
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$1/server.properties"
}

# write_properties DIR NODE_ID VOTERS LISTENERS ADVERTISED PROTOCOL_MAP INTER_BROKER RF EXTRA
write_properties() {
  local dir=$1 id=$2 voters=$3 listeners=$4 advertised=$5 protomap=$6 inter=$7 rf=$8 extra=${9:-}
  # min ISR is 2 for a 3-replica cluster (a write survives one dead broker
  # with acks=all) and 1 for a single broker.
  local min_isr=$((rf > 1 ? 2 : 1))
  cat > "$dir/server.properties" <<EOF
# Generated by kafka.sh for tests; data is thrown away on the next start.
process.roles=broker,controller
node.id=$id
controller.quorum.voters=$voters
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
listener.security.protocol.map=$protomap
inter.broker.listener.name=$inter
log.dirs=$dir/data

# Test-friendly defaults: topics appear on first use, consumer groups
# rebalance at once, and internal topics fit the number of brokers.
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=$min_isr
group.initial.rebalance.delay.ms=0
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr
# The default 50 partitions per internal topic make the first consumer group
# or transaction on a fresh broker take seconds; a few are plenty for tests.
offsets.topic.num.partitions=$rf
transaction.state.log.num.partitions=$rf
share.coordinator.state.topic.num.partitions=$rf

# The log cleaner allocates its 128 MiB dedupe buffer on the heap at start-up
# (most of an idle broker's memory); 8 MiB still compacts ~300k keys a pass.
log.cleaner.dedupe.buffer.size=8388608

# Fail over quickly when a test kills a broker: fence it after 4 s instead of
# 9 s. Kept above a few heartbeats so a busy CI machine doesn't flap.
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=4000
$extra
EOF
}

# format_node DIR CLUSTER_ID: write meta.properties and the bootstrap metadata.
format_node() {
  local dir=$1 cid=$2 extra=()
  if [ -f "$dir/format.args" ]; then mapfile -t extra < "$dir/format.args"; fi
  # Its chatter goes to format.log, shown only if formatting fails.
  if ! run_tool kafka.tools.StorageTool format --config "$dir/server.properties" \
    --cluster-id "$cid" --ignore-formatted "${extra[@]}" > "$dir/format.log" 2>&1; then
    cat "$dir/format.log" >&2
    die "formatting $dir failed"
  fi
}

# launch_node DIR: start the broker in the background, detached from the
# caller (own session, stdio away from the caller's pipes, lock fds closed) so
# `$(kafka.sh start)` returns and the broker outlives the calling test.
launch_node() {
  local dir=$1
  [ -f "$dir/kafka.log" ] && wc -c < "$dir/kafka.log" | tr -d ' ' > "$dir/log.offset" \
    || echo 0 > "$dir/log.offset"
  rm -f "$dir/pid"
  local setsid=() extra_opts=()
  read -r -a extra_opts <<< "${WEFT_KAFKA_JAVA_OPTS:-}"
  command -v setsid >/dev/null && setsid=(setsid)
  # shellcheck disable=SC2016 # $$ is expanded by the inner shell, on purpose
  "${setsid[@]}" bash -c 'echo $$ > "$1/pid"; shift; exec "$@"' _ "$dir" \
    "$JAVA" "${BROKER_JAVA_OPTS[@]}" "${extra_opts[@]}" \
    -Dlog4j2.configurationFile="$STATE/log4j2-broker.properties" \
    -Dkafka.logs.dir="$dir" \
    -cp "$(classpath)" kafka.Kafka "$dir/server.properties" \
    < /dev/null >> "$dir/kafka.log" 2>&1 8>&- 9>&- &
  for _ in $(seq 1 100); do [ -s "$dir/pid" ] && return 0; sleep 0.05; done
  die "broker in $dir did not start"
}

# This run's part of the node's log (restarts append to the same file).
node_log_since_launch() {
  tail -c +"$(($(cat "$1/log.offset" 2>/dev/null || echo 0) + 1))" "$1/kafka.log" 2>/dev/null
}

# wait_ready DIR...: until each broker logged "Kafka Server started" (logged
# after it caught up with the metadata and was unfenced by the controller)
# and accepts TCP on its client port. Returns 1 if a broker died or timed out.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) dir pending
  while :; do
    pending=0
    for dir in "$@"; do
      if ! node_running "$dir"; then
        log "broker in $dir exited during start-up; end of its log:"
        node_log_since_launch "$dir" | tail -n 30 >&2
        return 1
      fi
      if node_log_since_launch "$dir" | grep -q 'Kafka Server started' \
        && port_open "$(cat "$dir/port")"; then
        continue
      fi
      pending=1
    done
    [ "$pending" = 0 ] && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "brokers not serving after ${START_TIMEOUT}s; see kafka.log in: $*"
      return 1
    fi
    sleep 0.2
  done
}

# stop_nodes SIGNAL GRACE DIR...: signal all, wait up to GRACE seconds, then
# SIGKILL the rest. Signalling all first lets a cluster shut down together.
stop_nodes() {
  local sig=$1 grace=$2 dir
  shift 2
  for dir in "$@"; do
    if node_running "$dir"; then kill "-$sig" "$(node_pid "$dir")" 2>/dev/null || true; fi
  done
  local deadline=$((SECONDS + grace))
  for dir in "$@"; do
    while node_running "$dir" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
    if node_running "$dir"; then
      log "broker in $dir ignored SIG$sig for ${grace}s; killing it"
      kill -KILL "$(node_pid "$dir")" 2>/dev/null || true
      while node_running "$dir"; do sleep 0.05; done
    fi
    rm -f "$dir/pid"
  done
}

# --- modes -------------------------------------------------------------------

# Lay out, format and start one mode's nodes; retried a few times because a
# chosen port can be taken by someone else before the broker binds it.
# start_mode MODE SETUP_FUNCTION: SETUP_FUNCTION creates the node dirs under
# $STATE/MODE and prints nothing; the nodes are the dirs holding server.properties.
start_mode() {
  local mode=$1 setup=$2 attempt dirs=() cid
  for attempt in 1 2 3; do
    rm -rf "${STATE:?}/$mode"
    mkdir -p "$STATE/$mode"
    TAKEN_PORTS=" "
    "$setup" "$STATE/$mode"
    mapfile -t dirs < <(find "$STATE/$mode" -name server.properties -printf '%h\n' | sort)
    cid=$(new_cluster_id)
    # Each format is a JVM start; run them side by side.
    local d pids=()
    for d in "${dirs[@]}"; do format_node "$d" "$cid" & pids+=($!); done
    for d in "${pids[@]}"; do wait "$d" || die "formatting failed"; done
    for d in "${dirs[@]}"; do launch_node "$d"; done
    if wait_ready "${dirs[@]}"; then return 0; fi
    stop_nodes KILL 5 "${dirs[@]}"
    if cat "${dirs[@]/%//kafka.log}" | grep -q 'Address already in use'; then
      log "port collision, retrying with other ports (attempt $attempt)"
      continue
    fi
    die "$mode did not start"
  done
  die "$mode did not start after 3 attempts"
}

setup_single() {
  local dir=$1 port cport
  free_port port; free_port cport
  write_properties "$dir" 1 "1@127.0.0.1:$cport" \
    "PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport" \
    "PLAINTEXT://127.0.0.1:$port" \
    "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" PLAINTEXT 1
  echo "$port" > "$dir/port"
  echo "127.0.0.1:$port" > "$dir/address"
}

# TLS material for the secure broker: a throwaway CA and a server certificate
# for 127.0.0.1 (IP SAN: librdkafka checks the address it dialled against the
# SAN by default) and localhost. Kafka reads PEM directly, so no keytool.
make_certs() {
  local dir=$1 tls=$1/tls
  command -v openssl >/dev/null || apt_install openssl
  mkdir -p "$tls"
  # Own config file: independent of the system's openssl.cnf defaults.
  cat > "$tls/openssl.cnf" <<'EOF'
[req]
distinguished_name = dn
prompt = no
[dn]
CN = Weft test CA
[ca_ext]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
  openssl req -x509 -config "$tls/openssl.cnf" -extensions ca_ext -newkey rsa:2048 -nodes \
    -keyout "$tls/ca.key" -out "$dir/ca.pem" -days 3650 2>/dev/null
  openssl req -new -config "$tls/openssl.cnf" -subj "/CN=127.0.0.1" -newkey rsa:2048 -nodes \
    -keyout "$tls/server.key" -out "$tls/server.csr" 2>/dev/null
  openssl x509 -req -in "$tls/server.csr" -CA "$dir/ca.pem" -CAkey "$tls/ca.key" \
    -set_serial "0x$(openssl rand -hex 8)" -days 3650 \
    -extfile "$tls/openssl.cnf" -extensions server_ext -out "$tls/server.crt" 2>/dev/null
  # Kafka's PEM key store: an unencrypted PKCS#8 key followed by the chain.
  cat "$tls/server.key" "$tls/server.crt" "$dir/ca.pem" > "$tls/server.pem"
}

setup_secure() {
  local dir=$1 port iport cport user=weft password
  free_port port; free_port iport; free_port cport
  password=$(random_secret)
  make_certs "$dir"
  # Clients get only CLIENT (SASL_SSL); the broker talks to itself and its
  # controller over plaintext loopback listeners that tests never see.
  write_properties "$dir" 1 "1@127.0.0.1:$cport" \
    "CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport,CONTROLLER://127.0.0.1:$cport" \
    "CLIENT://127.0.0.1:$port,INTERNAL://127.0.0.1:$iport" \
    "CLIENT:SASL_SSL,INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT" INTERNAL 1 "
# SASL_SSL client listener: SCRAM-SHA-256 over TLS, server certificate only.
sasl.enabled.mechanisms=SCRAM-SHA-256
listener.name.client.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
ssl.keystore.type=PEM
ssl.keystore.location=$dir/tls/server.pem
ssl.client.auth=none"
  # KRaft stores SCRAM credentials in the metadata log; adding them at format
  # time means the user exists the moment the broker serves.
  echo "--add-scram" > "$dir/format.args"
  echo "SCRAM-SHA-256=[name=$user,password=$password]" >> "$dir/format.args"
  printf '%s\n' "$user" > "$dir/user"
  printf '%s\n' "$password" > "$dir/password"
  # For Kafka's Java tools: `kafka.sh tool ... --command-config client.properties`.
  cat > "$dir/client.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="$user" password="$password";
ssl.truststore.type=PEM
ssl.truststore.location=$dir/ca.pem
EOF
  chmod 600 "$dir/password" "$dir/client.properties" "$dir/format.args" \
    "$dir/tls/ca.key" "$dir/tls/server.key" "$dir/tls/server.pem"
  echo "$port" > "$dir/port"
  echo "127.0.0.1:$port" > "$dir/address"
}

setup_cluster() {
  local dir=$1 n ports=() cports=() voters=""
  for n in 1 2 3; do
    free_port "ports[$n]"; free_port "cports[$n]"
    voters+="${voters:+,}$n@127.0.0.1:${cports[$n]}"
  done
  for n in 1 2 3; do
    mkdir -p "$dir/node$n"
    write_properties "$dir/node$n" "$n" "$voters" \
      "PLAINTEXT://127.0.0.1:${ports[$n]},CONTROLLER://127.0.0.1:${cports[$n]}" \
      "PLAINTEXT://127.0.0.1:${ports[$n]}" \
      "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT" PLAINTEXT 3 "
# Notice a dead follower within 10 s (default 30 s) so acks=all writes resume
# quickly after kill-broker.
replica.lag.time.max.ms=10000"
    echo "${ports[$n]}" > "$dir/node$n/port"
    echo "127.0.0.1:${ports[$n]}" > "$dir/node$n/address"
  done
  echo "127.0.0.1:${ports[1]},127.0.0.1:${ports[2]},127.0.0.1:${ports[3]}" > "$dir/address"
}

mode_dirs() {
  case $1 in
    single | secure) echo "$STATE/$1" ;;
    cluster) printf '%s\n' "$STATE/cluster/node1" "$STATE/cluster/node2" "$STATE/cluster/node3" ;;
    *) die "unknown mode '$1' (single, secure, cluster)" ;;
  esac
}

mode_running() {
  local d
  [ -f "$STATE/$1/address" ] || return 1
  for d in $(mode_dirs "$1"); do node_running "$d" || return 1; done
}

# start MODE: idempotent; a mode already serving just prints its address.
cmd_start() {
  local mode=$1 setup=$2
  ensure_classpath
  lock_state
  write_log_configs
  if mode_running "$mode"; then
    log "$mode already running"
  else
    # Leftovers of a crashed earlier run would hold the ports and data.
    # shellcheck disable=SC2046
    stop_nodes KILL 5 $(mode_dirs "$mode")
    log "starting Kafka $KAFKA_VERSION ($mode)"
    start_mode "$mode" "$setup"
    log "$mode ready"
  fi
  cat "$STATE/$mode/address"
}

# cluster_nodes N...: the node dirs of cluster brokers N (1..3), one a line.
cluster_nodes() {
  [ $# -gt 0 ] || die "name a broker: 1, 2 or 3"
  [ -f "$STATE/cluster/node1/server.properties" ] || die "no cluster; run start-cluster first"
  local n
  for n in "$@"; do
    case $n in 1 | 2 | 3) echo "$STATE/cluster/node$n" ;; *) die "broker number must be 1, 2 or 3, not '$n'" ;; esac
  done
}

cmd_stop_brokers() {
  local sig=$1 grace=$2 dirs
  shift 2
  dirs=$(cluster_nodes "$@")
  lock_state
  # shellcheck disable=SC2086 # node dirs are one a line, without spaces
  stop_nodes "$sig" "$grace" $dirs
}

# restart-broker N...: several at once, since a broker can only come back
# while a majority of the 3 controllers (itself included) runs.
cmd_restart_brokers() {
  local dirs=() d live=0
  mapfile -t dirs < <(cluster_nodes "$@")
  [ ${#dirs[@]} -eq $# ] || exit 1
  ensure_classpath
  lock_state
  stop_nodes TERM 30 "${dirs[@]}"
  for d in $(mode_dirs cluster); do
    node_running "$d" && live=$((live + 1))
  done
  [ $((live + ${#dirs[@]})) -ge 2 ] \
    || die "a lone broker has no controller quorum; restart two at once or run start-cluster"
  log "restarting broker(s) $*"
  for d in "${dirs[@]}"; do launch_node "$d"; done
  wait_ready "${dirs[@]}" || die "broker(s) $* did not come back"
  log "broker(s) $* ready"
}

cmd_status() {
  local mode d state
  for mode in single secure cluster; do
    [ -d "$STATE/$mode" ] || continue
    for d in $(mode_dirs "$mode"); do
      [ -f "$d/server.properties" ] || continue
      if node_running "$d"; then state="running pid $(node_pid "$d")"; else state=stopped; fi
      printf '%s\t%s\t%s\n' "${d#"$STATE"/}" "$(cat "$d/address" 2>/dev/null || echo -)" "$state"
    done
  done
}

cmd_stop() {
  lock_state
  local dirs=() mode
  for mode in single secure; do
    [ -d "$STATE/$mode" ] && dirs+=("$STATE/$mode")
  done
  # Single brokers stop cleanly in about a second.
  [ ${#dirs[@]} -eq 0 ] || stop_nodes TERM 10 "${dirs[@]}"
  # A whole KRaft cluster can't stop gracefully: the last broker standing has
  # no controller quorum left to finish its controlled shutdown and waits for
  # it. The data is thrown away on the next start anyway, so kill outright.
  if [ -d "$STATE/cluster" ]; then
    mapfile -t dirs < <(mode_dirs cluster)
    stop_nodes KILL 5 "${dirs[@]}"
  fi
  log "stopped"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) ensure_classpath; log "Kafka $KAFKA_VERSION classpath: $CP_FILE" ;;
    start) cmd_start single setup_single ;;
    start-secure) cmd_start secure setup_secure ;;
    start-cluster) cmd_start cluster setup_cluster ;;
    stop-broker) cmd_stop_brokers TERM 30 "$@" ;;
    kill-broker) cmd_stop_brokers KILL 5 "$@" ;;
    restart-broker) cmd_restart_brokers "$@" ;;
    address)
      local mode=${1:-single}
      mode_dirs "$mode" > /dev/null
      mode_running "$mode" || die "$mode is not running"
      cat "$STATE/$mode/address"
      ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    cluster-id)
      local n=${1:-1}
      [[ $n =~ ^[0-9]+$ ]] || die "usage: kafka.sh cluster-id [COUNT]"
      for ((; n > 0; n--)); do new_cluster_id; echo; done
      ;;
    tool)
      [ $# -gt 0 ] || die "usage: kafka.sh tool MAIN_CLASS [ARGS...]"
      ensure_classpath
      run_tool "$@"
      ;;
    -h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
}

main "$@"
