#!/usr/bin/env bash
# Lab benchmark, one table row per live backend (af-packet, af-xdp):
#  - the fastest load one core can offer (trafgen, one process on one CPU) through a veth pair
#    between two network namespaces for SECONDS, reflected by `reflector run`: offered pps,
#    reflected pps, their ratio, kernel drops, and the reflector's CPU time per reflected packet;
#  - round trips measured with `reflector probe` at 1000 pps and at half the offered maximum;
#  - start-up time as the start line reports it (af-xdp: program generated, verified, attached,
#    sockets bound);
#  - in-kernel reflection (xdp-tx) against two reference XDP programs (the sender alone, a
#    swap-only XDP_TX) and af-xdp, by system-wide CPU per packet at a fixed offered rate (with,
#    where the veth lost frames before the reflector's XDP program, how many reached it), and
#    xdp-tx at the single-core maximum; the same for STAMP requests answered on xdp-tx
#    (44-byte base packets) against ITO reflection; and xdp-tx and af-xdp with allow and deny
#    lists and rate limits configured (limits above the offered rate, so every packet meets
#    both and is answered) against the same without; and xdp-tx run as the service runs it, as
#    nobody with the unit's capabilities only (no CAP_PERFMON: the kernel hardens the program
#    against Spectre), against xdp-tx as root;
#  - dpdk (where DPDK's development files are) against dpdk-testpmd on the same virtual device:
#    reflected / sent and CPU cycles per packet as testpmd's --record-core-cycles counts them;
#  - what the lists, the limits and the testers table cost the XDP program itself, without a
#    network: BPF_PROG_TEST_RUN repeated a million times over one probe (xdp_gate_cost), as root
#    and with the unit's capabilities only.
# Usage (root): scripts/bench-lab.sh [SECONDS]     (default 5)
# Needs trafgen (Debian: netsniff-ng), installed here when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
[ "$(id -u)" = 0 ] || { echo "bench-lab: needs root (network namespaces)" >&2; exit 2; }
command -v trafgen >/dev/null || { apt-get update -q && apt-get install -y -q netsniff-ng; } >/dev/null
command -v ethtool >/dev/null || { apt-get update -q && apt-get install -y -q ethtool; } >/dev/null
# With DPDK's development files, also the build with DPDK (kept in target/dpdk/release, as
# scripts/package-deb.sh does, so that target/release/reflector stays the default build) and
# dpdk-testpmd to compare it with (Debian: dpdk-dev).
dpdk=0
if pkg-config --exists libdpdk 2>/dev/null && [ "$(nproc)" -ge 2 ]; then
  command -v dpdk-testpmd >/dev/null || { apt-get update -q && apt-get install -y -q --no-install-recommends dpdk-dev; } >/dev/null
  cargo build --release -q -p reflector --features dpdk
  mkdir -p target/dpdk/release && cp target/release/reflector target/dpdk/release/reflector
  dpdk=1
fi
cargo build --release -q -p reflector
cargo build --release -q -p reflector-io --example xdp_reference --example xdp_gate_cost
bin="$PWD/target/release/reflector"
ref="$PWD/target/release/examples/xdp_reference"

source scripts/veth-lab.sh
veth_lab bench

# trafgen --cpus 1 pins its one sending process to CPU 0 itself (a taskset around it is
# overridden), so the reflector's worker goes on the last CPU (--cpus; the rest of the
# reflector, its control plane, runs anywhere). On one CPU both share it.
cpus=$(nproc)
reflector_cpu=$((cpus - 1))

rows=()
for backend in af-packet af-xdp; do
  ip -n "$ns_t" addr flush dev vb
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --cpus "$reflector_cpu" --backend "$backend" --stats json \
    --duration $((secs + 2)) > "$work/$backend.json" 2> "$work/$backend.err" &
  pid=$!
  sleep 1
  tx0=$(stat "$ns_t" vb tx_packets); rx0=$(stat "$ns_t" vb rx_packets)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 > "$work/trafgen.out" 2>&1 || true
  sleep 0.5
  tx1=$(stat "$ns_t" vb tx_packets); rx1=$(stat "$ns_t" vb rx_packets)
  wait "$pid" || { echo "bench-lab: reflector ($backend) failed:" >&2; cat "$work/$backend.err" >&2; exit 1; }

  # The same offered rate for every backend, below each one's maximum: CPU per packet compared
  # like with like.
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --cpus "$reflector_cpu" --backend "$backend" --stats json \
    --duration $((secs + 2)) > "$work/$backend.fixed.json" 2> /dev/null &
  pid=$!
  sleep 1
  ftx0=$(stat "$ns_t" vb tx_packets)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 --rate "${FIXED_PPS:-100000}pps" > /dev/null 2>&1 || true
  sleep 0.5
  ftx1=$(stat "$ns_t" vb tx_packets)
  wait "$pid" || true

  # Round trips: the tester needs its address for probe's source.
  ip -n "$ns_t" addr add 192.0.2.10/24 dev vb
  timeout 60 ip netns exec "$ns_r" "$bin" run va --cpus "$reflector_cpu" --backend "$backend" --stats json --duration 30 \
    > /dev/null 2> "$work/$backend.rtt.err" &
  pid=$!
  sleep 1
  half=$(( (tx1 - tx0) / secs / 2 ))
  for rate in 1000 "$half"; do
    timeout 30 ip netns exec "$ns_t" taskset -c 0 "$bin" probe vb --dst-mac 02:00:00:00:00:01 --rate "$rate" \
      --duration 3 --json > "$work/$backend.$rate.json" 2>/dev/null || true
  done
  kill -TERM "$pid"; wait "$pid" || true
  rows+=("$(python3 - "$work" "$backend" "$secs" "$tx0" "$tx1" "$rx0" "$rx1" "$half" "$ftx0" "$ftx1" <<'PY'
import json, re, sys
work, backend, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
tx0, tx1, rx0, rx1, half, ftx0, ftx1 = map(int, sys.argv[4:])
fixed = [json.loads(l) for l in open(f"{work}/{backend}.fixed.json") if '"summary"' in l][-1]
fixed_cpu_ns = (fixed["cpu_user_s"] + fixed["cpu_system_s"]) * 1e9 / max(fixed["reflected_packets"], 1)
fixed_pps = (ftx1 - ftx0) / secs
summary = [json.loads(l) for l in open(f"{work}/{backend}.json") if '"summary"' in l][-1]
start = open(f"{work}/{backend}.err").readline()
ready = re.search(r"ready in ([0-9.]+) ms", start)
sent, back = tx1 - tx0, rx1 - rx0
reflected = max(summary["reflected_packets"], 1)
cpu_ns = (summary["cpu_user_s"] + summary["cpu_system_s"]) * 1e9 / reflected
def rtt(rate):
    try:
        r = json.load(open(f"{work}/{backend}.{rate}.json"))
        return f"{r['rtt_us']['p50']}/{r['rtt_us']['p99']}"
    except Exception:
        return "-"
print(f"{backend:<10} {sent/secs:11.0f} {back/secs:13.0f} {back/max(sent,1):6.3f} {summary['rx_dropped']:8d} "
      f"{cpu_ns:11.0f} {fixed_pps:10.0f} {fixed_cpu_ns:11.0f} {rtt(1000):>15} {rtt(half):>15} {half:9d} "
      f"{ready.group(1) + ' ms' if ready else '-':>9}")
PY
)")
done
# The control plane under load: the same full-speed run twice with af-xdp, once plain, once with
# --http scraped ten times a second (/metrics and /api/v1/stats) and the dashboard open in
# headless Chromium (which polls the API twice a second). The clients stand in for a browser
# elsewhere: they run on the sender's CPU, so they cannot take the reflector's; the sender's
# rate then varies, so each run reports what was offered as well as what came back.
ip -n "$ns_t" addr flush dev vb
ip -n "$ns_r" link set lo up
http_run() { # $1 = label, $2... = extra reflector flags
  local label="$1"; shift
  timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --cpus "$reflector_cpu" --backend af-xdp --stats json \
    --duration $((secs + 3)) "$@" > "$work/http-$label.json" 2> /dev/null &
  local pid=$!
  sleep 1
  local extra=()
  if [ "$label" = with ]; then
    timeout $((secs + 2)) ip netns exec "$ns_r" taskset -c 0 python3 -c "
import time, urllib.request
end = time.time() + $secs + 1
while time.time() < end:
    for p in ('/metrics', '/api/v1/stats'):
        urllib.request.urlopen('http://127.0.0.1:9200' + p).read()
    time.sleep(0.1)
" &
    extra+=($!)
    timeout $((secs + 2)) ip netns exec "$ns_r" taskset -c 0 chromium --headless --no-sandbox --disable-gpu --disable-quic \
      --no-first-run --disable-background-networking --disable-component-update --disable-sync \
      --user-data-dir="$work/chromium" --remote-debugging-port=0 http://127.0.0.1:9200/ > /dev/null 2>&1 &
    extra+=($!)
    sleep 1
  fi
  local t0 o0; t0=$(stat "$ns_t" vb rx_packets); o0=$(stat "$ns_t" vb tx_packets)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
    --cpus 1 --num 0 > /dev/null 2>&1 || true
  local t1 o1; t1=$(stat "$ns_t" vb rx_packets); o1=$(stat "$ns_t" vb tx_packets)
  for p in "${extra[@]}"; do wait "$p" || true; done
  wait "$pid" || true
  echo "$(( (o1 - o0) / secs )) $(( (t1 - t0) / secs ))"
}
without=$(http_run without)
with=$(http_run with --http 127.0.0.1:9200)

printf '%-10s %11s %13s %6s %8s %11s %10s %11s %15s %15s %9s %9s\n' backend offered_pps reflected_pps ratio \
  drops cpu_ns/pkt fixed_pps fixed_cpu_ns rtt1k_p50/p99us rtt_half_p50/p99 half_pps startup
printf '%s\n' "${rows[@]}"
echo "placement: trafgen on cpu 0; reflector $(grep -o '[0-9]* worker[^;]*' "$work/af-xdp.err" | head -1)"
python3 - "$work" $without $with <<'PY'
import json, sys
work = sys.argv[1]
(off_without, without, off_with, with_) = map(int, sys.argv[2:6])
def cpu(label):
    s = [json.loads(l) for l in open(f"{work}/http-{label}.json") if '"summary"' in l][-1]
    return (s["cpu_user_s"] + s["cpu_system_s"]) * 1e9 / max(s["reflected_packets"], 1)
print(f"af-xdp without HTTP: offered {off_without} pps, reflected {without} pps ({without / max(off_without, 1):.3f}); "
      f"with HTTP scraped 10/s and the dashboard open: offered {off_with}, reflected {with_} ({with_ / max(off_with, 1):.3f}); "
      f"reflected with/without {with_ / max(without, 1):.3f}; reflector CPU per packet {cpu('without'):.0f} ns vs {cpu('with'):.0f} ns")
PY

# In-kernel reflection against two references built with our own assembler, at the same offered
# rate, by CPU time of the whole system (all CPUs, /proc/stat) per offered packet: the sender
# alone (an XDP program that drops every frame on the reflector's side), a program that only
# swaps the addresses and returns XDP_TX (no rules), xdp-tx, and af-xdp. The tester's veth runs
# an XDP program that passes everything in every case (a veth takes XDP_TX frames from its peer
# only then). Then xdp-tx at the single-core maximum: reflected / offered.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; }
# Frames that reached the XDP program on the reflector's side (the veth's own counter): a veth
# whose receive side cannot keep up loses frames before the program without counting them.
seen() { ip netns exec "$ns_r" ethtool -S va | awk '/rx_queue_[0-9]+_xdp_packets/ { s += $2 } END { print s + 0 }'; }
ip -n "$ns_t" addr flush dev vb
timeout $((8 * secs + 160)) ip netns exec "$ns_t" "$ref" pass vb $((8 * secs + 140)) &
peer=$!
sleep 0.5
xdp_run() { # $1 = label, $2 = offered rate (pps, 0 = maximum); starts what $1 names on va
  local label="$1" rate="$2" pid cfg="$work/probe.cfg"
  case "$label" in
    *-stamp) cfg="$work/stamp.cfg" ;;
  esac
  case "$label" in
    sender-alone*) ip netns exec "$ns_r" "$ref" drop va $((secs + 2)) & pid=$! ;;
    swap-only) ip netns exec "$ns_r" "$ref" swap va $((secs + 2)) & pid=$! ;;
    *-gated) local gplace=(); [ "$label" = af-xdp-gated ] && gplace=(--cpus "$reflector_cpu")
       timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend "${label%-gated}" "${gplace[@]}" \
         --allow 192.0.2.0/24,2001:db8::/32 --deny 192.0.2.66,198.51.100.0/24 \
         --source-limit 1000000 --total-limit 10000000 \
         --stats json --duration $((secs + 2)) > "$work/tx-$label-$rate.json" 2> "$work/tx-$label.err" & pid=$! ;;
    xdp-tx-caps) timeout $((secs + 30)) ip netns exec "$ns_r" "${as_service[@]}" "$bin" run va --backend xdp-tx \
         --stats json --duration $((secs + 2)) > "$work/tx-$label-$rate.json" 2> "$work/tx-$label.err" & pid=$! ;;
    xdp-tx-stamp) timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend xdp-tx --sig ito,stamp \
         --stats json --duration $((secs + 2)) > "$work/tx-$label-$rate.json" 2> "$work/tx-$label.err" & pid=$! ;;
    *) local place=(); [ "$label" = af-xdp ] && place=(--cpus "$reflector_cpu")
       timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend "$label" "${place[@]}" --stats json \
         --duration $((secs + 2)) > "$work/tx-$label-$rate.json" 2> "$work/tx-$label.err" & pid=$! ;;
  esac
  sleep 1
  local o0 t0 b0 s0 o1 t1 b1 s1 limit=()
  [ "$rate" = 0 ] || limit=(--rate "${rate}pps")
  o0=$(stat "$ns_t" vb tx_packets); t0=$(stat "$ns_t" vb rx_packets); s0=$(seen); b0=$(busy)
  timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$cfg" \
    --cpus 1 --num 0 "${limit[@]}" > /dev/null 2>&1 || true
  sleep 0.2
  o1=$(stat "$ns_t" vb tx_packets); t1=$(stat "$ns_t" vb rx_packets); b1=$(busy); s1=$(seen)
  wait "$pid" || true
  echo "$label $((o1 - o0)) $((t1 - t0)) $((b1 - b0)) $((s1 - s0))"
}
# What packaging/systemd/reflector@.service grants, as an unprivileged user.
caps="+net_raw,+net_admin,+bpf,+ipc_lock,+net_bind_service"
as_service=(setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps="-all,$caps" --ambient-caps="-all,$caps")
fixed="${FIXED_PPS:-100000}"
runs=()
for label in sender-alone swap-only xdp-tx af-xdp sender-alone-stamp xdp-tx-stamp xdp-tx-gated af-xdp-gated xdp-tx-caps; do
  runs+=("$(xdp_run "$label" "$fixed")")
done
runs+=("$(xdp_run xdp-tx 0)")
runs+=("$(xdp_run xdp-tx-stamp 0)")
kill "$peer" 2>/dev/null || true; wait "$peer" 2>/dev/null || true
python3 - "$secs" "$(getconf CLK_TCK)" "${runs[@]}" <<'PY'
import sys
secs, hz = float(sys.argv[1]), int(sys.argv[2])
rows = [r.split() for r in sys.argv[3:]]
fixed = {r[0]: tuple(map(int, r[1:5])) for r in rows[:9]}
# "returned" with, where some never reached the program, how many did.
def returned(o, t, s):
    return f"returned {t}/{o}" + ("" if s >= o else f" ({s} reached the reflector's XDP program)")
ns = lambda label: fixed[label][2] * 1e9 / hz / max(fixed[label][0], 1)
base = ns("sender-alone")
print(f"system-wide CPU per offered packet at {fixed['sender-alone'][0] / secs:.0f} pps (all CPUs, /proc/stat):")
for label in ("sender-alone", "swap-only", "xdp-tx", "af-xdp"):
    o, t, _, s = fixed[label]
    above = "" if label == "sender-alone" else f", {ns(label) - base:.0f} ns above the sender alone"
    print(f"  {label:<12} {ns(label):6.0f} ns{above}; {returned(o, t, s)}")
swap, tx, xdp = (ns(l) - base for l in ("swap-only", "xdp-tx", "af-xdp"))
print(f"  xdp-tx / swap-only (above the sender): {tx / swap:.2f} (target <= 1.25); "
      f"xdp-tx / af-xdp: {tx / xdp:.2f} (target <= 0.25)")
stamp = ns("xdp-tx-stamp") - ns("sender-alone-stamp")
print(f"  STAMP on xdp-tx: {ns('xdp-tx-stamp'):.0f} ns, {stamp:.0f} ns above its sender alone "
      f"({ns('sender-alone-stamp'):.0f} ns); {returned(*(fixed['xdp-tx-stamp'][i] for i in (0, 1, 3)))}; "
      f"STAMP / ITO on xdp-tx (above the sender): {stamp / tx:.2f} (target <= 1.2)")
for label in ("xdp-tx", "af-xdp"):
    gated = f"{label}-gated"
    print(f"  {label} with lists and limits: {ns(gated):.0f} ns, {returned(*(fixed[gated][i] for i in (0, 1, 3)))}; "
          f"with / without (above the sender): {(ns(gated) - base) / (ns(label) - base):.2f} (target <= 1.3)")
caps = fixed["xdp-tx-caps"]
print(f"  xdp-tx with the unit's capabilities only (no CAP_PERFMON): {ns('xdp-tx-caps'):.0f} ns, "
      f"{returned(caps[0], caps[1], caps[3])}; against xdp-tx as root (above the sender): "
      f"{(ns('xdp-tx-caps') - base) / tx:.2f}")
for label, o, t, _, s in rows[9:]:
    o, t, s = int(o), int(t), int(s)
    reached = "" if s >= o else f"; {s / secs:.0f} pps reached the reflector's XDP program"
    print(f"{label} at the single-core maximum: offered {o / secs:.0f} pps, reflected {t / secs:.0f} pps ({t / max(o, 1):.3f}){reached}")
PY

# The XDP program's own time per packet, live: the kernel's per-program statistics
# (kernel.bpf_stats_enabled=1: run_time_ns and run_cnt of the program attached to va, read
# with bpftool before and after the load) for xdp-tx with its defaults against the swap-only
# program, alternating, at the fixed rate, ROUNDS times (default 3; the median ratio is the
# figure). Both include the statistics' own two clock reads a run. The statistics stay on only
# for these rounds (they cost every program on the machine those reads) and go back to what
# they were, also when the script stops early.
command -v bpftool >/dev/null || { apt-get update -q && apt-get install -y -q bpftool; } >/dev/null
stats_before=$(sysctl -n kernel.bpf_stats_enabled)
on_exit() { sysctl -qw kernel.bpf_stats_enabled="$stats_before" || true; }
prog_stats() { # run_time_ns and run_cnt of the XDP program on va ("0 0" when none is attached)
  local id
  id=$(ip -n "$ns_r" link show dev va | grep -oE 'prog/xdp[a-z]* id [0-9]+' | awk '{ print $3 }')
  [ -n "$id" ] || { echo "0 0"; return; }
  bpftool prog show id "$id" --json | python3 -c 'import json, sys; p = json.load(sys.stdin); print(p.get("run_time_ns", 0), p.get("run_cnt", 0))'
}
sysctl -qw kernel.bpf_stats_enabled=1
timeout $((6 * ${ROUNDS:-3} * secs + 120)) ip netns exec "$ns_t" "$ref" pass vb $((6 * ${ROUNDS:-3} * secs + 100)) &
peer=$!
sleep 0.5
live=()
for _ in $(seq "${ROUNDS:-3}"); do
  for label in swap-only xdp-tx; do
    case "$label" in
      swap-only) ip netns exec "$ns_r" "$ref" swap va $((secs + 2)) & pid=$! ;;
      xdp-tx) timeout $((secs + 30)) ip netns exec "$ns_r" "$bin" run va --backend xdp-tx --stats json \
           --duration $((secs + 2)) > /dev/null 2> "$work/live-$label.err" & pid=$! ;;
    esac
    sleep 1
    read -r ns0 n0 < <(prog_stats)
    timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
      --cpus 1 --num 0 --rate "${fixed}pps" > /dev/null 2>&1 || true
    read -r ns1 n1 < <(prog_stats)
    wait "$pid" || { echo "bench-lab: $label (live statistics) failed:" >&2; cat "$work/live-$label.err" >&2 2>/dev/null; exit 1; }
    live+=("$label $((ns1 - ns0)) $((n1 - n0))")
  done
done
kill "$peer" 2>/dev/null || true; wait "$peer" 2>/dev/null || true
sysctl -qw kernel.bpf_stats_enabled="$stats_before"
python3 - "$fixed" "${live[@]}" <<'PY'
import statistics, sys
rows = [r.split() for r in sys.argv[2:]]
per = lambda r: int(r[1]) / max(int(r[2]), 1)
pairs = [(per(rows[i]), per(rows[i + 1]), int(rows[i + 1][2])) for i in range(0, len(rows) - 1, 2)]
print(f"the XDP program's own time per packet, live at {sys.argv[1]} pps (kernel.bpf_stats_enabled, run_time_ns / run_cnt):")
for n, (swap, tx, cnt) in enumerate(pairs, 1):
    print(f"  round {n}: swap-only {swap:.0f} ns, xdp-tx (defaults) {tx:.0f} ns over {cnt} runs: {tx / swap:.2f}x")
print(f"  xdp-tx / swap-only, median of {len(pairs)} rounds: {statistics.median(tx / swap for swap, tx, _ in pairs):.2f} (target <= 1.5)")
PY
# DPDK: `reflector run --backend dpdk --busy-poll` against `dpdk-testpmd --forward-mode=5tswap
# --record-core-cycles` on the same virtual device over va with the same EAL arguments,
# alternating, ROUNDS times for each of DPDK's net_af_packet and net_af_xdp, at the
# single-core sender's maximum: reflected / sent (the tester's own counters), and the CPU
# cycles per packet as testpmd counts them (the cycles of the polls that received frames, over
# the frames received; ours from the run's summary, counted the same way with the same
# counter). Both poll on the last CPU; testpmd's main lcore, which only waits, shares CPU 0
# with the sender. Skipped without DPDK's development files or with one CPU.
if [ "$dpdk" = 1 ]; then
  dpdk_rows=()
  for vdev in net_af_packet net_af_xdp; do
    eal="--no-huge --no-pci --no-shconf --no-telemetry -m 256 --vdev=${vdev}0,iface=va"
    for round in $(seq "${ROUNDS:-3}"); do
      for label in testpmd reflector; do
        case "$label" in
          # shellcheck disable=SC2086 # the EAL arguments are words
          testpmd) timeout -s INT $((secs + 4)) ip netns exec "$ns_r" dpdk-testpmd -l "0,$reflector_cpu" $eal -- \
               --forward-mode=5tswap --record-core-cycles --total-num-mbufs=16384 --stats-period 1 \
               > "$work/dpdk-$label.out" 2>&1 & pid=$! ;;
          reflector) timeout $((secs + 30)) ip netns exec "$ns_r" target/dpdk/release/reflector run va \
               --backend dpdk --dpdk-eal "$eal" --busy-poll --cpus "$reflector_cpu" --stats json \
               --duration $((secs + 4)) > "$work/dpdk-$label.out" 2> "$work/dpdk-$label.err" & pid=$! ;;
        esac
        sleep 2
        tx0=$(stat "$ns_t" vb tx_packets); rx0=$(stat "$ns_t" vb rx_packets)
        timeout -s INT "$secs" ip netns exec "$ns_t" trafgen --dev vb --conf "$work/probe.cfg" \
          --cpus 1 --num 0 > /dev/null 2>&1 || true
        sleep 0.3
        tx1=$(stat "$ns_t" vb tx_packets); rx1=$(stat "$ns_t" vb rx_packets)
        wait "$pid" || [ "$label" = testpmd ] || { echo "bench-lab: dpdk ($label) failed:" >&2; cat "$work/dpdk-$label.err" >&2; exit 1; }
        case "$label" in
          testpmd) cpp=$(grep -oE 'CPU cycles/packet=[0-9.]+' "$work/dpdk-$label.out" | cut -d= -f2) ;;
          reflector) cpp=$(tail -1 "$work/dpdk-$label.out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["dpdk"]["cycles_per_packet"])') ;;
        esac
        [ -n "$cpp" ] || { echo "bench-lab: dpdk ($label) reported no cycles:" >&2; tail -5 "$work/dpdk-$label.out" >&2; exit 1; }
        dpdk_rows+=("$vdev $round $label $((tx1 - tx0)) $((rx1 - rx0)) $cpp")
        # DPDK 22.11's net_af_xdp may leave its XDP program on va (testpmd does not remove it).
        ip -n "$ns_r" link set dev va xdp off 2>/dev/null || true
      done
    done
  done
  python3 - "$secs" "${dpdk_rows[@]}" <<'PY'
import statistics, sys
secs = float(sys.argv[1])
rows = [r.split() for r in sys.argv[2:]]
print("dpdk against dpdk-testpmd (5tswap) on the same virtual device, at the single-core sender's maximum:")
for vdev in dict.fromkeys(r[0] for r in rows):
    ratios = []
    for rnd in dict.fromkeys(r[1] for r in rows if r[0] == vdev):
        got = {r[2]: r for r in rows if r[0] == vdev and r[1] == rnd}
        t, o = got["testpmd"], got["reflector"]
        ratio = float(o[5]) / float(t[5])
        ratios.append(ratio)
        print(f"  {vdev} round {rnd}: testpmd {int(t[3]) / secs:9.0f} pps sent, {int(t[4]) / max(int(t[3]), 1):.3f} back, "
              f"{float(t[5]):7.0f} cycles/packet; reflector {int(o[3]) / secs:9.0f} pps sent, "
              f"{int(o[4]) / max(int(o[3]), 1):.3f} back, {float(o[5]):7.0f} cycles/packet: {ratio:.2f}x")
    print(f"  {vdev}: reflector / testpmd cycles per packet, median of {len(ratios)} rounds: "
          f"{statistics.median(ratios):.2f} (target <= 1.2)")
PY
fi

echo "the XDP program's own time per probe (BPF_PROG_TEST_RUN, a million runs, median of 5):"
"$PWD/target/release/examples/xdp_gate_cost" 5 | sed 's/^/  /'
echo "the same with the unit's capabilities only (no CAP_PERFMON, CAP_SYS_ADMIN):"
setpriv --bounding-set=-perfmon,-sys_admin --inh-caps=-perfmon,-sys_admin \
  "$PWD/target/release/examples/xdp_gate_cost" 5 | sed 's/^/  /'
