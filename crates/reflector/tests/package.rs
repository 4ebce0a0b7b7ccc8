//! The Debian package (`scripts/package-deb.sh`, which `scripts/test.sh` runs first): installed
//! with dpkg, its files, manual page, completions and conffile where they belong, the installed
//! binary reflecting as the `reflector` user with the unit's capabilities, and a purge that
//! leaves no file behind (root and network namespaces; ignored otherwise). The package is
//! purged when the test ends, also when it fails.
// A Debian package and its systemd unit: Linux only.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;

use common::NetnsPair;
use common::deb::{Purge, deb, installed_binary_reflects, sh};

#[test]
#[ignore = "needs root and network namespaces"]
fn the_package_installs_runs_as_its_user_and_purges_clean() {
    require_live!();
    let deb = deb("reflector");
    let (ok, said) = sh("dpkg", &["-i", deb.to_str().unwrap()]);
    let installed = Purge(&["reflector"]);
    assert!(ok, "dpkg -i: {said}");

    // The files, where Debian keeps them.
    for file in [
        "/usr/bin/reflector",
        "/lib/systemd/system/reflector@.service",
        "/etc/reflector/reflector.toml",
        "/usr/share/man/man8/reflector.8.gz",
        "/usr/share/man/man8/reflector-run.8.gz",
        "/usr/share/bash-completion/completions/reflector",
        "/usr/share/zsh/vendor-completions/_reflector",
        "/usr/share/fish/vendor_completions.d/reflector.fish",
        "/usr/share/reflector/reflector.rules.yml",
        "/usr/share/reflector/reflector-dashboard.json",
    ] {
        assert!(Path::new(file).is_file(), "{file} is not installed");
    }
    let (ok, conffiles) = sh("dpkg-query", &["-W", "-f=${Conffiles}", "reflector"]);
    assert!(ok && conffiles.contains("/etc/reflector/reflector.toml"), "{conffiles}");
    // The shipped configuration is valid, and the full example is there to copy from.
    let (ok, said) = sh("/usr/bin/reflector", &["config", "check", "/etc/reflector/reflector.toml"]);
    assert!(ok, "{said}");
    assert!(Path::new("/usr/share/doc/reflector/examples/reflector.toml").is_file());
    let (ok, page) = sh("man", &["-w", "reflector"]);
    assert!(ok && page.trim() == "/usr/share/man/man8/reflector.8.gz", "{page}");
    // The manual page says what a run keeps of its privileges.
    let (ok, text) = sh("sh", &["-c", "zcat /usr/share/man/man8/reflector-run.8.gz"]);
    assert!(ok && text.contains("CAP_BPF and CAP_NET_ADMIN on af"), "{text}");
    // Its synopsis is what one types.
    assert!(text.contains("\\fBreflector run\\fR"), "{text}");
    let (ok, bash) = sh(
        "bash",
        &["-c", "source /usr/share/bash-completion/completions/reflector && complete -p reflector"],
    );
    assert!(ok && bash.contains("reflector"), "{bash}");
    let (ok, version) = sh("/usr/bin/reflector", &["--version"]);
    assert!(ok && version.trim() == format!("reflector {}", env!("CARGO_PKG_VERSION")), "{version}");
    // No DPDK in it (nor among its dependencies): the one line names the package that has it.
    let (ok, said) = sh("/usr/bin/reflector", &["run", "lo", "--backend", "dpdk", "--duration", "1"]);
    assert!(!ok && said.trim().lines().count() == 1 && said.contains("reflector-dpdk package"), "{said}");
    let (_, depends) = sh("dpkg-query", &["-W", "-f=${Depends}", "reflector"]);
    assert!(!depends.contains("librte"), "{depends}");
    let (ok, user) = sh("getent", &["passwd", "reflector"]);
    assert!(ok && user.trim_end().ends_with(":/nonexistent:/usr/sbin/nologin"), "{user}");
    // The installed unit passes systemd's check, the manual page it names now there.
    let dir = tempfile::tempdir().unwrap();
    let instance = dir.path().join("reflector@eth0.service");
    std::fs::copy("/lib/systemd/system/reflector@.service", &instance).unwrap();
    let (ok, said) = sh("systemd-analyze", &["verify", instance.to_str().unwrap()]);
    assert!(ok, "systemd-analyze verify: {said}");

    // The installed binary, as its user with the unit's capabilities, in a namespace.
    let pair = NetnsPair::for_backend("af-xdp");
    let caps = "-all,+net_raw,+net_admin,+bpf,+ipc_lock,+net_bind_service";
    let setpriv = [
        "setpriv",
        "--reuid=reflector",
        "--regid=reflector",
        "--clear-groups",
        &format!("--inh-caps={caps}"),
        &format!("--ambient-caps={caps}"),
    ];
    installed_binary_reflects(&pair, &setpriv, &["--duration", "3"], "af-xdp");

    // Purged: every file the package had is gone, /etc/reflector too, and the user is locked.
    let (_, files) = sh("dpkg", &["-L", "reflector"]);
    let files: Vec<&str> = files.lines().filter(|f| Path::new(f).is_file()).collect();
    assert!(files.len() >= 10, "{files:?}");
    drop(installed);
    let left: Vec<&&str> = files.iter().filter(|f| Path::new(f).exists()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!Path::new("/etc/reflector").exists());
    let (_, shadow) = sh("getent", &["shadow", "reflector"]);
    assert!(shadow.split(':').nth(1).is_some_and(|p| p.starts_with('!')), "not locked: {shadow}");
}
