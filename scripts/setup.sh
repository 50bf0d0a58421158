#!/usr/bin/env bash
# Installs whatever is missing on a fresh machine (Debian 12, rustup) and
# builds the Wasm components and the host. Idempotent: a second run with
# nothing changed takes seconds.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

# 1. The wasm32-wasip2 toolchain: rustup's target where it is installed,
#    otherwise Debian's rustc-web with -Zbuild-std (see DEVELOPERS.md).
if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  log "using rustup's wasm32-wasip2 target"
else
  apt_install rustc-web cargo-web rust-web-src lld-16 wasi-libc
fi
if ! command -v wasm-component-ld >/dev/null 2>&1; then
  log "installing wasm-component-ld (about 80 s)"
  cargo install wasm-component-ld --locked --quiet
fi

# 2. The components, then the host binary that loads them.
"$here/build-components.sh"
log "building the host (the first build takes about 10 minutes on 2 cores)"
cargo build --release --locked --manifest-path "$root/Cargo.toml" --target-dir "$TWINLATTICE_TARGET_DIR" -p twinlattice

# Compile the components into the host's cache now, so that the first start
# answers within milliseconds instead of compiling for seconds.
"$TWINLATTICE_BIN" compile >/dev/null
log "ready: $TWINLATTICE_BIN"
