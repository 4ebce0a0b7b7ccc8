//! The headers, in the order `classify` reads them: the context, Ethernet, VLAN tags, IPv4 or
//! IPv6 (options and extension headers brought to a constant offset by moving the frame's
//! start), UDP.

use reflector_core::wire::{
    ETH_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6, IPPROTO_UDP, IPV4_MIN_HEADER_LEN, IPV6_EXT_DEST_OPTS,
    IPV6_EXT_FRAGMENT, IPV6_EXT_HOP_BY_HOP, IPV6_EXT_ROUTING, IPV6_HEADER_LEN, MAX_IPV6_EXT_HEADERS,
    MAX_VLAN_TAGS, UDP_HEADER_LEN, VLAN_TAG_LEN, VLAN_TPIDS,
};
use reflector_core::{Reject, Signature};

use crate::ebpf::*;

use super::generator::*;
use super::layout::*;

impl Gen<'_> {
    /// `struct xdp_md`: data, data_end, data_meta, ingress_ifindex, rx_queue_index. r6 keeps
    /// the context, for the helpers that take it (and the queue, to redirect). The frame's
    /// start is not moved yet.
    pub(super) fn context(&mut self) {
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
    pub(super) fn ethernet(&mut self) {
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
    pub(super) fn vlan_and_ethertype(&mut self, v4: Label, v6: Label) {
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
    pub(super) fn spill_ip_offset(&mut self, tags: usize) {
        self.a.mov_imm(R0, (ETH_HEADER_LEN + tags * VLAN_TAG_LEN) as i32);
        self.a.store(Size::DW, R10, IP_OFF_SLOT, R0);
    }

    /// The frame's length into its slot: the IP checks compare lengths as numbers, since a
    /// packet pointer may only move by constants without CAP_PERFMON. Uses r0-r5.
    pub(super) fn frame_len(&mut self) {
        self.a.mov(R1, R6);
        self.a.call(BPF_FUNC_XDP_GET_BUFF_LEN);
        self.a.store(Size::DW, R10, FRAME_LEN_SLOT, R0);
    }

    /// r1 = the bytes of the frame from the IP header on (r0 is scratch).
    pub(super) fn room_from_ip(&mut self) {
        self.a.load(Size::DW, R1, R10, FRAME_LEN_SLOT);
        self.a.load(Size::DW, R0, R10, IP_OFF_SLOT);
        self.a.alu_reg(Alu::Sub, R1, R0);
    }

    /// Remembers the IP version for the late checks.
    pub(super) fn spill_ip_version(&mut self, version: i32) {
        self.a.mov_imm(R0, version);
        self.a.store(Size::W, R10, IP_VERSION_SLOT, R0);
    }

    /// IPv4 at r9: header, length, fragments, protocol, addresses; the options (for the header
    /// checksum the late checks judge) are summed here, while they are in the frame at a known
    /// place. Leaves r4 at the IP header and r5 = the bytes from the UDP header
    /// to the end of the IP packet; then on to `udp` with r9 at the UDP header, or, with
    /// options, to `shift` with their length in r3.
    pub(super) fn ipv4(&mut self, udp: Label, shift: Label) {
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
    pub(super) fn ipv6(&mut self, udp_: Label, shift: Label) {
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
    pub(super) fn shift(&mut self, udp: Label) {
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
    pub(super) fn udp(&mut self, hit: Label) {
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
}
