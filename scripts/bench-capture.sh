#!/usr/bin/env bash
# What capture costs the workers (issue 18's benchmark), per userspace backend (af-packet,
# af-xdp), in one run: the reflector bare; with the capture tap in place but no capture (HTTP
# on); and with --capture of every reflected frame. Each at a fixed offered rate (reflector CPU
# time per reflected packet, from its summary) and at the fastest load one core can offer
# (reflected / offered). The capture file goes to a temporary folder and is removed.
# Usage (root): scripts/bench-capture.sh [SECONDS]     (default 5; FIXED_PPS=100000)
# Needs trafgen (Debian: netsniff-ng), installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "bench-capture: needs root (network namespaces)" >&2; exit 2; }
command -v trafgen >/dev/null || { apt-get update -q && apt-get install -y -q netsniff-ng; } >/dev/null
cargo build --release -q -p reflector
bin="$PWD/target/release/reflector"
source scripts/veth-lab.sh
veth_lab capture
reflector_cpu=$(($(nproc) - 1))
fixed="${FIXED_PPS:-100000}"

run() { # $1 = backend, $2 = bare|tap|capture, $3 = offered rate (0 = maximum)
  local backend="$1" how="$2" rate="$3" extra=() limit=()
  case "$how" in
    tap) extra=(--http 192.0.2.1:9189 --http-insecure) ;;
    capture) extra=(--capture "$work/c.pcapng") ;;
  esac
  [ "$rate" = 0 ] || limit=(--rate "${rate}pps")
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend "$backend" --cpus "$reflector_cpu" \
    "${extra[@]}" --stats json --duration $((secs + 2)) > "$work/out.json" 2> "$work/err" &
  local pid=$!
  sleep 1
  local o0 o1
  o0=$(stat "$ns_t" vb tx_packets)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 "${limit[@]}" > /dev/null 2>&1 || true
  o1=$(stat "$ns_t" vb tx_packets)
  wait "$pid" || { echo "bench-capture: reflector failed:" >&2; cat "$work/err" >&2; exit 1; }
  python3 - "$backend" "$how" "$rate" $((o1 - o0)) "$work/out.json" <<'PY'
import json, sys
backend, how, rate, offered, path = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
s = [json.loads(l) for l in open(path) if '"summary"' in l][-1]
cpu = (s["cpu_user_s"] + s["cpu_system_s"]) * 1e9 / max(s["reflected_packets"], 1)
cap = s.get("capture", {})
print(backend, how, rate, offered, s["reflected_packets"], f"{cpu:.0f}", cap.get("frames", 0), cap.get("dropped", 0))
PY
  rm -f "$work"/c*.pcapng
}

rows=()
for backend in af-packet af-xdp; do
  for how in bare tap capture; do
    rows+=("$(run "$backend" "$how" "$fixed")")
    rows+=("$(run "$backend" "$how" 0)")
  done
done
python3 - "$secs" "${rows[@]}" <<'PY'
import sys
secs = float(sys.argv[1])
rows = {}
for r in sys.argv[2:]:
    b, how, rate, offered, reflected, cpu, frames, dropped = r.split()
    rows[(b, how, int(rate) > 0)] = (int(offered), int(reflected), int(cpu), int(frames), int(dropped))
for b in ("af-packet", "af-xdp"):
    print(f"{b}:")
    for how in ("bare", "tap", "capture"):
        fo, fr, fcpu, ff, fd = rows[(b, how, True)]
        mo, mr, _, mf, md = rows[(b, how, False)]
        cap = f"; captured {ff} (+{fd} not) / {mf} (+{md} not)" if how == "capture" else ""
        print(f"  {how:<8} fixed: {fr}/{fo} reflected, {fcpu} ns CPU per reflected packet; "
              f"maximum: {mr / secs:.0f} of {mo / secs:.0f} pps offered ({mr / max(mo, 1):.3f}){cap}")
    bare_cpu = rows[(b, "bare", True)][2]
    bare_max = rows[(b, "bare", False)][1]
    for how in ("tap", "capture"):
        print(f"  {how} / bare: CPU per packet at the fixed rate {rows[(b, how, True)][2] / max(bare_cpu, 1):.2f}, "
              f"reflected at the maximum {rows[(b, how, False)][1] / max(bare_max, 1):.2f}")
PY
