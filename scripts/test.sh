#!/usr/bin/env bash
# Sets up whatever is missing, then runs every test: the host's unit tests,
# the schema checks, and the end-to-end tests against the real binary.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"
"$here/setup.sh"
# Real protocol peers for the broker tests: an MQTT broker and clients,
# libcoap's CoAP client.
apt_install mosquitto mosquitto-clients libcoap3-bin

venv="$TWINLATTICE_CACHE/venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating the test virtualenv in $venv"
  python3 -m venv "$venv"
fi
if ! cmp -s "$root/tests/requirements.txt" "$venv/.requirements" 2>/dev/null; then
  "$venv/bin/pip" install --quiet -r "$root/tests/requirements.txt"
  cp "$root/tests/requirements.txt" "$venv/.requirements"
fi

log "unit tests (host)"
cargo test --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR"

log "schemas are up to date with their generator"
"$venv/bin/python" "$root/schemas/tools/derive_schemas.py" --check

log "end-to-end tests"
cd "$root"
"$venv/bin/python" -m pytest -q tests "$@"
