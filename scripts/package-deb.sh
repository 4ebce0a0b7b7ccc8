#!/usr/bin/env bash
# Builds the Debian package, target/debian/reflector_<version>_<arch>.deb, with cargo-deb
# (installed into target/tools/cargo-deb when missing): the release binary, the systemd unit,
# /etc/reflector/reflector.toml (a conffile: the commented example), the manual pages and the
# bash, zsh and fish completions (both generated from the command-line definitions), the
# Prometheus rules and the Grafana dashboard. Metadata: [package.metadata.deb] in
# crates/reflector/Cargo.toml; maintainer scripts: packaging/debian/.
# Where DPDK's development files are (pkg-config libdpdk), also the second package,
# target/debian/reflector-dpdk_<version>_<arch>.deb: the same with `--features dpdk`
# ([package.metadata.deb.variants.dpdk]). Its binary is built first and kept in
# target/dpdk/release (cargo-deb reads `target/release/` in CARGO_TARGET_DIR), so that
# target/release/reflector is the default build when this ends.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x target/tools/cargo-deb/bin/cargo-deb ]; then
    cargo install -q cargo-deb --version 3.6.2 --locked --root target/tools/cargo-deb
fi
dpdk=0
if pkg-config --exists libdpdk 2>/dev/null; then
    dpdk=1
    cargo build -q --release --locked -p reflector --features dpdk
    mkdir -p target/dpdk/release
    cp target/release/reflector target/dpdk/release/reflector
fi
cargo build -q --release --locked -p reflector
assets=target/assets
rm -rf "$assets" && mkdir -p "$assets/man" "$assets/completions"
target/release/reflector man "$assets/man"
gzip -9n "$assets"/man/*.8
for shell in bash zsh fish; do
    target/release/reflector completions "$shell" > "$assets/completions/reflector.$shell"
done
mkdir -p target/debian
target/tools/cargo-deb/bin/cargo-deb -p reflector --no-build --locked --strip -o target/debian/ --quiet
if [ "$dpdk" = 1 ]; then
    CARGO_TARGET_DIR=target/dpdk target/tools/cargo-deb/bin/cargo-deb -p reflector --variant dpdk \
        --no-build --locked --strip -o target/debian/ --quiet
fi
