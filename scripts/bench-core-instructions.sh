#!/usr/bin/env bash
# Instructions per frame of classify + reflect (the loop of benches/classify.rs), counted by
# valgrind: exact and independent of the machine's load, unlike the criterion times.
# Usage: scripts/bench-core-instructions.sh      (needs valgrind; installed when missing, as root)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { apt-get update -q && apt-get install -y -q valgrind; } >/dev/null
cargo build --release -q -p reflector-core --example instructions
bin="${CARGO_TARGET_DIR:-target}/release/examples/instructions"
count() { # $1 kind, $2 passes -> instructions executed
  valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file=/dev/null "$bin" "$1" "$2" 2>&1 |
    awk '/I *refs/ { gsub(",", "", $NF); print $NF }'
}
for kind in v4 v6 vlan arp tcp dns stamp refill; do
  a=$(count "$kind" 1000); b=$(count "$kind" 3000)
  # The difference removes start-up; 2000 passes of 64 frames.
  echo "$kind $(( (b - a) / (2000 * 64) )) instructions per frame"
done
