//! The AF_XDP data path: the generated XDP program, loaded and attached with raw `bpf(2)`,
//! and AF_XDP sockets that receive what it redirects.

pub mod af_xdp;
pub mod jiffies;
pub mod xdp_tx;
pub mod xsk;

use std::os::fd::{AsRawFd, OwnedFd};

use reflector_sys::error::SysError;
use reflector_sys::xdp::{bpf, netlink};

use reflector_core::{Filter, Reject};

use jiffies::JiffyClock;

pub use crate::datapath::contract::XdpMode;
use crate::datapath::contract::{Iface, KernelCounters, KernelProgram, KernelPump, KernelTesters, Verdict};

/// Loads the XDP program `insns` (as `reflector-bpf` assembles it) under `name`; on a verifier
/// rejection the error holds the verifier's log.
pub fn load_program(insns: &[reflector_bpf::ebpf::Insn], name: &str) -> Result<OwnedFd, bpf::LoadError> {
    bpf::prog_load(&crate::host::bpf_insns(insns), name)
}

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
    let mut total = reflector_core::Counters::default();
    read_reflect_counters_per_cpu(map)?.iter().for_each(|c| total.add(c));
    Ok(total)
}

/// A map made by [`reflect_counters`] as counters, one per possible CPU.
pub fn read_reflect_counters_per_cpu(map: &OwnedFd) -> Result<Vec<reflector_core::Counters>, SysError> {
    use reflector_bpf::xdp::{HITS, REFLECTED_BYTES, SHORT_ANSWERED, UNANSWERED};
    let mut cpus = vec![reflector_core::Counters::default(); bpf::possible_cpus()];
    let all = bpf::percpu_array(map, reflector_bpf::xdp::REFLECT_COUNTERS)?;
    let mut each = |key: u32, set: &dyn Fn(&mut reflector_core::Counters, u64)| -> Result<(), SysError> {
        for (c, v) in cpus.iter_mut().zip(&all[key as usize]) {
            set(c, *v);
        }
        Ok(())
    };
    for r in 0..Reject::COUNT {
        each(r as u32, &|c, v| c.rejected[r] = v)?;
    }
    for s in 0..reflector_core::Signature::COUNT {
        each(HITS + s as u32, &|c, v| c.by_signature[s] = v)?;
    }
    each(REFLECTED_BYTES, &|c, v| c.reflected_bytes = v)?;
    // STAMP requests the program could not answer: received, and lost as TX errors.
    each(UNANSWERED, &|c, v| c.tx_errors = v)?;
    each(SHORT_ANSWERED, &|c, v| c.stamp_short_answered = v)?;
    for c in &mut cpus {
        c.reflected_packets = c.by_signature.iter().sum();
        c.rx_packets = c.reflected_packets + c.rejected_packets() + c.tx_errors;
        c.rx_bytes = c.reflected_bytes;
    }
    Ok(cpus)
}

/// What the attached program does with a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Redirect it to the AF_XDP socket of its queue (an XSKMAP of `queues` entries).
    Redirect {
        /// Entries of the XSKMAP.
        queues: u32,
    },
    /// Reflect it in place and send it back out (`XDP_TX`): no socket, no worker.
    Reflect,
}

/// A program that passes every frame to the stack, attached to `ifindex` through a bpf_link
/// for as long as the returned fd lives. On a veth, a program on the peer is what lets the
/// peer take frames another program sends with `XDP_TX`.
pub fn attach_pass(ifindex: u32) -> Result<OwnedFd, SysError> {
    use reflector_bpf::ebpf::{Asm, R0};
    let mut a = Asm::default();
    a.mov_imm(R0, reflector_bpf::xdp::XDP_PASS);
    a.exit();
    let insns = a.finish().expect("two instructions assemble");
    let prog = load_program(&insns, "reflector_pass")
        .map_err(|e| SysError { call: "bpf(BPF_PROG_LOAD)", err: std::io::Error::other(e.to_string()) })?;
    bpf::link_create(&prog, ifindex, bpf::XDP_FLAGS_DRV_MODE)
        .or_else(|_| bpf::link_create(&prog, ifindex, bpf::XDP_FLAGS_SKB_MODE))
}

/// Reads a map made by [`reject_counters`], summed over CPUs.
pub fn read_reject_counters(map: &OwnedFd) -> Result<[u64; Reject::COUNT], SysError> {
    let mut out = [0u64; Reject::COUNT];
    for (v, cpus) in out.iter_mut().zip(bpf::percpu_array(map, Reject::COUNT as u32)?) {
        *v = cpus.iter().sum();
    }
    Ok(out)
}

/// The program attached to an interface, its XSKMAP, and the bpf_link that holds it there.
/// Dropping it (or the process dying) detaches the program.
#[derive(Debug)]
pub struct Attachment {
    /// The XSKMAP (redirecting programs only).
    map: Option<OwnedFd>,
    /// The maps of the STAMP answer (reflecting programs only).
    stamp: Option<StampMaps>,
    /// The maps of the allow and deny lists and the rate limits.
    gate: GateMaps,
    /// The maps frames are sampled into for a capture, when the run may capture.
    capture: Option<KernelCapture>,
    /// The filter the program was generated from, without its lists and limits (which are in
    /// the maps): a new filter that differs only in those keeps the program.
    generated_from: std::sync::Mutex<Filter>,
    ending: Ending,
    counters: OwnedFd,
    prog: std::sync::Mutex<OwnedFd>,
    link: OwnedFd,
    /// Where the program runs.
    pub mode: XdpMode,
    /// Instructions in the program.
    pub instructions: usize,
}

/// The maps of the reflecting program's STAMP answer (see [`reflector_bpf::xdp::StampMaps`]).
#[derive(Debug)]
pub struct StampMaps {
    clock: bpf::SizedMap,
    sessions: bpf::SizedMap,
}

/// Sessions the reflecting program keeps sequence numbers for (least recently used ones make
/// room for new ones; the kernel does not say how many it evicted).
pub const KERNEL_STAMP_SESSIONS: u32 = 16_384;

impl StampMaps {
    /// Creates the maps.
    pub fn create() -> Result<StampMaps, SysError> {
        use reflector_bpf::xdp::{SESSION_KEY_LEN, SESSION_VALUE_LEN, STAMP_CLOCK_LEN};
        Ok(StampMaps {
            clock: bpf::SizedMap::create(bpf::BPF_MAP_TYPE_ARRAY, 4, STAMP_CLOCK_LEN, 1, "reflector_clock")?,
            sessions: bpf::SizedMap::create(
                bpf::BPF_MAP_TYPE_LRU_HASH,
                SESSION_KEY_LEN,
                SESSION_VALUE_LEN,
                KERNEL_STAMP_SESSIONS,
                "reflector_stamp",
            )?,
        })
    }

    /// Writes the clock's state as the kernel has it now ([`crate::worker::ClockState`], as the
    /// workers read it): TAI − UTC in ns, the error estimate.
    pub fn refresh_clock(&self) -> Result<(), SysError> {
        let state = crate::worker::ClockState::read();
        let mut value = [0u8; 16];
        value[..8].copy_from_slice(&state.tai_offset_ns.to_ne_bytes());
        value[8..].copy_from_slice(&(state.error.bits() as u64).to_ne_bytes());
        self.clock.update(&0u32.to_ne_bytes(), &value)
    }

    /// The maps as the program generator names them.
    pub fn fds(&self) -> reflector_bpf::xdp::StampMaps {
        reflector_bpf::xdp::StampMaps {
            clock_fd: self.clock.as_raw_fd(),
            sessions_fd: self.sessions.as_raw_fd(),
        }
    }
}

/// The maps an XDP program samples frames into for a capture (see
/// [`reflector_bpf::xdp::CaptureMaps`]), and their reader: [`KernelCapture::pump`] moves the
/// samples into a [`Tap`](crate::tap::Tap) and tells the program which kinds it wants.
#[derive(Debug)]
pub struct KernelCapture {
    control: bpf::SizedMap,
    ring: std::sync::Mutex<reflector_sys::xdp::ringbuf::RingBuf>,
    /// The kinds the program can sample (a redirecting program: the rejected frames; the
    /// reflecting one: both).
    kinds: u32,
    /// What was last asked of the program, and the over-cap and lost counts last read.
    state: std::sync::Mutex<(u32, u64, u64)>,
}

/// Bytes of the capture ring buffer: about 2000 samples, 200 ms at the default cap (the
/// reader empties it every 10 ms, when it gets a CPU).
pub const CAPTURE_RING_BYTES: u32 = 4 << 20;

impl KernelCapture {
    /// Creates the maps for a program that samples `kinds`, at most `per_second` frames a
    /// second (in bursts of up to a tenth of that).
    pub fn create(kinds: u32, per_second: u32) -> Result<KernelCapture, SysError> {
        use reflector_bpf::xdp::CAPTURE_CONTROL_LEN;
        let control =
            bpf::SizedMap::create(bpf::BPF_MAP_TYPE_ARRAY, 4, CAPTURE_CONTROL_LEN, 1, "reflector_capctl")?;
        let interval = 1_000_000_000 / u64::from(per_second.max(1));
        let tolerance = interval * u64::from((per_second / 10).max(1));
        let mut value = [0u8; CAPTURE_CONTROL_LEN as usize];
        value[8..16].copy_from_slice(&interval.to_ne_bytes());
        value[16..24].copy_from_slice(&tolerance.to_ne_bytes());
        control.update(&0u32.to_ne_bytes(), &value)?;
        let ring = reflector_sys::xdp::ringbuf::RingBuf::create(CAPTURE_RING_BYTES, "reflector_cap")?;
        Ok(KernelCapture { control, ring: std::sync::Mutex::new(ring), kinds, state: Default::default() })
    }

    /// The maps as the program generator names them.
    pub fn fds(&self) -> reflector_bpf::xdp::CaptureMaps {
        let ring_fd = self.ring.lock().expect("ring lock").as_raw_fd();
        reflector_bpf::xdp::CaptureMaps { control_fd: self.control.as_raw_fd(), ring_fd }
    }

    /// Moves the samples taken since the last call into `tap` (times made UTC with the
    /// kernel's TAI offset), counts the frames over the cap or without room in the ring as
    /// dropped, and asks the program for the kinds the tap's sinks want now.
    pub fn pump(&self, tap: &crate::tap::Tap) -> Result<(), SysError> {
        use reflector_bpf::xdp::{CAPTURE_REFLECTED, CAPTURE_SNAP};
        use reflector_core::{Reject, Signature};
        let mut chunk = crate::tap::Chunk::default();
        // TAI − UTC, read when the first sample of this call needs it (the kernel's offset).
        let mut tai_offset = None;
        self.ring.lock().expect("ring lock").read(|record| {
            if record.len() < 16 {
                return;
            }
            let word = |at: usize| u32::from_ne_bytes(record[at..at + 4].try_into().expect("4 bytes"));
            let (code, len) = (word(0), word(4) as usize);
            let time = u64::from_ne_bytes(record[8..16].try_into().expect("8 bytes")).saturating_sub(
                *tai_offset.get_or_insert_with(|| crate::worker::ClockState::read().tai_offset_ns),
            );
            let kept = &record[16..record.len().min(16 + len.min(CAPTURE_SNAP as usize))];
            let index = (code & 0xffff) as usize;
            if code >> 16 == CAPTURE_REFLECTED {
                let name = Signature::ALL.get(index).map_or("?", |s| s.name());
                let (direction, what) = (crate::pcapng::Direction::Outbound, crate::tap::What::REFLECTED);
                chunk.push(time, kept, len, &["reflected: ", name], direction, what);
            } else {
                let name = Reject::ALL.get(index).map_or("?", |r| r.name());
                let (direction, what) = (crate::pcapng::Direction::Inbound, crate::tap::What::REJECTED);
                chunk.push(time, kept, len, &["rejected: ", name], direction, what);
            }
        });
        if chunk.frames() > 0 {
            tap.offer(chunk);
        }
        let key = 0u32.to_ne_bytes();
        let mut state = self.state.lock().expect("capture lock");
        if let Some(value) = self.control.lookup(&key)? {
            let field = |at: usize| u64::from_ne_bytes(value[at..at + 8].try_into().expect("8 bytes"));
            let (capped, lost) = (field(32), field(40));
            tap.count_dropped(capped.saturating_sub(state.1) + lost.saturating_sub(state.2));
            (state.1, state.2) = (capped, lost);
            // Only the flags change: the bucket and the counts the program keeps stay (a sample
            // taken between the read and the write may go uncounted).
            let wanted = tap.wanted().bits() & self.kinds;
            if wanted != state.0 {
                let mut value = value;
                value[..4].copy_from_slice(&wanted.to_ne_bytes());
                self.control.update(&key, &value)?;
                state.0 = wanted;
            }
        }
        Ok(())
    }
}

/// The maps of the allow and deny lists and the rate limits (see
/// [`reflector_bpf::xdp::GateMaps`]), kept in line with a filter's by [`GateMaps::sync`].
#[derive(Debug)]
pub struct GateMaps {
    config: bpf::SizedMap,
    v4: bpf::SizedMap,
    v6: bpf::SizedMap,
    macs: bpf::SizedMap,
    total: bpf::SizedMap,
    testers: bpf::SizedMap,
    testers_cpu: bpf::SizedMap,
    /// How the testers' times (jiffies) read as CLOCK_MONOTONIC.
    clock: JiffyClock,
}

/// Testers (sources, per VLAN) the programs keep a row for, with its rate-limit bucket: the
/// least recently seen make room for new ones (a source that comes back gets a new row, with a
/// full bucket).
pub const KERNEL_TESTERS: u32 = reflector_core::limit::LIMITER_SOURCES as u32;

impl GateMaps {
    /// How the testers table's times (the kernel's jiffies) are read.
    pub fn jiffy_clock(&self) -> JiffyClock {
        self.clock
    }

    /// Creates the maps, empty (no lists, no limits).
    pub fn create() -> Result<GateMaps, SysError> {
        use bpf::{
            BPF_F_NO_PREALLOC, BPF_MAP_TYPE_ARRAY, BPF_MAP_TYPE_HASH, BPF_MAP_TYPE_LPM_TRIE, SizedMap,
        };
        let entries = reflector_core::access::MAX_ACCESS_ENTRIES as u32 * 2;
        let trie = |key, name| {
            SizedMap::create_with_flags(BPF_MAP_TYPE_LPM_TRIE, key, 4, entries, BPF_F_NO_PREALLOC, name)
        };
        Ok(GateMaps {
            config: SizedMap::create(
                BPF_MAP_TYPE_ARRAY,
                4,
                reflector_bpf::xdp::GATE_CONFIG_LEN,
                1,
                "reflector_gate",
            )?,
            v4: trie(8, "reflector_v4")?,
            v6: trie(20, "reflector_v6")?,
            macs: SizedMap::create(BPF_MAP_TYPE_HASH, 8, 4, entries, "reflector_macs")?,
            total: SizedMap::create(BPF_MAP_TYPE_ARRAY, 4, 8, 1, "reflector_total")?,
            testers: SizedMap::create(
                bpf::BPF_MAP_TYPE_LRU_HASH,
                reflector_bpf::xdp::TESTER_KEY_LEN,
                reflector_bpf::xdp::TESTER_VALUE_LEN,
                KERNEL_TESTERS,
                "reflector_testers",
            )?,
            testers_cpu: SizedMap::create(
                bpf::BPF_MAP_TYPE_PERCPU_ARRAY,
                4,
                reflector_bpf::xdp::TESTER_ROW_LEN,
                reflector_bpf::xdp::TESTER_SLOTS,
                "reflector_cputst",
            )?,
            clock: JiffyClock::measure()?,
        })
    }

    /// The maps as the program generator names them.
    pub fn fds(&self) -> reflector_bpf::xdp::GateMaps {
        reflector_bpf::xdp::GateMaps {
            config_fd: self.config.as_raw_fd(),
            v4_fd: self.v4.as_raw_fd(),
            v6_fd: self.v6.as_raw_fd(),
            macs_fd: self.macs.as_raw_fd(),
            total_fd: self.total.as_raw_fd(),
            testers_fd: self.testers.as_raw_fd(),
            testers_cpu_fd: self.testers_cpu.as_raw_fd(),
        }
    }

    /// Makes the maps hold `filter`'s lists and limits, so that no frame meets a state that is
    /// neither the old one nor the new one in a way that drops a tester the new lists answer:
    /// the new entries are written first, then the flags and limits, then entries no longer
    /// listed are removed. The buckets are kept (a changed limit applies from the next packet).
    /// The testers table is always kept.
    pub fn sync(&self, filter: &Filter) -> Result<(), SysError> {
        use reflector_bpf::xdp::{
            GATE_ALLOW, GATE_LISTS, GATE_MACS, GATE_SOURCE_LIMIT, GATE_TESTERS, GATE_TOTAL_LIMIT, GATE_V4,
            GATE_V6,
        };
        use reflector_core::access::Source;
        let mut wanted: [Vec<Vec<u8>>; 3] = Default::default();
        for (source, verdict) in filter.access_entries() {
            let value = (*verdict as u32).to_ne_bytes();
            let (map, key, index) = match source {
                Source::Net(p) => {
                    let mut key = (p.len() as u32).to_ne_bytes().to_vec();
                    match p.addr() {
                        std::net::IpAddr::V4(a) => {
                            key.extend(a.octets());
                            (&self.v4, key, 0)
                        }
                        std::net::IpAddr::V6(a) => {
                            key.extend(a.octets());
                            (&self.v6, key, 1)
                        }
                    }
                }
                Source::Mac(m) => {
                    let mut key = m.0.to_vec();
                    key.extend([0, 0]);
                    (&self.macs, key, 2)
                }
            };
            map.update(&key, &value)?;
            wanted[index].push(key);
        }
        let mut flags = GATE_TESTERS;
        if !filter.access_entries().is_empty() {
            flags |= GATE_LISTS;
        }
        for (keys, flag) in wanted.iter().zip([GATE_V4, GATE_V6, GATE_MACS]) {
            if !keys.is_empty() {
                flags |= flag;
            }
        }
        if filter.has_allow_list() {
            flags |= GATE_ALLOW;
        }
        let mut config = vec![0u8; reflector_bpf::xdp::GATE_CONFIG_LEN as usize];
        for (at, flag, rate) in
            [(8, GATE_SOURCE_LIMIT, filter.source_limit()), (24, GATE_TOTAL_LIMIT, filter.total_limit())]
        {
            if let Some(rate) = rate {
                flags |= flag;
                config[at..at + 8].copy_from_slice(&rate.interval_ns().to_ne_bytes());
                config[at + 8..at + 16].copy_from_slice(&rate.tolerance_ns().to_ne_bytes());
            }
        }
        config[..4].copy_from_slice(&flags.to_ne_bytes());
        self.config.update(&0u32.to_ne_bytes(), &config)?;
        for (map, wanted) in [&self.v4, &self.v6, &self.macs].into_iter().zip(&wanted) {
            for key in map.keys()? {
                if !wanted.contains(&key) {
                    match map.delete(&key) {
                        Err(e) if e.errno() != Some(libc::ENOENT) => return Err(e),
                        _ => {}
                    }
                }
            }
        }
        Ok(())
    }

    /// The testers table, its times in UTC: the rows of the shared table and of each CPU's, a
    /// source in as many rows as it was counted in (the reader adds them up:
    /// [`reflector_core::testers::Tester::merge`]).
    pub fn testers(&self) -> Result<Vec<reflector_core::testers::Tester>, SysError> {
        use reflector_bpf::xdp::{TESTER_KEY_LEN, TESTER_ROW_VALUE};
        use reflector_core::testers::Tester;
        // The program's times are jiffies: CLOCK_MONOTONIC through the clock measured at the
        // start, and UTC now less their age.
        let (mono, utc) = (reflector_sys::clock::monotonic_ns(), crate::worker::utc_now_ns());
        let to_utc =
            |jiffies: u64| utc.saturating_sub(mono.saturating_sub(self.clock.monotonic_ns(jiffies))).max(1);
        let word = |v: &[u8], at: usize| u64::from_ne_bytes(v[at..at + 8].try_into().expect("8 bytes"));
        let row = |key: &[u8], v: &[u8]| {
            let mut t = Tester {
                ip: key[..16].try_into().expect("16 bytes"),
                vlan: u16::from_ne_bytes([key[16], key[17]]),
                mac: reflector_core::MacAddr(v[40..46].try_into().expect("6 bytes")),
                packets: word(v, 0),
                bytes: word(v, 8),
                limited: word(v, 16),
                first_seen_ns: to_utc(word(v, 24)),
                last_seen_ns: to_utc(word(v, 32)),
                ..Tester::default()
            };
            let signatures = u32::from_ne_bytes(v[48..52].try_into().expect("4 bytes"));
            for (i, s) in reflector_core::Signature::ALL.iter().enumerate() {
                if signatures & (1 << i) != 0 {
                    t.families.insert(s.family());
                }
            }
            t
        };
        let mut rows: Vec<Tester> = self.testers.entries()?.iter().map(|(key, v)| row(key, v)).collect();
        let (key_len, value) = (TESTER_KEY_LEN as usize, TESTER_ROW_VALUE as usize);
        for (_, cpus) in self.testers_cpu.percpu_entries()? {
            rows.extend(cpus.iter().map(|r| row(&r[..key_len], &r[value..])));
        }
        // A row never used (a CPU's), or made for a packet the lists let through but no packet
        // counted yet (a racing CPU's): not a tester until one is.
        rows.retain(|t| t.packets + t.limited > 0);
        Ok(rows)
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
    /// Not allowed to create maps or programs: what is missing, and how to grant it.
    #[error("{0}")]
    Permission(String),
    /// A step failed.
    #[error(transparent)]
    Sys(#[from] SysError),
}

impl Attachment {
    /// Builds the program for `filter` with `ending`, loads it, and attaches it to `ifindex`
    /// in native mode (generic mode where the driver has no XDP). With `replace`, a program
    /// another tool attached through netlink is removed first. With `capture`, the program can
    /// sample frames for a capture, at most that many a second ([`KernelCapture`]; it samples
    /// none until asked).
    pub fn attach(
        filter: &Filter,
        ifindex: u32,
        iface: &str,
        ending: Ending,
        replace: bool,
        capture: Option<u32>,
    ) -> Result<Attachment, AttachError> {
        let denied = |e: SysError| {
            if e.errno() == Some(libc::EPERM) {
                AttachError::Permission(reflector_sys::privilege::refused(
                    "setting up the XDP program",
                    reflector_sys::privilege::XDP_PROGRAM,
                ))
            } else {
                AttachError::Sys(e)
            }
        };
        let (map, counters) = match ending {
            Ending::Redirect { queues } => (
                Some(
                    bpf::map_create(bpf::BPF_MAP_TYPE_XSKMAP, 4, queues.max(1), "reflector_xsks")
                        .map_err(denied)?,
                ),
                reject_counters().map_err(denied)?,
            ),
            Ending::Reflect => (None, reflect_counters().map_err(denied)?),
        };
        let stamp = match ending {
            Ending::Reflect => Some(StampMaps::create().map_err(denied)?),
            Ending::Redirect { .. } => None,
        };
        if let Some(s) = &stamp {
            s.refresh_clock()?;
        }
        let gate = GateMaps::create().map_err(denied)?;
        gate.sync(filter)?;
        let kinds = match ending {
            Ending::Reflect => reflector_bpf::xdp::CAPTURE_REFLECTED | reflector_bpf::xdp::CAPTURE_REJECTED,
            Ending::Redirect { .. } => reflector_bpf::xdp::CAPTURE_REJECTED,
        };
        let capture = capture.map(|cap| KernelCapture::create(kinds, cap)).transpose().map_err(denied)?;
        let generated_from = filter.without_gate();
        let insns =
            program(&generated_from, map.as_ref(), &counters, stamp.as_ref(), &gate, capture.as_ref())?;
        let prog = load_program(&insns, "reflector")?;
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
            stamp,
            gate,
            capture,
            generated_from: std::sync::Mutex::new(generated_from),
            ending,
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

    /// Counters of a reflecting program, one per possible CPU (see [`read_reflect_counters`]);
    /// a redirecting program counts only its rejects.
    pub fn counters_per_cpu(&self) -> Result<Vec<reflector_core::Counters>, SysError> {
        match self.ending {
            Ending::Reflect => read_reflect_counters_per_cpu(&self.counters),
            Ending::Redirect { .. } => {
                let mut c = reflector_core::Counters { rejected: self.rejected()?, ..Default::default() };
                c.rx_packets = c.rejected_packets();
                Ok(vec![c])
            }
        }
    }

    /// Brings the attachment in line with `filter`: its lists and limits go into the maps
    /// ([`GateMaps::sync`]); when anything else changed, the program is replaced with one for
    /// `filter` (same sockets, same counters, same maps), atomically: every frame meets either
    /// the old program or the new one. Returns whether the program was replaced.
    pub fn update(&self, filter: &Filter) -> Result<bool, AttachError> {
        self.gate.sync(filter)?;
        let generated_from = filter.without_gate();
        let mut current = self.generated_from.lock().expect("filter lock");
        if *current == generated_from {
            return Ok(false);
        }
        let insns = program(
            &generated_from,
            self.map.as_ref(),
            &self.counters,
            self.stamp.as_ref(),
            &self.gate,
            self.capture.as_ref(),
        )?;
        let prog = load_program(&insns, "reflector")?;
        bpf::link_update(&self.link, &prog)?;
        *self.prog.lock().expect("program lock") = prog;
        *current = generated_from;
        Ok(true)
    }

    /// The maps of the lists and limits.
    pub fn gate(&self) -> &GateMaps {
        &self.gate
    }

    /// The capture maps, when the program can sample frames.
    pub fn capture(&self) -> Option<&KernelCapture> {
        self.capture.as_ref()
    }

    /// Brings the clock state a reflecting program answers STAMP with up to date (TAI − UTC and
    /// the error estimate, as the kernel has them now). Nothing to do for a redirecting one.
    pub fn refresh_clock(&self) -> Result<(), SysError> {
        self.stamp.as_ref().map_or(Ok(()), StampMaps::refresh_clock)
    }

    /// Puts socket `xsk_fd` in the XSKMAP slot of `queue` (a redirecting program's).
    pub fn register(&self, queue: u32, xsk_fd: i32) -> Result<(), SysError> {
        let map = self
            .map
            .as_ref()
            .ok_or(SysError { call: "XSKMAP", err: std::io::Error::from_raw_os_error(libc::EINVAL) })?;
        bpf::map_update(map, queue, xsk_fd as u32)
    }
}

/// The program for `filter`: redirecting to the sockets of `xsks`, or, without one, reflecting
/// (answering STAMP with `stamp`); lists and limits from `gate`.
fn program(
    filter: &Filter,
    xsks: Option<&OwnedFd>,
    counters: &OwnedFd,
    stamp: Option<&StampMaps>,
    gate: &GateMaps,
    capture: Option<&KernelCapture>,
) -> Result<Vec<reflector_bpf::ebpf::Insn>, AttachError> {
    let on_hit = match xsks {
        Some(map) => reflector_bpf::xdp::OnHit::Redirect {
            xsk_map_fd: map.as_raw_fd(),
            receive_time: takes_xdp_metadata(),
        },
        None => reflector_bpf::xdp::OnHit::Reflect { stamp: stamp.map(StampMaps::fds) },
    };
    let capture = capture.map(KernelCapture::fds);
    let insns =
        reflector_bpf::xdp::program(filter, on_hit, Some(counters.as_raw_fd()), Some(gate.fds()), capture)
            .ok_or(AttachError::Assemble)?;
    Ok(as_this_process_loads(insns))
}

/// Whether this kernel's verifier lets an XDP program call `bpf_xdp_adjust_meta` (asked once,
/// with a program of four instructions). Some do not (6.18.44 refuses it: "program of this type
/// cannot use helper"); the redirecting program then leaves a STAMP request's receive time to
/// the worker's clock.
pub fn takes_xdp_metadata() -> bool {
    static ANSWER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ANSWER.get_or_init(|| {
        use reflector_bpf::ebpf::*;
        let mut a = Asm::default();
        a.mov_imm(R2, -(reflector_bpf::xdp::STAMP_META_LEN as i32));
        a.call(reflector_bpf::xdp::BPF_FUNC_XDP_ADJUST_META);
        a.mov_imm(R0, reflector_bpf::xdp::XDP_PASS);
        a.exit();
        a.finish().is_some_and(|insns| load_program(&insns, "reflector_meta").is_ok())
    })
}

/// `insns` as this process should load them: without CAP_PERFMON (a service with capabilities
/// only) the verifier hardens the program against Spectre, and the prologue of
/// `reflector_bpf::xdp::mark_stack_written` spares it most of the barriers that costs; with it,
/// the prologue's helper call would only cost.
pub fn as_this_process_loads(insns: Vec<reflector_bpf::ebpf::Insn>) -> Vec<reflector_bpf::ebpf::Insn> {
    use reflector_sys::privilege::{Capability, missing};
    if missing(&[Capability::CAP_PERFMON]).is_empty() {
        insns
    } else {
        reflector_bpf::xdp::mark_stack_written(insns)
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

/// The counters and the update of an attached program, which stays attached as long as either
/// is alive (the run's), and is detached when the last goes (it would go with the process
/// anyway). `tx_errors_of`: the interface whose driver counts the reflections it failed to
/// send (xdp-tx).
fn kernel_program(attachment: Attachment, tx_errors_of: Option<String>) -> KernelProgram {
    let attachment = std::sync::Arc::new(attachment);
    let (counted, updated, listed) = (attachment.clone(), attachment.clone(), attachment.clone());
    // Reflections the driver failed to send after XDP_TX (a veth whose peer runs no XDP
    // program drops them all): moved from reflected to TX errors, on the CPU that reflected
    // most (the driver does not say which; their bytes stay counted as reflected).
    let at_start = tx_errors_of.as_deref().map(|i| driver_tx_errors(i).unwrap_or(0));
    let counters: KernelCounters = std::sync::Arc::new(move || {
        // The clock state the program answers STAMP with, kept current as the control loop
        // reads the counters (every stats interval); a failure leaves the last one in force.
        let _ = counted.refresh_clock();
        let mut cpus = counted.counters_per_cpu().ok()?;
        if let (Some(iface), Some(base)) = (&tx_errors_of, at_start) {
            let failed = driver_tx_errors(iface).unwrap_or(base).saturating_sub(base);
            if let Some(cpu) = cpus.iter_mut().max_by_key(|c| c.reflected_packets) {
                cpu.record_tx_errors(failed, 0);
            }
        }
        Some(cpus)
    });
    let update = Box::new(move |f: &Filter| -> anyhow::Result<()> {
        updated.update(f).map(|_replaced| ()).map_err(Into::into)
    });
    let testers: KernelTesters = std::sync::Arc::new(move || listed.gate().testers().ok());
    let capture = attachment.capture().is_some().then(|| -> KernelPump {
        std::sync::Arc::new(move |tap: &crate::tap::Tap| {
            attachment.capture().map_or(Ok(()), |c| c.pump(tap).map_err(Into::into))
        })
    });
    KernelProgram { counters, update, testers, capture }
}

/// The driver's count of frames it failed to send after `XDP_TX` (the statistics whose names
/// say so: `rx_queue_N_xdp_tx_errors` on a veth), summed over its queues.
fn driver_tx_errors(iface: &str) -> Option<u64> {
    let stats = reflector_sys::iface::driver_stats(iface).ok()?;
    Some(stats.stats.iter().filter(|(name, _)| name.contains("xdp_tx_err")).map(|(_, v)| v).sum())
}

/// The program of the default filter attached to `iface` with `ending` as `run` attaches it
/// (no `--replace`), and detached again: its size and mode, or the verdict that it does not
/// attach.
fn try_attach(iface: Iface<'_>, ending: Ending) -> Result<String, Verdict> {
    let filter = reflector_core::Filter::new(&reflector_core::FilterConfig::new(iface.info.mac))
        .map_err(|e| Verdict { runs: false, why: e.to_string() })?;
    let attachment = Attachment::attach(&filter, iface.info.index, iface.name, ending, false, None)
        .map_err(|e| Verdict { runs: false, why: format!("{e:#}") })?;
    Ok(format!("{} instructions, {} XDP", attachment.instructions, attachment.mode.name()))
}

/// The XDP program attached to the interface `index`, if any: its id and name (when it can be
/// read).
pub fn attached_program(index: u32) -> Option<(u32, Option<String>)> {
    let id = netlink::attached_prog_id(index).ok().flatten()?;
    Some((id, bpf::prog_name(id).ok()))
}

/// What is known of the XDP program on a veth's peer.
#[derive(Debug)]
pub enum PeerXdp {
    /// The interface is no veth.
    NotVeth,
    /// A veth whose peer is not named (IFLA_LINK).
    NotFound,
    /// The peer's program (`None`: none), looked up in the peer's namespace.
    Looked(Result<Option<u32>, SysError>),
}

/// The XDP program on the peer of the veth `name` (index `index`).
pub fn veth_peer_xdp(name: &str, index: u32) -> PeerXdp {
    if !reflector_sys::iface::driver_stats(name).is_ok_and(|d| d.driver == "veth") {
        return PeerXdp::NotVeth;
    }
    match netlink::link_peer(index).ok().flatten() {
        Some((peer, netns)) => PeerXdp::Looked(netlink::attached_prog_id_in(peer, netns)),
        None => PeerXdp::NotFound,
    }
}
