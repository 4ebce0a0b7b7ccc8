//! Turning a test packet around in place.
//!
//! Swapping two fields of the same header never changes a one's-complement checksum over
//! it (RFC 1071: the sum does not depend on the order of its 16-bit words, and every field
//! swapped here is 16-bit aligned), so the IPv4 header checksum and the UDP checksum stay valid
//! and nothing is recomputed. TTL / hop limit and VLAN tags are left as they are.

use crate::classify::{Hit, L3Kind};
use crate::filter::Mode;

/// Swaps the `N` bytes at `at` with the `N` bytes that follow them. Out of range is a no-op,
/// so a `Hit` applied to the wrong frame cannot panic. The size is a constant, so the swap
/// compiles to a few register moves.
#[inline(always)]
fn swap_adjacent<const N: usize>(frame: &mut [u8], at: usize) {
    if let Some(both) = frame.get_mut(at..at + 2 * N) {
        let (a, b) = both.split_at_mut(N);
        if let (Ok(a), Ok(b)) = (<&mut [u8; N]>::try_from(a), <&mut [u8; N]>::try_from(b)) {
            core::mem::swap(a, b);
        }
    }
}

/// Reflects the frame `hit` was classified from, in place, according to `mode`.
#[inline]
pub fn reflect(frame: &mut [u8], hit: &Hit, mode: Mode) {
    swap_adjacent::<6>(frame, 0);
    if mode == Mode::Mac {
        return;
    }
    match hit.l3() {
        L3Kind::V4 => swap_adjacent::<4>(frame, hit.l3_offset() + 12),
        L3Kind::V6 => swap_adjacent::<16>(frame, hit.l3_offset() + 8),
    }
    if mode == Mode::All {
        swap_adjacent::<2>(frame, hit.l4_offset());
    }
}
