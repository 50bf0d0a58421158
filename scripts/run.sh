#!/usr/bin/env bash
# Sets up whatever is missing, then starts the embedded host with every
# component: the AAS registry on http://127.0.0.1:9021, data in ./data.
# Extra arguments go to `twinlattice serve` (see `twinlattice serve --help`).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/env.sh"
"$here/setup.sh"
exec "$TWINLATTICE_BIN" serve "$@"
