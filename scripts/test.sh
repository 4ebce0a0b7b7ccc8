#!/usr/bin/env bash
# The project's test command (README "Tests"; .ci/run calls exactly this).
# Installs what the tests need, then runs format, lint, docs and every test.
# Tests that need root and network namespaces are marked #[ignore = "needs root ..."]: a plain
# `cargo test` reports them as ignored; this runs them too when it runs as root (as CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v ip >/dev/null || need+=(iproute2)
command -v ping >/dev/null || need+=(iputils-ping)
command -v setpriv >/dev/null || need+=(util-linux)
command -v chromium >/dev/null || need+=(chromium)   # the dashboard tests (and its Capture button, over DevTools)
command -v tmux >/dev/null || need+=(tmux)           # the terminal UI test
command -v ethtool >/dev/null || need+=(ethtool)     # interface counters (af-xdp drops)
command -v trafgen >/dev/null || need+=(netsniff-ng) # overload tests
command -v systemd-analyze >/dev/null || need+=(systemd) # the service unit's checks
command -v tshark >/dev/null || need+=(tshark)       # capture files read by Wireshark's tools
pkg-config --exists libdpdk 2>/dev/null || need+=(libdpdk-dev pkg-config) # the DPDK layer (--features dpdk)
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        # Non-interactive: tshark's package asks whether non-root users may capture.
        apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
    else
        echo "test.sh: missing ${need[*]}; live tests will skip (run as root to install)" >&2
    fi
fi

# The /metrics test parses the output with the OpenMetrics parser of prometheus_client.
python3 -c "import prometheus_client" 2>/dev/null || python3 -m pip install -q prometheus-client

# The STAMP interop tests send with an independent implementation: stamp-suite 1.0.0 from
# crates.io, built once into target/tools (tests/live_stamp.rs looks for it there).
if [ ! -x target/tools/stamp-suite/bin/stamp-suite ]; then
    cargo install -q stamp-suite --version 1.0.0 --locked --root target/tools/stamp-suite
fi

# promtool (Debian's prometheus package) checks /metrics and the alert rules: unpacked into
# target/tools, not installed, so no Prometheus server is set up or started.
if [ ! -x target/tools/prometheus/usr/bin/promtool ]; then
    dl=$(mktemp -d) && chmod 755 "$dl"
    (cd "$dl" && { apt-get download -q prometheus 2>/dev/null || { apt-get update -q && apt-get download -q prometheus; }; })
    dpkg-deb -x "$dl"/prometheus_*.deb target/tools/prometheus
    rm -rf "$dl"
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The DPDK data path is built only with its feature (the default build needs no DPDK): linted
# with it, its layer tested over a ring device (no network, no privilege needed), and as root
# the data path live over a veth (tests/live_dpdk.rs).
dpdk=0
if pkg-config --exists libdpdk 2>/dev/null; then
    dpdk=1
    cargo clippy --workspace --all-targets --features reflector/dpdk --locked -- -D warnings
    cargo test -p reflector-sys --features dpdk --test dpdk --locked
else
    echo "test.sh: DPDK (libdpdk-dev) is missing: the DPDK data path is not built (run as root to install it)" >&2
fi
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
# The same code type-checked and linted for macOS (x86_64, aarch64) and FreeBSD, with Debian's
# second compiler (installs its packages when missing; see the script).
./scripts/check-targets.sh
if [ "$(id -u)" = 0 ]; then
    # The Debian package, for the test that installs and purges it.
    ./scripts/package-deb.sh
    cargo test --workspace --locked -- --include-ignored
    if [ "$dpdk" = 1 ]; then
        cargo test -p reflector --features dpdk --test live_dpdk --locked -- --include-ignored
    fi
else
    echo "test.sh: not root: the live tests (network namespaces, BPF) are reported as ignored" >&2
    cargo test --workspace --locked
fi
