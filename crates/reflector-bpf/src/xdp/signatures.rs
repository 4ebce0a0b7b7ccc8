//! The ITO, RFC 2544, Y.1564 and custom signatures and their OUI: which test packet this is.

use reflector_core::{Family, Reject, Signature};

use crate::ebpf::*;

use super::generator::*;
use super::layout::*;

impl Gen<'_> {
    /// 7 signature bytes at r9 + `offset` against `sigs`, as two overlapping words (bytes 0..4
    /// and 3..7) held in r0 and r1; a payload too short for them goes on (to the next family),
    /// a frame too short for the verifier is `no_signature`. Returns each signature's label.
    /// With `one`, every signature goes to that label (a family matched as a whole).
    pub(super) fn seven_byte_signatures(
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
    pub(super) fn custom_signatures(&mut self) -> Option<Label> {
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
    pub(super) fn signatures_and_oui(&mut self, hit: Label) -> Option<()> {
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
}
