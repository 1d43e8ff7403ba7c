# shellcheck shell=bash
# service-common.sh - what scripts/kafka.sh and scripts/registry.sh share: messages, installing a
# missing Debian package, and picking free loopback ports. Sourced, not run; the sourcing script
# sets SERVICE_SCRIPT (its name, for messages) first.

log() { printf '%s: %s\n' "$SERVICE_SCRIPT" "$*" >&2; }
die() { log "error: $*"; exit 1; }

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

# Ports already handed out by this invocation (the service binds them later).
TAKEN_PORTS=" "

# free_port VAR: store an unused loopback port in VAR. Ports come from below
# Linux's ephemeral range (32768+) so outgoing connections can't grab them
# between the check and the service's bind; a collision anyway is retried by
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
