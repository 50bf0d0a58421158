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
"$lattice" setup
"$lattice" down --wipe >/dev/null 2>&1 || true
trap '"$lattice" down >/dev/null 2>&1 || true' EXIT
"$lattice" up site=a

manifest="$TWINLATTICE_LATTICE_DIR/twinlattice.yaml"
"$lattice" manifest > "$manifest"
started=$(date +%s%N)
"$lattice" wash app deploy "$manifest"
url="http://127.0.0.1:$TWINLATTICE_LATTICE_HTTP_PORT"
twins_url="http://127.0.0.1:$TWINLATTICE_LATTICE_TWINS_PORT"
for _ in $(seq 1 600); do
  if curl -sf -o /dev/null "$url/description" && curl -s -o /dev/null -w '%{http_code}' "$twins_url/account" | grep -q 401; then
    break
  fi
  sleep 0.1
done
curl -sf -o /dev/null "$url/description" || {
  log "the application did not answer on $url; wash app status:"
  "$lattice" wash app status twinlattice || true
  tail -50 "$TWINLATTICE_LATTICE_DIR"/logs/host-*.log >&2
  exit 1
}
log "deployed; first answered request $(( ($(date +%s%N) - started) / 1000000 )) ms after wash app deploy began"

TWINLATTICE_TEST_LATTICE_URL="$url" TWINLATTICE_TEST_LATTICE_TWINS_URL="$twins_url" \
  "$venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$root/tests/test_aas_registry.py" "$root/tests/test_ric_routes.py" "$root/tests/test_errors.py" \
  "$root/tests/test_paging.py" "$@"
