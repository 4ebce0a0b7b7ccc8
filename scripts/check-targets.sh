#!/usr/bin/env bash
# Type-checks and lints the workspace for the systems the bpf data path is for, which this
# machine cannot run: x86_64-apple-darwin, aarch64-apple-darwin, x86_64-unknown-freebsd
# (or the targets given as arguments). scripts/test.sh runs it; run it alone to check only these targets.
#
# How: Debian's second Rust compiler (rustc-web 1.96, with the standard library's source in
# rust-web-src and its Clippy in rust-web-clippy) builds the standard library for each target
# (-Zbuild-std, allowed by RUSTC_BOOTSTRAP) and runs `cargo clippy` over the library, binary,
# tests and benchmarks of every crate with warnings as errors. Nothing is linked, so no macOS
# SDK or FreeBSD sysroot is needed. Our own toolchain (rustup's, first on PATH) is untouched: the
# Debian tools are called by their paths under /usr/bin, and build into target/cross.
#
# C code in dependencies: build scripts still run, so it is compiled for the target by clang
# with only clang's own headers (-nostdlibinc: no target sysroot here), which suffices for
# criterion's alloca helper. ring's C needs the macOS SDK's headers; its build script (the
# package that `links` ring_core_*) is replaced by an empty override for the check, since
# nothing is linked.
#
# Left out: the examples (XDP measurement tools, Linux only by what they measure). Linux-only
# modules and tests are excluded by `cfg(target_os = "linux")` where they are declared.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-apple-darwin aarch64-apple-darwin x86_64-unknown-freebsd)

need=()
for p in rustc-web cargo-web rust-web-src rust-web-clippy clang; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "check-targets: missing Debian packages ${need[*]} (run as root to install them)" >&2
        exit 1
    fi
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"
fi

# The package whose build script compiles ring's C code, by its `links` name (it changes with
# ring's version).
ring_links=$(cargo metadata --format-version 1 --locked |
    python3 -c 'import json, sys; print(*[p["links"] for p in json.load(sys.stdin)["packages"] if p["name"] == "ring" and p.get("links")])')

# All targets in one cargo run (the host's build scripts and proc-macros are built once), with no
# optimisation and no debug information (nothing here runs but build scripts).
args=(-Zbuild-std=std,panic_abort --workspace --lib --bins --tests --benches --locked
    --config 'profile.dev.package."*".opt-level=0' --config profile.dev.opt-level=0 --config profile.dev.debug=0)
envs=(PATH="/usr/bin:$PATH" CARGO=/usr/bin/cargo RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/cross)
for target in "${targets[@]}"; do
    t=${target//-/_}
    args+=(--target "$target")
    envs+=("CC_$t=clang" "CFLAGS_$t=-nostdlibinc")
    for links in $ring_links; do args+=(--config "target.$target.$links.rustc-link-lib=[]"); done
done
clippy() { env "${envs[@]}" /usr/bin/cargo-clippy clippy --quiet "$@" -- -D warnings; }
start=$SECONDS
if clippy "${args[@]}"; then
    echo "check-targets: ${targets[*]}: type-checked and linted in $((SECONDS - start)) s" >&2
    exit 0
fi
# Which target failed: each again alone (what built is kept, so this is quick), quietly.
for target in "${targets[@]}"; do
    one=()
    skip=0
    for a in "${args[@]}"; do
        if [ "$skip" = 1 ]; then skip=0; [ "$a" = "$target" ] && one+=(--target "$a"); continue; fi
        if [ "$a" = --target ]; then skip=1; continue; fi
        one+=("$a")
    done
    clippy "${one[@]}" >/dev/null 2>&1 || echo "check-targets: $target: the build fails (above)" >&2
done
exit 1
