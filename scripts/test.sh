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
apt_install mosquitto mosquitto-clients libcoap3-bin strace

venv="$TWINLATTICE_CACHE/venv"
if [ ! -x "$venv/bin/python" ]; then
  log "creating the test virtualenv in $venv"
  python3 -m venv "$venv"
fi
if ! cmp -s "$root/tests/requirements.txt" "$venv/.requirements" 2>/dev/null; then
  "$venv/bin/pip" install --quiet -r "$root/tests/requirements.txt"
  cp "$root/tests/requirements.txt" "$venv/.requirements"
fi

log "unit tests (host, and the components' plain-Rust crates)"
cargo test --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR"
# The bridges' provider binary is behind its feature (the host links the library only).
cargo test --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR" \
  -p twinlattice-bridges --features provider --bin bridges-provider
cargo test --release --locked --manifest-path "$root/components/Cargo.toml" -p guest-time -p rules -p broker-core -p twins --target-dir "$TWINLATTICE_TARGET_DIR"

# The official AAS OpenAPI files the schemas are derived from are not part of
# the repository; where they are on this machine, check that the committed
# schemas are what the generator makes of them.
spec=""
for candidate in "${TWINLATTICE_AAS_SPEC_DIR:-}" \
    "$root/../shared/reference/aas-seed-data/aas-specs-api-v3.0.4" \
    /work/shared/reference/aas-seed-data/aas-specs-api-v3.0.4; do
  if [ -n "$candidate" ] && [ -f "$candidate/Part1-MetaModel-Schemas/openapi.yaml" ]; then spec="$candidate"; break; fi
done
if [ -n "$spec" ]; then
  export TWINLATTICE_AAS_SPEC_DIR="$spec"
  log "schemas are up to date with their generator ($spec)"
  "$venv/bin/python" "$root/schemas/tools/derive_schemas.py" --check --spec-dir "$spec"
else
  log "NOTE: the official AAS OpenAPI files are not on this machine (set TWINLATTICE_AAS_SPEC_DIR); the schema drift check does not run"
fi

log "end-to-end tests"
cd "$root"
"$venv/bin/python" -m pytest -q tests "$@"

# The same service-level tests against a local wasmCloud lattice (builds the
# lattice tools once per machine: see scripts/lattice.sh). Skipped only when
# asked: TWINLATTICE_SKIP_LATTICE=1.
if [ "${TWINLATTICE_SKIP_LATTICE:-0}" != 1 ]; then
  log "end-to-end tests on a wasmCloud lattice"
  "$here/test-lattice.sh"
fi
