#!/usr/bin/env bash
# The README's main command: builds reflector and runs the self-contained lab demo
# (reflector and prober in two network namespaces joined by a veth pair). Needs root.
# Extra arguments go to `reflector lab` (e.g. --duration 20 --rate 50000 --json).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v ip >/dev/null; then
    [ "$(id -u)" = 0 ] || { echo "lab.sh: needs root" >&2; exit 1; }
    apt-get update -q && apt-get install -y -q iproute2
fi
cargo build --release -q -p reflector
exec ./target/release/reflector lab "$@"
