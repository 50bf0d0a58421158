#!/usr/bin/env bash
# The end-to-end tests against twinlattice on a wasmCloud v1 lattice: bring up
# a fresh local lattice (scripts/lattice.sh), `wash app deploy` wadm.yaml,
# wait for the first answered request, run the service-level tests (the same
# files as on the embedded host; tests marked `embedded` are deselected),
# take the lattice down. Extra arguments go to pytest.
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
"$lattice" setup
# The twin API tests make their accounts with the CLI (`account create --lattice`).
cargo build --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR" -p twinlattice >&2
"$lattice" down --wipe >/dev/null 2>&1 || true
trap '"$lattice" down >/dev/null 2>&1 || true' EXIT
"$lattice" up site=a

manifest="$TWINLATTICE_LATTICE_DIR/twinlattice.yaml"
"$lattice" manifest > "$manifest"
started=$(date +%s%N)
"$lattice" wash app deploy "$manifest"
url="http://127.0.0.1:$TWINLATTICE_LATTICE_HTTP_PORT"
twins_url="http://127.0.0.1:$TWINLATTICE_LATTICE_TWINS_PORT"
# Ready when both faces answer requests that read the store: the components
# answer before the state provider is up (and trap on their first store call
# until it is), so a request that touches no state proves too little. An
# unknown User Secret is looked up in the store and answered 401.
# The bridges provider is ready when its CoAP and MQTT inboxes reach the
# broker component (tests/lattice_ready.py).
coap_url="coap://127.0.0.1:$TWINLATTICE_LATTICE_COAP_PORT/i40commu"
ready() {
  curl -sf -o /dev/null "$url/shell-descriptors?limit=1" &&
    [ "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: test-lattice-readiness' "$twins_url/account")" = 401 ] &&
    (cd "$root/tests" && "$venv/bin/python" lattice_ready.py "$coap_url" "$TWINLATTICE_LATTICE_MQTT_PORT")
}
for _ in $(seq 1 600); do
  if ready; then break; fi
  sleep 0.1
done
ready || {
  log "the application did not answer on $url, $twins_url and its CoAP/MQTT inboxes; wash app status:"
  "$lattice" wash app status twinlattice || true
  tail -50 "$TWINLATTICE_LATTICE_DIR"/logs/host-*.log >&2
  exit 1
}
log "deployed; first answered requests that read the store $(( ($(date +%s%N) - started) / 1000000 )) ms after wash app deploy began"

# The twin API tests create their accounts with `twinlattice account create
# --lattice` (the twins component's admin export over wRPC on this NATS).
export TWINLATTICE_TEST_LATTICE_URL="$url" TWINLATTICE_TEST_LATTICE_TWINS_URL="$twins_url"
export TWINLATTICE_TEST_LATTICE_NATS_URL="nats://127.0.0.1:$TWINLATTICE_NATS_PORT"
# The broker's other inboxes: the bridges provider's CoAP inbox and the MQTT
# broker embedded in it.
export TWINLATTICE_TEST_LATTICE_COAP_URL="$coap_url"
export TWINLATTICE_TEST_LATTICE_MQTT_PORT="$TWINLATTICE_LATTICE_MQTT_PORT"
"$venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/test_aas_registry.py" "$root/tests/test_ric_routes.py" "$root/tests/test_errors.py" \
  "$root/tests/test_paging.py" "$root"/tests/test_twins_*.py "$root/tests/test_broker.py" \
  "$root/tests/test_lattice_ops.py" "$@"
