//! The AF_XDP data path: the generated XDP program, loaded and attached with raw `bpf(2)`,
//! and AF_XDP sockets that receive what it redirects.

pub mod xsk;

use std::os::fd::{AsRawFd, OwnedFd};

use reflector_sys::error::SysError;
use reflector_sys::xdp::{bpf, netlink};

use reflector_core::{Filter, Reject};

/// A per-CPU array with one `u64` per reject reason, for the program to count into.
pub fn reject_counters() -> Result<OwnedFd, SysError> {
    bpf::map_create(bpf::BPF_MAP_TYPE_PERCPU_ARRAY, 8, Reject::COUNT as u32, "reflector_rej")
}

/// A per-CPU array for the reflecting program (`reflector_bpf::xdp::REFLECT_COUNTERS` entries:
/// rejects per reason, reflected frames per signature, reflected bytes).
pub fn reflect_counters() -> Result<OwnedFd, SysError> {
    bpf::map_create(bpf::BPF_MAP_TYPE_PERCPU_ARRAY, 8, reflector_bpf::xdp::REFLECT_COUNTERS, "reflector_cnt")
}

/// A map made by [`reflect_counters`] as counters, summed over CPUs: the rejects, the reflected
/// frames per signature and their bytes; received = rejected + reflected (the bytes of rejected
/// frames are not counted, so received bytes are the reflected ones).
pub fn read_reflect_counters(map: &OwnedFd) -> Result<reflector_core::Counters, SysError> {
    use reflector_bpf::xdp::{HITS, REFLECTED_BYTES};
    let mut c = reflector_core::Counters::default();
    for (i, v) in c.rejected.iter_mut().enumerate() {
        *v = bpf::percpu_sum(map, i as u32)?;
    }
    for (i, v) in c.by_signature.iter_mut().enumerate() {
        *v = bpf::percpu_sum(map, HITS + i as u32)?;
    }
    c.reflected_packets = c.by_signature.iter().sum();
    c.reflected_bytes = bpf::percpu_sum(map, REFLECTED_BYTES)?;
    c.rx_packets = c.reflected_packets + c.rejected_packets();
    c.rx_bytes = c.reflected_bytes;
    Ok(c)
}

/// Reads a map made by [`reject_counters`], summed over CPUs.
pub fn read_reject_counters(map: &OwnedFd) -> Result<[u64; Reject::COUNT], SysError> {
    let mut out = [0u64; Reject::COUNT];
    for (i, v) in out.iter_mut().enumerate() {
        *v = bpf::percpu_sum(map, i as u32)?;
    }
    Ok(out)
}

/// The program attached to an interface, its XSKMAP, and the bpf_link that holds it there.
/// Dropping it (or the process dying) detaches the program.
#[derive(Debug)]
pub struct Attachment {
    map: OwnedFd,
    counters: OwnedFd,
    prog: std::sync::Mutex<OwnedFd>,
    link: OwnedFd,
    /// Where the program runs.
    pub mode: XdpMode,
    /// Instructions in the program.
    pub instructions: usize,
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver.
    Native,
    /// In the stack, after the driver (drivers without XDP, or MTUs native mode refuses).
    Generic,
}

impl XdpMode {
    /// "native" or "generic".
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
        }
    }
}

/// Why the program could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The configuration does not assemble (cannot happen with validated filters).
    #[error("the XDP program for this configuration does not assemble")]
    Assemble,
    /// Another program is attached and `--replace` was not given.
    #[error(
        "another XDP program (id {id}) is attached to {iface}: stop its owner (another reflector?), or pass --replace to remove it"
    )]
    Busy {
        /// The interface.
        iface: String,
        /// The other program's id ("?" when it cannot be read).
        id: String,
    },
    /// Loading failed.
    #[error(transparent)]
    Load(#[from] bpf::LoadError),
    /// Not allowed to create maps or programs.
    #[error("the XDP program needs CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN): run as root")]
    Permission,
    /// A step failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl Attachment {
    /// Builds the program for `filter`, loads it, and attaches it to `ifindex` in native mode
    /// (generic mode where the driver has no XDP). `queues` sizes the XSKMAP. With `replace`,
    /// a program another tool attached through netlink is removed first.
    pub fn attach(
        filter: &Filter,
        ifindex: u32,
        iface: &str,
        queues: u32,
        replace: bool,
    ) -> Result<Attachment, AttachError> {
        let denied = |e: SysError| {
            if e.errno() == Some(libc::EPERM) { AttachError::Permission } else { AttachError::Sys(e) }
        };
        let map =
            bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, queues.max(1), "reflector_xsks").map_err(denied)?;
        let counters = reject_counters().map_err(denied)?;
        let on_hit = reflector_bpf::xdp::OnHit::Redirect { xsk_map_fd: map.as_raw_fd() };
        let insns = reflector_bpf::xdp::program(filter, on_hit, Some(counters.as_raw_fd()))
            .ok_or(AttachError::Assemble)?;
        let prog = bpf::prog_load(&insns, "reflector")?;
        let busy = |e: &SysError| matches!(e.errno(), Some(libc::EBUSY) | Some(libc::EEXIST));
        let link = |flags| bpf::link_create(&prog, ifindex, flags);
        let attempt = |replace_now: bool| -> Result<(OwnedFd, XdpMode), AttachError> {
            if replace_now {
                netlink::detach(ifindex)?;
            }
            match link(bpf::XDP_FLAGS_DRV_MODE) {
                Ok(l) => Ok((l, XdpMode::Native)),
                Err(e) if busy(&e) => Err(AttachError::Busy {
                    iface: iface.into(),
                    id: netlink::attached_prog_id(ifindex)
                        .ok()
                        .flatten()
                        .map_or("?".into(), |id| id.to_string()),
                }),
                // No native XDP in this driver, or not at this MTU (ERANGE: veth without
                // multi-buffer support takes at most about 3.5 KB frames): generic mode.
                Err(e)
                    if matches!(
                        e.errno(),
                        Some(libc::EOPNOTSUPP) | Some(libc::EINVAL) | Some(libc::ERANGE)
                    ) =>
                {
                    Ok((link(bpf::XDP_FLAGS_SKB_MODE)?, XdpMode::Generic))
                }
                Err(e) => Err(e.into()),
            }
        };
        let (link, mode) = match attempt(false) {
            Err(AttachError::Busy { .. }) if replace => attempt(true)?,
            other => other?,
        };
        Ok(Attachment {
            map,
            counters,
            prog: std::sync::Mutex::new(prog),
            link,
            mode,
            instructions: insns.len(),
        })
    }

    /// Frames the program rejected so far, per reason (indexed in `Reject::ALL` order).
    pub fn rejected(&self) -> Result<[u64; Reject::COUNT], SysError> {
        read_reject_counters(&self.counters)
    }

    /// Replaces the program with one for `filter` (same sockets, same counters), atomically:
    /// every frame meets either the old program or the new one.
    pub fn update(&self, filter: &Filter) -> Result<(), AttachError> {
        let on_hit = reflector_bpf::xdp::OnHit::Redirect { xsk_map_fd: self.map.as_raw_fd() };
        let insns = reflector_bpf::xdp::program(filter, on_hit, Some(self.counters.as_raw_fd()))
            .ok_or(AttachError::Assemble)?;
        let prog = bpf::prog_load(&insns, "reflector")?;
        bpf::link_update(&self.link, &prog)?;
        *self.prog.lock().expect("program lock") = prog;
        Ok(())
    }

    /// Puts socket `xsk_fd` in the XSKMAP slot of `queue`.
    pub fn register(&self, queue: u32, xsk_fd: i32) -> Result<(), SysError> {
        bpf::map_update(&self.map, queue, xsk_fd as u32)
    }
}

/// The number of receive queues of `iface` (from sysfs; 1 when it cannot be read).
pub fn rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok).filter(|e| e.file_name().to_string_lossy().starts_with("rx-")).count()
                as u32
        })
        .unwrap_or(1)
        .max(1)
}
