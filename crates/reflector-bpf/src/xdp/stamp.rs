//! STAMP / TWAMP-Light: the request's receive time for the redirecting program, and the whole
//! answer in the reflecting one (timestamps, error estimate, sequence numbers, the checksum,
//! a short request grown to the reflector packet).

use reflector_core::stamp;
use reflector_core::wire::{IPPROTO_UDP, IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};

use crate::ebpf::*;

use super::checks::load_hops;
use super::generator::*;
use super::layout::*;
use super::maps::*;

/// What the start moves back by when the end cannot move on: the most a short request grows.
pub(super) const GROW_AT_HEAD: i32 = (stamp::MIN_LEN - stamp::MIN_REQUEST_LEN) as i32;

/// The piece of a datagram summed at a time (read into the stack with `bpf_xdp_load_bytes`).
pub(super) const SUM_CHUNK: i32 = 64;

/// r3 = the STAMP payload's first 44 bytes (or all of a shorter one, at least 41) as
/// little-endian words, summed: ten words, then bytes 40..44 one by one where they exist.
/// Uses r0-r3; the payload's length is in its stack slot.
pub(super) fn stamp_payload_sum(a: &mut Asm) {
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
pub(super) fn stamp_pseudo_sum(a: &mut Asm) {
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
pub(super) fn stamp_datagram_sum(a: &mut Asm, too_long: Label) {
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

/// Writes the time in r0 (CLOCK_TAI ns) at r9 + `at` as UTC (TAI − UTC from its slot), in NTP
/// (seconds since 1900, 2^-32 s fractions) or PTP truncated form (seconds, nanoseconds), both
/// big-endian. Uses r0-r2 and r5.
pub(super) fn stamp_timestamp(a: &mut Asm, ptp: bool, at: i16) {
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
pub(super) fn stamp_session_sequence(a: &mut Asm, sessions_fd: i32) {
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
pub(super) fn grow_buf_copy(a: &mut Asm, helper: i32, offset: i32, len: i16, fail: Label) {
    a.mov(R1, R6);
    a.mov_imm(R2, offset);
    a.mov(R3, R10);
    a.alu_imm(Alu::Add, R3, GROW_BUF_SLOT as i32);
    a.load(Size::DW, R4, R10, len);
    a.jump_imm(Cond::Gt, R4, GROW_BUF_LEN as i32, fail);
    a.call(helper);
    a.jump_imm(Cond::Ne, R0, 0, fail);
}

impl Gen<'_> {
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
    pub(super) fn grow_short_request(&mut self, counters_fd: Option<i32>) {
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
    pub(super) fn not_answered(&mut self, counters_fd: Option<i32>) {
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
    pub(super) fn stamp_answer(&mut self, maps: StampMaps) {
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
    pub(super) fn stamp_receive_time(&mut self) {
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
}
