#!/usr/bin/env bash
# What capture costs (issue 18's benchmark), per Linux data path, in one run: the reflector
# bare; with capture possible but nothing captured (`--http`: the workers' tap in place, the
# XDP program able to sample); capturing the rejected frames (`--capture-what rejected`: on
# af-xdp and xdp-tx the XDP program samples them, at its default cap); capturing everything
# (`--capture-what all`); keeping the recent frames of every kind in memory for
# `/api/v1/capture?last=N` (`--http --capture-keep-mb 64`). Each at a fixed offered rate of valid probes (so every packet is
# reflected): system-wide CPU time per offered packet (all CPUs, /proc/stat) and, for the
# userspace paths, the reflector's own CPU time per reflected packet (its summary); and, for
# af-packet and af-xdp, at the fastest load one core can offer (reflected / offered). Capture
# files go to a temporary folder and are removed. Then what sampling costs the XDP program
# itself, without a network (BPF_PROG_TEST_RUN repeated a million times: xdp_capture_cost).
# Usage (root): scripts/bench-capture.sh [SECONDS]     (default 5; FIXED_PPS=100000)
# Needs trafgen (Debian: netsniff-ng), installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "bench-capture: needs root (network namespaces)" >&2; exit 2; }
command -v trafgen >/dev/null || { apt-get update -q && apt-get install -y -q netsniff-ng; } >/dev/null
cargo build --release -q -p reflector
cargo build --release -q -p reflector-io --example xdp_reference --example xdp_capture_cost
bin="$PWD/target/release/reflector"
ref="$PWD/target/release/examples/xdp_reference"
source scripts/veth-lab.sh
veth_lab capture
# xdp-tx needs an XDP program on the tester's veth (a veth takes XDP_TX frames from its peer
# only then); one that passes everything, for every run alike.
ip -n "$ns_t" addr flush dev vb
timeout 900 ip netns exec "$ns_t" "$ref" pass vb 880 &
peer=$!
on_exit() { kill "$peer" 2>/dev/null || true; }
sleep 0.5
reflector_cpu=$(($(nproc) - 1))
fixed="${FIXED_PPS:-100000}"
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }

run() { # $1 = backend, $2 = bare|tap|rejected|all, $3 = offered rate (0 = maximum)
  local backend="$1" how="$2" rate="$3" extra=() limit=() place=()
  case "$how" in
    tap) extra=(--http 192.0.2.1:9189 --http-insecure) ;;
    rejected|all) extra=(--capture "$work/c.pcapng" --capture-what "$how") ;;
    keep) extra=(--http 192.0.2.1:9189 --http-insecure --capture-keep-mb 64) ;;
  esac
  [ "$backend" = xdp-tx ] || place=(--cpus "$reflector_cpu")
  [ "$rate" = 0 ] || limit=(--rate "${rate}pps")
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend "$backend" "${place[@]}" \
    "${extra[@]}" --stats json --duration $((secs + 2)) > "$work/out.json" 2> "$work/err" &
  local pid=$!
  sleep 1
  local o0 o1 b0 b1
  o0=$(stat "$ns_t" vb tx_packets); b0=$(busy)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 "${limit[@]}" > /dev/null 2>&1 || true
  o1=$(stat "$ns_t" vb tx_packets); b1=$(busy)
  wait "$pid" || { echo "bench-capture: reflector failed:" >&2; cat "$work/err" >&2; exit 1; }
  python3 - "$backend" "$how" "$rate" $((o1 - o0)) $((b1 - b0)) "$(getconf CLK_TCK)" "$work/out.json" <<'PY'
import json, sys
backend, how, rate, offered, ticks, hz, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
cpu = (s["cpu_user_s"] + s["cpu_system_s"]) * 1e9 / max(s["reflected_packets"], 1)
system = ticks * 1e9 / hz / max(offered, 1)
cap = s.get("capture", {})
print(backend, how, rate, offered, s["reflected_packets"], f"{cpu:.0f}", f"{system:.0f}", cap.get("frames", 0), cap.get("dropped", 0))
PY
  rm -f "$work"/c*.pcapng
}

rows=()
for backend in af-packet af-xdp xdp-tx; do
  for how in bare tap rejected all keep; do
    rows+=("$(run "$backend" "$how" "$fixed")")
    [ "$backend" = xdp-tx ] || [ "$how" = rejected ] || rows+=("$(run "$backend" "$how" 0)")
  done
done
python3 - "$secs" "${rows[@]}" <<'PY'
import sys
secs = float(sys.argv[1])
rows = {}
for r in sys.argv[2:]:
    b, how, rate, offered, reflected, cpu, system, frames, dropped = r.split()
    rows[(b, how, int(rate) > 0)] = (int(offered), int(reflected), int(cpu), int(system), int(frames), int(dropped))
for b in ("af-packet", "af-xdp", "xdp-tx"):
    print(f"{b}:")
    bare = rows[(b, "bare", True)]
    for how in ("bare", "tap", "rejected", "all", "keep"):
        fo, fr, fcpu, fsys, ff, fd = rows[(b, how, True)]
        own = "" if b == "xdp-tx" else f", reflector {fcpu} ns per reflected packet ({fcpu / max(bare[2], 1):.2f}x bare)"
        line = (f"  {how:<8} fixed: {fr}/{fo} reflected, system {fsys} ns per offered packet "
                f"({fsys / max(bare[3], 1):.2f}x bare){own}")
        if how in ("rejected", "all", "keep"):
            line += f"; captured {ff}, not captured {fd}"
        if (b, how, False) in rows:
            mo, mr, _, _, mf, md = rows[(b, how, False)]
            line += f"; maximum: {mr / secs:.0f} of {mo / secs:.0f} pps offered ({mr / max(mo, 1):.3f})"
            if how in ("all", "keep"):
                line += f", captured {mf}, not captured {md}"
        print(line)
PY
echo "the XDP program itself (BPF_PROG_TEST_RUN, median of 5 runs of a million):"
"$PWD/target/release/examples/xdp_capture_cost" 5 | sed 's/^/  /'
