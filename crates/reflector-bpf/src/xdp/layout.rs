//! The stack frame of the programs, in one place: every slot with its offset and size, and the
//! stages of the program during which it holds a live value ([`SLOTS`]). Two slots may share
//! bytes only when no stage has both live (a test checks it), as the STAMP answer's buffers
//! reuse the gate's once a test packet is past the gate.
//!
//! Registers keep one role from the Ethernet stage on: r6 the context, r7 data (the Ethernet
//! header), r8 data_end, r9 the cursor, r4 the IP header, r5 the bytes from the cursor to the
//! end of the IP packet (a number); r0-r3 are scratch, and a helper call clobbers r1-r5 (a stage
//! that calls one reloads r4 and r5 from [`IP_OFF_SLOT`] and [`REST_SLOT`]).

/// The counters map's key while a counter is added to (`add_to`), a `u32`.
pub(super) const COUNTER_KEY_SLOT: i16 = -4;
/// The IP version (4 or 6), kept by the L3 dispatch for every later stage, a `u32`.
pub(super) const IP_VERSION_SLOT: i16 = -8;
/// A hit's signature's index, for the counters, the testers table and the capture, a `u32`.
pub(super) const SIGNATURE_SLOT: i16 = -16;
/// Whether the frame is a STAMP request (1) or not (0), a `u32`.
pub(super) const STAMP_SLOT: i16 = -24;
/// The bytes a short STAMP request's payload grew by to the reflector packet's 41 (0: not
/// grown), a `u64`.
pub(super) const GROWN_SLOT: i16 = -32;

// The reflecting program's STAMP answer: the IP header pointer, the receive time (TAI), the
// clock map's key, TAI − UTC, the error estimate, the sequence number (wire order), the payload
// length, the old payload sum, the pseudo-header sum, the session key (40 bytes) and value (16),
// whether the request's checksum was left for offload, the datagram's sum so far.
pub(super) const IP_SLOT: i16 = -40;
pub(super) const T2_SLOT: i16 = -48;
pub(super) const KEY_SLOT: i16 = -52;
pub(super) const OFFSET_SLOT: i16 = -64;
pub(super) const ERROR_SLOT: i16 = -72;
pub(super) const SEQ_SLOT: i16 = -76;
pub(super) const PAYLEN_SLOT: i16 = -88;
pub(super) const OLD_SUM_SLOT: i16 = -96;
pub(super) const PSEUDO_SLOT: i16 = -104;
pub(super) const SESSION_KEY_SLOT: i16 = -144;
pub(super) const SESSION_VALUE_SLOT: i16 = -160;
pub(super) const PARTIAL_SLOT: i16 = -164;
pub(super) const SUM_SLOT: i16 = -504;

// The gate (lists, limits, testers): the IP header pointer, the flags, whether an allow entry
// named the source, a map key (20 bytes at most), the limits' intervals and tolerances, the
// time (for the buckets), the jiffies (when a tester was seen), the testers table's key and a
// new row.
pub(super) const GATE_IP_SLOT: i16 = -176;
pub(super) const GATE_FLAGS_SLOT: i16 = -180;
pub(super) const GATE_ALLOWED_SLOT: i16 = -184;
pub(super) const GATE_KEY_SLOT: i16 = -208;
pub(super) const GATE_LIMITS_SLOT: i16 = -240;
pub(super) const GATE_NOW_SLOT: i16 = -248;
pub(super) const GATE_SEEN_SLOT: i16 = -256;
pub(super) const TESTER_KEY_SLOT: i16 = -280;
pub(super) const TESTER_VALUE_SLOT: i16 = -344;

/// Where a short STAMP request's headers and payload are copied while the frame grows at its
/// start (`Gen::grow_short_request`): over the gate's slots, done with by then.
pub(super) const GROW_BUF_SLOT: i16 = -344;
/// Its size: the longest such request's headers and the 41-byte packet (two tags, IPv6, UDP:
/// 111 bytes), rounded up to words.
pub(super) const GROW_BUF_LEN: i16 = 112;
/// Where a piece of a datagram is read to for its checksum: the gate's slots again.
pub(super) const SUM_CHUNK_SLOT: i16 = -344;

// A sample's verdict code and the action to return after it (a `u32` each), the frame's length
// and the bytes to keep, and a zero key.
pub(super) const CAPTURE_CODE_SLOT: i16 = -356;
pub(super) const CAPTURE_ACTION_SLOT: i16 = -360;
pub(super) const CAPTURE_LEN_SLOT: i16 = -364;
pub(super) const CAPTURE_CAPLEN_SLOT: i16 = -368;
pub(super) const CAPTURE_KEY_SLOT: i16 = -372;

/// The frame's length (`bpf_xdp_get_buff_len`, read once the frame is IP), a `u64`.
pub(super) const FRAME_LEN_SLOT: i16 = -384;
/// Where the IP header starts (14 + 4 per VLAN tag), spilled from a register per path so that
/// the verifier follows it as a constant.
pub(super) const IP_OFF_SLOT: i16 = -392;
/// How far the frame's start is moved on (`bpf_xdp_adjust_head`) so that its UDP header is
/// where it would be without IPv4 options or IPv6 extension headers; 0 when it is not moved.
pub(super) const SHIFT_SLOT: i16 = -400;
/// The bytes of IPv4 options or IPv6 extension headers, while the headers are walked.
pub(super) const SKIP_SLOT: i16 = -408;
/// The bytes from the cursor to the end of the IP packet, across helper calls.
pub(super) const REST_SLOT: i16 = -416;
/// The first two bytes of an IPv6 extension header (`bpf_xdp_load_bytes`).
pub(super) const EXT_SLOT: i16 = -424;
/// The IPv4 options' 32-bit words summed (0 without options), while they are in the frame at a
/// known place; the late checks add the fixed header's words to judge the checksum.
pub(super) const CHECKSUM_SLOT: i16 = -432;
/// Copies of the Ethernet header (and a first tag's TCI) and of the fixed IP header, which the
/// checks read and the reflection writes while the frame's start is moved on. Stack accesses
/// must be aligned: the Ethernet copy starts 2 bytes past a multiple of 8, so that its source
/// MAC (read as a word at 6) is.
pub(super) const ETH_COPY_SLOT: i16 = -454;
pub(super) const IP_COPY_SLOT: i16 = -496;

/// The stages of a program, in the order a frame meets them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Stage {
    /// The headers and the signatures (`parse`, `signatures`).
    Parse,
    /// The late checks and the loop rule (`checks`).
    Checks,
    /// Lists, limits and the testers table (`gate`).
    Gate,
    /// A short STAMP request grown to the reflector packet (`stamp`), before it is answered.
    Grow,
    /// What a test packet gets: redirected, or answered and reflected (`reflect`, `stamp`).
    Answer,
    /// Counting, the frame's start put back, sampling (`reflect`, `capture`).
    Exit,
}

/// A stack slot: where it is, how large, and from which stage to which it holds a value.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Its offset from r10.
    pub at: i16,
    /// Its size in bytes.
    pub len: i16,
    /// The first stage that writes it.
    pub from: Stage,
    /// The last stage that reads it.
    pub to: Stage,
}

macro_rules! slots {
    ($($name:ident: $len:expr, $from:ident ..= $to:ident;)*) => {
        /// Every slot of the frame.
        pub(super) const SLOTS: &[Slot] = &[
            $(Slot { at: $name, len: $len, from: Stage::$from, to: Stage::$to },)*
        ];
        /// Their constants' names, in the same order.
        #[cfg(test)]
        const NAMES: &[&str] = &[$(stringify!($name),)*];
    };
}

slots! {
    COUNTER_KEY_SLOT: 4, Grow ..= Exit;
    IP_VERSION_SLOT: 4, Parse ..= Exit;
    SIGNATURE_SLOT: 4, Parse ..= Exit;
    STAMP_SLOT: 4, Parse ..= Answer;
    GROWN_SLOT: 8, Grow ..= Answer;
    IP_SLOT: 8, Parse ..= Answer;
    T2_SLOT: 8, Parse ..= Answer;
    KEY_SLOT: 4, Answer ..= Answer;
    OFFSET_SLOT: 8, Answer ..= Answer;
    ERROR_SLOT: 8, Answer ..= Answer;
    SEQ_SLOT: 4, Answer ..= Answer;
    PAYLEN_SLOT: 8, Answer ..= Answer;
    OLD_SUM_SLOT: 8, Answer ..= Answer;
    PSEUDO_SLOT: 8, Answer ..= Answer;
    SESSION_KEY_SLOT: 40, Answer ..= Answer;
    SESSION_VALUE_SLOT: 16, Answer ..= Answer;
    PARTIAL_SLOT: 4, Answer ..= Answer;
    SUM_SLOT: 8, Answer ..= Answer;
    GATE_IP_SLOT: 8, Gate ..= Gate;
    GATE_FLAGS_SLOT: 4, Gate ..= Gate;
    GATE_ALLOWED_SLOT: 4, Gate ..= Gate;
    GATE_KEY_SLOT: 24, Gate ..= Gate;
    GATE_LIMITS_SLOT: 32, Gate ..= Gate;
    GATE_NOW_SLOT: 8, Gate ..= Gate;
    GATE_SEEN_SLOT: 8, Gate ..= Gate;
    TESTER_KEY_SLOT: 20, Gate ..= Gate;
    TESTER_VALUE_SLOT: 64, Gate ..= Gate;
    GROW_BUF_SLOT: GROW_BUF_LEN, Grow ..= Grow;
    SUM_CHUNK_SLOT: 64, Answer ..= Answer;
    CAPTURE_CODE_SLOT: 4, Exit ..= Exit;
    CAPTURE_ACTION_SLOT: 4, Exit ..= Exit;
    CAPTURE_LEN_SLOT: 4, Exit ..= Exit;
    CAPTURE_CAPLEN_SLOT: 4, Exit ..= Exit;
    CAPTURE_KEY_SLOT: 4, Exit ..= Exit;
    FRAME_LEN_SLOT: 8, Parse ..= Exit;
    IP_OFF_SLOT: 8, Parse ..= Answer;
    SHIFT_SLOT: 8, Parse ..= Exit;
    SKIP_SLOT: 8, Parse ..= Answer;
    REST_SLOT: 8, Parse ..= Answer;
    EXT_SLOT: 8, Parse ..= Answer;
    CHECKSUM_SLOT: 8, Parse ..= Checks;
    ETH_COPY_SLOT: 18, Parse ..= Exit;
    IP_COPY_SLOT: 40, Parse ..= Exit;
}

/// Whether `a` and `b` share a byte while both hold a value.
pub(super) const fn clash(a: &Slot, b: &Slot) -> bool {
    let bytes = a.at < b.at + b.len && b.at < a.at + a.len;
    let stages = (a.from as u8) <= (b.to as u8) && (b.from as u8) <= (a.to as u8);
    bytes && stages
}

// Checked when the crate compiles: no two live values share a byte, and every slot is inside
// the 512-byte frame.
const _: () = {
    let mut i = 0;
    while i < SLOTS.len() {
        let a = &SLOTS[i];
        assert!(a.at >= -512 && a.at + a.len <= 0, "a stack slot leaves the frame (layout::SLOTS)");
        let mut j = i + 1;
        while j < SLOTS.len() {
            assert!(!clash(a, &SLOTS[j]), "two live stack slots share bytes (layout::SLOTS)");
            j += 1;
        }
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str) -> Slot {
        SLOTS[NAMES.iter().position(|n| *n == name).expect("a slot of that name")]
    }

    #[test]
    fn every_slot_is_aligned_for_its_size() {
        for (s, name) in SLOTS.iter().zip(NAMES) {
            assert!(s.from <= s.to, "{name}");
            // Word slots are word-aligned; the Ethernet copy is aligned for its MAC (at 6).
            let (at, align) = if *name == "ETH_COPY_SLOT" { (s.at + 6, 8) } else { (s.at, s.len.min(8)) };
            if align.count_ones() == 1 {
                assert_eq!(at.rem_euclid(align), 0, "{name} is not aligned");
            }
        }
    }

    #[test]
    fn no_two_live_values_share_a_byte() {
        for (i, (a, an)) in SLOTS.iter().zip(NAMES).enumerate() {
            for (b, bn) in SLOTS[i + 1..].iter().zip(&NAMES[i + 1..]) {
                assert!(!clash(a, b), "{an} {a:?} and {bn} {b:?} share bytes while both are live");
            }
        }
    }

    #[test]
    fn every_slot_declared_here_is_in_the_table() {
        let source = include_str!("layout.rs");
        let declared: Vec<&str> = source
            .lines()
            .filter_map(|l| l.strip_prefix("pub(super) const "))
            .filter_map(|l| l.split(':').next())
            .filter(|n| n.ends_with("_SLOT"))
            .collect();
        assert!(declared.len() >= 40, "{declared:?}");
        for name in declared {
            assert!(NAMES.contains(&name), "{name} is not in SLOTS");
        }
    }

    #[test]
    fn a_clash_is_bytes_and_stages_in_common() {
        let a = Slot { at: -16, len: 8, from: Stage::Parse, to: Stage::Gate };
        let b = Slot { at: -12, len: 4, from: Stage::Gate, to: Stage::Exit };
        assert!(clash(&a, &b) && clash(&b, &a));
        assert!(!clash(&a, &Slot { from: Stage::Answer, ..b }), "one after the other");
        assert!(!clash(&a, &Slot { at: -8, ..b }), "side by side");
        // The STAMP answer's buffers over the gate's slots: apart in time.
        let (grow, tester) = (named("GROW_BUF_SLOT"), named("TESTER_VALUE_SLOT"));
        assert!(!clash(&grow, &tester) && grow.at == tester.at);
        assert!(clash(&grow, &Slot { to: Stage::Answer, ..tester }));
    }
}
