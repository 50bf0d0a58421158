#!/usr/bin/env bash
# Builds every crate under components/ for wasm32-wasip2 and copies the
# .wasm files to $TWINLATTICE_COMPONENTS_DIR, where the host looks for them.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

manifest="$root/components/Cargo.toml"
if rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  cargo build --release --locked --manifest-path "$manifest" --target wasm32-wasip2 \
    --target-dir "$TWINLATTICE_WASM_TARGET_DIR"
else
  # Debian's rustc-web knows wasm32-wasip2; std is built from rust-web-src.
  PATH="/usr/lib/llvm-16/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 \
    RUSTFLAGS="-L /usr/lib/wasm32-wasi" \
    /usr/bin/cargo build --release --locked --manifest-path "$manifest" --target wasm32-wasip2 \
      -Zbuild-std=std,panic_abort --target-dir "$TWINLATTICE_WASM_TARGET_DIR"
fi
# Routing policies go to policies/: the host loads one of them (--policy),
# and `twinlattice policy set` swaps in another while it runs.
mkdir -p "$TWINLATTICE_COMPONENTS_DIR/policies"
rm -f "$TWINLATTICE_COMPONENTS_DIR"/policy-*.wasm
for crate in "$root"/components/*/Cargo.toml; do
  # Library crates shared by components (no cdylib) are not components.
  grep -q 'crate-type = \["cdylib"\]' "$crate" || continue
  name="$(basename "$(dirname "$crate")")"
  src="$TWINLATTICE_WASM_TARGET_DIR/wasm32-wasip2/release/${name//-/_}.wasm"
  case "$name" in
    policy-*) dest="$TWINLATTICE_COMPONENTS_DIR/policies/$name.wasm" ;;
    *) dest="$TWINLATTICE_COMPONENTS_DIR/$name.wasm" ;;
  esac
  # Copied in with a rename: a running host may be reading the old file.
  cmp -s "$src" "$dest" 2>/dev/null || { cp "$src" "$dest.tmp.$$" && mv -f "$dest.tmp.$$" "$dest"; }
done
log "components in $TWINLATTICE_COMPONENTS_DIR: $(cd "$TWINLATTICE_COMPONENTS_DIR" && ls *.wasm policies/*.wasm | tr '\n' ' ')"
