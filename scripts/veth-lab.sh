# Sourced by bench-lab.sh and soak.sh: two network namespaces joined by a veth pair, the
# trafgen probe, and an interface counter reader. Call `veth_lab NAME` after setting `set -e`:
# it sets ns_r (the reflector's: va, 02:00:00:00:00:01, 192.0.2.1/24), ns_t (the tester's: vb,
# 00:c0:17:12:34:56, no address) and work (a temporary folder holding probe.cfg and stamp.cfg), and removes
# all of them on exit (after the caller's `on_exit`, if it defines one).

veth_lab() {
  ns_r="rfl-$1-$$-r"; ns_t="rfl-$1-$$-t"; work=$(mktemp -d)
  trap 'declare -F on_exit >/dev/null && on_exit; ip netns del "$ns_r" 2>/dev/null || true; ip netns del "$ns_t" 2>/dev/null || true; rm -rf "$work"' EXIT
  ip netns add "$ns_r"; ip netns add "$ns_t"
  ip link add va netns "$ns_r" address 02:00:00:00:00:01 type veth peer name vb netns "$ns_t" address 00:c0:17:12:34:56
  # The tester namespace gets no address: reflections are counted by its device and dropped
  # before IP, whose processing on veth would otherwise run on the reflector's CPU (a real
  # tester is another machine). Scripts that run `probe` add one for that.
  ip -n "$ns_r" addr add 192.0.2.1/24 dev va
  ip -n "$ns_r" link set va up; ip -n "$ns_t" link set vb up

  # The 60-byte ITO probe of the test corpus (checksums included), as trafgen bytes, except
  # that its source MAC (00:c0:17:12:34:57) is not the tester veth's own: reflections come back
  # to a MAC the tester's kernel does not own, so it counts them (rx_packets) and drops them at
  # once as "other host". On a veth pair the tester's receive path runs on the reflector's CPU.
  local probe="02 00 00 00 00 01 00 c0 17 12 34 57 08 00 45 00 00 2e 00 00 40 00 40 11 b6 b3 c0 00 02 0a c0 00
02 01 c3 50 0f 02 00 1a be f4 00 01 02 03 04 50 52 4f 42 45 4f 54 00 00 00 00 00 2a"
  { echo "{"; for b in $probe; do printf '0x%s, ' "$b"; done; echo "}"; } > "$work/probe.cfg"
  # A STAMP request with a 44-byte payload (the base packet, checksums included) from the same
  # source to 192.0.2.1:862, for runs with --sig stamp.
  local stamp="02 00 00 00 00 01 00 c0 17 12 34 57 08 00 45 00 00 48 00 00 40 00 40 11 b6 99 c0 00
02 0a c0 00 02 01 c3 50 03 5e 00 34 7b 87 01 02 03 04 ed 0b 5e 80 12 34 56 78 81 05 00 00 00 00
00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00"
  { echo "{"; for b in $stamp; do printf '0x%s, ' "$b"; done; echo "}"; } > "$work/stamp.cfg"
}

# stat NS DEV COUNTER: an interface counter from sysfs.
stat() { ip netns exec "$1" cat "/sys/class/net/$2/statistics/$3"; }
