#!/usr/bin/env bash
# The end-to-end tests against twinlattice on a wasmCloud v1 lattice, in two
# phases, each on a fresh local lattice (scripts/lattice.sh):
#  1. one host: `wash app deploy` wadm.yaml, wait for the first answered
#     requests, run the service-level tests (the same files as on the
#     embedded host; tests marked `embedded` are deselected) and the
#     lattice's own (`lattice`: policy swap);
#  2. two hosts, site=a and site=b: deploy the multi-site manifest, run the
#     site tests (`sites`: both sites serve, site loss and restore).
# Extra arguments go to pytest.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"
venv="$TWINLATTICE_CACHE/venv"
lattice="$here/lattice.sh"

# Its own directory and ports, so it runs beside a developer's lattice or
# `twinlattice serve` on the default ones.
export TWINLATTICE_LATTICE_DIR="${TWINLATTICE_LATTICE_DIR:-$TWINLATTICE_CACHE/lattice-test}"
export TWINLATTICE_NATS_PORT="${TWINLATTICE_NATS_PORT:-4322}"
export TWINLATTICE_LATTICE_HTTP_PORT="${TWINLATTICE_LATTICE_HTTP_PORT:-9321}"
export TWINLATTICE_LATTICE_TWINS_PORT="${TWINLATTICE_LATTICE_TWINS_PORT:-9322}"
export TWINLATTICE_LATTICE_COAP_PORT="${TWINLATTICE_LATTICE_COAP_PORT:-9323}"
export TWINLATTICE_LATTICE_MQTT_PORT="${TWINLATTICE_LATTICE_MQTT_PORT:-9324}"
# The test peers (receivers of deliveries) listen on 127.0.0.1, which the
# bridges refuse to deliver to unless allowed.
export TWINLATTICE_LATTICE_DELIVERY_ALLOW="${TWINLATTICE_LATTICE_DELIVERY_ALLOW:-127.0.0.0/8}"
"$lattice" setup
# The twin API tests make their accounts with the CLI (`account create --lattice`).
cargo build --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR" -p twinlattice >&2
"$lattice" down --wipe >/dev/null 2>&1 || true
mosquitto_pid=""
cleanup() {
  "$lattice" down >/dev/null 2>&1 || true
  if [ -n "$mosquitto_pid" ]; then kill "$mosquitto_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# ready URL TWINS_URL COAP_URL MQTT_PORT: the application answers on one
# site. Both faces must answer requests that read the store: the components
# answer before the state provider is up (and trap on their first store call
# until it is), so a request that touches no state proves too little; an
# unknown User Secret is looked up in the store and answered 401. The
# bridges provider is ready when its CoAP and MQTT inboxes reach the broker
# component (tests/lattice_ready.py).
ready() {
  curl -sf -o /dev/null "$1/shell-descriptors?limit=1" &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: test-lattice-readiness' "$2/account")" = 401 ] &&
    (cd "$root/tests" && "$venv/bin/python" lattice_ready.py "$3" "$4")
}

# After a failed test run: what wadm thinks is deployed, and the hosts' own
# latest log lines (backtrace frames left out), so that a red run says more
# than the assertion.
diagnose() {
  log "tests failed; wash app status and the hosts' last log lines follow"
  "$lattice" wash app status twinlattice >&2 || true
  for f in "$TWINLATTICE_LATTICE_DIR"/logs/host-*.log; do
    [ -f "$f" ] || continue
    echo "--- $f" >&2
    sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -vE '^\s+([0-9]+: |at )|^\s*$' | tail -40 >&2
  done
  return 1
}

# every_site_ready URL TWINS_URL COAP_URL MQTT_PORT [URL …]: `ready` for each site.
every_site_ready() {
  while [ $# -gt 0 ]; do
    ready "$1" "$2" "$3" "$4" || return 1
    shift 4
  done
}

# wadm reports the application deployed (every scaler reconciled).
wadm_deployed() {
  "$lattice" wash app status twinlattice 2>/dev/null | grep -qE '^twinlattice@\S* +- +Deployed'
}

# deploy MANIFEST then, per site, URL TWINS_URL COAP_URL MQTT_PORT: wash app
# deploy and wait until the application is steady: wadm reports it deployed
# and every site answers, on two checks a second apart (wadm may still be
# putting links or moving instances when the first requests are answered,
# and a test started then can meet a site in between).
deploy() {
  local manifest="$1"; shift
  local started; started=$(date +%s%N)
  "$lattice" wash app deploy "$manifest"
  local deadline=$(( $(date +%s) + 120 )) first="" steady=0
  while [ "$steady" -lt 2 ]; do
    if every_site_ready "$@" && { [ -n "$first" ] || first=$(( ($(date +%s%N) - started) / 1000000 )); } && wadm_deployed; then
      steady=$(( steady + 1 ))
      [ "$steady" -lt 2 ] && sleep 1
    else
      steady=0
      sleep 0.1
    fi
    [ "$(date +%s)" -lt "$deadline" ] || {
      log "the application did not become ready on every site ($*) within 120 s; wash app status:"
      "$lattice" wash app status twinlattice || true
      tail -50 "$TWINLATTICE_LATTICE_DIR"/logs/host-*.log >&2
      exit 1
    }
  done
  log "deployed; first answered requests that read the store ${first} ms after wash app deploy began; steady after $(( ($(date +%s%N) - started) / 1000000 )) ms"
}

site_a=("http://127.0.0.1:$TWINLATTICE_LATTICE_HTTP_PORT" "http://127.0.0.1:$TWINLATTICE_LATTICE_TWINS_PORT"
  "coap://127.0.0.1:$TWINLATTICE_LATTICE_COAP_PORT/i40commu")
# The twin API tests create their accounts with `twinlattice account create
# --lattice` (the twins component's admin export over wRPC on this NATS); the
# broker tests use the bridges provider's CoAP inbox and its MQTT broker.
export TWINLATTICE_TEST_LATTICE_URL="${site_a[0]}" TWINLATTICE_TEST_LATTICE_TWINS_URL="${site_a[1]}"
export TWINLATTICE_TEST_LATTICE_NATS_URL="nats://127.0.0.1:$TWINLATTICE_NATS_PORT"
export TWINLATTICE_TEST_LATTICE_COAP_URL="${site_a[2]}"

# Phase 1: one host (site=a), wadm.yaml as it is; the service-level tests.
"$lattice" up site=a
manifest="$TWINLATTICE_LATTICE_DIR/twinlattice.yaml"
"$lattice" manifest > "$manifest"
deploy "$manifest" "${site_a[@]}" "$TWINLATTICE_LATTICE_MQTT_PORT"
TWINLATTICE_TEST_LATTICE_MQTT_PORT="$TWINLATTICE_LATTICE_MQTT_PORT" "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/test_aas_registry.py" "$root/tests/test_ric_routes.py" "$root/tests/test_errors.py" \
  "$root/tests/test_paging.py" "$root"/tests/test_twins_*.py "$root/tests/test_broker.py" \
  "$root/tests/test_lattice_ops.py" "$@" || diagnose

# Phase 2: two sites (hosts site=a and site=b), the manifest's multi-site
# form (scripts/sites.py: site b's ports are site a's + 10) with one outside
# MQTT broker (mosquitto) both sites' bridges share; the site tests.
"$lattice" down --wipe >/dev/null
mqtt_port="${TWINLATTICE_LATTICE_SITES_MQTT_PORT:-9325}"
mkdir -p "$TWINLATTICE_LATTICE_DIR"
printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\n' "$mqtt_port" > "$TWINLATTICE_LATTICE_DIR/mosquitto.conf"
mosquitto -c "$TWINLATTICE_LATTICE_DIR/mosquitto.conf" > "$TWINLATTICE_LATTICE_DIR/mosquitto.log" 2>&1 &
mosquitto_pid=$!
"$lattice" up site=a site=b
site_b=("http://127.0.0.1:$((TWINLATTICE_LATTICE_HTTP_PORT + 10))" "http://127.0.0.1:$((TWINLATTICE_LATTICE_TWINS_PORT + 10))"
  "coap://127.0.0.1:$((TWINLATTICE_LATTICE_COAP_PORT + 10))/i40commu")
"$lattice" manifest --sites a,b --mqtt "127.0.0.1:$mqtt_port" > "$manifest"
deploy "$manifest" "${site_a[@]}" "$mqtt_port" "${site_b[@]}" "$mqtt_port"
TWINLATTICE_TEST_LATTICE_MQTT_PORT="$mqtt_port" TWINLATTICE_TEST_SITE_B_URL="${site_b[0]}" \
  TWINLATTICE_TEST_SITE_B_COAP_URL="${site_b[2]}" "$venv/bin/python" -m pytest -q -s -p no:cacheprovider \
  "$root/tests/test_lattice_sites.py" "$@" || diagnose
