//! What the programs share with userspace: the XDP actions, what a program does with a test
//! packet ([`OnHit`]), and the maps it reads and writes with their layouts and flags.

use reflector_core::{Reject, Signature};

/// `XDP_PASS`: on to the kernel stack.
pub const XDP_PASS: i32 = 2;

/// `XDP_TX`: what the test variant returns for a test packet (a distinct action).
pub const XDP_TX: i32 = 3;

/// What the program does with a test packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnHit {
    /// Redirect to the socket in the XSKMAP with this fd, at the frame's receive queue.
    Redirect {
        /// The XSKMAP's file descriptor.
        xsk_map_fd: i32,
        /// A STAMP request's receive time goes in front of it as XDP metadata
        /// (`bpf_xdp_adjust_meta`, [`STAMP_META_LEN`] bytes); without, the worker reads its own
        /// clock (for kernels whose verifier refuses the helper).
        receive_time: bool,
    },
    /// Return [`XDP_TX`] with the frame untouched (for checking verdicts with
    /// `BPF_PROG_TEST_RUN`).
    ReturnTx,
    /// Reflect the frame in place as the filter's mode says, as the core does, and return
    /// [`XDP_TX`]: the driver sends it back out of the interface it came in on. A STAMP request
    /// is answered in full with the maps in `stamp` (a filter with STAMP on needs them).
    Reflect {
        /// The maps of the STAMP answer.
        stamp: Option<StampMaps>,
    },
}

/// The maps the reflecting program answers STAMP requests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StampMaps {
    /// An array of one [`STAMP_CLOCK_LEN`]-byte entry that userspace keeps current: TAI − UTC
    /// in nanoseconds (`u64`), then the clock's error estimate (its 16 bits in a `u64`), both
    /// native-endian.
    pub clock_fd: i32,
    /// An LRU hash of the sessions of stateful mode: [`SESSION_KEY_LEN`]-byte keys (both
    /// addresses, an IPv4 one in the first 4 of its 16 bytes, then the ports as on the wire, the
    /// SSID, 2 zero bytes), [`SESSION_VALUE_LEN`]-byte values (the next sequence number as a
    /// `u32`, 4 zero bytes, when last seen as CLOCK_TAI nanoseconds).
    pub sessions_fd: i32,
}

/// The maps the allow and deny lists and the rate limits are kept in (see [`GATE_CONFIG_LEN`]
/// and the `GATE_*` flags). The program is the same whatever they hold: userspace changes
/// lists and limits by writing the maps, without loading another program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateMaps {
    /// An array of one [`GATE_CONFIG_LEN`]-byte entry: the `GATE_*` flags (`u32`), 4 zero
    /// bytes, then the per-source limit's interval and tolerance and the total limit's (`u64`
    /// nanoseconds each, as `reflector_core::limit::Rate` has them), all native-endian.
    pub config_fd: i32,
    /// An LPM trie of IPv4 prefixes: 8-byte keys (the prefix length as a native-endian `u32`,
    /// the address as on the wire), 4-byte values (a `reflector_core::access::Verdict` as a
    /// native-endian `u32`).
    pub v4_fd: i32,
    /// The same for IPv6: 20-byte keys.
    pub v6_fd: i32,
    /// A hash of MAC addresses: 8-byte keys (the address, 2 zero bytes), values as the tries'.
    pub macs_fd: i32,
    /// An array of one 8-byte entry: the total limit's bucket time.
    pub total_fd: i32,
    /// An LRU hash of the testers, one row per source and VLAN: [`TESTER_KEY_LEN`]-byte keys
    /// (the source address, IPv4 as `::ffff:a.b.c.d`; the outer VLAN ID as a native-endian
    /// `u16`; 2 zero bytes), [`TESTER_VALUE_LEN`]-byte values of native-endian fields: packets
    /// answered (`u64`), their bytes (`u64`), packets limited (`u64`), first and last seen
    /// (`u64`, the kernel's jiffies: `bpf_jiffies64`, which [`super::jiffies_sampler`] relates to
    /// CLOCK_MONOTONIC), the source MAC of the last packet (6 bytes, 2 zero), the signatures seen (`u32`,
    /// bit `i` for `Signature::ALL[i]`), 4 zero bytes, the per-source limit's bucket time
    /// (`u64`, `bpf_ktime_get_ns`).
    pub testers_fd: i32,
    /// The testers on each CPU: a per-CPU array of [`TESTER_SLOTS`] rows of
    /// [`TESTER_ROW_LEN`] bytes, the key as `testers_fd`'s (then 4 zero bytes) and from
    /// [`TESTER_ROW_VALUE`] a value laid out as its (the bucket time unused). A source's row is
    /// the one its key hashes to; the program writes only its own CPU's rows, with plain
    /// stores (no atomics, no helper call: the verifier inlines the lookup). Where the row holds
    /// another source, and whenever a per-source limit is set (its bucket must be the same on
    /// every CPU), the packet is counted in `testers_fd` instead. Userspace adds up the rows of a
    /// source over the CPUs and both maps.
    pub testers_cpu_fd: i32,
}

/// Rows per CPU of [`GateMaps::testers_cpu_fd`] (a power of two).
pub const TESTER_SLOTS: u32 = 1024;

/// The multiplier of the testers' row hash (2^32 / the golden ratio, odd).
pub(super) const TESTER_HASH: u32 = 0x9e37_79b1;

/// The row of [`GateMaps::testers_cpu_fd`] the programs keep the source with `key` (as
/// [`GateMaps::testers_fd`] has it) in: the key's first two 8-byte words and its last 4 bytes
/// (native-endian) XORed, the upper half folded onto the lower, times 0x9e3779b1 (2^32 over the golden ratio), and
/// the top bits of the lower 32 of that.
pub fn tester_slot(key: &[u8; TESTER_KEY_LEN as usize]) -> u32 {
    let word = |at: usize| u64::from_ne_bytes(key[at..at + 8].try_into().expect("8 bytes"));
    let mut h = word(0) ^ word(8) ^ u32::from_ne_bytes(key[16..20].try_into().expect("4 bytes")) as u64;
    h ^= h >> 32;
    let h = (h as u32).wrapping_mul(TESTER_HASH);
    h >> (32 - TESTER_SLOTS.trailing_zeros())
}

/// Where a row of [`GateMaps::testers_cpu_fd`] has its value (after the key and 4 zero bytes).
pub const TESTER_ROW_VALUE: u32 = 24;

/// The value size of [`GateMaps::testers_cpu_fd`].
pub const TESTER_ROW_LEN: u32 = TESTER_ROW_VALUE + TESTER_VALUE_LEN;

/// The key size of [`GateMaps::testers_fd`].
pub const TESTER_KEY_LEN: u32 = 20;

/// The value size of [`GateMaps::testers_fd`].
pub const TESTER_VALUE_LEN: u32 = 64;

/// Flag of [`GateMaps::config_fd`]: record the sources of test packets in the testers table.
pub const GATE_TESTERS: u32 = 16;

/// Flag: MACs are listed (look the source MAC up).
pub const GATE_MACS: u32 = 32;

/// Flag: IPv4 prefixes are listed.
pub const GATE_V4: u32 = 64;

/// Flag: IPv6 prefixes are listed.
pub const GATE_V6: u32 = 128;

/// The value size of [`GateMaps::config_fd`].
pub const GATE_CONFIG_LEN: u32 = 40;

/// Flag of [`GateMaps::config_fd`]: the lists have an entry (look the source up).
pub const GATE_LISTS: u32 = 1;

/// Flag: the allow list has an entry (a source no entry names is not answered).
pub const GATE_ALLOW: u32 = 2;

/// Flag: a per-source limit is set.
pub const GATE_SOURCE_LIMIT: u32 = 4;

/// Flag: a total limit is set.
pub const GATE_TOTAL_LIMIT: u32 = 8;

/// The maps a program samples frames into for a capture: copies of judged frames go into a
/// ring buffer while the control entry's flags ask for their kind, at most at the rate its
/// bucket allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaptureMaps {
    /// An array of one [`CAPTURE_CONTROL_LEN`]-byte entry of native-endian fields: the kinds
    /// to sample (`u32`: [`CAPTURE_REFLECTED`], [`CAPTURE_REJECTED`]), 4 zero bytes, the cap's
    /// interval and tolerance (`u64` ns, a GCRA bucket as the rate limits have), its bucket
    /// time (`u64`, `bpf_ktime_get_ns`), frames over the cap (`u64`) and frames the ring had no
    /// room for (`u64`), both added to atomically.
    pub control_fd: i32,
    /// A `BPF_MAP_TYPE_RINGBUF` of [`CAPTURE_RECORD_LEN`]-byte records: the verdict (`u32`: the
    /// kind in the top 16 bits, the signature's or the reason's index in the low 16), the
    /// frame's length (`u32`), the time (`u64`, CLOCK_TAI ns), then the frame's first bytes (at
    /// most [`CAPTURE_SNAP`]).
    pub ring_fd: i32,
}

/// The value size of [`CaptureMaps::control_fd`].
pub const CAPTURE_CONTROL_LEN: u32 = 48;

/// Sample reflections (as sent: a reflecting program's).
pub const CAPTURE_REFLECTED: u32 = 1;

/// Sample rejected frames (as received).
pub const CAPTURE_REJECTED: u32 = 2;

/// Bytes of a frame a sample keeps.
pub const CAPTURE_SNAP: u32 = 2048;

/// Bytes of a sample record: 16 of header, then the frame's.
pub const CAPTURE_RECORD_LEN: u32 = 16 + CAPTURE_SNAP;

/// The value size of [`StampMaps::clock_fd`].
pub const STAMP_CLOCK_LEN: u32 = 16;

/// The key size of [`StampMaps::sessions_fd`].
pub const SESSION_KEY_LEN: u32 = 40;

/// The value size of [`StampMaps::sessions_fd`].
pub const SESSION_VALUE_LEN: u32 = 16;

/// The counters map of the reflecting program ([`OnHit::Reflect`]): a per-CPU array of `u64`,
/// the rejects per reason first (indexed as [`Reject::ALL`], as in the other programs), then
/// the reflected frames per signature (from [`HITS`], indexed as [`Signature::ALL`]), then
/// their bytes ([`REFLECTED_BYTES`]).
pub const HITS: u32 = Reject::COUNT as u32;

/// Where the reflecting program counts the bytes it reflected.
pub const REFLECTED_BYTES: u32 = HITS + Signature::COUNT as u32;

/// Where the reflecting program counts STAMP requests it could not answer (and passed on to
/// the stack): TX errors, for userspace.
pub const UNANSWERED: u32 = REFLECTED_BYTES + 1;

/// Where the reflecting program counts STAMP requests shorter than the reflector packet that it
/// answered with it (the frame grown).
pub const SHORT_ANSWERED: u32 = UNANSWERED + 1;

/// Entries of the reflecting program's counters map.
pub const REFLECT_COUNTERS: u32 = SHORT_ANSWERED + 1;

/// `BPF_FUNC_xdp_adjust_meta`.
pub const BPF_FUNC_XDP_ADJUST_META: i32 = 54;

/// The bytes of XDP metadata the redirecting program puts in front of a STAMP request: its
/// receive time, `bpf_ktime_get_tai_ns()` as a native-endian `u64` (CLOCK_TAI, nanoseconds).
pub const STAMP_META_LEN: usize = 8;

/// The longest UDP datagram (IPv6) whose checksum the reflecting program computes whole, for a
/// request whose checksum was left for offload (a sender on the same host): the largest a
/// 1500-byte MTU carries. It is read in 64-byte pieces, one block of code each. A
/// longer one is not answered (counted with the TX errors: [`UNANSWERED`]).
pub const MAX_SUM_BYTES: i32 = 1460;
