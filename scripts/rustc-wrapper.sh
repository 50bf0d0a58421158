#!/usr/bin/env bash
# RUSTC_WRAPPER for the lattice tools (lattice/): wasmcloud-host 0.27.1 does
# not compile with rustc 1.95 ("queries overflow the depth limit", a rustc
# regression); a higher recursion limit fixes it. The attribute is injected
# on that one crate's command line, leaving its source alone.
rustc="$1"; shift
for arg in "$@"; do
  if [ "$arg" = "wasmcloud_host" ]; then
    exec env RUSTC_BOOTSTRAP=1 "$rustc" "$@" '-Zcrate-attr=recursion_limit="512"'
  fi
done
exec "$rustc" "$@"
