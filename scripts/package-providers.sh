#!/usr/bin/env bash
# Builds every provider binary in providers/ (the crates there with a bin
# target) and packs each as a wasmCloud provider archive:
#   $TWINLATTICE_CACHE/providers/<crate>.par.gz
# which wadm.yaml names `file://./build/providers/<crate>.par.gz` and
# `scripts/lattice.sh manifest` points at. Needs wash 0.43.0
# ($TWINLATTICE_CACHE/tools/bin/wash, installed by `lattice.sh setup`, or
# $WASH, or wash on PATH). Archives are signed with keys kept in
# $TWINLATTICE_CACHE/provider-keys, made on first use, so a provider keeps
# its identity across rebuilds on this machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
source "$here/env.sh"

wash="${WASH:-$TWINLATTICE_CACHE/tools/bin/wash}"
if [ ! -x "$wash" ]; then
  wash="$(command -v wash || true)"
fi
if [ -z "$wash" ]; then
  log "wash not found: run scripts/lattice.sh setup (or set WASH)"
  exit 1
fi

out="$TWINLATTICE_CACHE/providers"
keys="$TWINLATTICE_CACHE/provider-keys"
mkdir -p "$out" "$keys"
arch="$(uname -m)-linux"

# One line per provider binary: package, version, bin name, crate directory,
# the features the bin requires (comma-separated, `-` for none).
providers="$(cargo metadata --no-deps --format-version 1 --manifest-path "$root/Cargo.toml" | python3 -c '
import json, os, sys
meta = json.load(sys.stdin)
providers_dir = os.path.join(meta["workspace_root"], "providers") + os.sep
for pkg in meta["packages"]:
    crate_dir = os.path.dirname(pkg["manifest_path"])
    if not (crate_dir + os.sep).startswith(providers_dir):
        continue
    for target in pkg["targets"]:
        if "bin" in target["kind"]:
            features = ",".join(target.get("required-features") or []) or "-"
            print("\t".join([pkg["name"], pkg["version"], target["name"], crate_dir, features]))
')"

if [ -z "$providers" ]; then
  log "no provider binaries in providers/"
  exit 0
fi

while IFS=$'\t' read -r package version bin crate_dir features; do
  log "building provider $package ($bin)"
  feature_args=()
  if [ "$features" != "-" ]; then feature_args=(--features "$features"); fi
  cargo build --release --locked --manifest-path "$root/Cargo.toml" \
    --target-dir "$TWINLATTICE_TARGET_DIR" -p "$package" --bin "$bin" "${feature_args[@]}" >&2
  # Re-pack only when the binary changed, and swap the archive in with a
  # rename: a host may be reading the old one right now.
  binary="$TWINLATTICE_TARGET_DIR/release/$bin"
  stamp="$out/$package.par.gz.sha256"
  sum="$(sha256sum "$binary" | cut -d' ' -f1)"
  if [ -f "$out/$package.par.gz" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$sum" ]; then
    log "provider archive $out/$package.par.gz is up to date"
    continue
  fi
  tmp="$out/.$package.$$.par.gz"
  args=(par create
    --arch "$arch"
    --binary "$binary"
    --name "$package"
    --vendor twinlattice
    --version "$version"
    --destination "$tmp"
    --compress
    --directory "$keys")
  # The WIT the provider serves goes into the archive too.
  if [ -d "$crate_dir/wit" ]; then
    args+=(--wit-directory "$crate_dir/wit")
  fi
  "$wash" "${args[@]}" >&2
  mv -f "$tmp" "$out/$package.par.gz"
  echo "$sum" > "$stamp"
  log "packaged $out/$package.par.gz"
done <<< "$providers"
