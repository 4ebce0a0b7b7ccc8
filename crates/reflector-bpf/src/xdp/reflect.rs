//! What a frame ends with: a test packet redirected, returned or reflected in place (and
//! counted), a rejected one counted and passed on, the frame's start put back first.

use reflector_core::wire::{IPV4_MIN_HEADER_LEN, IPV6_HEADER_LEN, UDP_HEADER_LEN};
use reflector_core::{Reject, stamp};

use crate::ebpf::*;

use super::checks::take_a_hop;
use super::generator::*;
use super::layout::*;
use super::maps::*;

impl Gen<'_> {
    /// A test packet: redirect it to its queue's socket, reflect it in place and send it back
    /// (`XDP_TX`), or return `XDP_TX` untouched for tests.
    pub(super) fn on_hit(&mut self, on_hit: OnHit, counters_fd: Option<i32>) {
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
    pub(super) fn send_back(&mut self, write_back: bool) {
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
    pub(super) fn restore(&mut self, write_back: bool) {
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

    /// The core's reflection, in place: the destination MAC becomes the source (which was
    /// ours), the source ours; in mode `mac-ip` and `all` the IP addresses swap, in mode `all`
    /// the UDP ports too. Swapping fields of a header leaves its one's-complement checksums
    /// valid; with `hop`, a hop off the TTL ([`take_a_hop`]). On entry r4 is the IP header and
    /// r9 the UDP payload (as the late checks left them), the IP version in its stack slot;
    /// every byte written was read by a check before, so the verifier knows it is inside the
    /// frame. While the frame's start is moved on, r7 and r4 are the copies on the stack
    /// ([`Gen::shift`]), which [`Gen::restore`] writes back.
    pub(super) fn reflect(&mut self, mode: reflector_core::Mode, hop: bool) {
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
    pub(super) fn add_to(&mut self, fd: i32, value: Option<Reg>) {
        add_to(&mut self.a, fd, value);
    }

    /// A reflected frame counted: its signature's entry, and its bytes.
    pub(super) fn count_hit(&mut self, fd: i32) {
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
    pub(super) fn rejected(&mut self, counters_fd: Option<i32>) {
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
}
