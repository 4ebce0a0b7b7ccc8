//! Turning a test packet around in place.
//!
//! Swapping two fields of the same header never changes a one's-complement checksum over
//! it (RFC 1071: the sum does not depend on the order of its 16-bit words, and every field
//! swapped here is 16-bit aligned), so the IPv4 header checksum and the UDP checksum stay valid
//! and nothing is recomputed. TTL / hop limit and VLAN tags are left as they are.

use crate::classify::{Hit, L3Kind};
use crate::filter::Mode;

/// Swaps the `len` bytes at `at` with the `len` bytes that follow them. Out of range is a no-op,
/// so a `Hit` applied to the wrong frame cannot panic.
#[inline(always)]
fn swap_adjacent(frame: &mut [u8], at: usize, len: usize) {
    if let Some(both) = frame.get_mut(at..at + 2 * len) {
        let (a, b) = both.split_at_mut(len);
        a.swap_with_slice(b);
    }
}

/// Reflects the frame `hit` was classified from, in place, according to `mode`.
#[inline]
pub fn reflect(frame: &mut [u8], hit: &Hit, mode: Mode) {
    swap_adjacent(frame, 0, 6);
    if mode == Mode::Mac {
        return;
    }
    match hit.l3() {
        L3Kind::V4 => swap_adjacent(frame, hit.l3_offset() + 12, 4),
        L3Kind::V6 => swap_adjacent(frame, hit.l3_offset() + 8, 16),
    }
    if mode == Mode::All {
        swap_adjacent(frame, hit.l4_offset(), 2);
    }
}
