# Shared settings for the project's scripts; sourced, not run.
# Build outputs live outside the clone so that CI and fresh clones reuse them.
: "${TWINLATTICE_CACHE:=$HOME/.cache/twinlattice}"
: "${TWINLATTICE_TARGET_DIR:=$TWINLATTICE_CACHE/target}"
: "${TWINLATTICE_WASM_TARGET_DIR:=$TWINLATTICE_CACHE/target-wasm}"
export TWINLATTICE_CACHE TWINLATTICE_TARGET_DIR TWINLATTICE_WASM_TARGET_DIR
export TWINLATTICE_BIN="$TWINLATTICE_TARGET_DIR/release/twinlattice"
export TWINLATTICE_COMPONENTS_DIR="$TWINLATTICE_TARGET_DIR/release/components"
export PATH="$HOME/.cargo/bin:$PATH"
log() { printf '\033[1m[twinlattice]\033[0m %s\n' "$*" >&2; }

sudo_if_needed() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Install the Debian packages among "$@" that are missing.
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    sudo_if_needed apt-get update -qq
    DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}
