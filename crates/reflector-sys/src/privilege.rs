//! Capabilities (Linux): which of those an operation needs this thread lacks, to name them in
//! the error that a refused syscall becomes, and giving up the ones a run no longer needs once
//! it is set up. Through the `caps` crate (`capget` / `capset` / `prctl`); no `unsafe` here.

pub use caps::Capability;
use caps::{CapSet, CapsHashSet};

/// What opening an AF_PACKET or AF_XDP socket needs.
pub const SOCKET: &[Capability] = &[Capability::CAP_NET_RAW];
/// What loading and attaching our XDP programs (and creating their maps) needs. Not
/// CAP_PERFMON: the programs are written for the verifier's rules without it (their packet
/// pointers move only by constants; `reflector_bpf::xdp`).
pub const XDP_PROGRAM: &[Capability] = &[Capability::CAP_BPF, Capability::CAP_NET_ADMIN];
/// What detaching an XDP program attached through netlink needs.
pub const XDP_DETACH: &[Capability] = &[Capability::CAP_NET_ADMIN];

/// The capabilities of `needed` this thread does not hold in its effective set (CAP_SYS_ADMIN
/// stands in for CAP_BPF and CAP_PERFMON, as the kernel lets it). Empty when the set cannot be
/// read.
pub fn missing(needed: &[Capability]) -> Vec<Capability> {
    let Ok(held) = caps::read(None, CapSet::Effective) else { return Vec::new() };
    let admin = held.contains(&Capability::CAP_SYS_ADMIN);
    needed
        .iter()
        .copied()
        .filter(|c| {
            !(held.contains(c) || admin && matches!(c, Capability::CAP_BPF | Capability::CAP_PERFMON))
        })
        .collect()
}

/// The capabilities in this thread's effective set, sorted by name (empty when it cannot be
/// read).
pub fn held() -> Vec<Capability> {
    let mut held: Vec<Capability> =
        caps::read(None, CapSet::Effective).map(|s| s.into_iter().collect()).unwrap_or_default();
    held.sort_by_key(|c| c.to_string());
    held
}

/// The one-line error for `what` refused for want of privilege: what it needs, what is
/// missing, and how to grant it (a service unit, `setpriv`, file capabilities, or root).
pub fn refused(what: &str, needed: &[Capability]) -> String {
    let lacking = missing(needed);
    let all = names(needed, ", ");
    if lacking.is_empty() {
        return format!("{what} needs {all}, and was refused although they are held (a security module?)");
    }
    let unit = names(&lacking, " ");
    let setpriv: Vec<String> = lacking.iter().map(|c| format!("+{}", short(*c))).collect();
    let setcap: Vec<String> = lacking.iter().map(|c| format!("cap_{}", short(*c))).collect();
    format!(
        "{what} needs {all}; missing {}: grant {} with AmbientCapabilities={unit} in the service unit, setpriv --inh-caps {p} --ambient-caps {p}, setcap {s}+ep on the binary, or run as root",
        names(&lacking, ", "),
        if lacking.len() == 1 { "it" } else { "them" },
        p = setpriv.join(","),
        s = setcap.join(","),
    )
}

/// Gives up every capability but `keep`, in this thread: the ambient and inheritable sets
/// emptied, the permitted and effective sets cut to `keep` (to what of it is held). Threads
/// started afterwards inherit that; threads already running keep their own.
pub fn keep_only(keep: &[Capability]) -> Result<(), String> {
    let held = caps::read(None, CapSet::Permitted).map_err(|e| e.to_string())?;
    let kept: CapsHashSet = keep.iter().copied().filter(|c| held.contains(c)).collect();
    caps::clear(None, CapSet::Ambient).map_err(|e| e.to_string())?;
    caps::clear(None, CapSet::Inheritable).map_err(|e| e.to_string())?;
    // Effective first: it may not exceed the permitted set.
    caps::set(None, CapSet::Effective, &kept).map_err(|e| e.to_string())?;
    caps::set(None, CapSet::Permitted, &kept).map_err(|e| e.to_string())
}

/// The capabilities as the kernel names them (`CAP_NET_RAW`), joined by `sep`.
pub fn names(set: &[Capability], sep: &str) -> String {
    set.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(sep)
}

/// The name `setpriv` and `setcap` take (`net_raw`).
fn short(c: Capability) -> String {
    c.to_string().trim_start_matches("CAP_").to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_what_is_missing_and_how_to_grant_it() {
        assert_eq!(short(Capability::CAP_NET_RAW), "net_raw");
        assert_eq!(names(XDP_PROGRAM, ", "), "CAP_BPF, CAP_NET_ADMIN");
        let msg = refused("loading the XDP program", XDP_PROGRAM);
        assert!(msg.starts_with("loading the XDP program needs CAP_BPF, CAP_NET_ADMIN"), "{msg}");
        assert!(!msg.contains('\n'));
        // Whoever runs the tests: what is missing is named with its grants, or nothing is.
        let lacking = missing(XDP_PROGRAM);
        for c in &lacking {
            assert!(msg.contains(&format!("+{}", short(*c))), "{msg}");
        }
        if lacking.is_empty() {
            assert!(msg.contains("although they are held"), "{msg}");
        }
    }
}
