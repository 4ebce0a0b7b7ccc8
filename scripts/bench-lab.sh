#!/usr/bin/env bash
# Lab benchmark: the fastest load one core can offer, through a veth pair between two network
# namespaces, reflected by `reflector run`. Prints one table row per backend:
#   offered pps (trafgen, one CPU), reflected pps, reflected/sent, kernel drops, reflector CPU.
# Usage (root): scripts/bench-lab.sh [SECONDS]     (default 5)
# Needs trafgen (Debian: netsniff-ng), installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "bench-lab: needs root (network namespaces)" >&2; exit 2; }
command -v trafgen >/dev/null || { apt-get update -q && apt-get install -y -q netsniff-ng; } >/dev/null
cargo build --release -q -p reflector
bin="$PWD/target/release/reflector"

ns_r="rfl-bench-$$-r"; ns_t="rfl-bench-$$-t"; work=$(mktemp -d)
cleanup() { ip netns del "$ns_r" 2>/dev/null || true; ip netns del "$ns_t" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
ip netns add "$ns_r"; ip netns add "$ns_t"
ip link add va netns "$ns_r" address 02:00:00:00:00:01 type veth peer name vb netns "$ns_t" address 00:c0:17:12:34:56
# The tester namespace has no address: reflections are counted by the device and dropped
# before its IP stack, which on veth would otherwise run on the reflector's CPU (a real
# tester is another machine).
ip -n "$ns_r" addr add 192.0.2.1/24 dev va
ip -n "$ns_r" link set va up; ip -n "$ns_t" link set vb up

# The 60-byte ITO probe of the test corpus (checksums included), as trafgen bytes.
probe="02 00 00 00 00 01 00 c0 17 12 34 56 08 00 45 00 00 2e 00 00 40 00 40 11 b6 b3 c0 00 02 0a c0 00
02 01 c3 50 0f 02 00 1a be f4 00 01 02 03 04 50 52 4f 42 45 4f 54 00 00 00 00 00 2a"
{ echo "{"; for b in $probe; do printf '0x%s, ' "$b"; done; echo "}"; } > "$work/probe.cfg"

stat() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }
cpus=$(nproc)
sender_cpu=$((cpus > 1 ? 1 : 0))

declare -A rtt
printf '%-10s %12s %14s %8s %10s %15s %15s\n' backend offered_pps reflected_pps ratio rx_dropped user_ns_per_pkt sys_ns_per_pkt
for backend in af-packet; do
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend "$backend" --stats json \
    --duration $((secs + 2)) > "$work/$backend.json" 2> "$work/$backend.err" &
  pid=$!
  sleep 1
  tx0=$(stat "$ns_t" vb tx_packets); rx0=$(stat "$ns_t" vb rx_packets)
  # One sender process on one CPU, as fast as it goes, for $secs seconds.
  timeout -s INT "$secs" ip netns exec "$ns_t" taskset -c "$sender_cpu" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 > "$work/trafgen.out" 2>&1 || true
  sleep 0.5
  tx1=$(stat "$ns_t" vb tx_packets); rx1=$(stat "$ns_t" vb rx_packets)
  wait "$pid" || { echo "bench-lab: reflector failed:" >&2; cat "$work/$backend.err" >&2; exit 1; }
  python3 - "$work/$backend.json" "$backend" "$secs" "$tx0" "$tx1" "$rx0" "$rx1" <<'PY'
import json, sys
path, backend, secs, tx0, tx1, rx0, rx1 = sys.argv[1], sys.argv[2], float(sys.argv[3]), *map(int, sys.argv[4:])
summary = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
sent, back = tx1 - tx0, rx1 - rx0
reflected = summary["reflected_packets"]
per = lambda s: s * 1e9 / max(reflected, 1)
print(f"{backend:<10} {sent/secs:12.0f} {back/secs:14.0f} {back/max(sent,1):8.3f} {summary['rx_dropped']:10d}"
      f" {per(summary['cpu_user_s']):15.0f} {per(summary['cpu_system_s']):15.0f}")
PY
  # Round trip with `reflector probe` (kernel receive timestamps), at 1000 pps and at half the
  # rate reached above.
  timeout 60 ip netns exec "$ns_r" "$bin" run va --backend "$backend" --stats json --duration 30 \
    > /dev/null 2> "$work/$backend.rtt.err" &
  pid=$!
  sleep 1
  half=$(( (tx1 - tx0) / secs / 2 ))
  for rate in 1000 "$half"; do
    timeout 30 ip netns exec "$ns_t" "$bin" probe vb --dst-mac 02:00:00:00:00:01 --src-ip 192.0.2.10 --rate "$rate" \
      --duration 3 --json > "$work/$backend.$rate.json" 2>/dev/null || true
  done
  kill -TERM "$pid"; wait "$pid" || true
  rtt["$backend"]=$(python3 - "$work/$backend.1000.json" "$work/$backend.$half.json" "$half" <<'PY'
import json, sys
def row(path, rate):
    try: r = json.load(open(path))
    except Exception: return f"{rate} pps: no result"
    t = r["rtt_us"]
    return f"{rate} pps: sent {r['sent']} lost {r['lost']} RTT p50 {t['p50']} us p99 {t['p99']} us"
print(row(sys.argv[1], 1000) + " | " + row(sys.argv[2], sys.argv[3]))
PY
)
done
for backend in "${!rtt[@]}"; do echo "$backend round trip: ${rtt[$backend]}"; done
