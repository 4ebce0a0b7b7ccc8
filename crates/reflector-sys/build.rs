//! With the `dpdk` feature: compiles csrc/dpdk.c against DPDK (found by `pkg-config libdpdk`,
//! 22.11 or later) and links DPDK's libraries. Without it: nothing.

fn main() {
    #[cfg(feature = "dpdk")]
    dpdk();
}

#[cfg(feature = "dpdk")]
fn dpdk() {
    println!("cargo:rerun-if-changed=csrc/dpdk.c");
    let probe = |metadata: bool| {
        pkg_config::Config::new().atleast_version("22.11").cargo_metadata(metadata).probe("libdpdk").unwrap_or_else(
            |e| {
                panic!(
                    "the dpdk feature needs DPDK 22.11 or later and its pkg-config file (Debian: apt install libdpdk-dev pkg-config): {e}"
                )
            },
        )
    };
    let lib = probe(false);
    let mut build = cc::Build::new();
    build.file("csrc/dpdk.c").warnings(true);
    for dir in &lib.include_paths {
        build.include(dir);
    }
    // DPDK's other compile flags: its configuration header and the machine it was built for.
    let flags = std::process::Command::new("pkg-config")
        .args(["--cflags-only-other", "libdpdk"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut words = flags.split_whitespace();
    while let Some(w) = words.next() {
        if w == "-include" {
            if let Some(header) = words.next() {
                build.flag("-include").flag(header);
            }
        } else {
            build.flag(w);
        }
    }
    build.compile("reflector_dpdk");
    // DPDK's libraries after ours, which needs them (the linker keeps a shared library only
    // for what comes before it needs).
    probe(true);
}
