#!/usr/bin/env bash
# Soak test (not in CI): each live backend reflects the fastest load one core can offer
# (trafgen) through a veth pair for MINUTES, while this script samples the reflector every
# 10 s: resident memory, open file descriptors, its counters and the interfaces' counters.
# Half way through: a link flap (the reflector's side down for 2 s) and a burst of 50 SIGHUPs
# with a changed and a broken configuration file. At the end it checks that the counters
# account for every frame offered, and prints one table per backend.
# Usage (root): scripts/soak.sh [MINUTES [BACKEND...]]     (default 10 per backend; af-xdp af-packet)
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-10}"
shift || true
backends=("$@"); [ ${#backends[@]} -gt 0 ] || backends=(af-xdp af-packet)
[ "$(id -u)" = 0 ] || { echo "soak: needs root (network namespaces)" >&2; exit 2; }
command -v trafgen >/dev/null || { apt-get update -q && apt-get install -y -q netsniff-ng; } >/dev/null
cargo build --release -q -p reflector
bin="$PWD/target/release/reflector"
secs=$((minutes * 60))

source scripts/veth-lab.sh
on_exit() { for p in $(jobs -p); do kill "$p" 2>/dev/null || true; done; }
veth_lab soak
cpus=$(nproc); reflector_cpu=$((cpus - 1))

for backend in "${backends[@]}"; do
  printf 'backend = "%s"\n[stats]\nformat = "json"\ninterval = 10\n' "$backend" > "$work/r.toml"
  o0=$(stat "$ns_t" vb tx_packets); d0=$(stat "$ns_t" vb tx_dropped); i0=$(stat "$ns_r" va rx_dropped)
  timeout $((secs + 120)) ip netns exec "$ns_r" "$bin" run va --config "$work/r.toml" --cpus "$reflector_cpu" \
    > "$work/$backend.json" 2> "$work/$backend.err" &
  runner=$!
  sleep 2
  pid=$(cat "/proc/$runner/task/$runner/children" | awk '{print $1}')
  # trafgen ends when a flush of its TX ring meets EAGAIN (the veth queue full); it is started
  # again until the time is up, and the restarts are counted.
  (
    until=$(( $(date +%s) + secs ))
    while [ "$(date +%s)" -lt "$until" ]; do
      timeout -s INT $((until - $(date +%s))) ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
        --cpus 1 --num 0 >> "$work/trafgen.log" 2>&1 || true
    done
  ) &
  sender=$!
  : > "$work/$backend.samples"
  start=$(date +%s)
  flapped=0
  while kill -0 "$sender" 2>/dev/null; do
    sleep 10
    kill -0 "$sender" 2>/dev/null || break
    now=$(( $(date +%s) - start ))
    if [ ! -d "/proc/$pid" ]; then
      status=0; wait "$runner" || status=$?
      echo "soak: the reflector ($backend) ended early (exit status $status):" >&2; cat "$work/$backend.err" >&2
      tail -c 600 "$work/$backend.json" >&2; exit 1
    fi
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status")
    fds=$(ls "/proc/$pid/fd" | wc -l)
    echo "$now $rss $fds" >> "$work/$backend.samples"
    if [ "$flapped" = 0 ] && [ "$now" -ge $((secs / 2)) ]; then
      flapped=1
      ip -n "$ns_r" link set va down; sleep 2; ip -n "$ns_r" link set va up
      [ -d "/proc/$pid" ] || { echo "soak: the reflector ($backend) ended at the link flap:" >&2; cat "$work/$backend.err" >&2; exit 1; }
      for i in $(seq 1 50); do
        if [ $((i % 2)) = 0 ]; then
          printf 'backend = "%s"\nsignatures = ["ito"]\n[stats]\nformat = "json"\ninterval = 10\n' "$backend" > "$work/r.toml.new"
        else
          echo 'port = "broken"' > "$work/r.toml.new"
        fi
        mv "$work/r.toml.new" "$work/r.toml"
        kill -HUP "$pid"; sleep 0.05
      done
    fi
  done
  wait "$sender" || true
  restarts=$(grep -c "Flushing TX_RING failed" "$work/trafgen.log" || true)
  ran=$(( $(date +%s) - start ))
  if [ "$ran" -lt $((secs - 15)) ]; then
    echo "soak: the sender (trafgen) ended after ${ran} s of ${secs}:" >&2; tail -5 "$work/trafgen.log" >&2; exit 1
  fi
  sleep 1
  o1=$(stat "$ns_t" vb tx_packets); d1=$(stat "$ns_t" vb tx_dropped); i1=$(stat "$ns_r" va rx_dropped)
  kill -TERM "$pid"
  wait "$runner" || { echo "soak: the reflector ($backend) failed:" >&2; tail -5 "$work/$backend.err" >&2; exit 1; }
  : > "$work/trafgen.log"
  python3 - "$work" "$backend" "$((o1 - o0))" "$((d1 - d0))" "$minutes" "$((i1 - i0))" "$restarts" <<'PY'
import json, sys
work, backend, offered, tx_dropped, minutes = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
iface_dropped, restarts = int(sys.argv[6]), int(sys.argv[7])
s = [json.loads(l) for l in open(f"{work}/{backend}.json") if '"summary"' in l][-1]
samples = [tuple(map(int, l.split())) for l in open(f"{work}/{backend}.samples")]
said = open(f"{work}/{backend}.err").read().splitlines()
# Every frame the tester's veth passed on (tx_packets; those it dropped while the link was down
# are counted apart, in tx_dropped) reached the reflector's side; there, each is judged
# (rx_packets: reflected or rejected) or counted as dropped before a worker saw it
# (rx_dropped) or as invalid, or the interface itself dropped it before any socket saw it
# (its rx_dropped: frames in flight when the link went down). With af-xdp the interface's
# rx_dropped also holds the frames the XDP redirect could not deliver, which the reflector
# counts as its rx_dropped too, so the larger of the two counts.
if backend == "af-xdp":
    dropped = max(s["rx_dropped"], iface_dropped)
else:
    dropped = s["rx_dropped"] + iface_dropped
accounted = s["rx_packets"] + s["rx_invalid"] + dropped
rss = [r for _, r, _ in samples]; fds = [f for _, _, f in samples]
print(f"soak {backend}, {minutes} min: sent {offered} ({offered / (int(minutes) * 60):.0f} pps); "
      f"not sent while the link was down: {tx_dropped}; sender restarts (EAGAIN): {restarts}")
print(f"  reflector: rx {s['rx_packets']} reflected {s['reflected_packets']} rejected {s['rejected_packets']} "
      f"rx_dropped {s['rx_dropped']} rx_invalid {s['rx_invalid']} tx_errors {s['tx_errors']}; "
      f"dropped by the interface itself: {iface_dropped}")
print(f"  accounted for: {accounted} of {offered} sent "
      f"({'every frame' if accounted >= offered else 'MISSING ' + str(offered - accounted)}; "
      f"the host's own frames add a few)")
print(f"  RSS KiB first/max/last: {rss[0]}/{max(rss)}/{rss[-1]}; open fds first/max/last: {fds[0]}/{max(fds)}/{fds[-1]}")
print(f"  link messages: {sum('link down' in l for l in said)} down, {sum('link up again' in l for l in said)} up; "
      f"reloads said: {sum('read again' in l for l in said)}, refused files: {sum('keeping the running' in l for l in said)}")
ok = accounted >= offered and max(rss) - rss[0] < 8192 and max(fds) == fds[0]
print(f"  verdict: {'ok' if ok else 'CHECK'}")
PY
done
