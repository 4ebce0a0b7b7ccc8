#!/usr/bin/env bash
# The real-driver lab: boots a small emulated guest (qemu, software emulation) whose NICs are
# real drivers' devices (virtio-net, e1000e) on taps in a network namespace of its own, runs a
# command inside it with this checkout's binaries, and a command on the host side of the taps
# meanwhile; prints both one's output and exits with the guest command's status (else the
# host command's; 124 when the guest ran over --timeout, 125 when it ended otherwise without
# its command's status, 2 on bad options). Everything is removed at the end, also on failure or
# Ctrl-C: the guest is under `timeout`, the taps go with their namespace.
#
# Usage (root): scripts/vm-lab.sh [--nic virtio|e1000e]... [--queues N] [--timeout SECONDS]
#                                 [--share DIR] [--host COMMAND] -- COMMAND [ARG...]
#   --nic      a NIC, in order: the guest's eth0, eth1, ... (default: one virtio)
#   --queues   queue pairs of each virtio NIC (default 1); the tap is multi-queue when > 1
#   --timeout  seconds the guest may run, boot included (default 300)
#   --share    a folder at the same path on both sides, writable (default: a new temporary one)
#   --host     a shell command run on the host side (in the taps' namespace) while the guest
#              runs; default: wait until the guest command prints a `reflector run` start
#              line (printed once its data path is set up), then send 500 probes at 100 pps
#              to the guest's eth0 and print what came back (`reflector probe`)
# NIC i is eth<i> in the guest, MAC 52:54:00:00:00:0<i+1>, 10.0.<i>.2/24; its host side is
# tap<i>, 10.0.<i>.1/24. The guest runs COMMAND in this checkout with target/release (built
# when older than the sources; or VM_LAB_BIN_DIR, as the tests give theirs) first on PATH, over the host's root file system (read-only, virtio-9p) with its own /proc, /sys,
# /dev, /tmp and /run; both commands see VM_LAB_SHARE (the shared folder). The guest command's
# output is also left in $VM_LAB_SHARE/guest.out and guest.err, the guest's console in
# console.log.
#
# Needs, and installs when missing (cached under target/vm-lab): Debian 12's qemu-system-x86
# 7.2 unpacked there (installing it would remove this image's newer qemu-utils) with its
# libraries installed, Debian 12's kernel (linux-image-amd64) unpacked there, busybox-static
# and kmod for the guest's initramfs.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

nics=(); queues=1; limit=300; share=""; host_cmd=""
while [ $# -gt 0 ]; do
  case "$1" in
    --nic) case "${2:-}" in virtio|e1000e) nics+=("$2") ;; *) echo "vm-lab: --nic takes virtio or e1000e, not '${2:-}'" >&2; exit 2 ;; esac; shift 2 ;;
    --queues) [[ "${2:-}" =~ ^[1-8]$ ]] || { echo "vm-lab: --queues takes 1 to 8, not '${2:-}'" >&2; exit 2; }; queues=$2; shift 2 ;;
    --timeout) [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || { echo "vm-lab: --timeout takes seconds, not '${2:-}'" >&2; exit 2; }; limit=$2; shift 2 ;;
    --share) [ -d "${2:-}" ] || { echo "vm-lab: --share: '${2:-}' is not a folder" >&2; exit 2; }; share=$(cd "$2" && pwd); shift 2 ;;
    --host) host_cmd=${2:?vm-lab: --host takes a command}; shift 2 ;;
    --) shift; break ;;
    *) echo "vm-lab: unknown option '$1' (usage: scripts/vm-lab.sh [--nic virtio|e1000e]... [--queues N] [--timeout S] [--share DIR] [--host CMD] -- COMMAND...)" >&2; exit 2 ;;
  esac
done
[ $# -gt 0 ] || { echo "vm-lab: no command to run in the guest (after --)" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "vm-lab: needs root (network namespaces, taps)" >&2; exit 2; }
[ ${#nics[@]} -gt 0 ] || nics=(virtio)
[ ${#nics[@]} -le 4 ] || { echo "vm-lab: at most 4 NICs" >&2; exit 2; }

cache="$repo/target/vm-lab"
qemu="$cache/qemu/usr/bin/qemu-system-x86_64"
say() { echo "vm-lab: $*" >&2; }

# --- What the guest needs, fetched once ---------------------------------------------------
# Package lists, when this machine has none yet (a fresh image).
apt-cache policy qemu-system-x86 2>/dev/null | grep -q "Candidate: [0-9]" || apt-get update -q >/dev/null
missing() { for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || echo "$p"; done; }
need=$(missing busybox-static kmod)
if [ -n "$need" ]; then
  say "installing $need"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $need >/dev/null
fi
if ! [ -x "$qemu" ] || ! "$qemu" --version >/dev/null 2>&1; then
  say "fetching qemu-system-x86 (Debian 12) into $cache/qemu"
  # Its libraries from Debian (what apt would install with it, less qemu's own packages).
  libs=$(apt-get install -s --no-install-recommends qemu-system-x86 2>/dev/null | awk '/^Inst/ && $2 !~ /^qemu-/ { print $2 }')
  [ -z "$libs" ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $libs >/dev/null
  rm -rf "$cache/qemu" "$cache/debs"; mkdir -p "$cache/debs"
  (cd "$cache/debs" && apt-get download -q qemu-system-x86 qemu-system-common qemu-system-data >/dev/null 2>&1)
  for deb in "$cache"/debs/*.deb; do dpkg -x "$deb" "$cache/qemu"; done
  rm -rf "$cache/debs"
  "$qemu" --version >/dev/null
fi
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
[ -n "$kpkg" ] || { say "cannot tell which kernel linux-image-amd64 is (apt-cache depends)"; exit 1; }
kver=${kpkg#linux-image-}
kroot="$cache/kernel-$kver"
if ! [ -f "$kroot/boot/vmlinuz-$kver" ] || ! [ -f "$kroot/lib/modules/$kver/modules.dep" ]; then
  say "fetching $kpkg into $kroot"
  rm -rf "$kroot" "$cache/kdeb"; mkdir -p "$cache/kdeb"
  (cd "$cache/kdeb" && apt-get download -q "$kpkg" >/dev/null 2>&1)
  dpkg -x "$cache"/kdeb/*.deb "$kroot"
  rm -rf "$cache/kdeb"
  depmod -b "$kroot" "$kver"
fi
initrd="$cache/initramfs-$kver.cpio.gz"
if ! [ -f "$initrd" ] || [ "$0" -nt "$initrd" ]; then
  say "building the guest's initramfs"
  ird=$(mktemp -d)
  mkdir -p "$ird/bin" "$ird/proc" "$ird/sys" "$ird/dev" "$ird/newroot" "$ird/lib/modules/$kver"
  cp /bin/busybox "$ird/bin/busybox"
  # The modules for the shared file systems, the NICs and tun (DPDK's net_tap), with what they
  # depend on, in an order that loads (each one's dependencies before it).
  order=()
  add() {
    local m=$1 line deps d
    for d in "${order[@]}"; do [ "$d" = "$m" ] && return; done
    line=$(grep "^$m:" "$kroot/lib/modules/$kver/modules.dep") || { say "no module $m in $kpkg"; exit 1; }
    deps=${line#*:}
    for d in $deps; do add "$d"; done
    order+=("$m")
  }
  for m in fs/9p/9p net/9p/9pnet_virtio drivers/virtio/virtio_pci drivers/net/virtio_net \
           drivers/net/ethernet/intel/e1000e/e1000e drivers/uio/uio_pci_generic drivers/net/tun; do
    add "kernel/$m.ko"
  done
  for m in "${order[@]}"; do
    mkdir -p "$ird/lib/modules/$kver/$(dirname "$m")"
    cp "$kroot/lib/modules/$kver/$m" "$ird/lib/modules/$kver/$m"
  done
  printf '%s\n' "${order[@]}" > "$ird/modules.load"
  cat > "$ird/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /modules.load); do insmod "/lib/modules/$(uname -r)/$m" || echo "vm-lab guest: $m did not load"; done
arg() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^vmlab\.$1=//p"; }
share=$(arg share)
nics=$(arg nics)
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o "$o,ro" hostroot /newroot || { echo "vm-lab guest: the host's root did not mount"; poweroff -f; }
mount -t proc proc /newroot/proc; mount -t sysfs sysfs /newroot/sys; mount -t devtmpfs devtmpfs /newroot/dev
mount -t tmpfs tmpfs /newroot/tmp; mount -t tmpfs tmpfs /newroot/run
mount -t bpf bpf /newroot/sys/fs/bpf 2>/dev/null || true
# The checkout and the binaries, when they are in /tmp or /run (which the guest has its own
# of), at their host paths, read-only.
i=0
for keep in $(arg keep | tr ',' ' '); do
  mkdir -p "/newroot$keep" && mount -t 9p -o "$o,ro" "keep$i" "/newroot$keep" || {
    echo "vm-lab guest: $keep did not mount"; poweroff -f; }
  i=$((i + 1))
done
# The shared folder at its host path (made in the guest's /tmp or /run when it is there).
mkdir -p "/newroot$share" 2>/dev/null
mount -t 9p -o "$o" share "/newroot$share" || { echo "vm-lab guest: the shared folder did not mount"; poweroff -f; }
# eth<i> by MAC (52:54:00:00:00:0<i+1>), whatever order the drivers probed them in.
ip link set lo up
i=0
for f in /sys/class/net/*; do n=${f##*/}; [ "$n" = lo ] || ip link set "$n" name "vmtmp-$n"; done
while [ "$i" -lt "$nics" ]; do
  for f in /sys/class/net/vmtmp-*; do
    [ "$(cat "$f/address")" = "52:54:00:00:00:0$((i + 1))" ] && ip link set "${f##*/}" name "eth$i"
  done
  ip addr add "10.0.$i.2/24" dev "eth$i" && ip link set "eth$i" up
  i=$((i + 1))
done
echo "vm-lab guest: up in $(cut -d' ' -f1 /proc/uptime) s"
touch "/newroot$share/booted"
chroot /newroot /bin/bash "$share/guest.sh" > "/newroot$share/guest.out" 2> "/newroot$share/guest.err"
echo $? > "/newroot$share/guest.rc.part" && mv "/newroot$share/guest.rc.part" "/newroot$share/guest.rc"
sync
poweroff -f
INIT
  chmod +x "$ird/init"
  (cd "$ird" && find . | busybox cpio -o -H newc 2>/dev/null | gzip -1 > "$initrd.part") && mv "$initrd.part" "$initrd"
  rm -rf "$ird"
fi
bin="${VM_LAB_BIN_DIR:-}"
if [ -z "$bin" ]; then
  bin="$repo/target/release"
  [ -x "$bin/reflector" ] && [ -z "$(find crates Cargo.lock -newer "$bin/reflector" -print -quit)" ] \
    || cargo build --release -q -p reflector
fi
bin=$(cd "$bin" && pwd)

# --- One run ----------------------------------------------------------------------------
ns="rfl-vm-$$"
work=$(mktemp -d)
own_share=""
[ -n "$share" ] || { share=$(mktemp -d); own_share=1; }
rm -f "$share/booted" "$share/guest.rc" "$share/guest.out" "$share/guest.err"
qpid=""; hpid=""
cleanup() {
  [ -z "$hpid" ] || kill -TERM -- "-$hpid" 2>/dev/null || true
  [ -z "$qpid" ] || kill "$qpid" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  cp "$work/console.log" "$share/console.log" 2>/dev/null || true
  rm -rf "$work"
  [ -z "$own_share" ] || rm -rf "$share"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ip netns add "$ns"
ip -n "$ns" link set lo up
netdevs=()
for i in "${!nics[@]}"; do
  mac="52:54:00:00:00:0$((i + 1))"
  mq=(); dev_mq=""
  if [ "${nics[$i]}" = virtio ] && [ "$queues" -gt 1 ]; then
    mq=(multi_queue); dev_mq=",mq=on,vectors=$((2 * queues + 2))"
  fi
  ip -n "$ns" tuntap add "tap$i" mode tap "${mq[@]}"
  ip -n "$ns" addr add "10.0.$i.1/24" dev "tap$i"
  ip -n "$ns" link set "tap$i" up
  case "${nics[$i]}" in
    virtio) netq=""; [ "$queues" -gt 1 ] && netq=",queues=$queues"
            netdevs+=(-netdev "tap,id=n$i,ifname=tap$i,script=no,downscript=no$netq"
                      -device "virtio-net-pci,netdev=n$i,mac=$mac,romfile=$dev_mq") ;;
    e1000e) netdevs+=(-netdev "tap,id=n$i,ifname=tap$i,script=no,downscript=no"
                      -device "e1000e,netdev=n$i,mac=$mac,romfile=") ;;
  esac
done
{
  echo "export PATH='$bin':\$PATH VM_LAB_SHARE='$share' HOME=/tmp"
  echo "cd '$repo' || exit 1"
  printf 'exec'; printf ' %q' "$@"; echo
} > "$share/guest.sh"

# The guest mounts its own /tmp and /run: the checkout and the binaries, when they are there,
# are shared on their own (read-only), at the same paths.
keeps=(); keepfs=()
for dir in "$repo" "$bin"; do
  case "$dir" in
    /tmp/*|/run/*) ;;
    *) continue ;;
  esac
  case "$dir" in
    *[[:space:],]*) say "the path $dir has a space or a comma: the guest cannot be given it"; exit 2 ;;
  esac
  inside=0
  for k in "${keeps[@]}"; do case "$dir/" in "$k"/*) inside=1 ;; esac; done
  [ "$inside" = 1 ] && continue
  keepfs+=(-virtfs "local,path=$dir,mount_tag=keep${#keeps[@]},security_model=none,readonly=on,multidevs=remap")
  keeps+=("$dir")
done
keep_arg=$(IFS=,; echo "${keeps[*]}")

started=$(date +%s.%N)
timeout -k 5 "$limit" ip netns exec "$ns" "$qemu" -L "$cache/qemu/usr/share/qemu" -L /usr/share/seabios \
  -accel tcg,thread=multi -cpu max -smp 2 -m 2048 -no-reboot -display none -monitor none \
  -serial "file:$work/console.log" \
  -kernel "$kroot/boot/vmlinuz-$kver" -initrd "$initrd" \
  -append "console=ttyS0 panic=-1 quiet vmlab.share=$share vmlab.nics=${#nics[@]} vmlab.keep=$keep_arg" \
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap" \
  -virtfs "local,path=$share,mount_tag=share,security_model=none" "${keepfs[@]}" \
  "${netdevs[@]}" > "$work/qemu.out" 2>&1 &
qpid=$!

# The host side, once the guest is up.
for _ in $(seq $((limit * 10))); do
  [ -e "$share/booted" ] && break
  kill -0 "$qpid" 2>/dev/null || break
  sleep 0.1
done
if ! [ -e "$share/booted" ]; then
  qrc=0; wait "$qpid" || qrc=$?; qpid=""
  say "the guest did not come up; its console:"; tail -30 "$work/console.log" >&2 || true; cat "$work/qemu.out" >&2 || true
  [ "$qrc" = 124 ] && exit 124
  exit 1
fi
say "guest up in $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s (${nics[*]}, $queues queue(s))"
if [ -z "$host_cmd" ]; then
  host_cmd='for _ in $(seq 600); do grep -q "^reflector: " "$VM_LAB_SHARE/guest.err" 2>/dev/null && break; [ -e "$VM_LAB_SHARE/guest.rc" ] && break; sleep 0.1; done
    reflector probe tap0 --dst-mac 52:54:00:00:00:01 --dst-ip 10.0.0.2 --rate 100 --count 500'
fi
# In a process group of its own, so that what it started goes with it.
VM_LAB_SHARE="$share" PATH="$bin:$PATH" setsid timeout -k 5 "$limit" ip netns exec "$ns" sh -c "$host_cmd" \
  > "$work/host.out" 2>&1 &
hpid=$!
qrc=0; wait "$qpid" || qrc=$?; qpid=""
# The guest is gone: the host side gets 10 s more to finish, then ends.
for _ in $(seq 100); do kill -0 "$hpid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$hpid" 2>/dev/null; then
  say "the host command was still running when the guest ended: stopped"
  kill -TERM -- "-$hpid" 2>/dev/null || true
fi
hrc=0; wait "$hpid" || hrc=$?; hpid=""
[ "$qrc" = 0 ] || [ -e "$share/guest.rc" ] || say "qemu ended with $qrc (124: over --timeout $limit s)"
cat "$share/guest.out" 2>/dev/null || true
cat "$share/guest.err" >&2 2>/dev/null || true
if [ -s "$work/host.out" ]; then echo "--- host side ---"; cat "$work/host.out"; fi
if ! [ -e "$share/guest.rc" ]; then
  say "the guest command did not finish; the console's end:"; tail -20 "$work/console.log" >&2 || true
  # 124: over --timeout, as timeout(1) says it; else 125.
  [ "$qrc" = 124 ] && exit 124
  exit 125
fi
grc=$(cat "$share/guest.rc")
[ "$grc" != 0 ] && exit "$grc"
exit "$hrc"
