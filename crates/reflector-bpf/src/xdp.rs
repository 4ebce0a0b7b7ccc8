//! The XDP program, generated for one configuration.
//!
//! It applies the packet rules of the core (`docs/PACKET-RULES.md`) to every frame in the
//! driver and hands exactly the frames the core would reflect to the AF_XDP socket of their
//! receive queue (`bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)`); everything else, and
//! every frame of a queue without a socket, goes on to the kernel stack. The configuration
//! (our MAC, port, OUI, signatures) is baked in as immediates.
//!
//! The checks mirror `classify` one for one and in the same order, so a rejected frame is
//! counted under the same reason the core would give (in a per-CPU array that userspace adds
//! to its counters). A test runs the corpus and random frames through the kernel
//! (`BPF_PROG_TEST_RUN`) and compares every verdict and every reason with the core's.
//!
//! The generator follows the same stages as `classify`, one function each: Ethernet, VLAN tags,
//! IPv4 or IPv6, UDP, the signatures and their OUI, the late checks, then the verdict.
//!
//! Registers: r6 = the context, r7 = data (the Ethernet header), r8 = data_end, r9 = cursor,
//! r4 = the IP header, r5 = the bytes from the cursor to the end of the IP packet (a number),
//! r0-r3 scratch. Every load is preceded by a check against data_end that the verifier can
//! follow; comparisons with r5 are the rules' own length checks.
//!
//! The programs load with CAP_BPF and CAP_NET_ADMIN alone: without CAP_PERFMON the verifier's
//! Spectre rules let a packet pointer move only by constants (never by a register), refuse
//! subtracting pointers and reading stack never written, and follow mispredicted branches too.
//! So lengths are compared as numbers (the frame's from `bpf_xdp_get_buff_len`); the tags are
//! walked with constant steps, each number of them a path of its own for the verifier; IPv6
//! extension headers are read with `bpf_xdp_load_bytes`; and a UDP header behind IPv4 options or
//! extension headers is brought to a constant offset by moving the frame's start on
//! (`bpf_xdp_adjust_head`), the headers before it kept in copies on the stack until the start
//! is put back (`Gen::shift`, `Gen::restore`).

use reflector_core::access::Verdict;
use reflector_core::wire::{
    ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_UDP, IPV4_MIN_HEADER_LEN, IPV6_EXT_DEST_OPTS,
    IPV6_EXT_FRAGMENT, IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, IPV6_HEADER_LEN, MAX_IPV6_EXT_HEADERS,
    MAX_VLAN_TAGS, UDP_HEADER_LEN, VLAN_TAG_LEN, VLAN_TPIDS,
};
use reflector_core::{Family, Filter, Reject, Signature, stamp};

use crate::ebpf::*;

/// `XDP_PASS`: on to the kernel stack.
pub const XDP_PASS: i32 = 2;
/// `XDP_TX`: what the test variant returns for a test packet (a distinct action).
pub const XDP_TX: i32 = 3;
/// `BPF_FUNC_redirect_map`.
const BPF_FUNC_REDIRECT_MAP: i32 = 51;

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
    /// (`u64`, CLOCK_MONOTONIC: `bpf_ktime_get_ns`, or its coarse reading when no limit is
    /// set), the source MAC of the last packet (6 bytes, 2 zero), the signatures seen (`u32`,
    /// bit `i` for `Signature::ALL[i]`), 4 zero bytes, the per-source limit's bucket time
    /// (`u64`, `bpf_ktime_get_ns`).
    pub testers_fd: i32,
}

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
const BPF_FUNC_RINGBUF_RESERVE: i32 = 131;
const BPF_FUNC_RINGBUF_SUBMIT: i32 = 132;
const BPF_FUNC_RINGBUF_DISCARD: i32 = 133;
const BPF_FUNC_XDP_LOAD_BYTES: i32 = 189;
/// `BPF_FUNC_ktime_get_ns`.
const BPF_FUNC_KTIME_GET_NS: i32 = 5;
/// `BPF_FUNC_ktime_get_coarse_ns`: CLOCK_MONOTONIC as of the last tick.
const BPF_FUNC_KTIME_GET_COARSE_NS: i32 = 160;
/// `BPF_NOEXIST`: a map update that only creates.
const BPF_NOEXIST: i32 = 1;

/// The value size of [`StampMaps::clock_fd`].
pub const STAMP_CLOCK_LEN: u32 = 16;
/// The key size of [`StampMaps::sessions_fd`].
pub const SESSION_KEY_LEN: u32 = 40;
/// The value size of [`StampMaps::sessions_fd`].
pub const SESSION_VALUE_LEN: u32 = 16;

/// `BPF_FUNC_map_lookup_elem`.
const BPF_FUNC_MAP_LOOKUP_ELEM: i32 = 1;
/// `BPF_FUNC_map_update_elem`.
const BPF_FUNC_MAP_UPDATE_ELEM: i32 = 2;
/// `BPF_FUNC_xdp_get_buff_len`.
const BPF_FUNC_XDP_GET_BUFF_LEN: i32 = 188;

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
/// The stack slot where a hit keeps its signature's index for the counters.
const SIGNATURE_SLOT: i16 = -16;

fn le16(bytes: [u8; 2]) -> u32 {
    u16::from_le_bytes(bytes) as u32
}
fn le32(bytes: [u8; 4]) -> u32 {
    u32::from_le_bytes(bytes)
}

/// Emits `if cursor + n > bound goto fail` for one or more bounds.
fn need(a: &mut Asm, base: Reg, n: i32, bounds: &[Reg], fail: Label) {
    a.mov(R2, base);
    a.alu_imm(Alu::Add, R2, n);
    for b in bounds {
        a.jump_reg(Cond::Gt, R2, *b, fail);
    }
}

/// The stack slot where the L3 dispatch keeps the IP version (4 or 6) for the late checks.
const IP_VERSION_SLOT: i16 = -8;
/// The stack slot that says whether the frame is a STAMP request (1) or not (0), for the
/// redirecting program's receive time.
const STAMP_SLOT: i16 = -24;
/// The bytes a short STAMP request's payload grew by to the reflector packet's 41 (0: not
/// grown), a `u64`.
const GROWN_SLOT: i16 = -32;
/// `BPF_FUNC_xdp_adjust_tail`.
const BPF_FUNC_XDP_ADJUST_TAIL: i32 = 65;
/// `BPF_FUNC_xdp_store_bytes`.
const BPF_FUNC_XDP_STORE_BYTES: i32 = 190;
/// Where a short STAMP request's headers and payload are copied while the frame grows at its
/// start (`Gen::grow_short_request`): 112 bytes over the gate's slots, which are done with by
/// then (the longest: two tags, IPv6, UDP and the 41-byte packet, 111 bytes).
const GROW_BUF_SLOT: i16 = TESTER_VALUE_SLOT;
const GROW_BUF_LEN: i16 = 112;
/// What the start moves back by when the end cannot move on: the most a short request grows.
const GROW_AT_HEAD: i32 = (stamp::MIN_LEN - stamp::MIN_REQUEST_LEN) as i32;
/// `BPF_FUNC_xdp_adjust_meta`.
pub const BPF_FUNC_XDP_ADJUST_META: i32 = 54;
/// `BPF_FUNC_ktime_get_tai_ns`.
const BPF_FUNC_KTIME_GET_TAI_NS: i32 = 208;
/// The bytes of XDP metadata the redirecting program puts in front of a STAMP request: its
/// receive time, `bpf_ktime_get_tai_ns()` as a native-endian `u64` (CLOCK_TAI, nanoseconds).
pub const STAMP_META_LEN: usize = 8;
/// Stack slots of the reflecting program's STAMP answer: the IP header pointer, the receive
/// time (TAI), the clock map's key, TAI − UTC, the error estimate, the sequence number (wire
/// order), the payload length, the old payload sum, the pseudo-header sum, the session key (40
/// bytes) and value (16).
const IP_SLOT: i16 = -40;
const T2_SLOT: i16 = -48;
const KEY_SLOT: i16 = -52;
const OFFSET_SLOT: i16 = -64;
const ERROR_SLOT: i16 = -72;
const SEQ_SLOT: i16 = -76;
const PAYLEN_SLOT: i16 = -88;
const OLD_SUM_SLOT: i16 = -96;
const PSEUDO_SLOT: i16 = -104;
const SESSION_KEY_SLOT: i16 = -144;
const SESSION_VALUE_SLOT: i16 = -160;
/// Whether the request's checksum was left for offload (1) or not (0).
const PARTIAL_SLOT: i16 = -164;
/// Stack slots of the gate (lists, limits, testers): the IP header pointer, the flags, whether
/// an allow entry named the source, a map key (20 bytes at most), the limits' intervals and
/// tolerances, the time, the testers table's key and a new row.
const GATE_IP_SLOT: i16 = -176;
const GATE_FLAGS_SLOT: i16 = -180;
const GATE_ALLOWED_SLOT: i16 = -184;
const GATE_KEY_SLOT: i16 = -208;
const GATE_LIMITS_SLOT: i16 = -240;
const GATE_NOW_SLOT: i16 = -248;
const TESTER_KEY_SLOT: i16 = -280;
const TESTER_VALUE_SLOT: i16 = -344;
/// A sample's verdict code and the action to return after it (a `u32` each), the frame's length
/// and the bytes to keep, and a zero key.
const CAPTURE_CODE_SLOT: i16 = -356;
const CAPTURE_ACTION_SLOT: i16 = -360;
const CAPTURE_LEN_SLOT: i16 = -364;
const CAPTURE_CAPLEN_SLOT: i16 = -368;
const CAPTURE_KEY_SLOT: i16 = -372;
/// The frame's length (`bpf_xdp_get_buff_len`, read once the frame is IP), a `u64`.
const FRAME_LEN_SLOT: i16 = -384;
/// Where the IP header starts (14 + 4 per VLAN tag), spilled from a register per path so that
/// the verifier follows it as a constant.
const IP_OFF_SLOT: i16 = -392;
/// How far the frame's start is moved on (`bpf_xdp_adjust_head`) so that its UDP header is
/// where it would be without IPv4 options or IPv6 extension headers; 0 when it is not moved.
const SHIFT_SLOT: i16 = -400;
/// The bytes of IPv4 options or IPv6 extension headers, while the headers are walked.
const SKIP_SLOT: i16 = -408;
/// The bytes from the cursor to the end of the IP packet, across helper calls.
const REST_SLOT: i16 = -416;
/// The first two bytes of an IPv6 extension header (`bpf_xdp_load_bytes`).
const EXT_SLOT: i16 = -424;
/// The IPv4 options' 32-bit words summed (0 without options), while they are in the frame at a
/// known place; the late checks add the fixed header's words to judge the checksum.
const CHECKSUM_SLOT: i16 = -432;
/// Copies of the Ethernet header (and a first tag's TCI) and of the fixed IP header, which the
/// checks read and the reflection writes while the frame's start is moved on. Stack accesses
/// must be aligned: the Ethernet copy starts 2 bytes past a multiple of 8, so that its source
/// MAC (read as a word at 6) is.
const ETH_COPY_SLOT: i16 = -454;
const IP_COPY_SLOT: i16 = -496;
/// `BPF_FUNC_xdp_adjust_head`.
const BPF_FUNC_XDP_ADJUST_HEAD: i32 = 44;
/// `XDP_ABORTED`: what a frame gets whose start cannot be put back (it cannot happen).
const XDP_ABORTED: i32 = 0;
/// The longest UDP datagram (IPv6) whose checksum the reflecting program computes whole, for a
/// request whose checksum was left for offload (a sender on the same host): the largest a
/// 1500-byte MTU carries. It is read in 64-byte pieces, one block of code each. A
/// longer one is not answered (counted with the TX errors: [`UNANSWERED`]).
pub const MAX_SUM_BYTES: i32 = 1460;
/// The piece of a datagram summed at a time (read into the stack with `bpf_xdp_load_bytes`).
const SUM_CHUNK: i32 = 64;
/// Where a piece is read to: the testers table's new row, unused once the gate is passed.
const SUM_CHUNK_SLOT: i16 = TESTER_VALUE_SLOT;
/// The sum so far.
const SUM_SLOT: i16 = -504;

/// The program being generated: the assembler, the filter, and one label per reject reason
/// (`r0 = reason; goto count`, or straight to pass without counters).
struct Gen<'a> {
    a: Asm,
    filter: &'a Filter,
    reasons: Vec<Label>,
    /// Hits are counted per signature (the reflecting program with counters).
    count_hits: bool,
    /// A hit keeps its signature in its stack slot (for the counters, or the testers table).
    signatures: bool,
    /// STAMP requests get their receive time as metadata (the redirecting program, STAMP on).
    stamp_meta: bool,
    /// STAMP requests are answered in full with these maps (the reflecting program, STAMP on).
    stamp_answer: Option<StampMaps>,
    /// The counters map, when there is one.
    counters_fd: Option<i32>,
    /// Frames are sampled for a capture into these maps, by the block at this label.
    capture: Option<(CaptureMaps, Label)>,
}

impl Gen<'_> {
    /// Where a frame rejected for `reason` goes.
    fn r(&self, reason: Reject) -> Label {
        self.reasons[reason as usize]
    }

    /// Emits `if base + n > bound goto fail` for one or more bounds.
    fn need(&mut self, base: Reg, n: usize, bounds: &[Reg], fail: Label) {
        need(&mut self.a, base, n as i32, bounds, fail);
    }

    /// `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index. r6 keeps
    /// the context, for the helpers that take it (and the queue, to redirect). The frame's
    /// start is not moved yet.
    fn context(&mut self) {
        self.a.mov(R6, R1);
        self.a.mov_imm(R0, 0);
        self.a.store(Size::DW, R10, SHIFT_SLOT, R0);
        if self.stamp_meta || self.stamp_answer.is_some() {
            self.a.store(Size::W, R10, STAMP_SLOT, R0);
        }
        self.a.load(Size::W, R7, R1, 0);
        self.a.load(Size::W, R8, R1, 4);
    }

    /// Ethernet: ours, from a unicast, non-zero MAC that is not ours.
    fn ethernet(&mut self) {
        let mac = self.filter.local_mac().0;
        let (mac_lo, mac_hi) = (le32([mac[0], mac[1], mac[2], mac[3]]), le16([mac[4], mac[5]]));
        self.need(R7, ETH_HEADER_LEN, &[R8], self.r(Reject::ShortEthernet));
        let a = &mut self.a;
        a.load(Size::W, R2, R7, 0);
        a.jump32_imm(Cond::Ne, R2, mac_lo, self.reasons[Reject::DstMac as usize]);
        a.load(Size::H, R2, R7, 4);
        a.jump32_imm(Cond::Ne, R2, mac_hi, self.reasons[Reject::DstMac as usize]);
        a.load(Size::B, R2, R7, 6);
        a.jump32_imm(Cond::Set, R2, 1, self.reasons[Reject::SrcMacGroup as usize]);
        a.load(Size::W, R2, R7, 6);
        a.load(Size::H, R3, R7, 10);
        a.mov(R4, R2);
        a.alu_reg(Alu::Or, R4, R3);
        a.jump_imm(Cond::Eq, R4, 0, self.reasons[Reject::SrcMacZero as usize]);
        let not_own = a.label();
        a.jump32_imm(Cond::Ne, R2, mac_lo, not_own);
        a.jump32_imm(Cond::Eq, R3, mac_hi, self.reasons[Reject::SrcMacOwn as usize]);
        a.place(not_own);
    }

    /// Up to [`MAX_VLAN_TAGS`] tags, then the EtherType: on to `v4` or `v6`. Leaves r9 at the
    /// L3 header, and its offset in its slot.
    fn vlan_and_ethertype(&mut self, v4: Label, v6: Label) {
        let tpids = VLAN_TPIDS.map(|t| le16(t.to_be_bytes()));
        let dispatch = self.a.label();
        self.a.mov(R9, R7);
        self.a.alu_imm(Alu::Add, R9, ETH_HEADER_LEN as i32);
        self.a.load(Size::H, R4, R7, 12);
        for tags in 0..MAX_VLAN_TAGS {
            let tag = self.a.label();
            for t in tpids {
                self.a.jump32_imm(Cond::Eq, R4, t, tag);
            }
            self.spill_ip_offset(tags);
            self.a.goto(dispatch);
            self.a.place(tag);
            self.need(R9, VLAN_TAG_LEN, &[R8], self.r(Reject::ShortVlan));
            self.a.load(Size::H, R4, R9, 2);
            self.a.alu_imm(Alu::Add, R9, VLAN_TAG_LEN as i32);
        }
        for t in tpids {
            self.a.jump32_imm(Cond::Eq, R4, t, self.r(Reject::VlanDepth));
        }
        self.spill_ip_offset(MAX_VLAN_TAGS);
        self.a.place(dispatch);
        self.a.jump32_imm(Cond::Eq, R4, le16(ETHERTYPE_IPV4.to_be_bytes()), v4);
        self.a.jump32_imm(Cond::Eq, R4, le16(ETHERTYPE_IPV6.to_be_bytes()), v6);
        self.a.goto(self.r(Reject::NotIp));
    }

    /// Remembers where the IP header starts, behind `tags` VLAN tags (r0 is scratch).
    fn spill_ip_offset(&mut self, tags: usize) {
        self.a.mov_imm(R0, (ETH_HEADER_LEN + tags * VLAN_TAG_LEN) as i32);
        self.a.store(Size::DW, R10, IP_OFF_SLOT, R0);
    }

    /// The frame's length into its slot: the IP checks compare lengths as numbers, since a
    /// packet pointer may only move by constants without CAP_PERFMON. Uses r0-r5.
    fn frame_len(&mut self) {
        self.a.mov(R1, R6);
        self.a.call(BPF_FUNC_XDP_GET_BUFF_LEN);
        self.a.store(Size::DW, R10, FRAME_LEN_SLOT, R0);
    }

    /// r1 = the bytes of the frame from the IP header on (r0 is scratch).
    fn room_from_ip(&mut self) {
        self.a.load(Size::DW, R1, R10, FRAME_LEN_SLOT);
        self.a.load(Size::DW, R0, R10, IP_OFF_SLOT);
        self.a.alu_reg(Alu::Sub, R1, R0);
    }

    /// Remembers the IP version for the late checks.
    fn spill_ip_version(&mut self, version: i32) {
        self.a.mov_imm(R0, version);
        self.a.store(Size::W, R10, IP_VERSION_SLOT, R0);
    }

    /// IPv4 at r9: header, length, fragments, protocol, addresses; the options (for the header
    /// checksum the late checks judge) are summed here, while they are in the frame at a known
    /// place. Leaves r4 at the IP header and r5 = the bytes from the UDP header
    /// to the end of the IP packet; then on to `udp` with r9 at the UDP header, or, with
    /// options, to `shift` with their length in r3.
    fn ipv4(&mut self, udp: Label, shift: Label) {
        self.spill_ip_version(4);
        self.frame_len();
        self.need(R9, IPV4_MIN_HEADER_LEN, &[R8], self.r(Reject::ShortIpv4));
        let a = &mut self.a;
        a.load(Size::B, R2, R9, 0);
        a.mov(R3, R2);
        a.alu_imm(Alu::Rsh, R3, 4);
        a.jump_imm(Cond::Ne, R3, 4, self.reasons[Reject::Ipv4Header as usize]);
        a.alu_imm(Alu::And, R2, 0x0f);
        a.jump_imm(Cond::Lt, R2, 5, self.reasons[Reject::Ipv4Header as usize]);
        a.alu_imm(Alu::Lsh, R2, 2);
        a.mov(R5, R2); // header length, 20..60
        self.room_from_ip();
        let r = |reason: Reject| self.reasons[reason as usize];
        let a = &mut self.a;
        a.jump_reg(Cond::Gt, R5, R1, r(Reject::ShortIpv4));
        a.load(Size::H, R4, R9, 2);
        a.to_be(R4, 16);
        a.alu_imm(Alu::And, R4, 0xffff); // total length
        a.jump_reg(Cond::Lt, R4, R5, r(Reject::Ipv4Length));
        a.jump_reg(Cond::Gt, R4, R1, r(Reject::Ipv4Length));
        a.load(Size::H, R0, R9, 6);
        a.jump32_imm(Cond::Set, R0, le16([0x3f, 0xff]), r(Reject::Ipv4Fragment)); // MF or offset
        a.load(Size::B, R0, R9, 9);
        a.jump32_imm(Cond::Ne, R0, IPPROTO_UDP as u32, r(Reject::NotUdp));
        for (off, reason) in [(12, Reject::SrcIp), (16, Reject::DstIp)] {
            // Not 0.0.0.0/8, 127.0.0.0/8, 224.0.0.0/4 or 255.255.255.255 (in memory order: the
            // first byte lowest).
            a.load(Size::W, R0, R9, off);
            a.jump32_imm(Cond::Eq, R0, u32::MAX, r(reason));
            a.mov(R1, R0);
            a.alu_imm(Alu::And, R1, 0xff);
            a.jump32_imm(Cond::Eq, R1, 0, r(reason));
            a.jump32_imm(Cond::Eq, R1, 127, r(reason));
            a.alu_imm(Alu::And, R1, 0xf0);
            a.jump32_imm(Cond::Eq, R1, 0xe0, r(reason));
        }
        // The options' 32-bit words summed in 64 bits (r3), up to the header length (r5; `need`
        // uses r2). The check against data_end is for the verifier (the header was found
        // inside the frame).
        a.mov_imm(R3, 0);
        let summed = a.label();
        for word in 5..15i16 {
            a.jump_imm(Cond::Le, R5, 4 * word as i32, summed);
            need(a, R9, 4 * word as i32 + 4, &[R8], r(Reject::ShortIpv4));
            a.load(Size::W, R1, R9, 4 * word);
            a.alu_reg(Alu::Add, R3, R1);
        }
        a.place(summed);
        a.store(Size::DW, R10, CHECKSUM_SLOT, R3);
        a.alu_reg(Alu::Sub, R4, R5); // the bytes after the header
        a.mov(R3, R5);
        a.alu_imm(Alu::Add, R3, -(IPV4_MIN_HEADER_LEN as i32)); // the options'
        a.mov(R5, R4);
        a.mov(R4, R9); // r4 = the IP header, for the late checks
        a.jump_imm(Cond::Ne, R3, 0, shift);
        a.alu_imm(Alu::Add, R9, IPV4_MIN_HEADER_LEN as i32);
        a.goto(udp);
    }

    /// IPv6 at r9: header, extension headers, then the addresses (the core's order). The
    /// extension headers are read with `bpf_xdp_load_bytes` at their offsets, their lengths and
    /// the bytes left of the IP packet kept on the stack. Leaves r4 at the IPv6 header and r5 =
    /// the bytes from the UDP header to the end of the IP packet; then on to `udp` with r9 at
    /// the UDP header, or, after extension headers, to `shift` with their length in r3.
    fn ipv6(&mut self, udp_: Label, shift: Label) {
        self.spill_ip_version(6);
        self.frame_len();
        self.need(R9, IPV6_HEADER_LEN, &[R8], self.r(Reject::ShortIpv6));
        let reasons = self.reasons.clone();
        let r = |reason: Reject| reasons[reason as usize];
        let a = &mut self.a;
        a.load(Size::B, R0, R9, 0);
        a.alu_imm(Alu::Rsh, R0, 4);
        a.jump_imm(Cond::Ne, R0, 6, r(Reject::Ipv6Header));
        a.load(Size::H, R3, R9, 4);
        a.to_be(R3, 16);
        a.alu_imm(Alu::And, R3, 0xffff);
        a.jump_imm(Cond::Eq, R3, 0, r(Reject::Ipv6Length)); // jumbogram
        a.store(Size::DW, R10, REST_SLOT, R3);
        self.room_from_ip();
        let a = &mut self.a;
        a.alu_imm(Alu::Add, R1, -(IPV6_HEADER_LEN as i32));
        a.jump_reg(Cond::Gt, R3, R1, r(Reject::Ipv6Length));
        a.mov_imm(R0, 0);
        a.store(Size::DW, R10, SKIP_SLOT, R0);
        a.load(Size::B, R3, R9, 6); // next header
        let v6_addresses = a.label();
        let (udp, hop, routing, dest, fragment) = (
            IPPROTO_UDP as u32,
            IPV6_EXT_HOP_BY_HOP as u32,
            IPV6_EXT_ROUTING as u32,
            IPV6_EXT_DEST_OPTS as u32,
            IPV6_EXT_FRAGMENT as u32,
        );
        for walked in 0..=MAX_IPV6_EXT_HEADERS {
            let ext = a.label();
            let last = walked == MAX_IPV6_EXT_HEADERS;
            a.jump32_imm(Cond::Eq, R3, udp, v6_addresses);
            // Hop-by-hop options only come first.
            a.jump32_imm(Cond::Eq, R3, hop, if walked == 0 { ext } else { r(Reject::Ipv6Ext) });
            let more = if last { r(Reject::Ipv6ExtDepth) } else { ext };
            a.jump32_imm(Cond::Eq, R3, routing, more);
            a.jump32_imm(Cond::Eq, R3, dest, more);
            a.jump32_imm(Cond::Eq, R3, fragment, r(Reject::Ipv6Fragment));
            a.goto(r(Reject::NotUdp));
            a.place(ext);
            if last {
                break;
            }
            // 8 bytes of it inside the IP packet (which is inside the frame); its next header
            // and length from the frame at IP offset + 40 + what was walked.
            a.load(Size::DW, R5, R10, REST_SLOT);
            a.jump_imm(Cond::Lt, R5, 8, r(Reject::Ipv6Ext));
            a.load(Size::DW, R2, R10, IP_OFF_SLOT);
            a.alu_imm(Alu::Add, R2, IPV6_HEADER_LEN as i32);
            a.load(Size::DW, R0, R10, SKIP_SLOT);
            a.alu_reg(Alu::Add, R2, R0);
            a.mov(R1, R6);
            a.mov(R3, R10);
            a.alu_imm(Alu::Add, R3, EXT_SLOT as i32);
            a.mov_imm(R4, 2);
            a.call(BPF_FUNC_XDP_LOAD_BYTES);
            a.jump_imm(Cond::Ne, R0, 0, r(Reject::Ipv6Ext));
            a.load(Size::B, R0, R10, EXT_SLOT + 1);
            a.alu_imm(Alu::Add, R0, 1);
            a.alu_imm(Alu::Lsh, R0, 3); // 8..2048
            a.load(Size::DW, R5, R10, REST_SLOT);
            a.jump_reg(Cond::Gt, R0, R5, r(Reject::Ipv6Ext));
            a.alu_reg(Alu::Sub, R5, R0);
            a.store(Size::DW, R10, REST_SLOT, R5);
            a.load(Size::DW, R1, R10, SKIP_SLOT);
            a.alu_reg(Alu::Add, R1, R0);
            a.store(Size::DW, R10, SKIP_SLOT, R1);
            a.load(Size::B, R3, R10, EXT_SLOT);
        }
        a.place(v6_addresses);
        a.mov(R4, R9);
        for (off, reason) in [(8, Reject::SrcIp), (24, Reject::DstIp)] {
            // Not ff00::/8, ::/96 or ::ffff:0:0/96.
            a.load(Size::B, R0, R4, off);
            a.jump32_imm(Cond::Eq, R0, 0xff, r(reason));
            let usable = a.label();
            a.load(Size::W, R0, R4, off);
            a.load(Size::W, R1, R4, off + 4);
            a.alu_reg(Alu::Or, R0, R1);
            a.load(Size::H, R1, R4, off + 8);
            a.alu_reg(Alu::Or, R0, R1);
            a.jump_imm(Cond::Ne, R0, 0, usable);
            a.load(Size::H, R0, R4, off + 10);
            a.jump32_imm(Cond::Eq, R0, 0, r(reason));
            a.jump32_imm(Cond::Eq, R0, 0xffff, r(reason));
            a.place(usable);
        }
        a.load(Size::DW, R5, R10, REST_SLOT);
        a.load(Size::DW, R3, R10, SKIP_SLOT);
        a.jump_imm(Cond::Ne, R3, 0, shift);
        a.alu_imm(Alu::Add, R9, IPV6_HEADER_LEN as i32);
        a.goto(udp_);
    }

    /// IPv4 options or IPv6 extension headers (r3 bytes of them) put the UDP header at an
    /// offset only known at run time, and a packet pointer may only move by constants without
    /// CAP_PERFMON. So the frame's start is moved on by that much (`bpf_xdp_adjust_head`): the
    /// UDP header is then where it would be without them, and the reflection reaches it at
    /// constant offsets. The Ethernet header (with a first tag's TCI) and the fixed IP header
    /// are copied to the stack first, and r7 and r4 point to the copies until [`Gen::restore`]
    /// puts the start back and writes them into the frame. On entry r4 is the IP header and r5
    /// the bytes from the UDP header to the end of the IP packet, which it keeps; on to `udp`
    /// with r9 at the UDP header.
    fn shift(&mut self, udp: Label) {
        let a = &mut self.a;
        let v6 = a.label();
        a.store(Size::DW, R10, SKIP_SLOT, R3);
        a.store(Size::DW, R10, REST_SLOT, R5);
        // Copied by the helper rather than through registers: what a helper writes the
        // verifier takes as plain bytes, not as spilled registers, so the reflection's stores
        // into the copies need no speculation barrier (which, once needed on one path, follows
        // the store on every path, the frame's own too).
        let copied = a.label();
        let short = self.reasons[Reject::ShortUdp as usize];
        load_bytes(a, None, ETH_COPY_SLOT, ETH_HEADER_LEN as i32 + 2, short);
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Eq, R0, 6, v6);
        load_bytes(a, Some(IP_OFF_SLOT), IP_COPY_SLOT, IPV4_MIN_HEADER_LEN as i32, short);
        // The rest of the copy's room written too (with the frame's first bytes, never read):
        // a verifier that follows mispredicted branches (without CAP_PERFMON) reads it as
        // IPv6's, and stores into it there must find plain bytes.
        load_bytes(a, None, IP_COPY_SLOT + 20, 20, short);
        a.goto(copied);
        a.place(v6);
        load_bytes(a, Some(IP_OFF_SLOT), IP_COPY_SLOT, IPV6_HEADER_LEN as i32, short);
        a.place(copied);
        a.load(Size::DW, R3, R10, SKIP_SLOT);
        a.mov(R1, R6);
        a.mov(R2, R3);
        a.call(BPF_FUNC_XDP_ADJUST_HEAD);
        // (It cannot fail: the UDP header was found inside the frame, so at least 14 bytes are
        // left after the new start.)
        a.jump_imm(Cond::Ne, R0, 0, self.reasons[Reject::ShortUdp as usize]);
        a.load(Size::DW, R0, R10, SKIP_SLOT);
        a.store(Size::DW, R10, SHIFT_SLOT, R0);
        a.mov(R1, R6);
        a.load(Size::W, R7, R1, 0);
        a.load(Size::W, R8, R1, 4);
        at_ip_offset(a, R9, R7, Some((IPV4_MIN_HEADER_LEN as i32, IPV6_HEADER_LEN as i32)));
        a.mov(R7, R10);
        a.alu_imm(Alu::Add, R7, ETH_COPY_SLOT as i32);
        a.mov(R4, R10);
        a.alu_imm(Alu::Add, R4, IP_COPY_SLOT as i32);
        a.load(Size::DW, R5, R10, REST_SLOT);
        a.goto(udp);
    }

    /// UDP at r9 (r5 the bytes from it to the end of the IP packet): header inside the IP
    /// packet, length exactly the IP payload, our port. Leaves r9 at the payload and r5 the
    /// bytes from there. A STAMP request (to the STAMP port, when that family is on) long
    /// enough to be answered goes straight to `hit`: its port decides, not a signature.
    fn udp(&mut self, hit: Label) {
        self.a.jump_imm(Cond::Lt, R5, UDP_HEADER_LEN as i32, self.r(Reject::ShortUdp));
        self.need(R9, UDP_HEADER_LEN, &[R8], self.r(Reject::ShortUdp));
        self.a.load(Size::H, R0, R9, 4);
        self.a.to_be(R0, 16);
        self.a.alu_imm(Alu::And, R0, 0xffff);
        self.a.jump_reg(Cond::Ne, R0, R5, self.r(Reject::UdpLength));
        // IPv6 has no header checksum: the UDP one is mandatory (RFC 8200 §8.1).
        let checked = self.a.label();
        self.a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        self.a.jump_imm(Cond::Ne, R0, 6, checked);
        self.a.load(Size::H, R0, R9, 6);
        self.a.jump_imm(Cond::Eq, R0, 0, self.r(Reject::UdpChecksum));
        self.a.place(checked);
        if let Some(port) = self.filter.stamp_port() {
            let not_stamp = self.a.label();
            self.a.load(Size::H, R0, R9, 2);
            self.a.jump32_imm(Cond::Ne, R0, le16(port.to_be_bytes()), not_stamp);
            let min = UDP_HEADER_LEN + self.filter.stamp_min_payload();
            self.a.jump_imm(Cond::Lt, R5, min as i32, self.r(Reject::StampLength));
            // For the verifier (the IP packet ends inside the frame).
            self.need(R9, min, &[R8], self.r(Reject::StampLength));
            // Where its answer would take a hop (`Filter::stamp_takes_a_hop`), none left is a
            // loop.
            if self.filter.stamp_hops_below() != 0 {
                let enough = self.a.label();
                self.unless_stamp_takes_a_hop(0, enough);
                self.no_hops_left_is_a_loop();
                self.a.place(enough);
            }
            self.a.alu_imm(Alu::Add, R9, UDP_HEADER_LEN as i32);
            if self.signatures {
                self.a.mov_imm(R0, Signature::Stamp as i32);
                self.a.store(Size::W, R10, SIGNATURE_SLOT, R0);
            }
            if self.stamp_meta || self.stamp_answer.is_some() {
                self.a.mov_imm(R0, 1);
                self.a.store(Size::W, R10, STAMP_SLOT, R0);
            }
            if self.stamp_answer.is_some() {
                // The receive time, as early as the request is known to be one (the call
                // clobbers r1-r5: the IP header pointer is kept on the stack).
                self.a.store(Size::DW, R10, IP_SLOT, R4);
                self.a.call(BPF_FUNC_KTIME_GET_TAI_NS);
                self.a.store(Size::DW, R10, T2_SLOT, R0);
                self.a.load(Size::DW, R4, R10, IP_SLOT);
            }
            self.a.goto(hit);
            self.a.place(not_stamp);
        }
        if self.filter.port() != 0 {
            self.a.load(Size::H, R0, R9, 2);
            self.a.jump32_imm(Cond::Ne, R0, le16(self.filter.port().to_be_bytes()), self.r(Reject::DstPort));
        }
        self.a.alu_imm(Alu::Add, R9, UDP_HEADER_LEN as i32);
        self.a.alu_imm(Alu::Add, R5, -(UDP_HEADER_LEN as i32));
    }

    /// 7 signature bytes at r9 + `offset` against `sigs`, as two overlapping words (bytes 0..4
    /// and 3..7) held in r0 and r1; a payload too short for them goes on (to the next family),
    /// a frame too short for the verifier is `no_signature`. Returns each signature's label.
    /// With `one`, every signature goes to that label (a family matched as a whole).
    fn seven_byte_signatures(
        &mut self,
        offset: usize,
        sigs: &[Signature],
        one: Option<Label>,
    ) -> Vec<(Signature, Label)> {
        let no_sig = self.r(Reject::NoSignature);
        let after = self.a.label();
        self.a.jump_imm(Cond::Lt, R5, offset as i32 + 7, after);
        self.need(R9, offset + 7, &[R8], no_sig);
        self.a.load(Size::W, R0, R9, offset as i16);
        self.a.load(Size::W, R1, R9, offset as i16 + 3);
        let mut hits = Vec::new();
        for sig in sigs {
            let bytes = sig.bytes().expect("built-in");
            let (w0, w1) = (
                le32([bytes[0], bytes[1], bytes[2], bytes[3]]),
                le32([bytes[3], bytes[4], bytes[5], bytes[6]]),
            );
            let l = one.unwrap_or_else(|| self.a.label());
            let next = self.a.label();
            self.a.jump32_imm(Cond::Ne, R0, w0, next);
            self.a.jump32_imm(Cond::Eq, R1, w1, l);
            self.a.place(next);
            hits.push((*sig, l));
        }
        self.a.place(after);
        hits
    }

    /// The user's signatures, each compared in words, halves and bytes.
    fn custom_signatures(&mut self) -> Option<Label> {
        let no_sig = self.r(Reject::NoSignature);
        let l = self.a.label();
        for custom in self.filter.custom_signatures() {
            let next = self.a.label();
            let (off, bytes) = (custom.offset() as usize, custom.bytes());
            self.a.jump_imm(Cond::Lt, R5, i32::try_from(off + bytes.len()).ok()?, next);
            self.need(R9, off + bytes.len(), &[R8], no_sig);
            let mut at = 0;
            while at < bytes.len() {
                let rest = &bytes[at..];
                let (size, n, value) = match rest.len() {
                    1 => (Size::B, 1, rest[0] as u32),
                    2 | 3 => (Size::H, 2, le16([rest[0], rest[1]])),
                    _ => (Size::W, 4, le32([rest[0], rest[1], rest[2], rest[3]])),
                };
                self.a.load(size, R0, R9, i16::try_from(off + at).ok()?);
                self.a.jump32_imm(Cond::Ne, R0, value, next);
                at += n;
            }
            self.a.goto(l);
            self.a.place(next);
        }
        Some(l)
    }

    /// The signatures in the core's order (the first match decides the family), then the OUI
    /// requirement of the matching family; a frame that passes goes to `hit`.
    fn signatures_and_oui(&mut self, hit: Label) -> Option<()> {
        let families = self.filter.families();
        let mut hits: Vec<(Signature, Label)> = Vec::new();
        if families.contains(Family::Ito) {
            let ito = [Signature::ProbeOt, Signature::DataOt, Signature::Latency];
            let offset = Signature::ProbeOt.offset().expect("built-in");
            if self.count_hits {
                hits.extend(self.seven_byte_signatures(offset, &ito, None));
            } else {
                // One label for the whole family.
                let l = self.a.label();
                self.seven_byte_signatures(offset, &ito, Some(l));
                hits.push((Signature::ProbeOt, l));
            }
        }
        let head: Vec<Signature> = [Signature::Rfc2544, Signature::Y1564]
            .into_iter()
            .filter(|s| families.contains(s.family()))
            .collect();
        if !head.is_empty() {
            hits.extend(self.seven_byte_signatures(0, &head, None));
        }
        if families.contains(Family::Custom) {
            let l = self.custom_signatures()?;
            hits.push((Signature::Custom, l));
        }
        self.a.goto(self.r(Reject::NoSignature));
        let oui_families = self.filter.oui_families();
        for (signature, label) in hits {
            self.a.place(label);
            if let (true, Some(oui)) = (oui_families.contains(signature.family()), self.filter.oui()) {
                self.a.load(Size::W, R0, R7, 6);
                self.a.alu_imm(Alu::And, R0, 0x00ff_ffff);
                self.a.jump32_imm(Cond::Ne, R0, le32([oui[0], oui[1], oui[2], 0]), self.r(Reject::Oui));
            }
            if self.filter.takes_a_hop() {
                self.no_hops_left_is_a_loop();
            }
            if self.signatures {
                self.a.mov_imm(R0, signature as i32);
                self.a.store(Size::W, R10, SIGNATURE_SLOT, R0);
            }
            self.a.goto(hit);
        }
        Some(())
    }

    /// Goes to `not` when the STAMP request whose UDP header is at r9 + `udp` is answered
    /// without a hop off (`Filter::stamp_takes_a_hop`: by its source port); emits nothing when
    /// every answer takes one (and is not called when none does). Uses r0.
    fn unless_stamp_takes_a_hop(&mut self, udp: i16, not: Label) {
        let below = self.filter.stamp_hops_below();
        if below <= u16::MAX as u32 {
            self.a.load(Size::H, R0, R9, udp);
            self.a.to_be(R0, 16);
            self.a.alu_imm(Alu::And, R0, 0xffff);
            self.a.jump_imm(Cond::Ge, R0, below as i32, not);
        }
    }

    /// Where answers take a hop off (`Filter::takes_a_hop`), a test packet that arrives with none
    /// left (IPv4 TTL or IPv6 hop limit 0) is a loop, as the core judges it just before its late
    /// checks. r4 is the IP header (its fixed part was read by the checks).
    fn no_hops_left_is_a_loop(&mut self) {
        let loop_ = self.r(Reject::Loop);
        load_hops(&mut self.a, R0);
        self.a.jump_imm(Cond::Eq, R0, 0, loop_);
    }

    /// A test packet: redirect it to its queue's socket, reflect it in place and send it back
    /// (`XDP_TX`), or return `XDP_TX` untouched for tests.
    fn on_hit(&mut self, on_hit: OnHit, counters_fd: Option<i32>) {
        match on_hit {
            // A test packet returned untouched: sampled as a reflection would be (for measuring
            // what sampling costs a hit without a frame that changes from run to run).
            OnHit::ReturnTx if self.capture.is_some() => return self.send_back(false),
            OnHit::ReturnTx => {
                self.restore(false);
                self.a.mov_imm(R0, XDP_TX);
            }
            OnHit::Reflect { .. } => {
                if let Some(maps) = self.stamp_answer {
                    let not_stamp = self.a.label();
                    self.a.load(Size::W, R0, R10, STAMP_SLOT);
                    self.a.jump_imm(Cond::Eq, R0, 0, not_stamp);
                    if self.filter.stamp_min_payload() < stamp::MIN_LEN {
                        self.grow_short_request(counters_fd);
                    }
                    self.stamp_answer(maps);
                    // The answer goes to the sender's port whatever the mode (RFC 8762 §4.3),
                    // a hop less where `Filter::stamp_takes_a_hop` says so.
                    self.a.load(Size::DW, R4, R10, IP_SLOT);
                    if self.filter.stamp_hops_below() != 0 {
                        let no_hop = self.a.label();
                        self.unless_stamp_takes_a_hop(-(UDP_HEADER_LEN as i16), no_hop);
                        take_a_hop(&mut self.a);
                        self.a.place(no_hop);
                    }
                    self.reflect(reflector_core::Mode::All, false);
                    if let Some(fd) = counters_fd.filter(|_| self.count_hits) {
                        self.count_hit(fd);
                    }
                    self.send_back(true);
                    self.a.place(not_stamp);
                }
                self.reflect(self.filter.mode(), self.filter.takes_a_hop());
                if let Some(fd) = counters_fd.filter(|_| self.count_hits) {
                    self.count_hit(fd);
                }
                self.send_back(true);
                return;
            }
            OnHit::Redirect { xsk_map_fd, .. } => {
                self.restore(false);
                if self.stamp_meta {
                    self.stamp_receive_time();
                }
                // bpf_redirect_map(map, key, flags): the low bits of flags are the action when
                // the queue has no socket in the map, so such frames go on to the stack.
                self.a.load_map_fd(R1, xsk_map_fd);
                self.a.load(Size::W, R2, R6, 16);
                self.a.mov_imm(R3, XDP_PASS);
                self.a.call(BPF_FUNC_REDIRECT_MAP);
            }
        }
        self.a.exit();
    }

    /// A reflection goes back out (`XDP_TX`), its start put back first (with the copied headers
    /// written into the frame: `write_back`); with a capture, by way of the sample block with
    /// its signature as the verdict.
    fn send_back(&mut self, write_back: bool) {
        self.restore(write_back);
        let a = &mut self.a;
        match self.capture {
            Some((_, sample)) => {
                a.load(Size::W, R0, R10, SIGNATURE_SLOT);
                a.alu_imm(Alu::Or, R0, (CAPTURE_REFLECTED << 16) as i32);
                a.store(Size::W, R10, CAPTURE_CODE_SLOT, R0);
                a.store_imm(Size::W, R10, CAPTURE_ACTION_SLOT, XDP_TX);
                a.goto(sample);
            }
            None => {
                a.mov_imm(R0, XDP_TX);
                a.exit();
            }
        }
    }

    /// Puts the frame's start back where it was, when [`Gen::shift`] moved it on: every way
    /// out of the program comes here first. With `write_back`, the copies of the Ethernet and
    /// the fixed IP header (which the reflection changed) are written into the frame, and r7
    /// and r4 point into it again. Uses r0-r5.
    fn restore(&mut self, write_back: bool) {
        let a = &mut self.a;
        let (done, aborted, v6, written) = (a.label(), a.label(), a.label(), a.label());
        a.load(Size::DW, R0, R10, SHIFT_SLOT);
        a.jump_imm(Cond::Eq, R0, 0, done);
        a.mov_imm(R2, 0);
        a.alu_reg(Alu::Sub, R2, R0);
        a.mov(R1, R6);
        a.call(BPF_FUNC_XDP_ADJUST_HEAD);
        // (It cannot fail: the start goes back to where the frame had it.)
        a.jump_imm(Cond::Ne, R0, 0, aborted);
        a.store(Size::DW, R10, SHIFT_SLOT, R0);
        if write_back {
            a.mov(R1, R6);
            a.load(Size::W, R7, R1, 0);
            a.load(Size::W, R8, R1, 4);
            at_ip_offset(a, R4, R7, None);
            a.load(Size::W, R0, R10, IP_VERSION_SLOT);
            a.jump_imm(Cond::Eq, R0, 6, v6);
            need(a, R4, IPV4_MIN_HEADER_LEN as i32, &[R8], aborted);
            copy(a, (R4, 0), (R10, IP_COPY_SLOT), IPV4_MIN_HEADER_LEN);
            a.goto(written);
            a.place(v6);
            need(a, R4, IPV6_HEADER_LEN as i32, &[R8], aborted);
            copy(a, (R4, 0), (R10, IP_COPY_SLOT), IPV6_HEADER_LEN);
            a.place(written);
            copy(a, (R7, 0), (R10, ETH_COPY_SLOT), 12);
        }
        a.goto(done);
        a.place(aborted);
        a.mov_imm(R0, XDP_ABORTED);
        a.exit();
        a.place(done);
    }

    /// A STAMP request shorter than the 41-byte reflector packet made room for it, as the core's
    /// `stamp::grow_short`: the frame's end moved (`bpf_xdp_adjust_tail`; any Ethernet padding
    /// dropped) so that the UDP payload is 41 bytes, what the request did not have zero, the
    /// UDP length, the IPv4 total length (its header checksum updated, RFC 1624 eqn. 3) or the
    /// IPv6 payload length following, and the UDP checksum field set to the pseudo-header's sum
    /// so that the answer gets its checksum whole. The grown bytes are kept in their slot (0 for
    /// a request long enough, which is left as it is). A frame that cannot grow (no tailroom)
    /// is not answered: on to the stack, counted with the TX errors. On entry r4 is the IP
    /// header, r7 the Ethernet header (the stack copies while the frame's start is moved on),
    /// r9 the payload; on the way out the same, r8 the new end.
    fn grow_short_request(&mut self, counters_fd: Option<i32>) {
        let a = &mut self.a;
        let (done, long, fail, copies, pointers, v6, lengths) =
            (a.label(), a.label(), a.label(), a.label(), a.label(), a.label(), a.label());
        a.store_imm(Size::DW, R10, GROWN_SLOT, 0);
        a.load(Size::H, R1, R9, -4);
        a.to_be(R1, 16);
        a.alu_imm(Alu::And, R1, 0xffff);
        a.jump_imm(Cond::Ge, R1, (UDP_HEADER_LEN + stamp::MIN_LEN) as i32, long);
        // The payload grows by 49 − the UDP length; the frame from its length (less the part its
        // start moved on) to where the 41-byte payload ends: both as numbers.
        a.mov_imm(R2, (UDP_HEADER_LEN + stamp::MIN_LEN) as i32);
        a.alu_reg(Alu::Sub, R2, R1);
        a.store(Size::DW, R10, GROWN_SLOT, R2);
        let (v4_end, ended) = (a.label(), a.label());
        a.load(Size::DW, R2, R10, IP_OFF_SLOT);
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Ne, R0, 6, v4_end);
        a.alu_imm(Alu::Add, R2, (IPV6_HEADER_LEN + UDP_HEADER_LEN + stamp::MIN_LEN) as i32);
        a.goto(ended);
        a.place(v4_end);
        a.alu_imm(Alu::Add, R2, (IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN + stamp::MIN_LEN) as i32);
        a.place(ended);
        a.load(Size::DW, R3, R10, FRAME_LEN_SLOT);
        a.load(Size::DW, R0, R10, SHIFT_SLOT);
        a.alu_reg(Alu::Sub, R3, R0);
        a.alu_reg(Alu::Sub, R2, R3);
        // The frame's new length, for the counters and a capture.
        a.load(Size::DW, R3, R10, FRAME_LEN_SLOT);
        a.alu_reg(Alu::Add, R3, R2);
        a.store(Size::DW, R10, FRAME_LEN_SLOT, R3);
        a.store(Size::DW, R10, SKIP_SLOT, R2);
        let (at_head, moved) = (a.label(), a.label());
        a.mov(R1, R6);
        a.call(BPF_FUNC_XDP_ADJUST_TAIL);
        a.jump_imm(Cond::Ne, R0, 0, at_head);
        a.goto(moved);
        // No room after the frame (a veth's page-pool fragment has little more than the frame):
        // the start moves back instead, by the most a request grows, the headers and payload are
        // copied there with the zeros after them, and the end moves back to where the 41-byte
        // payload ends. (Not while the start is moved on past IPv4 options or IPv6 extension
        // headers: such a request is not answered.)
        a.place(at_head);
        a.load(Size::DW, R0, R10, SHIFT_SLOT);
        a.jump_imm(Cond::Ne, R0, 0, fail);
        a.mov_imm(R0, 0);
        for at in (0..GROW_BUF_LEN).step_by(8) {
            a.store(Size::DW, R10, GROW_BUF_SLOT + at, R0);
        }
        // The bytes to copy: to the payload, then its bytes (14 to 40) or the 41 of the answer.
        let (v4_head, headed) = (a.label(), a.label());
        a.load(Size::DW, R4, R10, IP_OFF_SLOT);
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Ne, R0, 6, v4_head);
        a.alu_imm(Alu::Add, R4, (IPV6_HEADER_LEN + UDP_HEADER_LEN) as i32);
        a.goto(headed);
        a.place(v4_head);
        a.alu_imm(Alu::Add, R4, (IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN) as i32);
        a.place(headed);
        a.mov(R3, R4);
        a.alu_imm(Alu::Add, R3, stamp::MIN_LEN as i32);
        a.store(Size::DW, R10, EXT_SLOT, R3);
        a.load(Size::DW, R1, R10, GROWN_SLOT);
        a.mov_imm(R5, stamp::MIN_LEN as i32);
        a.alu_reg(Alu::Sub, R5, R1);
        a.jump_imm(Cond::Gt, R5, stamp::MIN_LEN as i32 - 1, fail);
        a.alu_reg(Alu::Add, R4, R5);
        a.store(Size::DW, R10, REST_SLOT, R4);
        a.mov(R1, R6);
        a.mov_imm(R2, -GROW_AT_HEAD);
        a.call(BPF_FUNC_XDP_ADJUST_HEAD);
        a.jump_imm(Cond::Ne, R0, 0, fail);
        grow_buf_copy(a, BPF_FUNC_XDP_LOAD_BYTES, GROW_AT_HEAD, REST_SLOT, fail);
        grow_buf_copy(a, BPF_FUNC_XDP_STORE_BYTES, 0, EXT_SLOT, fail);
        a.load(Size::DW, R2, R10, SKIP_SLOT);
        a.alu_imm(Alu::Add, R2, -GROW_AT_HEAD);
        a.mov(R1, R6);
        a.call(BPF_FUNC_XDP_ADJUST_TAIL);
        a.jump_imm(Cond::Ne, R0, 0, fail);
        a.place(moved);
        // Every packet pointer anew, each from the start by a constant per path.
        a.mov(R1, R6);
        a.load(Size::W, R7, R1, 0);
        a.load(Size::W, R8, R1, 4);
        at_ip_offset(
            a,
            R9,
            R7,
            Some(((IPV4_MIN_HEADER_LEN + UDP_HEADER_LEN) as i32, (IPV6_HEADER_LEN + UDP_HEADER_LEN) as i32)),
        );
        need(a, R9, stamp::MIN_LEN as i32, &[R8], fail);
        a.load(Size::DW, R0, R10, SHIFT_SLOT);
        a.jump_imm(Cond::Ne, R0, 0, copies);
        at_ip_offset(a, R4, R7, None);
        need(a, R4, IPV4_MIN_HEADER_LEN as i32, &[R8], fail);
        a.goto(pointers);
        a.place(copies);
        a.mov(R7, R10);
        a.alu_imm(Alu::Add, R7, ETH_COPY_SLOT as i32);
        a.mov(R4, R10);
        a.alu_imm(Alu::Add, R4, IP_COPY_SLOT as i32);
        a.place(pointers);
        // Zeros where the request had no payload (the bytes past its old end may be Ethernet
        // padding), the UDP length.
        a.load(Size::DW, R1, R10, GROWN_SLOT);
        a.mov_imm(R0, stamp::MIN_LEN as i32);
        a.alu_reg(Alu::Sub, R0, R1);
        for at in stamp::MIN_REQUEST_LEN..stamp::MIN_LEN {
            let kept = a.label();
            a.jump_imm(Cond::Gt, R0, at as i32, kept);
            a.store_imm(Size::B, R9, at as i16, 0);
            a.place(kept);
        }
        a.mov_imm(R0, le16(((UDP_HEADER_LEN + stamp::MIN_LEN) as u16).to_be_bytes()) as i32);
        a.store(Size::H, R9, -4, R0);
        // The IP length; for IPv4 its header checksum, HC' = ~(~HC + ~m + m') on the values in
        // host order.
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Eq, R0, 6, v6);
        a.load(Size::H, R1, R4, 2);
        a.to_be(R1, 16);
        a.alu_imm(Alu::And, R1, 0xffff);
        a.mov(R2, R1);
        a.load(Size::DW, R0, R10, GROWN_SLOT);
        a.alu_reg(Alu::Add, R2, R0);
        a.load(Size::H, R3, R4, 10);
        a.to_be(R3, 16);
        a.alu_imm(Alu::And, R3, 0xffff);
        a.alu_imm(Alu::Xor, R3, 0xffff);
        a.alu_imm(Alu::Xor, R1, 0xffff);
        a.alu_reg(Alu::Add, R3, R1);
        a.alu_reg(Alu::Add, R3, R2);
        fold16(a, R3, R1);
        a.alu_imm(Alu::Xor, R3, 0xffff);
        a.to_be(R3, 16);
        a.store(Size::H, R4, 10, R3);
        a.to_be(R2, 16);
        a.store(Size::H, R4, 2, R2);
        a.goto(lengths);
        a.place(v6);
        a.load(Size::H, R1, R4, 4);
        a.to_be(R1, 16);
        a.alu_imm(Alu::And, R1, 0xffff);
        a.load(Size::DW, R0, R10, GROWN_SLOT);
        a.alu_reg(Alu::Add, R1, R0);
        a.to_be(R1, 16);
        a.store(Size::H, R4, 4, R1);
        a.place(lengths);
        // The UDP checksum field: the pseudo-header's sum (with the new length), as a checksum
        // left for offload holds it.
        a.store(Size::DW, R10, IP_SLOT, R4);
        stamp_pseudo_sum(a);
        fold16(a, R3, R2);
        a.store(Size::H, R9, -2, R3);
        if let Some(fd) = counters_fd {
            a.mov_imm(R0, SHORT_ANSWERED as i32);
            add_to(a, fd, None);
            a.load(Size::DW, R4, R10, IP_SLOT);
        }
        a.goto(done);
        // Long enough: the answer's 41 bytes are in the frame (for the verifier: the checks let
        // payloads from 14 bytes through).
        a.place(long);
        need(a, R9, stamp::MIN_LEN as i32, &[R8], fail);
        a.goto(done);
        // Not answered: no room to grow (or, which cannot happen, the frame shorter than its
        // headers after it): on to the stack, counted as a reflection that could not be sent.
        a.place(fail);
        self.not_answered(counters_fd);
        self.a.place(done);
    }

    /// A STAMP request that is not answered after all: counted as a reflection that could not
    /// be sent ([`UNANSWERED`], TX errors for userspace), the frame's start put back, on to the
    /// stack.
    fn not_answered(&mut self, counters_fd: Option<i32>) {
        if let Some(fd) = counters_fd {
            self.a.mov_imm(R0, UNANSWERED as i32);
            add_to(&mut self.a, fd, None);
        }
        self.restore(false);
        self.a.mov_imm(R0, XDP_PASS);
        self.a.exit();
    }

    /// The Session-Reflector packet of RFC 8762 §4.3 written over a STAMP request, as the
    /// core's `stamp::respond` writes it: the sequence number (the sender's, or the session's
    /// from the LRU map), the transmit time T3 read last, the error estimate and TAI − UTC from
    /// the clock map, the receive time T2 read when the request was recognised, the sender's
    /// fields, its TTL, zeros; then the UDP checksum, updated as RFC 1624 says, or computed
    /// whole when the request's was left for offload (it holds the pseudo-header's sum). Sums
    /// are taken over little-endian words, as the core's are. On entry r4 is the IP header and
    /// r9 the payload (at least 41 bytes, checked against the frame's end).
    fn stamp_answer(&mut self, maps: StampMaps) {
        let stateful = self.filter.stamp_sequence() == stamp::SequenceMode::Stateful;
        let ptp = self.filter.stamp_timestamps() == stamp::TimestampFormat::Ptp;
        let grows = self.filter.stamp_min_payload() < stamp::MIN_LEN;
        let counters_fd = self.counters_fd;
        let a = &mut self.a;
        let (fail, unanswered) = (a.label(), a.label());
        a.store(Size::DW, R10, IP_SLOT, R4);
        // Was the request's checksum left for offload (the field holds the pseudo-header's
        // sum)? Then IPv6 needs the datagram summed whole: one too long for that is not
        // answered, and is found so before anything is written.
        let (whole, not_partial, known) = (a.label(), a.label(), a.label());
        stamp_pseudo_sum(a);
        a.store(Size::DW, R10, PSEUDO_SLOT, R3);
        fold16(a, R3, R2);
        a.load(Size::H, R1, R9, -2);
        a.jump_reg(Cond::Ne, R1, R3, not_partial);
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Ne, R0, 6, whole);
        a.load(Size::H, R2, R9, -4);
        a.to_be(R2, 16);
        a.alu_imm(Alu::And, R2, 0xffff);
        a.jump_imm(Cond::Gt, R2, MAX_SUM_BYTES, unanswered);
        a.place(whole);
        a.store_imm(Size::W, R10, PARTIAL_SLOT, 1);
        a.goto(known);
        a.place(not_partial);
        a.store_imm(Size::W, R10, PARTIAL_SLOT, 0);
        a.place(known);
        for r in [R0, R1, R2, R3, R4] {
            a.mov_imm(r, 0);
        }
        // The clock map's only entry: TAI − UTC and the error estimate.
        a.store_imm(Size::W, R10, KEY_SLOT, 0);
        a.load_map_fd(R1, maps.clock_fd);
        a.mov(R2, R10);
        a.alu_imm(Alu::Add, R2, KEY_SLOT as i32);
        a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
        a.jump_imm(Cond::Eq, R0, 0, fail);
        a.load(Size::DW, R1, R0, 0);
        a.store(Size::DW, R10, OFFSET_SLOT, R1);
        a.load(Size::DW, R1, R0, 8);
        a.store(Size::DW, R10, ERROR_SLOT, R1);
        if stateful {
            stamp_session_sequence(a, maps.sessions_fd);
        }
        // The payload's length, and the sum of its first 44 bytes (or all of a shorter one).
        a.load(Size::H, R1, R9, -4);
        a.to_be(R1, 16);
        a.alu_imm(Alu::And, R1, 0xffff);
        a.alu_imm(Alu::Add, R1, -(UDP_HEADER_LEN as i32));
        a.store(Size::DW, R10, PAYLEN_SLOT, R1);
        stamp_payload_sum(a);
        a.store(Size::DW, R10, OLD_SUM_SLOT, R3);
        // The sender's sequence number, timestamp and error estimate to 24..38, zeros at 38.
        for at in [0i16, 4, 8] {
            a.load(Size::W, R1, R9, at);
            a.store(Size::W, R9, 24 + at, R1);
        }
        a.load(Size::H, R1, R9, 12);
        a.store(Size::H, R9, 36, R1);
        a.store_imm(Size::H, R9, 38, 0);
        // The TTL / hop limit the request came with, then zeros through byte 43 where the
        // payload has them.
        a.load(Size::DW, R4, R10, IP_SLOT);
        load_hops(a, R1);
        a.store(Size::B, R9, 40, R1);
        a.mov_imm(R1, 0);
        let zeroed = a.label();
        // (`need` takes r2: the length is in r0.)
        a.load(Size::DW, R0, R10, PAYLEN_SLOT);
        for at in 41..44i16 {
            a.jump_imm(Cond::Lt, R0, at as i32 + 1, zeroed);
            need(a, R9, at as i32 + 1, &[R8], zeroed);
            a.store_imm(Size::B, R9, at, 0);
        }
        a.place(zeroed);
        a.mov_imm(R0, 0);
        a.mov_imm(R2, 0);
        if stateful {
            a.load(Size::W, R1, R10, SEQ_SLOT);
            a.store(Size::W, R9, 0, R1);
        }
        a.load(Size::DW, R1, R10, ERROR_SLOT);
        if ptp {
            a.alu_imm(Alu::Or, R1, 0x4000);
        }
        a.to_be(R1, 16);
        a.store(Size::H, R9, 12, R1);
        // T2, then T3 read as late as the answer allows.
        a.load(Size::DW, R0, R10, T2_SLOT);
        stamp_timestamp(a, ptp, 16);
        a.call(BPF_FUNC_KTIME_GET_TAI_NS);
        stamp_timestamp(a, ptp, 4);
        // The checksum.
        let (done, partial, store) = (a.label(), a.label(), a.label());
        a.load(Size::W, R0, R10, PARTIAL_SLOT);
        a.jump_imm(Cond::Ne, R0, 0, partial);
        a.load(Size::H, R1, R9, -2);
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        let not_v4_zero = a.label();
        a.jump_imm(Cond::Eq, R0, 6, not_v4_zero);
        a.jump_imm(Cond::Eq, R1, 0, done);
        a.place(not_v4_zero);
        // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'); r5 gathers it.
        a.alu_imm(Alu::Xor, R1, 0xffff);
        a.mov(R5, R1);
        a.load(Size::DW, R3, R10, OLD_SUM_SLOT);
        fold16(a, R3, R2);
        a.alu_imm(Alu::Xor, R3, 0xffff);
        a.alu_reg(Alu::Add, R5, R3);
        stamp_payload_sum(a);
        fold16(a, R3, R2);
        a.alu_reg(Alu::Add, R5, R3);
        a.mov(R3, R5);
        a.goto(store);
        // Left for offload: IPv4 goes without a checksum (0, RFC 768); IPv6 gets it whole, over
        // the datagram with its checksum field zero and the pseudo-header. A grown short
        // request's answer gets it whole over IPv4 too (its field was set so, `grow_short_request`).
        a.place(partial);
        a.store_imm(Size::H, R9, -2, 0);
        if grows {
            // A grown answer is 49 bytes at known offsets: summed in one straight line (the
            // datagram's loop, walked for every way into it, is too much for the verifier).
            let not_grown = a.label();
            a.load(Size::DW, R0, R10, GROWN_SLOT);
            a.jump_imm(Cond::Eq, R0, 0, not_grown);
            a.load(Size::DW, R3, R10, PSEUDO_SLOT);
            for at in (-(UDP_HEADER_LEN as i16)..40).step_by(4) {
                a.load(Size::W, R1, R9, at);
                a.alu_reg(Alu::Add, R3, R1);
            }
            a.load(Size::B, R1, R9, 40);
            a.alu_reg(Alu::Add, R3, R1);
            a.goto(store);
            a.place(not_grown);
        }
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Ne, R0, 6, done);
        stamp_datagram_sum(a, unanswered);
        a.load(Size::DW, R1, R10, PSEUDO_SLOT);
        a.alu_reg(Alu::Add, R3, R1);
        a.place(store);
        fold16(a, R3, R2);
        a.alu_imm(Alu::Xor, R3, 0xffff);
        let nonzero = a.label();
        a.jump_imm(Cond::Ne, R3, 0, nonzero);
        a.mov_imm(R3, 0xffff);
        a.place(nonzero);
        a.store(Size::H, R9, -2, R3);
        a.goto(done);
        // Not answered: the clock map's entry was not there (it always is), or an IPv6
        // datagram too long to sum. The frame goes on to the stack, counted as a reflection
        // that could not be sent.
        a.place(fail);
        a.place(unanswered);
        self.not_answered(counters_fd);
        self.a.place(done);
    }

    /// A STAMP request's receive time, as XDP metadata in front of the frame
    /// ([`STAMP_META_LEN`] bytes), which AF_XDP hands to the worker with it: the clock is read
    /// first, then the metadata made room for. Where there is no room, the frame goes on
    /// without it (the worker reads its own clock).
    fn stamp_receive_time(&mut self) {
        let a = &mut self.a;
        let done = a.label();
        a.load(Size::W, R0, R10, STAMP_SLOT);
        a.jump_imm(Cond::Eq, R0, 0, done);
        a.call(BPF_FUNC_KTIME_GET_TAI_NS);
        a.mov(R9, R0);
        a.mov(R1, R6);
        a.mov_imm(R2, -(STAMP_META_LEN as i32));
        a.call(BPF_FUNC_XDP_ADJUST_META);
        a.jump_imm(Cond::Ne, R0, 0, done);
        // The packet pointers are new after the adjustment: data_meta at 8, data at 0.
        a.mov(R1, R6);
        a.load(Size::W, R2, R1, 8);
        a.load(Size::W, R3, R1, 0);
        a.mov(R4, R2);
        a.alu_imm(Alu::Add, R4, STAMP_META_LEN as i32);
        a.jump_reg(Cond::Gt, R4, R3, done);
        a.store(Size::DW, R2, 0, R9);
        a.place(done);
    }

    /// The core's reflection, in place: the destination MAC becomes the source (which was
    /// ours), the source ours; in mode `mac-ip` and `all` the IP addresses swap, in mode `all`
    /// the UDP ports too. Swapping fields of a header leaves its one's-complement checksums
    /// valid; with `hop`, a hop off the TTL ([`take_a_hop`]). On entry r4 is the IP header and
    /// r9 the UDP payload (as the late checks left them), the IP version in its stack slot;
    /// every byte written was read by a check before, so the verifier knows it is inside the
    /// frame. While the frame's start is moved on, r7 and r4 are the copies on the stack
    /// ([`Gen::shift`]), which [`Gen::restore`] writes back.
    fn reflect(&mut self, mode: reflector_core::Mode, hop: bool) {
        let mac = self.filter.local_mac().0;
        let a = &mut self.a;
        // (The destination in halves: r7 may be the stack copy, whose source MAC is aligned.)
        a.load(Size::W, R0, R7, 6);
        a.load(Size::H, R1, R7, 10);
        a.store(Size::H, R7, 0, R0);
        a.alu_imm(Alu::Rsh, R0, 16);
        a.store(Size::H, R7, 2, R0);
        a.store(Size::H, R7, 4, R1);
        a.mov_imm(R0, le32([mac[0], mac[1], mac[2], mac[3]]) as i32);
        a.store(Size::W, R7, 6, R0);
        a.mov_imm(R0, le16([mac[4], mac[5]]) as i32);
        a.store(Size::H, R7, 10, R0);
        if hop {
            take_a_hop(a);
        }
        if mode == reflector_core::Mode::Mac {
            return;
        }
        let (v6, ports) = (a.label(), a.label());
        a.load(Size::W, R0, R10, IP_VERSION_SLOT);
        a.jump_imm(Cond::Eq, R0, 6, v6);
        // IPv4: the addresses at 12 and 16.
        a.load(Size::W, R0, R4, 12);
        a.load(Size::W, R1, R4, 16);
        a.store(Size::W, R4, 12, R1);
        a.store(Size::W, R4, 16, R0);
        a.goto(ports);
        // IPv6: the addresses at 8 and 24, a word at a time.
        a.place(v6);
        for word in 0..4i16 {
            a.load(Size::W, R0, R4, 8 + 4 * word);
            a.load(Size::W, R1, R4, 24 + 4 * word);
            a.store(Size::W, R4, 8 + 4 * word, R1);
            a.store(Size::W, R4, 24 + 4 * word, R0);
        }
        a.place(ports);
        if mode == reflector_core::Mode::All {
            // The ports, 8 and 6 bytes before the payload.
            a.load(Size::H, R0, R9, -8);
            a.load(Size::H, R1, R9, -6);
            a.store(Size::H, R9, -8, R1);
            a.store(Size::H, R9, -6, R0);
        }
    }

    /// Adds 1, or `value`, to the entry at r0 of the per-CPU counters map `fd` ([`add_to`]).
    fn add_to(&mut self, fd: i32, value: Option<Reg>) {
        add_to(&mut self.a, fd, value);
    }

    /// A reflected frame counted: its signature's entry, and its bytes.
    fn count_hit(&mut self, fd: i32) {
        self.a.load(Size::W, R0, R10, SIGNATURE_SLOT);
        self.a.alu_imm(Alu::Add, R0, HITS as i32);
        self.add_to(fd, None);
        // The frame's length, read when it was found to be IP, kept in r9: the payload pointer
        // is not needed any more.
        self.a.load(Size::DW, R9, R10, FRAME_LEN_SLOT);
        self.a.mov_imm(R0, REFLECTED_BYTES as i32);
        self.add_to(fd, Some(R9));
    }

    /// Rejected: count the reason (when there are counters), then on to the stack.
    fn rejected(&mut self, counters_fd: Option<i32>) {
        let (pass, count) = (self.a.label(), self.a.label());
        for (reason, label) in Reject::ALL.iter().zip(&self.reasons) {
            if !self.a.is_used(*label) {
                continue;
            }
            self.a.place(*label);
            if counters_fd.is_some() {
                self.a.mov_imm(R0, *reason as i32);
                self.a.goto(count);
            } else {
                self.a.goto(pass);
            }
        }
        self.a.place(count);
        if let Some(fd) = counters_fd {
            if self.capture.is_some() {
                self.a.mov(R1, R0);
                self.a.alu_imm(Alu::Or, R1, (CAPTURE_REJECTED << 16) as i32);
                self.a.store(Size::W, R10, CAPTURE_CODE_SLOT, R1);
            }
            self.add_to(fd, None);
        }
        self.a.place(pass);
        self.restore(false);
        let a = &mut self.a;
        match self.capture {
            // Only with counters: every reject came through `count` and has its code.
            Some((_, sample)) => {
                a.store_imm(Size::W, R10, CAPTURE_ACTION_SLOT, XDP_PASS);
                a.goto(sample);
            }
            None => {
                a.mov_imm(R0, XDP_PASS);
                a.exit();
            }
        }
    }

    /// The sample block, reached with the verdict's code and the action in their slots: when
    /// the control entry asks for this kind and the cap's bucket has room, the frame's first
    /// [`CAPTURE_SNAP`] bytes go into a ring buffer record with the verdict, the frame's length
    /// and the time; a frame over the cap, or one the ring has no room for, is counted. Then
    /// the action. The bucket is updated without a lock, as the rate limits' are.
    fn sample(&mut self) {
        let Some((maps, sample)) = self.capture else { return };
        let a = &mut self.a;
        let (out, capped, lost, discard, keep_time) = (a.label(), a.label(), a.label(), a.label(), a.label());
        a.place(sample);
        a.store_imm(Size::W, R10, CAPTURE_KEY_SLOT, 0);
        a.load_map_fd(R1, maps.control_fd);
        a.mov(R2, R10);
        a.alu_imm(Alu::Add, R2, CAPTURE_KEY_SLOT as i32);
        a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
        a.jump_imm(Cond::Eq, R0, 0, out);
        a.mov(R8, R0);
        // Asked for this kind?
        a.load(Size::W, R1, R8, 0);
        a.load(Size::W, R2, R10, CAPTURE_CODE_SLOT);
        a.alu_imm(Alu::Rsh, R2, 16);
        a.alu_reg(Alu::And, R1, R2);
        a.jump_imm(Cond::Eq, R1, 0, out);
        // The cap: allowed while now + tolerance reaches the bucket time.
        a.call(BPF_FUNC_KTIME_GET_NS);
        a.mov(R7, R0);
        a.load(Size::DW, R1, R8, 24);
        a.load(Size::DW, R2, R8, 16);
        a.alu_reg(Alu::Add, R2, R7);
        a.jump_reg(Cond::Gt, R1, R2, capped);
        a.jump_reg(Cond::Gt, R1, R7, keep_time);
        a.mov(R1, R7);
        a.place(keep_time);
        a.load(Size::DW, R2, R8, 8);
        a.alu_reg(Alu::Add, R1, R2);
        a.store(Size::DW, R8, 24, R1);
        // The frame's length, and what of it is kept.
        a.mov(R1, R6);
        a.call(BPF_FUNC_XDP_GET_BUFF_LEN);
        a.mov(R2, R0);
        a.store(Size::W, R10, CAPTURE_LEN_SLOT, R2);
        let short = a.label();
        a.jump_imm(Cond::Le, R2, CAPTURE_SNAP as i32, short);
        a.mov_imm(R2, CAPTURE_SNAP as i32);
        a.place(short);
        a.store(Size::W, R10, CAPTURE_CAPLEN_SLOT, R2);
        a.load_map_fd(R1, maps.ring_fd);
        a.mov_imm(R2, CAPTURE_RECORD_LEN as i32);
        a.mov_imm(R3, 0);
        a.call(BPF_FUNC_RINGBUF_RESERVE);
        a.jump_imm(Cond::Eq, R0, 0, lost);
        a.mov(R9, R0);
        a.load(Size::W, R1, R10, CAPTURE_CODE_SLOT);
        a.store(Size::W, R9, 0, R1);
        a.load(Size::W, R1, R10, CAPTURE_LEN_SLOT);
        a.store(Size::W, R9, 4, R1);
        a.call(BPF_FUNC_KTIME_GET_TAI_NS);
        a.store(Size::DW, R9, 8, R0);
        // bpf_xdp_load_bytes(ctx, 0, record + 16, caplen), caplen proven 1..=CAPTURE_SNAP.
        a.load(Size::W, R4, R10, CAPTURE_CAPLEN_SLOT);
        a.jump_imm(Cond::Gt, R4, CAPTURE_SNAP as i32, discard);
        a.jump_imm(Cond::Eq, R4, 0, discard);
        a.mov(R1, R6);
        a.mov_imm(R2, 0);
        a.mov(R3, R9);
        a.alu_imm(Alu::Add, R3, 16);
        a.call(BPF_FUNC_XDP_LOAD_BYTES);
        a.jump_imm(Cond::Ne, R0, 0, discard);
        a.mov(R1, R9);
        a.mov_imm(R2, 0);
        a.call(BPF_FUNC_RINGBUF_SUBMIT);
        a.goto(out);
        a.place(discard);
        a.mov(R1, R9);
        a.mov_imm(R2, 0);
        a.call(BPF_FUNC_RINGBUF_DISCARD);
        a.goto(out);
        a.place(capped);
        a.mov_imm(R1, 1);
        a.atomic_fetch_add(Size::DW, R8, 32, R1);
        a.goto(out);
        a.place(lost);
        a.mov_imm(R1, 1);
        a.atomic_fetch_add(Size::DW, R8, 40, R1);
        a.place(out);
        a.load(Size::W, R0, R10, CAPTURE_ACTION_SLOT);
        a.exit();
    }
}

/// Adds 1, or `value` (a register the helper call keeps: r6-r9), to the entry of the
/// per-CPU counters map `fd` whose index is in r0.
fn add_to(a: &mut Asm, fd: i32, value: Option<Reg>) {
    let skip = a.label();
    a.store(Size::W, R10, -4, R0);
    a.load_map_fd(R1, fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, -4);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, skip);
    // A per-CPU entry: only this CPU writes it, so no atomic is needed.
    a.load(Size::DW, R1, R0, 0);
    match value {
        Some(v) => a.alu_reg(Alu::Add, R1, v),
        None => a.alu_imm(Alu::Add, R1, 1),
    }
    a.store(Size::DW, R0, 0, R1);
    a.place(skip);
}

/// Folds the 64-bit one's-complement sum in `sum` to 16 bits, with `tmp`: 64 -> 32 bits (low +
/// high), then 32 -> 16 three times (end-around carries).
fn fold16(a: &mut Asm, sum: Reg, tmp: Reg) {
    a.mov(tmp, sum);
    a.alu_imm(Alu::Rsh, tmp, 32);
    a.alu_imm(Alu::Lsh, sum, 32);
    a.alu_imm(Alu::Rsh, sum, 32);
    a.alu_reg(Alu::Add, sum, tmp);
    for _ in 0..3 {
        a.mov(tmp, sum);
        a.alu_imm(Alu::Rsh, tmp, 16);
        a.alu_imm(Alu::And, sum, 0xffff);
        a.alu_reg(Alu::Add, sum, tmp);
    }
}

/// r3 = the STAMP payload's first 44 bytes (or all of a shorter one, at least 41) as
/// little-endian words, summed: ten words, then bytes 40..44 one by one where they exist.
/// Uses r0-r3; the payload's length is in its stack slot.
fn stamp_payload_sum(a: &mut Asm) {
    a.mov_imm(R3, 0);
    for word in 0..10i16 {
        a.load(Size::W, R1, R9, 4 * word);
        a.alu_reg(Alu::Add, R3, R1);
    }
    a.load(Size::B, R1, R9, 40);
    a.alu_reg(Alu::Add, R3, R1);
    let done = a.label();
    a.load(Size::DW, R0, R10, PAYLEN_SLOT);
    for at in 41..44i16 {
        a.jump_imm(Cond::Lt, R0, at as i32 + 1, done);
        need(a, R9, at as i32 + 1, &[R8], done);
        a.load(Size::B, R1, R9, at);
        a.alu_imm(Alu::Lsh, R1, 8 * (at as i32 - 40));
        a.alu_reg(Alu::Add, R3, R1);
    }
    // One state for the verifier to go on with, whatever the length.
    a.place(done);
    for r in [R0, R1, R2] {
        a.mov_imm(r, 0);
    }
}

/// r3 = the UDP pseudo-header as little-endian words (both addresses, the protocol, the UDP
/// length). Uses r0-r4 (r4 = the IP header, from its slot).
fn stamp_pseudo_sum(a: &mut Asm) {
    let (v6, done) = (a.label(), a.label());
    a.load(Size::DW, R4, R10, IP_SLOT);
    a.load(Size::H, R3, R9, -4);
    a.alu_imm(Alu::Add, R3, (IPPROTO_UDP as i32) << 8);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    for at in [12i16, 16] {
        a.load(Size::W, R1, R4, at);
        a.alu_reg(Alu::Add, R3, R1);
    }
    a.goto(done);
    a.place(v6);
    for word in 0..8i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.alu_reg(Alu::Add, R3, R1);
    }
    a.place(done);
}

/// r3 = the whole UDP datagram (header and payload, the length its header says) as
/// little-endian words, the last one padded with zeros; on to `too_long` when it is longer than
/// [`MAX_SUM_BYTES`]. It is read into the stack a [`SUM_CHUNK`] at a time by
/// `bpf_xdp_load_bytes` (the buffer zeroed first, so a short last piece sums as padded): no
/// packet pointer moves through a loop, which the verifier would walk once per word for every
/// way into it. IPv6 only (IPv4 has no checksum to give instead): the UDP header follows the
/// fixed header, the frame's start moved on past any extension headers. r9 is the payload.
/// Uses r0-r5.
fn stamp_datagram_sum(a: &mut Asm, too_long: Label) {
    let done = a.label();
    a.load(Size::H, R1, R9, -4);
    a.to_be(R1, 16);
    a.alu_imm(Alu::And, R1, 0xffff);
    a.jump_imm(Cond::Gt, R1, MAX_SUM_BYTES, too_long);
    a.store(Size::DW, R10, REST_SLOT, R1);
    a.load(Size::DW, R2, R10, IP_OFF_SLOT);
    a.alu_imm(Alu::Add, R2, IPV6_HEADER_LEN as i32);
    a.store(Size::DW, R10, SKIP_SLOT, R2);
    a.mov_imm(R3, 0);
    a.store(Size::DW, R10, SUM_SLOT, R3);
    for _ in 0..(MAX_SUM_BYTES + SUM_CHUNK - 1) / SUM_CHUNK {
        let fits = a.label();
        a.load(Size::DW, R4, R10, REST_SLOT);
        a.jump_imm(Cond::Lt, R4, 1, done);
        a.jump_imm(Cond::Le, R4, SUM_CHUNK, fits);
        a.mov_imm(R4, SUM_CHUNK);
        a.place(fits);
        a.mov_imm(R0, 0);
        for at in (0..SUM_CHUNK as i16).step_by(8) {
            a.store(Size::DW, R10, SUM_CHUNK_SLOT + at, R0);
        }
        a.mov(R1, R6);
        a.load(Size::DW, R2, R10, SKIP_SLOT);
        a.mov(R3, R10);
        a.alu_imm(Alu::Add, R3, SUM_CHUNK_SLOT as i32);
        a.call(BPF_FUNC_XDP_LOAD_BYTES);
        a.jump_imm(Cond::Ne, R0, 0, too_long);
        a.load(Size::DW, R3, R10, SUM_SLOT);
        for at in (0..SUM_CHUNK as i16).step_by(4) {
            a.load(Size::W, R1, R10, SUM_CHUNK_SLOT + at);
            a.alu_reg(Alu::Add, R3, R1);
        }
        a.store(Size::DW, R10, SUM_SLOT, R3);
        let (last, next) = (a.label(), a.label());
        a.load(Size::DW, R4, R10, REST_SLOT);
        a.jump_imm(Cond::Le, R4, SUM_CHUNK, last);
        a.alu_imm(Alu::Add, R4, -SUM_CHUNK);
        a.goto(next);
        a.place(last);
        a.mov_imm(R4, 0);
        a.place(next);
        a.store(Size::DW, R10, REST_SLOT, R4);
        a.load(Size::DW, R2, R10, SKIP_SLOT);
        a.alu_imm(Alu::Add, R2, SUM_CHUNK);
        a.store(Size::DW, R10, SKIP_SLOT, R2);
    }
    a.place(done);
    a.load(Size::DW, R3, R10, SUM_SLOT);
    for r in [R0, R1, R2, R4, R5] {
        a.mov_imm(r, 0);
    }
}

/// `dst` = `base` + where the IP header starts (its slot), + `fixed`'s length for IPv4 or IPv6
/// (the version's slot) when given: one branch per number of VLAN tags, so that every packet
/// pointer moves by a constant. Uses r0 and r1.
fn at_ip_offset(a: &mut Asm, dst: Reg, base: Reg, fixed: Option<(i32, i32)>) {
    let done = a.label();
    a.load(Size::DW, R0, R10, IP_OFF_SLOT);
    if fixed.is_some() {
        a.load(Size::W, R1, R10, IP_VERSION_SLOT);
    }
    for tags in 0..=MAX_VLAN_TAGS {
        let at = (ETH_HEADER_LEN + tags * VLAN_TAG_LEN) as i32;
        let next = a.label();
        if tags < MAX_VLAN_TAGS {
            a.jump_imm(Cond::Ne, R0, at, next);
        }
        // (`dst` may be r1: the version is looked at before it is written.)
        match fixed {
            None => {
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at);
            }
            Some((v4, v6)) => {
                let six = a.label();
                a.jump_imm(Cond::Eq, R1, 6, six);
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at + v4);
                a.goto(done);
                a.place(six);
                a.mov(dst, base);
                a.alu_imm(Alu::Add, dst, at + v6);
            }
        }
        a.goto(done);
        if tags < MAX_VLAN_TAGS {
            a.place(next);
        }
    }
    a.place(done);
}

/// `bpf_xdp_load_bytes(ctx, offset, r10 + to, len)`, the offset read from the stack slot
/// `offset` (0 without one); on to `fail` when the helper refuses. Uses r0-r5.
fn load_bytes(a: &mut Asm, offset: Option<i16>, to: i16, len: i32, fail: Label) {
    match offset {
        None => a.mov_imm(R2, 0),
        Some(slot) => a.load(Size::DW, R2, R10, slot),
    }
    a.mov(R1, R6);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, to as i32);
    a.mov_imm(R4, len);
    a.call(BPF_FUNC_XDP_LOAD_BYTES);
    a.jump_imm(Cond::Ne, R0, 0, fail);
}

/// Copies `len` bytes from `src` to `dst` (each a base register and an offset), through r0, in
/// the widest pieces that keep the stack side (r10) aligned.
fn copy(a: &mut Asm, dst: (Reg, i16), src: (Reg, i16), len: usize) {
    let stack = if dst.0 == R10 { dst.1 } else { src.1 };
    let mut at = 0;
    while at < len {
        let aligned = |n: usize| (stack as i32 + at as i32).rem_euclid(n as i32) == 0 && len - at >= n;
        let (size, n) = match () {
            () if aligned(8) => (Size::DW, 8),
            () if aligned(4) => (Size::W, 4),
            () if aligned(2) => (Size::H, 2),
            () => (Size::B, 1),
        };
        a.load(size, R0, src.0, src.1 + at as i16);
        a.store(size, dst.0, dst.1 + at as i16, R0);
        at += n;
    }
}

/// Writes the time in r0 (CLOCK_TAI ns) at r9 + `at` as UTC (TAI − UTC from its slot), in NTP
/// (seconds since 1900, 2^-32 s fractions) or PTP truncated form (seconds, nanoseconds), both
/// big-endian. Uses r0-r2 and r5.
fn stamp_timestamp(a: &mut Asm, ptp: bool, at: i16) {
    a.load(Size::DW, R1, R10, OFFSET_SLOT);
    a.alu_reg(Alu::Sub, R0, R1);
    // One division (the JIT's is a real one); the nanoseconds by a multiply and a subtraction,
    // the NTP fraction by a multiply and a shift, as the core's `TimestampFormat::encode`.
    a.mov(R1, R0);
    a.alu_imm(Alu::Div, R1, 1_000_000_000);
    a.mov(R2, R1);
    a.alu_imm(Alu::Mul, R2, 1_000_000_000);
    a.alu_reg(Alu::Sub, R0, R2);
    a.mov(R2, R0);
    if !ptp {
        a.load_imm64(R5, stamp::NTP_FRACTION_PER_NS);
        a.alu_reg(Alu::Mul, R2, R5);
        a.alu_imm(Alu::Rsh, R2, 32);
        a.load_imm64(R5, stamp::NTP_UNIX_OFFSET);
        a.alu_reg(Alu::Add, R1, R5);
    }
    a.to_be(R1, 32);
    a.to_be(R2, 32);
    a.store(Size::W, R9, at, R1);
    a.store(Size::W, R9, at + 4, R2);
}

/// The session's sequence number into its stack slot (wire order): the LRU map's entry for
/// the request's addresses, ports and SSID, taken and counted up atomically; a session idle
/// longer than the core's `SESSION_IDLE_NS` starts again from 0, and a new one starts at 0 (its
/// entry created with the next number, 1). Uses r0-r5.
fn stamp_session_sequence(a: &mut Asm, sessions_fd: i32) {
    let (v6, key_done, new, have, fresh) = (a.label(), a.label(), a.label(), a.label(), a.label());
    for off in (0..SESSION_KEY_LEN as i16).step_by(8) {
        a.store_imm(Size::DW, R10, SESSION_KEY_SLOT + off, 0);
    }
    a.load(Size::DW, R4, R10, IP_SLOT);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    a.load(Size::W, R1, R4, 12);
    a.store(Size::W, R10, SESSION_KEY_SLOT, R1);
    a.load(Size::W, R1, R4, 16);
    a.store(Size::W, R10, SESSION_KEY_SLOT + 16, R1);
    a.goto(key_done);
    a.place(v6);
    for word in 0..8i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.store(Size::W, R10, SESSION_KEY_SLOT + 4 * word, R1);
    }
    a.place(key_done);
    a.load(Size::W, R1, R9, -8);
    a.store(Size::W, R10, SESSION_KEY_SLOT + 32, R1);
    a.load(Size::H, R1, R9, 14);
    a.store(Size::H, R10, SESSION_KEY_SLOT + 36, R1);
    a.load_map_fd(R1, sessions_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, SESSION_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, new);
    // Idle too long (and not touched since by another CPU): from 0 again.
    a.load(Size::DW, R1, R0, 8);
    a.load(Size::DW, R2, R10, T2_SLOT);
    a.jump_reg(Cond::Gt, R1, R2, fresh);
    a.alu_reg(Alu::Sub, R2, R1);
    a.load_imm64(R3, stamp::SESSION_IDLE_NS);
    a.jump_reg(Cond::Le, R2, R3, fresh);
    a.store_imm(Size::W, R0, 0, 0);
    a.place(fresh);
    a.load(Size::DW, R2, R10, T2_SLOT);
    a.store(Size::DW, R0, 8, R2);
    a.mov_imm(R1, 1);
    a.atomic_fetch_add(Size::W, R0, 0, R1);
    a.goto(have);
    a.place(new);
    a.store_imm(Size::W, R10, SESSION_VALUE_SLOT, 1);
    a.store_imm(Size::W, R10, SESSION_VALUE_SLOT + 4, 0);
    a.load(Size::DW, R1, R10, T2_SLOT);
    a.store(Size::DW, R10, SESSION_VALUE_SLOT + 8, R1);
    a.load_map_fd(R1, sessions_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, SESSION_KEY_SLOT as i32);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, SESSION_VALUE_SLOT as i32);
    a.mov_imm(R4, 0);
    a.call(BPF_FUNC_MAP_UPDATE_ELEM);
    a.mov_imm(R1, 0);
    a.place(have);
    a.to_be(R1, 32);
    a.store(Size::W, R10, SEQ_SLOT, R1);
    // One state to go on with, whichever way the session was found.
    for r in [R0, R1, R2, R3, R4, R5] {
        a.mov_imm(r, 0);
    }
}

/// `helper(ctx, offset, r10 + GROW_BUF_SLOT, len)` for `bpf_xdp_load_bytes` or
/// `bpf_xdp_store_bytes`, the length read from the stack slot `len` (at most the buffer's); on
/// to `fail` when it refuses. Uses r0-r5.
fn grow_buf_copy(a: &mut Asm, helper: i32, offset: i32, len: i16, fail: Label) {
    a.mov(R1, R6);
    a.mov_imm(R2, offset);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, GROW_BUF_SLOT as i32);
    a.load(Size::DW, R4, R10, len);
    a.jump_imm(Cond::Gt, R4, GROW_BUF_LEN as i32, fail);
    a.call(helper);
    a.jump_imm(Cond::Ne, R0, 0, fail);
}

/// The IPv4 TTL or IPv6 hop limit of the IP header at r4 into `dst` (r0 is scratch; the IP
/// version in its stack slot).
fn load_hops(a: &mut Asm, dst: Reg) {
    let (v6, done) = (a.label(), a.label());
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    a.load(Size::B, dst, R4, 8);
    a.goto(done);
    a.place(v6);
    a.load(Size::B, dst, R4, 7);
    a.place(done);
}

/// One hop less, as the core's reflection where `Filter::takes_a_hop`: the IPv4 TTL (its header
/// checksum updated by RFC 1624 eqn. 3, over the field as read, little-endian: ~m + m' is then
/// 0xfffe) or the IPv6 hop limit. r4 is the IP header, the IP version in its stack slot.
fn take_a_hop(a: &mut Asm) {
    let (v6, done) = (a.label(), a.label());
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    a.load(Size::B, R0, R4, 8);
    a.alu_imm(Alu::Sub, R0, 1);
    a.store(Size::B, R4, 8, R0);
    a.load(Size::H, R0, R4, 10);
    a.alu_imm(Alu::Xor, R0, 0xffff);
    a.alu_imm(Alu::Add, R0, 0xfffe);
    a.mov(R1, R0);
    a.alu_imm(Alu::Rsh, R1, 16);
    a.alu_imm(Alu::And, R0, 0xffff);
    a.alu_reg(Alu::Add, R0, R1);
    a.alu_imm(Alu::Xor, R0, 0xffff);
    a.store(Size::H, R4, 10, R0);
    a.goto(done);
    a.place(v6);
    a.load(Size::B, R0, R4, 7);
    a.alu_imm(Alu::Sub, R0, 1);
    a.store(Size::B, R4, 7, R0);
    a.place(done);
}

/// The checks a frame meets only once it passed every other rule, as the core's
/// `late_checks`: the UDP source port is not a reflector's (`loop`), the source IP is not ours
/// (`src_ip_own`), an IPv4 header's checksum is right (`ipv4_checksum`). On entry r4 is the IP
/// header and r9 the UDP payload.
fn late_checks(a: &mut Asm, filter: &Filter, r: &dyn Fn(Reject) -> Label) {
    // The ports, 8 and 6 bytes before the payload (wire order, compared as read).
    a.load(Size::H, R0, R9, -8);
    a.load(Size::H, R1, R9, -6);
    a.jump_reg(Cond::Eq, R0, R1, r(Reject::Loop));
    a.jump32_imm(Cond::Eq, R0, le16(reflector_core::DEFAULT_PORT.to_be_bytes()), r(Reject::Loop));

    let (v6, done) = (a.label(), a.label());
    // The IP version the dispatch spilled (a constant the verifier follows per path).
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);

    // IPv4: our addresses, then the header checksum: the fixed header's 32-bit words added to
    // the options' (summed when they were read), folded to 16 bits; 0xffff when right.
    a.load(Size::W, R0, R4, 12);
    for own in filter.local_v4() {
        a.jump32_imm(Cond::Eq, R0, le32(own), r(Reject::SrcIpOwn));
    }
    a.load(Size::DW, R3, R10, CHECKSUM_SLOT);
    for word in 0..5i16 {
        a.load(Size::W, R1, R4, 4 * word);
        a.alu_reg(Alu::Add, R3, R1);
    }
    fold16(a, R3, R1);
    a.jump_imm(Cond::Ne, R3, 0xffff, r(Reject::Ipv4Checksum));
    a.goto(done);

    // IPv6: our addresses, word by word.
    a.place(v6);
    for own in filter.local_v6() {
        let next = a.label();
        for word in 0..4 {
            let at = 4 * word;
            a.load(Size::W, R0, R4, 8 + at as i16);
            a.jump32_imm(Cond::Ne, R0, le32(own[at..at + 4].try_into().expect("4 bytes")), next);
        }
        a.goto(r(Reject::SrcIpOwn));
        a.place(next);
    }
    a.place(done);
}

/// The allow and deny lists, then the rate limits and the testers table, from the maps of
/// `gate`, as the core's `listed`, `Limiter::admit` and `Testers::record` judge and record: a
/// source MAC on the deny list, or an IP whose most specific listed prefix is a deny entry, is
/// `src_denied`; with an allow list, a source neither names is `src_not_allowed`; then the
/// source's bucket (in its row of the testers table) and the total's (the generic cell rate
/// algorithm, updated without locks) may say `rate_limited`; the row counts the packet either
/// way. Each table is looked at only when the flags say it holds something. On entry r4 is the
/// IP header (kept on the stack across the helper calls and restored on the way out), r7 the
/// Ethernet header (either perhaps their copies: `Gen::shift`); r8 holds the tester's row in
/// here and is data_end again on the way out.
fn gate(a: &mut Asm, maps: GateMaps, r: &dyn Fn(Reject) -> Label) {
    let done = a.label();
    a.store(Size::DW, R10, GATE_IP_SLOT, R4);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 0);
    a.load_map_fd(R1, maps.config_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, done);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, 0, done);
    a.store(Size::W, R10, GATE_FLAGS_SLOT, R1);
    for word in 0..4i16 {
        a.load(Size::DW, R1, R0, 8 + 8 * word);
        a.store(Size::DW, R10, GATE_LIMITS_SLOT + 8 * word, R1);
    }
    a.store_imm(Size::W, R10, GATE_ALLOWED_SLOT, 0);
    let (limits, by_ip, no_ip, v6, lookup_ip) = (a.label(), a.label(), a.label(), a.label(), a.label());
    flag_clear(a, GATE_LISTS, limits);
    // The source MAC (6 bytes and 2 zero ones), when MACs are listed.
    flag_clear(a, GATE_MACS, by_ip);
    a.store_imm(Size::DW, R10, GATE_KEY_SLOT, 0);
    a.load(Size::W, R1, R7, 6);
    a.store(Size::W, R10, GATE_KEY_SLOT, R1);
    a.load(Size::H, R1, R7, 10);
    a.store(Size::H, R10, GATE_KEY_SLOT + 4, R1);
    a.load_map_fd(R1, maps.macs_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, by_ip);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, Verdict::Deny as i32, r(Reject::SrcDenied));
    a.store_imm(Size::W, R10, GATE_ALLOWED_SLOT, 1);
    // The source IP, as the longest prefix a trie holds for it, when prefixes of its version
    // are listed.
    a.place(by_ip);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    flag_clear(a, GATE_V4, no_ip);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 32);
    a.load(Size::W, R1, R4, 12);
    a.store(Size::W, R10, GATE_KEY_SLOT + 4, R1);
    a.load_map_fd(R1, maps.v4_fd);
    a.goto(lookup_ip);
    a.place(v6);
    flag_clear(a, GATE_V6, no_ip);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 128);
    for word in 0..4i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.store(Size::W, R10, GATE_KEY_SLOT + 4 + 4 * word, R1);
    }
    a.load_map_fd(R1, maps.v6_fd);
    a.place(lookup_ip);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, no_ip);
    a.load(Size::W, R1, R0, 0);
    a.jump_imm(Cond::Eq, R1, Verdict::Deny as i32, r(Reject::SrcDenied));
    a.goto(limits);
    a.place(no_ip);
    flag_clear(a, GATE_ALLOW, limits);
    a.load(Size::W, R1, R10, GATE_ALLOWED_SLOT);
    a.jump_imm(Cond::Eq, R1, 0, r(Reject::SrcNotAllowed));

    // The source's row of the testers table (made when it has none), whose bucket the
    // per-source limit takes; then the total's bucket; then the row counts the packet.
    a.place(limits);
    let (have_row, total, answered, limited) = (a.label(), a.label(), a.label(), a.label());
    flag_clear(a, GATE_SOURCE_LIMIT | GATE_TOTAL_LIMIT | GATE_TESTERS, done);
    // The time: exact for the buckets; without limits the coarse clock (the same clock, read
    // from the last tick: 17 ns less a probe) is enough for when a tester was seen.
    let (coarse, timed) = (a.label(), a.label());
    flag_clear(a, GATE_SOURCE_LIMIT | GATE_TOTAL_LIMIT, coarse);
    a.call(BPF_FUNC_KTIME_GET_NS);
    a.goto(timed);
    a.place(coarse);
    a.call(BPF_FUNC_KTIME_GET_COARSE_NS);
    a.place(timed);
    a.store(Size::DW, R10, GATE_NOW_SLOT, R0);
    tester_key(a);
    let lookup_row = |a: &mut Asm| {
        a.load_map_fd(R1, maps.testers_fd);
        a.mov(R2, R10);
        a.alu_imm(Alu::Add, R2, TESTER_KEY_SLOT as i32);
        a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    };
    lookup_row(a);
    a.jump_imm(Cond::Ne, R0, 0, have_row);
    // A new row: no packets yet, first seen now, a full bucket (its time now). Made only
    // where none is (a racing CPU's stands), then looked up.
    for at in (0..TESTER_VALUE_LEN as i16).step_by(8) {
        a.store_imm(Size::DW, R10, TESTER_VALUE_SLOT + at, 0);
    }
    a.load(Size::DW, R1, R10, GATE_NOW_SLOT);
    a.store(Size::DW, R10, TESTER_VALUE_SLOT + 24, R1);
    a.store(Size::DW, R10, TESTER_VALUE_SLOT + 56, R1);
    a.load_map_fd(R1, maps.testers_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, TESTER_KEY_SLOT as i32);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, TESTER_VALUE_SLOT as i32);
    a.mov_imm(R4, BPF_NOEXIST);
    a.call(BPF_FUNC_MAP_UPDATE_ELEM);
    lookup_row(a);
    // No row even now (the table cannot take one): the packet goes on unlimited and
    // unrecorded, as the core's overflow would not let it; it cannot happen with an LRU map.
    a.jump_imm(Cond::Eq, R0, 0, done);
    // The row is kept in r8 (data_end is not needed in here, and is read again on the way
    // out): a pointer spilled to the stack costs a speculation barrier without CAP_PERFMON.
    a.place(have_row);
    a.mov(R8, R0);
    flag_clear(a, GATE_SOURCE_LIMIT, total);
    a.mov(R0, R8);
    a.alu_imm(Alu::Add, R0, 56);
    take_bucket(a, GATE_LIMITS_SLOT, limited, total);
    a.place(total);
    flag_clear(a, GATE_TOTAL_LIMIT, answered);
    a.store_imm(Size::W, R10, GATE_KEY_SLOT, 0);
    a.load_map_fd(R1, maps.total_fd);
    a.mov(R2, R10);
    a.alu_imm(Alu::Add, R2, GATE_KEY_SLOT as i32);
    a.call(BPF_FUNC_MAP_LOOKUP_ELEM);
    a.jump_imm(Cond::Eq, R0, 0, answered);
    take_bucket(a, GATE_LIMITS_SLOT + 16, limited, answered);
    a.place(limited);
    count_in_row(a, false);
    a.goto(r(Reject::RateLimited));
    a.place(answered);
    count_in_row(a, true);
    a.place(done);
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R8, R6, 4);
}

/// `if !(flags & flag) goto to`, the flags from their stack slot. Uses r1.
fn flag_clear(a: &mut Asm, flag: u32, to: Label) {
    a.load(Size::W, R1, R10, GATE_FLAGS_SLOT);
    a.alu_imm(Alu::And, R1, flag as i32);
    a.jump_imm(Cond::Eq, R1, 0, to);
}

/// The testers table's key at its slot: the frame's source address (IPv4 as
/// `::ffff:a.b.c.d`), from the IP header kept in its slot, then the outer VLAN ID (a tag's TCI
/// follows a TPID at 12: the tags were walked, so the frame, or the copy r7 points to, holds
/// it) and 2 zero bytes. Uses r0-r2, r4.
fn tester_key(a: &mut Asm) {
    let (v6, vlan, tagged, untagged) = (a.label(), a.label(), a.label(), a.label());
    let slot = TESTER_KEY_SLOT;
    a.load(Size::DW, R4, R10, GATE_IP_SLOT);
    a.load(Size::W, R0, R10, IP_VERSION_SLOT);
    a.jump_imm(Cond::Eq, R0, 6, v6);
    a.store_imm(Size::DW, R10, slot, 0);
    a.store_imm(Size::W, R10, slot + 8, le32([0, 0, 0xff, 0xff]) as i32);
    a.load(Size::W, R1, R4, 12);
    a.store(Size::W, R10, slot + 12, R1);
    a.goto(vlan);
    a.place(v6);
    for word in 0..4i16 {
        a.load(Size::W, R1, R4, 8 + 4 * word);
        a.store(Size::W, R10, slot + 4 * word, R1);
    }
    a.place(vlan);
    a.mov_imm(R1, 0);
    a.load(Size::H, R0, R7, 12);
    for tpid in VLAN_TPIDS {
        a.jump32_imm(Cond::Eq, R0, le16(tpid.to_be_bytes()), tagged);
    }
    a.goto(untagged);
    a.place(tagged);
    a.load(Size::H, R1, R7, 14);
    a.to_be(R1, 16);
    a.alu_imm(Alu::And, R1, 0x0fff);
    a.place(untagged);
    a.store(Size::W, R10, slot + 16, R1);
}

/// The packet counted in the source's row (its pointer in r8): answered (1 packet
/// and its bytes) or limited, atomically; the time, its MAC and its signature's bit written.
/// Uses r0-r2.
fn count_in_row(a: &mut Asm, answered: bool) {
    let after = a.label();
    a.mov(R0, R8);
    a.jump_imm(Cond::Eq, R0, 0, after);
    a.mov_imm(R1, 1);
    if answered {
        a.atomic_fetch_add(Size::DW, R0, 0, R1);
        a.load(Size::DW, R1, R10, FRAME_LEN_SLOT);
        a.atomic_fetch_add(Size::DW, R0, 8, R1);
    } else {
        a.atomic_fetch_add(Size::DW, R0, 16, R1);
    }
    a.load(Size::DW, R1, R10, GATE_NOW_SLOT);
    a.store(Size::DW, R0, 32, R1);
    a.load(Size::W, R1, R7, 6);
    a.store(Size::W, R0, 40, R1);
    a.load(Size::H, R1, R7, 10);
    a.store(Size::H, R0, 44, R1);
    a.load(Size::W, R2, R10, SIGNATURE_SLOT);
    a.alu_imm(Alu::And, R2, 31);
    a.mov_imm(R1, 1);
    a.alu_reg(Alu::Lsh, R1, R2);
    a.load(Size::W, R2, R0, 48);
    a.alu_reg(Alu::Or, R1, R2);
    a.store(Size::W, R0, 48, R1);
    a.place(after);
}

/// The bucket whose time r0 points to, taken for a packet at the time in its slot with the
/// interval and tolerance at `limits` and `limits + 8` (the core's `Rate::take`): on to
/// `limited` when it is too far ahead, else moved one interval on and on to `next`. Uses r1-r5.
fn take_bucket(a: &mut Asm, limits: i16, limited: Label, next: Label) {
    let fresh = a.label();
    a.load(Size::DW, R1, R0, 0);
    a.load(Size::DW, R2, R10, GATE_NOW_SLOT);
    a.load(Size::DW, R3, R10, limits);
    a.load(Size::DW, R4, R10, limits + 8);
    a.jump_reg(Cond::Le, R1, R2, fresh);
    a.mov(R5, R1);
    a.alu_reg(Alu::Sub, R5, R2);
    // Further ahead than any packet could have put it (the clock went back): from now.
    a.alu_reg(Alu::Add, R4, R3);
    a.jump_reg(Cond::Gt, R5, R4, fresh);
    a.alu_reg(Alu::Sub, R4, R3);
    a.jump_reg(Cond::Gt, R5, R4, limited);
    a.alu_reg(Alu::Add, R1, R3);
    a.store(Size::DW, R0, 0, R1);
    a.goto(next);
    a.place(fresh);
    a.alu_reg(Alu::Add, R2, R3);
    a.store(Size::DW, R0, 0, R2);
    a.goto(next);
}

/// `insns` (a program of [`program`]) with a prologue for a verifier without CAP_PERFMON, which
/// puts a speculation barrier (`lfence` on x86) after every store to stack it has not seen
/// written on some way there (Spectre v4): dozens a frame, 2.5 times the program's time
/// (`xdp_gate_cost`). A helper that may write the whole stack makes every byte of it written
/// for the verifier first: `bpf_xdp_load_bytes` into all 512 bytes from an offset past any
/// frame, which it refuses at once, copying nothing. The call costs what a helper call costs,
/// so a loader that holds CAP_PERFMON (no barriers) does without it. Jumps are relative, so
/// the program after it is unchanged; it uses r1-r6, which the program sets afresh.
pub fn mark_stack_written(insns: Vec<Insn>) -> Vec<Insn> {
    let mut a = Asm::default();
    a.mov(R6, R1);
    a.mov_imm(R4, 512);
    a.mov_imm(R2, -1);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, -512);
    a.call(BPF_FUNC_XDP_LOAD_BYTES);
    a.mov(R1, R6);
    let mut out = a.finish().expect("a straight prologue assembles");
    out.extend(insns);
    out
}

/// The program for `filter`. With `counters_fd` (a per-CPU array of `u64` with
/// [`Reject::COUNT`] entries), every rejected frame increments the entry of its reason, the
/// same reason the core gives, so the counters say why even though rejected frames never
/// reach userspace.
///
/// `None` when the program cannot be had: a jump too far, or [`OnHit::Reflect`] without the
/// STAMP maps for a filter that answers STAMP.
///
/// With `gate`, a test packet then meets the allow and deny lists and the rate limits those
/// maps hold ([`GateMaps`]); the filter's own lists and limits are not looked at (userspace
/// writes them into the maps).
pub fn program(
    filter: &Filter,
    on_hit: OnHit,
    counters_fd: Option<i32>,
    gate_maps: Option<GateMaps>,
    capture: Option<CaptureMaps>,
) -> Option<Vec<Insn>> {
    let stamp_answer = match on_hit {
        OnHit::Reflect { stamp } if filter.stamp_port().is_some() => Some(stamp?),
        _ => None,
    };
    let mut a = Asm::default();
    let reasons = Reject::ALL.iter().map(|_| a.label()).collect();
    let count_hits = matches!(on_hit, OnHit::Reflect { .. }) && counters_fd.is_some();
    let stamp_meta =
        matches!(on_hit, OnHit::Redirect { receive_time: true, .. }) && filter.stamp_port().is_some();
    // Samples need the counters' reject code.
    let capture = capture.filter(|_| counters_fd.is_some()).map(|c| (c, a.label()));
    let signatures = count_hits || gate_maps.is_some() || capture.is_some();
    let mut g =
        Gen { a, filter, reasons, count_hits, signatures, stamp_meta, stamp_answer, counters_fd, capture };
    let (v4, v6, shift, udp, hit) = (g.a.label(), g.a.label(), g.a.label(), g.a.label(), g.a.label());
    g.context();
    g.ethernet();
    g.vlan_and_ethertype(v4, v6);
    g.a.place(v4);
    g.ipv4(udp, shift);
    g.a.place(v6);
    g.ipv6(udp, shift);
    g.a.place(shift);
    g.shift(udp);
    g.a.place(udp);
    g.udp(hit);
    g.signatures_and_oui(hit)?;
    g.a.place(hit);
    let reasons = g.reasons.clone();
    late_checks(&mut g.a, filter, &|reason| reasons[reason as usize]);
    if let Some(maps) = gate_maps {
        gate(&mut g.a, maps, &|reason| reasons[reason as usize]);
    }
    g.on_hit(on_hit, counters_fd);
    g.rejected(counters_fd);
    g.sample();
    g.a.finish()
}
