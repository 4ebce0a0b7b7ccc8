//! The late checks (`classify`'s rules after the signature: addresses, checksum, TTL) and the
//! loop rule's hops.

use reflector_core::{Filter, Reject};

use crate::ebpf::*;

use super::generator::*;
use super::layout::*;

/// The IPv4 TTL or IPv6 hop limit of the IP header at r4 into `dst` (r0 is scratch; the IP
/// version in its stack slot).
pub(super) fn load_hops(a: &mut Asm, dst: Reg) {
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
pub(super) fn take_a_hop(a: &mut Asm) {
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
pub(super) fn late_checks(a: &mut Asm, filter: &Filter, r: &dyn Fn(Reject) -> Label) {
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

impl Gen<'_> {
    /// Goes to `not` when the STAMP request whose UDP header is at r9 + `udp` is answered
    /// without a hop off (`Filter::stamp_takes_a_hop`: by its source port); emits nothing when
    /// every answer takes one (and is not called when none does). Uses r0.
    pub(super) fn unless_stamp_takes_a_hop(&mut self, udp: i16, not: Label) {
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
    pub(super) fn no_hops_left_is_a_loop(&mut self) {
        let loop_ = self.r(Reject::Loop);
        load_hops(&mut self.a, R0);
        self.a.jump_imm(Cond::Eq, R0, 0, loop_);
    }
}
